"""The emulators against clients no SDK would be: malformed bodies, oversized ones, broken framing, odd targets and
headers, clients that send one byte a second or nothing at all. Raw sockets, so every byte is the test's.

What each must do (local/httpd.py, module docstring): what the front end refuses (framing, size, time) is answered
as a front end does (a standard status, an HTML page, Connection: close); what reaches the service is answered with
the service's own error (MNS: the <Error> XML with Code, Message, RequestId, HostId and the lowercase
x-mns-request-id header; POP: the JSON with Code, Message, RequestId; FC: {"ErrorCode", "ErrorMessage"} on 2016-08-15
and {"Code", "Message", "RequestId"} on 2023-03-30; the webhook: {"error"}). Never a connection dropped without an
answer, never a request left hanging, and the emulator goes on serving everyone else.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from local import httpd
from local.alicom import AlicomEmulator
from local.fc import FcEmulator
from local.mns import MnsEmulator
from local.webhook.receiver import WebhookReceiver

MNS_ID, MNS_SECRET = "robust-owner", "robust-owner-secret-7e11"
WEBHOOK_SECRET = "robust-webhook-secret-2c4d"


# ---- a raw HTTP client -----------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    raw_headers: list[tuple[str, str]] = field(default_factory=list)  # as sent
    body: bytes = b""
    closed: bool = False  # the server closed the connection after answering

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    def xml_code(self) -> str | None:
        match = re.search(rb"<Code>([^<]*)</Code>", self.body)
        return match.group(1).decode() if match else None


def _address(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.split("://", 1)[1].rstrip("/").partition(":")
    return host, int(port)


class Client:
    """One raw connection: bytes out exactly as given, HTTP responses read back one at a time (several may come in
    one segment: the rest stays buffered for the next read)."""

    def __init__(self, endpoint: str, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(_address(endpoint), timeout=timeout)
        self._stream = self.sock.makefile("rb")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stream.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self, deadline: float) -> bytes:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        return self._stream.readline()

    def answer(self, deadline: float) -> Answer | None:
        """The next response; None when the server closed the connection without one."""
        status_line = self._line(deadline)
        if not status_line:
            return None
        lines = []
        while (line := self._line(deadline)) not in (b"\r\n", b"\n", b""):
            lines.append(line.decode("latin-1").rstrip("\r\n"))
        _, status, reason = [*status_line.decode("latin-1").rstrip("\r\n").split(" ", 2), ""][:3]
        raw_headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if ":" in line]
        headers = {name.lower(): value for name, value in raw_headers}
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        body = self._stream.read(int(headers.get("content-length", "0")))
        return Answer(int(status), reason, headers, raw_headers, body)  # type: ignore[arg-type]

    def closed_by_server(self, wait: float) -> bool:
        self.sock.settimeout(wait)
        try:
            return self._stream.read(1) == b""
        except TimeoutError:
            return False
        except OSError:
            return True


def exchange(endpoint: str, data: bytes, timeout: float = 5.0, shut_write: bool = False) -> Answer | None:
    """Sends ``data`` as is and reads the answer; notes whether the server then closed the connection."""
    with Client(endpoint, timeout) as client:
        client.send(data)
        if shut_write:
            client.sock.shutdown(socket.SHUT_WR)
        answer = client.answer(time.monotonic() + timeout)
        if answer is not None:
            answer.closed = client.closed_by_server(1.0 if answer.headers.get("connection") == "close" else 0.05)
        return answer


def request(method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in headers or [])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def with_length(body: bytes, *headers: tuple[str, str]) -> list[tuple[str, str]]:
    return [("Host", "robust.local"), *headers, ("Content-Length", str(len(body)))]


# ---- the emulators ---------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    endpoint: str
    method: str  # a request the service would route (unsigned: it answers with its own auth error)
    path: str
    health: str = "/_admin/stats"  # answered 200 whenever the emulator is alive

    def service_request(self, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
        return request(self.method, self.path, headers, body)


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, Target]]:
    with (
        MnsEmulator(owner=(MNS_ID, MNS_SECRET)) as mns,
        AlicomEmulator(mns) as alicom,
        FcEmulator([]) as fc,
        WebhookReceiver(WEBHOOK_SECRET) as webhook,
    ):
        yield {
            "mns": Target("mns", mns.endpoint, "GET", "/queues/robust/messages"),
            "alicom": Target("alicom", alicom.endpoint, "POST", "/?Action=QueryTokenForMnsQueue"),
            "fc": Target("fc", fc.endpoint, "POST", "/2016-08-15/services/s/functions/f/invocations"),
            "webhook": Target("webhook", webhook.endpoint, "POST", "/webhook"),
        }


NAMES = ("mns", "alicom", "fc", "webhook")


def assert_alive(target: Target) -> None:
    answer = exchange(target.endpoint, request("GET", target.health, [("Host", "robust.local")]))
    assert answer is not None and answer.status == 200, (target.name, answer)


def assert_service_error(target: Target, answer: Answer | None) -> None:
    """The service's own error document (module docstring), not a front-end page."""
    assert answer is not None, f"{target.name} closed the connection without answering"
    assert 400 <= answer.status < 500, (target.name, answer)
    if target.name == "mns":
        assert ("x-mns-request-id", answer.headers["x-mns-request-id"]) in answer.raw_headers  # exactly this case
        for child in ("Code", "Message", "RequestId", "HostId"):
            assert f"<{child}>".encode() in answer.body, (child, answer.body)
    elif target.name == "alicom":
        assert {"Code", "Message", "RequestId"} <= set(answer.json), answer.body
    elif target.name == "fc":
        assert set(answer.json) == {"ErrorCode", "ErrorMessage"}, answer.body
    else:
        assert set(answer.json) == {"error"}, answer.body


def assert_front_end_refusal(target: Target, answer: Answer | None, status: int) -> None:
    assert answer is not None, f"{target.name} closed the connection without answering"
    assert answer.status == status, (target.name, answer)
    assert answer.headers.get("connection") == "close" and answer.closed, (target.name, answer)


# ---- framing: answered by the front end, the connection closed -----------------------------------------------

FRAMING = {
    "content-length-not-a-number": [("Host", "h"), ("Content-Length", "abc")],
    "content-length-negative": [("Host", "h"), ("Content-Length", "-5")],
    "content-length-disagrees": [("Host", "h"), ("Content-Length", "3"), ("Content-Length", "5")],
    "two-hosts": [("Host", "a"), ("Host", "b"), ("Content-Length", "0")],
    "transfer-encoding-gzip": [("Host", "h"), ("Transfer-Encoding", "gzip")],
}


@pytest.mark.parametrize("case", sorted(FRAMING))
@pytest.mark.parametrize("name", NAMES)
def test_broken_framing_is_a_400_and_a_closed_connection(emulators, name, case):
    target = emulators[name]
    answer = exchange(target.endpoint, target.service_request(FRAMING[case]) + b"hello")

    assert_front_end_refusal(target, answer, 400)
    assert answer.reason == "Bad Request" and b"<html" in answer.body.lower()
    assert_alive(target)


@pytest.mark.parametrize("name", NAMES)
def test_a_request_without_host_is_answered(emulators, name, monkeypatch):
    """Lenient by default (the service answers it), a 400 from the front end when Host is required (RFC 9112 §3.2)."""
    target = emulators[name]
    data = target.service_request([("Content-Length", "0")])

    assert_service_error(target, exchange(target.endpoint, data))
    monkeypatch.setattr(httpd.Handler, "require_host", True)
    assert_front_end_refusal(target, exchange(target.endpoint, data), 400)
    assert_alive(target)


@pytest.mark.parametrize("name", NAMES)
def test_a_malformed_chunked_body_is_a_400(emulators, name):
    target = emulators[name]
    headers = [("Host", "h"), ("Transfer-Encoding", "chunked")]
    answer = exchange(target.endpoint, target.service_request(headers) + b"zz\r\nhello\r\n0\r\n\r\n")

    assert answer is not None and answer.status == 400 and answer.closed, answer
    if name == "fc":  # FC reads its own bodies: its JSON error
        assert answer.json["ErrorCode"] == "InvalidArgument"
    assert_alive(target)


@pytest.mark.parametrize("name", NAMES)
def test_a_body_shorter_than_its_content_length_is_a_400(emulators, name):
    """The client sent half its body and then closed its side: never handled as if it were whole."""
    target = emulators[name]
    answer = exchange(
        target.endpoint, target.service_request([("Host", "h"), ("Content-Length", "100")]) + b"half", shut_write=True
    )

    assert answer is not None and answer.status == 400, answer
    if name == "fc":
        assert answer.json["ErrorCode"] == "InvalidArgument"
    assert_alive(target)


@pytest.mark.parametrize("name", NAMES)
def test_an_oversized_body_is_refused_unread(emulators, name):
    """A declared 40 MB body is refused at once, without waiting for (or reading) a byte of it."""
    target = emulators[name]
    started = time.monotonic()
    answer = exchange(target.endpoint, target.service_request([("Host", "h"), ("Content-Length", str(40 * 2**20))]))

    assert time.monotonic() - started < 3
    if name == "fc":  # FC's own limit and error (32 MB synchronous payloads)
        assert answer is not None and answer.status == 400 and answer.closed, answer
        assert answer.json["ErrorCode"] == "EntityTooLarge"
    else:
        assert_front_end_refusal(target, answer, 413)
    assert_alive(target)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"HELLO\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\nHost: h\r\n\r\n", 505),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: v\r\n" % n for n in range(150)) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: " + b"v" * 70_000 + b"\r\n\r\n", 431),
        (b"BREW /pot HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", 501),
    ],
    ids=["garbage-line", "http-9.9", "target-too-long", "too-many-headers", "header-too-long", "unknown-method"],
)
@pytest.mark.parametrize("name", NAMES)
def test_requests_that_are_not_http_are_answered_with_a_status_line(emulators, name, data, status):
    target = emulators[name]
    answer = exchange(target.endpoint, data)

    assert answer is not None and answer.status == status, answer
    assert answer.closed or status == 501
    assert_alive(target)


# ---- odd targets and headers: the service's own error -----------------------------------------------------------

ODD = {
    "non-ascii-header": ([("X-Name", "é世界")], ""),
    "non-ascii-target": ([], "é世界"),
    "bad-percent-escapes": ([], "?%zz=%&&==&%FF%FE=%C3"),
    "empty-query-pairs": ([], "?&&&=&"),
    "odd-content-type": ([("Content-Type", "multipart/form-data; boundary=")], ""),
    "duplicate-auth-headers": ([("Authorization", "MNS a:b"), ("Authorization", "FC c:d")], ""),
}


@pytest.mark.parametrize("case", sorted(ODD))
@pytest.mark.parametrize("name", NAMES)
def test_odd_targets_and_headers_get_the_service_error(emulators, name, case):
    target = emulators[name]
    extra, suffix = ODD[case]
    path, separator, query = target.path.partition("?")
    if suffix.startswith("?"):
        path = f"{path}?{query + '&' if query else ''}{suffix[1:]}"
    else:
        path = f"{path}{suffix}{separator}{query}"
    answer = exchange(target.endpoint, request(target.method, path, [*with_length(b""), *extra]))

    assert_service_error(target, answer)
    assert_alive(target)


# ---- MNS bodies, signed as the SDK signs them (reference/mns-wire.md §3) --------------------------------------


def mns_request(method: str, target: str, body: bytes = b"", *, chunked: bool = False) -> bytes:
    date = email.utils.formatdate(usegmt=True)
    headers = [("Host", "robust.local"), ("Date", date), ("x-mns-version", "2015-06-06")]
    md5 = base64.b64encode(hashlib.md5(body).hexdigest().encode()).decode() if body else ""
    if body:
        headers += [("Content-Type", "text/xml;charset=UTF-8"), ("Content-MD5", md5)]
    to_sign = "\n".join(
        [method, md5, "text/xml;charset=UTF-8" if body else "", date, "x-mns-version:2015-06-06\n" + target]
    )
    signature = base64.b64encode(hmac.new(MNS_SECRET.encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    headers.append(("Authorization", f"MNS {MNS_ID}:{signature}"))
    if chunked:
        half = len(body) // 2
        framed = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]) if part)
        return request(method, target, [*headers, ("Transfer-Encoding", "chunked")], framed + b"0\r\n\r\n")
    return request(method, target, [*headers, ("Content-Length", str(len(body)))], body)


@pytest.fixture(scope="module")
def mns_queue(emulators) -> str:
    endpoint = emulators["mns"].endpoint
    answer = exchange(endpoint, mns_request("PUT", "/queues/robust", b"<Queue/>"))
    assert answer is not None and answer.status in (201, 204), answer
    return endpoint


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (n, (b"&lol%d;" % (n - 1) if n > 1 else b"&lol;") * 10) for n in range(1, 10))
    + b"]><Message><MessageBody>&lol9;</MessageBody></Message>"
)
MNS_BODIES = {  # body -> (status, Code)
    "not-xml": (b"this is not xml", 400, "MalformedXML"),
    "unclosed": (b"<Message><MessageBody>aGk=</MessageBody>", 400, "MalformedXML"),
    "wrong-root": (b"<Queue><VisibilityTimeout>1</VisibilityTimeout></Queue>", 400, "MalformedXML"),
    "no-body-element": (b"<Message><Priority>8</Priority></Message>", 400, "MalformedXML"),
    "not-utf8": (b"<Message><MessageBody>\xff\xfe</MessageBody></Message>", 400, "MalformedXML"),
    "entity-expansion": (BILLION_LAUGHS, 400, "MalformedXML"),
    "external-entity": (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<Message><MessageBody>&e;</MessageBody></Message>",
        400,
        "MalformedXML",
    ),
    "priority-not-a-number": (b"<Message><MessageBody>aGk=</MessageBody><Priority>x</Priority></Message>", 400, None),
    "priority-out-of-range": (b"<Message><MessageBody>aGk=</MessageBody><Priority>99</Priority></Message>", 400, None),
    "body-over-64kb": (b"<Message><MessageBody>" + b"A" * 70_000 + b"</MessageBody></Message>", 400, None),
    "batch-of-17": (
        b"<Messages>" + b"<Message><MessageBody>aGk=</MessageBody></Message>" * 17 + b"</Messages>",
        400,
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(MNS_BODIES))
def test_mns_refuses_bad_message_xml_with_its_error(emulators, mns_queue, case):
    body, status, code = MNS_BODIES[case]
    started = time.monotonic()
    answer = exchange(mns_queue, mns_request("POST", "/queues/robust/messages", body))

    assert time.monotonic() - started < 3  # no entity expansion worth the name
    assert_service_error(emulators["mns"], answer)
    assert answer.status == status
    assert answer.xml_code() == (code or "InvalidArgument"), answer.body
    assert b"root:" not in answer.body  # no external entity was read


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("numOfMessages=abc", "InvalidArgument"),
        ("numOfMessages=0", "InvalidArgument"),
        ("numOfMessages=17", "InvalidArgument"),
        ("numOfMessages=99999999999999999999999", "InvalidArgument"),
        ("waitseconds=31", "InvalidArgument"),
        ("waitseconds=-1", "InvalidArgument"),
        ("peekonly=true&numOfMessages=-3", "InvalidArgument"),
        ("%zz=%&&==", "MessageNotExist"),
    ],
)
def test_mns_refuses_bad_query_parameters_with_its_error(emulators, mns_queue, query, code):
    answer = exchange(mns_queue, mns_request("GET", f"/queues/robust/messages?{query}"))

    assert_service_error(emulators["mns"], answer) if code != "MessageNotExist" else None
    assert answer is not None and answer.xml_code() == code, answer


def test_mns_queue_name_in_raw_utf8_is_checked_like_any_other(emulators, mns_queue):
    """A target with raw UTF-8 bytes is read as UTF-8, so its signature verifies and the name is judged."""
    answer = exchange(mns_queue, mns_request("PUT", "/queues/é世界", b"<Queue/>"))

    assert_service_error(emulators["mns"], answer)
    assert answer.xml_code() == "InvalidQueueName", answer.body


def test_mns_takes_a_chunked_body(mns_queue):
    """Transfer-Encoding: chunked is decoded, its Content-MD5 checked on the decoded body (the SDK never sends
    it, a proxy may)."""
    body = b"<Message><MessageBody>aGVsbG8=</MessageBody></Message>"
    answer = exchange(mns_queue, mns_request("POST", "/queues/robust/messages", body, chunked=True))

    assert answer is not None and answer.status == 201, answer
    assert b"<MessageId>" in answer.body


# ---- the POP API, FC, the webhook: their own errors for what reaches them -----------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xfe=\xff&Action=\xe4", "application/x-www-form-urlencoded"),
        (b"&".join(b"k%d=v" % n for n in range(20_000)), "application/x-www-form-urlencoded"),
        (b"<xml/>", "text/xml"),
        (b"Action=QueryTokenForMnsQueue&Version=2017-05-25&Signature=%%%", "application/x-www-form-urlencoded"),
    ],
    ids=["not-utf8-form", "20000-parameters", "xml-body", "bad-escapes"],
)
def test_pop_answers_bad_forms_with_its_error(emulators, body, content_type):
    target = emulators["alicom"]
    answer = exchange(target.endpoint, request("POST", "/", with_length(body, ("Content-Type", content_type)), body))

    assert_service_error(target, answer)


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        ("/2016-08-15/services/s/functions/f/invocations", [("Authorization", "garbage")], "InvalidArgument"),
        ("/2016-08-15/services/s/functions/f/invocations", [("Authorization", "FC a:b"), ("Date", "x")], None),
        ("/2016-08-15/services/%ZZ/functions/f/invocations", [], "MissingRequiredHeader"),
        ("/nowhere", [], "PathNotSupported"),
    ],
)
def test_fc_answers_bad_invocations_with_its_error(emulators, path, headers, code):
    target = emulators["fc"]
    answer = exchange(target.endpoint, request("POST", path, [*with_length(b"{}"), *headers], b"{}"))

    assert_service_error(target, answer)
    if code is not None:
        assert answer.json["ErrorCode"] == code


def test_fc3_errors_carry_a_request_id(emulators):
    target = emulators["fc"]
    path = "/2023-03-30/functions/f/invocations?qualifier=%zz"
    answer = exchange(
        target.endpoint, request("POST", path, [*with_length(b""), ("Authorization", "ACS3-HMAC-SHA256 x")])
    )

    assert answer is not None and answer.status == 400
    assert set(answer.json) == {"Code", "Message", "RequestId"}


def webhook_request(body: bytes, *, chunked: bool = False) -> bytes:
    timestamp = str(int(time.time()))
    mac = hmac.new(WEBHOOK_SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = [
        ("Host", "robust.local"),
        ("Content-Type", "application/json"),
        ("X-Flow-Receipts-Timestamp", timestamp),
        ("X-Flow-Receipts-Signature", f"v1={mac}"),
    ]
    if chunked:
        return request(
            "POST",
            "/webhook",
            [*headers, ("Transfer-Encoding", "chunked")],
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
        )
    return request("POST", "/webhook", [*headers, ("Content-Length", str(len(body)))], body)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"a": ', "é".encode("latin-1"), b"\x00" * 10], ids=str)
def test_the_webhook_answers_signed_garbage_with_400(emulators, body):
    answer = exchange(emulators["webhook"].endpoint, webhook_request(body))

    assert_service_error(emulators["webhook"], answer)
    assert answer.status == 400


def test_the_webhook_takes_a_chunked_delivery(emulators):
    answer = exchange(emulators["webhook"].endpoint, webhook_request(b'{"event_id": "evt-chunked"}', chunked=True))

    assert answer is not None and (answer.status, answer.json) == (200, {"received": "evt-chunked"})


# ---- time: slow clients, idle connections, emulator bugs --------------------------------------------------------


def _handler_threads() -> int:
    return sum(1 for thread in threading.enumerate() if "process_request_thread" in thread.name)


@pytest.mark.parametrize("name", NAMES)
def test_a_client_sending_a_byte_a_second_is_cut_off_while_others_are_served(emulators, name, monkeypatch):
    monkeypatch.setattr(httpd.Handler, "request_timeout", 1.0)
    target = emulators[name]
    slow = Client(target.endpoint)
    data = target.service_request(with_length(b"{}")) + b"{}"
    sent, outcome = threading.Event(), {}

    def trickle() -> None:
        try:
            for byte in data:
                slow.send(bytes([byte]))
                sent.set()
                time.sleep(0.25)
        except OSError as error:  # the server closed it: what we are waiting for
            outcome["send_error"] = type(error).__name__

    started = time.monotonic()
    writer = threading.Thread(target=trickle, daemon=True)
    writer.start()
    try:
        assert sent.wait(2)
        assert_alive(target)  # served at once while the slow one is connected
        assert time.monotonic() - started < 1.0
        answer = slow.answer(time.monotonic() + 4)
        cut_off = time.monotonic() - started
    finally:
        slow.close()
        writer.join(5)

    assert cut_off < 3.5, cut_off  # about request_timeout, not len(data) seconds
    assert answer is None or answer.status == 408, answer


def test_slow_clients_do_not_leave_handler_threads_behind(emulators, monkeypatch):
    monkeypatch.setattr(httpd.Handler, "request_timeout", 0.5)
    target = emulators["mns"]
    before = _handler_threads()
    sockets = [socket.create_connection(_address(target.endpoint), timeout=5) for _ in range(5)]
    for sock in sockets:
        sock.sendall(b"GET /queues/x HTTP/1.1\r\nHost")  # a head that never ends
    time.sleep(0.2)
    assert _handler_threads() >= before + 5
    try:
        give_up = time.monotonic() + 5
        while _handler_threads() > before and time.monotonic() < give_up:
            time.sleep(0.1)
        assert _handler_threads() <= before, "handler threads still waiting for slow clients"
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("name", NAMES)
def test_an_idle_keep_alive_connection_is_closed(emulators, name, monkeypatch):
    monkeypatch.setattr(httpd.Handler, "idle_timeout", 0.5)
    target = emulators[name]
    with Client(target.endpoint) as client:
        client.send(request("GET", target.health, [("Host", "h")]))
        answer = client.answer(time.monotonic() + 5)
        assert answer is not None and answer.status == 200
        started = time.monotonic()
        assert client.closed_by_server(3), "an idle connection stayed open"
        assert time.monotonic() - started < 2.5


def test_an_emulator_bug_is_a_500_not_a_dropped_connection(emulators, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("an emulator bug")

    monkeypatch.setattr(MnsEmulator, "serve", broken)
    target = emulators["mns"]
    answer = exchange(target.endpoint, target.service_request(with_length(b"")))

    assert answer is not None and answer.status == 500 and answer.closed, answer
    monkeypatch.undo()
    assert_alive(target)


def test_pipelined_requests_after_a_chunked_body_are_each_answered(emulators):
    """Chunked framing read exactly: the request after it is parsed as a request, not as leftover body."""
    target = emulators["webhook"]
    first = webhook_request(b'{"event_id": "evt-pipelined"}', chunked=True)
    second = request("GET", "/_admin/stats", [("Host", "h")])
    with Client(target.endpoint) as client:
        client.send(first + second)
        answers = [client.answer(time.monotonic() + 5) for _ in range(2)]

    assert [answer.status if answer else None for answer in answers] == [200, 200]

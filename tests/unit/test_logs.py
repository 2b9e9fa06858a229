"""Logging: JSON lines with invocation and message keys per thread, phone numbers masked, and no secret in any line
— including what the fc2 SDK logs through the root logger on errors (reference/fc.md §7.4)."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from shared.adapters.fc import fc_context
from shared.logs import (
    SecretRedactor,
    bind_invocation,
    carry_context,
    install_log_safety,
    logger,
    mask_phone,
    message_context,
    redactor,
    register_secret,
)

TOKEN = "CAIS-sts-token-7Hq+/Zk9xw=="
SECRET = "ak-secret-4f1b9e2d"
SIGNATURE = "dGhpcyBpcyBhIHNpZ25hdHVyZQ+/="
# what aliyun-mns-sdk logs at DEBUG ("SendRequest %s" % RequestInternal)
MNS_REQUEST = (
    "Method: POST\nUri: /queues/q/messages\nHeader: Authorization: MNS LTAI-id:c2lnbmF0dXJl\n"
    "security-token: CAIS-mns-token\nx-mns-version: 2015-06-06\nData: \n"
)


@pytest.fixture
def lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON lines our logger writes (its stdout handler pointed at a buffer)."""
    buffer = io.StringIO()
    previous = logger.registered_handler.setStream(buffer)  # type: ignore[attr-defined]
    logger.thread_safe_clear_keys()
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]
    logger.thread_safe_clear_keys()


@pytest.fixture
def stderr_handler() -> Iterator[logging.Handler]:
    """A plain handler added to root AFTER shared.logs was imported, as FC's runtime (or any tool) may do."""
    handler = logging.StreamHandler(sys.stderr)  # sys.stderr is capsys' stream here
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def all_output(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    messages = "\n".join(record.getMessage() for record in caplog.records)
    return "\n".join([caplog.text, messages, captured.out, captured.err])


def invocation(request_id: str, *, secret: str = "ctx-secret-value", token: str = "CAIS-ctx-token-value") -> Any:
    return fc_context(
        SimpleNamespace(
            request_id=request_id,
            credentials=SimpleNamespace(access_key_id="STS.id", access_key_secret=secret, security_token=token),
            function=SimpleNamespace(name="drainer", handler="index.handler", memory=512, timeout=60),
            service=SimpleNamespace(name="flow-receipts"),
            region="cn-hangzhou",
            account_id="1234567890123456",
        ),
        environ={},
    )


# --- masking --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13800138000", "138****8000"),
        (13800138000, "138****8000"),
        ("+8613800138000", "+86138****8000"),
        ("138-0013-8000", "138****8000"),
        ("138****8000", "138****8000"),
        ("0571-8888888", "057****8888"),
        ("021-6888888", "02******88"),
        ("12345", "****"),
        ("not a phone", "****"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_phone(value: object, masked: str):
    assert mask_phone(value) == masked


# --- what fc2 logs --------------------------------------------------------------------------------------------


def test_fc2_style_root_error_with_request_headers_is_redacted(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], stderr_handler: logging.Handler
):
    headers = {
        "host": "1234567890123456.cn-hangzhou-internal.fc.aliyuncs.com",
        "content-type": "application/json",
        "x-fc-security-token": TOKEN,
        "x-fc-invocation-type": "Async",
        "authorization": f"FC STS.id:{SIGNATURE}",
    }
    # exactly how fc2.Client._do_request logs a 5xx (a pre-formatted string, through the root logger)
    logging.error(
        "Server error: {}. Message: {}. Method: {}. URL: {}. Request headers: {}. Response headers: {}".format(
            500,
            {"ErrorCode": "InternalError"},
            "POST",
            "https://x/2016-08-15/services/s/functions/f/invocations",
            headers,
            {"x-fc-request-id": "r-1"},
        )
    )
    logging.getLogger("urllib3.connectionpool").error("retrying with %s", headers)  # and with %-args, from a child

    output = all_output(caplog, capsys)
    assert "Server error: 500" in output and "retrying with" in output
    assert "'x-fc-security-token': '***'" in output and "'authorization': '***'" in output
    for secret in (TOKEN, SIGNATURE, "FC STS.id:"):
        assert secret not in output


class _FailingFc(BaseHTTPRequestHandler):
    """Answers every invocation with 500 and a JSON body (fc2 then logs the request headers)."""

    seen: ClassVar[dict[str, str]] = {}

    def do_POST(self) -> None:
        _FailingFc.seen = dict(self.headers.items())
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"ErrorCode": "ServiceUnavailable", "ErrorMessage": "stub"}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-fc-request-id", "stub-request-1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep the stub quiet
        pass


@pytest.fixture
def failing_fc() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingFc)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_real_fc2_client_error_logs_no_token_or_signature(
    failing_fc: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    stderr_handler: logging.Handler,
    monkeypatch: pytest.MonkeyPatch,
):
    import fc2

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    caplog.set_level(logging.DEBUG)  # fc2 also logs the string to sign (with the token) at DEBUG
    client = fc2.Client(endpoint=failing_fc, accessKeyID="STS.test-id", accessKeySecret=SECRET, securityToken=TOKEN)
    with pytest.raises(fc2.FcError):
        client.invoke_function("flow-receipts", "processor", payload=b"{}", headers={"x-fc-invocation-type": "Async"})

    sent = _FailingFc.seen
    assert sent["x-fc-security-token"] == TOKEN  # the stub really got the token and a signature
    signature = sent["authorization"].rsplit(":", 1)[1]
    output = all_output(caplog, capsys)
    assert "Server error: 500" in output and "x-fc-security-token:***" in output
    for secret in (TOKEN, signature, SECRET):
        assert secret not in output


# --- other SDKs and shapes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        (
            "Header: Authorization: MNS LTAI-id:c2lnbmF0dXJl\nsecurity-token: CAIS-mns-token\n",
            "c2lnbmF0dXJl",
            "Authorization: ***",
        ),
        (
            "Header: Authorization: MNS LTAI-id:c2lnbmF0dXJl\nsecurity-token: CAIS-mns-token\n",
            "CAIS-mns-token",
            "Header",
        ),
        (
            '{"AccessKeyId": "STS.x", "AccessKeySecret": "tok-secret-99", "SecurityToken": "CAIS-x"}',
            "tok-secret-99",
            "STS.x",
        ),
        ('{"AccessKeyId":"STS.x","AccessKeySecret":"s1","SecurityToken":"CAIS-json-tok"}', "CAIS-json-tok", "STS.x"),
        ("GET /?AccessKeyId=LTAI&Signature=abc%2Bsig%3D&SignatureMethod=HMAC-SHA1", "abc%2Bsig%3D", "HMAC-SHA1"),
        ("POST&%2F&AccessKeyId%3DLTAI%26SecurityToken%3DCAIS%252Bpct%26Version", "CAIS%252Bpct", "Version"),
        ("> x-acs-security-token : CAIS-core-token\n> x-acs-version : 2017-05-25", "CAIS-core-token", "2017-05-25"),
        ("ledger mysql+pymysql://flow:pa55w0rd@rds:3306/ledger", "pa55w0rd", "flow:***@rds"),
        ("notify with Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9", "notify"),
        ("env ALIBABA_CLOUD_ACCESS_KEY_SECRET=plain-env-secret", "plain-env-secret", "env"),
        (  # a dataclass's repr
            "Credentials(access_key_id='STS.x', access_key_secret='repr-secret-1', security_token='CAIS-repr')",
            "repr-secret-1",
            "access_key_id='STS.x'",
        ),
        ("Credentials(security_token='CAIS-repr-tok')", "CAIS-repr-tok", "security_token='***'"),
        ('config password = "pa ss w0rd"', "pa ss w0rd", 'password = "***"'),
        ("report for 13800138000 done", "13800138000", "138****8000"),
    ],
)
def test_sdk_debug_shapes_are_redacted_from_a_logger_created_later(text: str, secret: str, kept: str):
    # a logger with its own handler, both created after install (like aliyun-mns-sdk's file handler)
    sdk_logger = logging.getLogger(f"mns_python_sdk.{uuid.uuid4().hex}")
    buffer = io.StringIO()
    sdk_logger.addHandler(logging.StreamHandler(buffer))
    sdk_logger.propagate = False
    sdk_logger.warning("SendRequest %s", text)
    assert secret not in buffer.getvalue()
    assert kept in buffer.getvalue()


def test_registered_secrets_are_redacted_in_any_form(
    caplog: pytest.LogCaptureFixture, lines: Callable[[], list[dict[str, Any]]]
):
    webhook = "whsec_" + uuid.uuid4().hex + "+/="
    register_secret(webhook, None, "", "short")
    third_party = logging.getLogger("some.sdk")
    third_party.warning("signing with %s", webhook)
    third_party.warning("encoded %s", webhook.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"))
    try:
        raise RuntimeError(f"webhook refused {webhook}")
    except RuntimeError:
        third_party.exception("delivery failed")
        logger.exception("delivery failed", extra={"detail": f"key={webhook}"})
    logger.info({"structured": webhook})

    assert webhook[:20] not in caplog.text
    assert "webhook refused ***" in caplog.text
    assert redactor.redact("short") == "short"  # too short to register: ordinary words stay
    ours = lines()
    assert len(ours) == 2
    assert webhook[:20] not in json.dumps(ours)
    assert ours[0]["exception_name"] == "RuntimeError" and "***" in ours[0]["exception"]
    assert ours[1]["message"] == {"structured": "***"}


def test_records_rebuilt_with_make_log_record_are_cleaned_by_the_handler_filter(caplog: pytest.LogCaptureFixture):
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_log_safety()  # covers root handlers added since
        record = logging.makeLogRecord({"name": "remote", "msg": "got x-fc-security-token: %s", "args": (TOKEN,)})
        handler.handle(record)
    finally:
        root.removeHandler(handler)
    assert TOKEN not in buffer.getvalue() and "x-fc-security-token: ***" in buffer.getvalue()


# --- our own lines ----------------------------------------------------------------------------------------------


def test_lines_are_json_with_service_utc_timestamp_and_masked_phones(lines: Callable[[], list[dict[str, Any]]]):
    logger.info("top-up for 13800138000 applied", extra={"phone": "13800138000", "out_id": "o-1", "applied": 1})
    (line,) = lines()
    assert line["service"] == "flow-receipts" and line["level"] == "INFO"
    assert line["timestamp"].endswith("+00:00") and "T" in line["timestamp"]
    assert line["message"] == "top-up for 138****8000 applied"
    assert (line["phone"], line["out_id"], line["applied"]) == ("138****8000", "o-1", 1)


def test_extras_named_like_secrets_are_blanked(lines: Callable[[], list[dict[str, Any]]]):
    logger.warning(
        "token refreshed",
        extra={
            "security_token": "CAIS-extra",
            "headers": {"Authorization": "FC a:b", "x-fc-invocation-type": "Async"},
            "phones": ["13800138000"],
            "expires_in": 3600,
        },
    )
    (line,) = lines()
    assert line["security_token"] == "***"
    assert line["headers"] == {"Authorization": "***", "x-fc-invocation-type": "Async"}
    assert (line["phones"], line["expires_in"]) == (["138****8000"], 3600)


def test_bind_invocation_adds_function_keys_and_request_id_as_correlation_id(
    lines: Callable[[], list[dict[str, Any]]],
):
    keys = bind_invocation(invocation("req-1", secret="bound-ctx-secret-1"))
    logger.info("drain started")
    logger.info("credentials were bound-ctx-secret-1")
    first, second = lines()
    assert keys["function_request_id"] == "req-1"
    assert first["function_request_id"] == first["correlation_id"] == "req-1"
    assert first["function_name"] == "drainer" and first["function_memory_size"] == 512
    assert first["function_arn"] == "acs:fc:cn-hangzhou:1234567890123456:services/flow-receipts/functions/drainer"
    assert isinstance(first["cold_start"], bool)
    assert second["message"] == "credentials were ***"  # the context's credentials are registered secrets


def test_a_new_invocation_replaces_the_previous_keys(lines: Callable[[], list[dict[str, Any]]]):
    bind_invocation(invocation("req-a"))
    with message_context("m-stale"):
        bind_invocation(invocation("req-b"))
        logger.info("second")
    (line,) = lines()
    assert (line["correlation_id"], line["cold_start"]) == ("req-b", False)
    assert "message_id" not in line


def test_message_context_scopes_the_message_id(lines: Callable[[], list[dict[str, Any]]]):
    bind_invocation(invocation("req-2"))
    with message_context("msg-outer", dequeue_count=1):
        logger.info("outer")
        with message_context("msg-inner"):
            logger.info("inner")
        logger.info("outer again")
    logger.info("after")
    outer, inner, outer_again, after = lines()
    assert (outer["message_id"], outer["dequeue_count"]) == ("msg-outer", 1)
    assert inner["message_id"] == "msg-inner"
    assert outer_again["message_id"] == "msg-outer"
    assert "message_id" not in after and after["correlation_id"] == "req-2"
    assert all(line["correlation_id"] == "req-2" for line in (outer, inner, outer_again))


def test_thread_safe_keys_do_not_bleed_between_threads(lines: Callable[[], list[dict[str, Any]]]):
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def request(name: str) -> None:
        try:
            bind_invocation(invocation(f"req-{name}"))
            for n in range(10):
                with message_context(f"msg-{name}-{n}"):
                    barrier.wait(timeout=5)  # both threads inside their message at the same time
                    logger.info("handled", extra={"worker": name})
                    barrier.wait(timeout=5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    bind_invocation(invocation("req-main"))
    threads = [threading.Thread(target=request, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    logger.info("main")

    assert not errors
    output = lines()
    assert len(output) == 21
    for line in output[:-1]:
        name = line["worker"]
        assert line["correlation_id"] == line["function_request_id"] == f"req-{name}"
        assert line["message_id"].startswith(f"msg-{name}-")
    assert output[-1]["correlation_id"] == "req-main" and "message_id" not in output[-1]


def test_carry_context_gives_a_poller_thread_the_invocation_keys(lines: Callable[[], list[dict[str, Any]]]):
    bind_invocation(invocation("req-poll"))

    def poll(poller: int) -> None:
        with message_context(f"msg-{poller}"):
            logger.info("received", extra={"poller": poller})

    threads = [threading.Thread(target=carry_context(poll), args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    plain = threading.Thread(target=poll, args=(9,))
    plain.start()
    plain.join(timeout=10)
    logger.info("parent")

    output = sorted(lines(), key=lambda line: line.get("poller", 99))
    assert [line.get("correlation_id") for line in output] == ["req-poll", "req-poll", None, "req-poll"]
    assert [line.get("message_id") for line in output] == ["msg-0", "msg-1", "msg-9", None]


# --- installation -----------------------------------------------------------------------------------------------


def test_install_is_idempotent_and_covers_root_and_powertools_handlers():
    install_log_safety()
    factory = logging.getLogRecordFactory()
    install_log_safety()
    assert logging.getLogRecordFactory() is factory
    assert getattr(factory, "_flow_receipts_redacting", False)
    assert logger.registered_handler.filters.count(redactor) == 1
    assert logging.getLogger("flow-receipts").filters.count(redactor) == 1
    assert all(handler.filters.count(redactor) == 1 for handler in logging.getLogger().handlers)


def test_install_registers_secrets_from_the_environment():
    install_log_safety({"ALIBABA_CLOUD_SECURITY_TOKEN": "CAIS-from-env-token", "OTHER": "not-a-secret-value"})
    assert redactor.redact("x CAIS-from-env-token y not-a-secret-value") == "x *** y not-a-secret-value"


def test_a_redactor_never_drops_records_even_with_broken_formatting():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "bad %d format %s", ("nope", TOKEN), None)
    fresh = SecretRedactor()
    fresh.register(TOKEN)
    assert fresh.filter(record) is True
    assert TOKEN not in record.getMessage() and "bad %d format" in record.getMessage()

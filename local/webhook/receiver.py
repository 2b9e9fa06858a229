"""The customer's business endpoint, for tests and the demo: verifies every delivery's signature, records what
arrived, and misbehaves on request. Admin JSON under /_admin (admin.py); a Python API for tests.

Answers: 200 ``{"received": <event id>}`` to a well-signed JSON delivery; 401 to a bad or stale signature; 400 to
a body that is not a JSON object. ``misbehave(...)`` overrides that for the next requests (or all of them):

- ``status`` — answer this status instead (``location`` adds a Location header, for a 3xx);
- ``latency_ms`` — wait this long before answering (make it longer than the client's timeout);
- ``down`` — ``"close"``: read the request and close the connection without an answer; ``"reset"``: the same
  with a TCP reset;
- ``echo`` — put the request's headers in the answer's body (as a broken proxy might), with ``status`` or 500;
- ``times`` — only the next N requests misbehave, then the receiver behaves again.

``refuse_connections()`` stops listening (connections are refused, pooled ones dropped) until
``accept_connections()``. With ``tls=True`` the receiver serves HTTPS with a self-signed certificate made at start
(``cert_file``): a client verifying TLS against the system's CAs refuses it.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from local.httpd import BackgroundServer, Handler, Server
from local.webhook import signing

ADMIN_PREFIX = "/_admin"
DEFAULT_PATH = "/hooks/flow-receipts"
TOLERANCE_SECONDS = 300.0
DOWN_MODES = ("close", "reset")
HANDSHAKE_TIMEOUT_SECONDS = 5.0


class FaultError(ValueError):
    pass


@dataclass(frozen=True)
class Misbehaviour:
    status: int | None = None
    location: str | None = None
    latency_ms: float = 0.0
    down: str | None = None
    echo: bool = False
    times: int | None = None  # None: until behave()

    @classmethod
    def checked(cls, values: dict[str, Any]) -> Misbehaviour:
        unknown = set(values) - {"status", "location", "latency_ms", "down", "echo", "times"}
        if unknown:
            raise FaultError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        fault = cls(**values)
        if fault.status is not None and (not isinstance(fault.status, int) or not 100 <= fault.status <= 599):
            raise FaultError(f"status must be an HTTP status between 100 and 599, got {fault.status!r}")
        if fault.location is not None and not isinstance(fault.location, str):
            raise FaultError("location must be a string")
        if isinstance(fault.latency_ms, bool) or not isinstance(fault.latency_ms, (int, float)) or fault.latency_ms < 0:
            raise FaultError(f"latency_ms must be a number >= 0, got {fault.latency_ms!r}")
        if fault.down is not None and fault.down not in DOWN_MODES:
            raise FaultError(
                f"down must be one of {', '.join(DOWN_MODES)} (refusing connections is Python-only: it would take "
                f"this admin endpoint down too), got {fault.down!r}"
            )
        if not isinstance(fault.echo, bool):
            raise FaultError("echo must be true or false")
        if fault.times is not None and (isinstance(fault.times, bool) or not isinstance(fault.times, int)):
            raise FaultError("times must be a positive integer or null")
        if fault.times is not None and fault.times < 1:
            raise FaultError("times must be a positive integer or null")
        return fault

    @property
    def active(self) -> bool:
        return self.status is not None or self.latency_ms > 0 or self.down is not None or self.echo


@dataclass(frozen=True)
class Delivery:
    """One request as it arrived, and what it was answered (None: dropped without an answer)."""

    path: str
    event_id: str | None
    headers: dict[str, str]
    body: bytes = field(repr=False)
    signature_problem: str  # "" when well signed
    answered: int | None
    received_at: float

    @property
    def signature_valid(self) -> bool:
        return not self.signature_problem

    @property
    def accepted(self) -> bool:
        return self.answered is not None and 200 <= self.answered < 300

    @property
    def event(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "event_id": self.event_id,
            "answered": self.answered,
            "signature_valid": self.signature_valid,
            "signature_problem": self.signature_problem,
            "received_at": self.received_at,
            "event": self.event,
        }


class _WebhookServer(Server):
    receiver: WebhookReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout, refused certificate) is part of the game, not an error


class _WebhookHandler(Handler):
    server_name = "local-webhook"
    server: _WebhookServer

    def setup(self) -> None:
        context = self.server.receiver.tls_context
        if context is not None:
            self.request.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
            try:
                self.request = context.wrap_socket(self.request, server_side=True)
            except OSError:
                self.server.receiver.count("tls_failures")
                raise
            self.request.settimeout(None)
        super().setup()

    def do_POST(self) -> None:
        body = self.read_body()
        if self.path.startswith(ADMIN_PREFIX):
            from local.webhook.admin import serve_admin

            serve_admin(self.server.receiver, self, body)
        else:
            self.server.receiver.serve(self, body)

    do_GET = do_PUT = do_DELETE = do_POST


class WebhookReceiver:
    def __init__(
        self,
        secret: str | bytes,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = False,
        path: str = DEFAULT_PATH,
        tolerance_seconds: float = TOLERANCE_SECONDS,
        on_request: Callable[[dict[str, str]], None] | None = None,
    ) -> None:
        """``on_request(headers)`` is called for each delivery as it arrives, before it is answered."""
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        self._tolerance = tolerance_seconds
        self._on_request = on_request
        self._lock = threading.Condition()
        self._deliveries: list[Delivery] = []
        self._counters: Counter[str] = Counter()
        self._fault = Misbehaviour()
        self._refusing = False
        self._in_flight = 0
        self._stopping = threading.Event()
        self._workdir = Path(tempfile.mkdtemp(prefix="local-webhook-"))
        self.tls_context = None
        self.cert_file: Path | None = None
        if tls:
            from local.webhook.tls import self_signed

            self.tls_context, self.cert_file = self_signed(self._workdir, host)
        self._host = host
        self._background = self._bind(port)
        self.port = self._background.port
        scheme = "https" if tls else "http"
        self.endpoint = f"{scheme}://{host}:{self.port}"
        self.url = self.endpoint + path
        self.admin_url = self.endpoint + ADMIN_PREFIX
        self._started = False

    # ---- lifecycle --------------------------------------------------------------------------------------------

    def _bind(self, port: int) -> BackgroundServer:
        server = _WebhookServer((self._host, port), _WebhookHandler)
        server.receiver = self
        return BackgroundServer(server)

    def start(self) -> WebhookReceiver:
        self._background.start()
        self._started = True
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._started and not self._refusing:
            self._background.stop()
        elif not self._started:
            self._background.server.server_close()
        self._started = False
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def refuse_connections(self) -> None:
        """Down: stop listening (new connections are refused) and drop the connections clients keep open."""
        with self._lock:
            if self._refusing:
                return
            self._refusing = True
        self._background.stop()

    def accept_connections(self) -> None:
        """Up again, on the same port."""
        with self._lock:
            if not self._refusing:
                return
            self._background = self._bind(self.port)
            self._refusing = False
        self._background.start()

    # ---- misbehaviour -------------------------------------------------------------------------------------------

    def misbehave(self, **settings: Any) -> dict[str, Any]:
        fault = Misbehaviour.checked(settings)
        with self._lock:
            self._fault = fault
        return self.faults()

    def behave(self) -> dict[str, Any]:
        with self._lock:
            self._fault = Misbehaviour()
        return self.faults()

    def faults(self) -> dict[str, Any]:
        with self._lock:
            settings = {k: v for k, v in asdict(self._fault).items() if v not in (None, 0, 0.0, False)}
            return {**settings, "refusing_connections": self._refusing}

    def _take_fault(self) -> Misbehaviour:
        with self._lock:
            fault = self._fault
            if fault.active and fault.times is not None:
                left = fault.times - 1
                self._fault = Misbehaviour(**{**asdict(fault), "times": left}) if left else Misbehaviour()
            return fault

    # ---- what arrived -------------------------------------------------------------------------------------------

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def accepted(self) -> Counter[str]:
        """Event id -> how many times it was answered 2xx (with a valid signature)."""
        with self._lock:
            return Counter(d.event_id for d in self._deliveries if d.accepted and d.event_id)

    def received(self) -> Counter[str]:
        """Event id -> how many requests carried it, whatever they were answered."""
        with self._lock:
            return Counter(d.event_id for d in self._deliveries if d.event_id)

    @property
    def bad_signatures(self) -> int:
        with self._lock:
            return sum(not d.signature_valid for d in self._deliveries)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            accepted = Counter(d.event_id for d in self._deliveries if d.accepted and d.event_id)
            return {
                "requests": len(self._deliveries),
                "accepted_requests": sum(accepted.values()),
                "accepted_events": len(accepted),
                "duplicates": sum(accepted.values()) - len(accepted),
                "bad_signatures": sum(not d.signature_valid for d in self._deliveries),
                "dropped": sum(d.answered is None for d in self._deliveries),
                **self._counters,
            }

    def reset(self) -> None:
        with self._lock:
            self._deliveries.clear()
            self._counters.clear()

    def wait_until(self, predicate: Callable[[WebhookReceiver], bool], timeout: float = 10.0) -> bool:
        """True once ``predicate(receiver)`` holds (checked on each request); False after ``timeout``."""
        with self._lock:  # a Condition over an RLock: the predicate may call the methods above
            return self._lock.wait_for(lambda: predicate(self), timeout)

    def wait_for_accepted(self, event_ids: int | set[str], timeout: float = 10.0) -> bool:
        """True once this many distinct events (or all of these ids) were accepted; False after ``timeout``."""

        def done(receiver: WebhookReceiver) -> bool:
            accepted = set(receiver.accepted())
            return len(accepted) >= event_ids if isinstance(event_ids, int) else event_ids <= accepted

        return self.wait_until(done, timeout)

    def count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1
            self._lock.notify_all()

    # ---- one request --------------------------------------------------------------------------------------------

    def serve(self, handler: Handler, body: bytes) -> None:
        with self._lock:
            self._in_flight += 1
            self._counters["max_in_flight"] = max(self._counters["max_in_flight"], self._in_flight)
        try:
            self._serve(handler, body)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _serve(self, handler: Handler, body: bytes) -> None:
        headers = {name: value for name, value in handler.headers.items()}
        if self._on_request is not None:
            self._on_request(headers)
        fault = self._take_fault()
        problem = signing.problem(
            self._secret,
            handler.headers.get(signing.TIMESTAMP),
            handler.headers.get(signing.SIGNATURE),
            body,
            time.time(),
            self._tolerance,
        )
        event_id = handler.headers.get(signing.EVENT_ID)
        if self._refusing or fault.down is not None:
            self._record(handler.path, event_id, headers, body, problem, None)
            if fault.down == "reset":  # closing with a zero linger sends RST instead of FIN
                handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                handler.connection.close()
            handler.drop_connection()
            return
        if fault.latency_ms and self._stopping.wait(fault.latency_ms / 1000):
            handler.drop_connection()  # stopping
            return
        status, answer, extra = self._answer(fault, problem, body, event_id, headers)
        self._record(handler.path, event_id, headers, body, problem, status)
        payload = json.dumps(answer).encode()
        handler.respond(status, payload, [("Content-Type", "application/json"), *extra])

    def _answer(
        self, fault: Misbehaviour, problem: str, body: bytes, event_id: str | None, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        if fault.echo:
            echoed = {"signature": headers.get(signing.SIGNATURE), "request_headers": headers}
            return fault.status or 500, echoed, []
        if fault.status is not None:
            extra = [("Location", fault.location)] if fault.location else []
            return fault.status, {"error": f"misbehaving: {fault.status}"}, extra
        if problem:
            return 401, {"error": problem}, []
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            return 400, {"error": "the body is not a JSON object"}, []
        return 200, {"received": event.get("event_id") or event_id}, []

    def _record(
        self, path: str, event_id: str | None, headers: dict[str, str], body: bytes, problem: str, status: int | None
    ) -> None:
        delivery = Delivery(path, event_id, headers, body, problem, status, time.time())
        with self._lock:
            self._deliveries.append(delivery)
            self._lock.notify_all()

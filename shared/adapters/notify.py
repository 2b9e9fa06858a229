"""Telling the customer's business code about an order outcome: a signed webhook and/or a Python hook.

- ``WebhookSink(url, secret, timeout_seconds)`` — POSTs ``webhook_body(event)`` (JSON, exactly ``EVENT_FIELDS``) with
  ``X-Flow-Receipts-Timestamp`` (unix seconds), ``X-Flow-Receipts-Signature: v1=<hex HMAC-SHA256 of
  "<timestamp>.<body>">`` and ``X-Flow-Receipts-Event-Id``. The standard library's http.client (a third of
  urllib3's CPU per request), one kept-alive connection per sending thread; TLS verified; redirects never
  followed; no retries, except one reconnect when a kept-alive connection turns out to be dead. 2xx: delivered;
  4xx other than 408 / 429: rejected (kept for a human); anything
  else, timeouts and network or TLS errors: failed (retried later).
- ``HookSink(path, timeout_seconds)`` — ``NOTIFY_HOOK``'s ``module:function``, imported once, called with the event
  dict on a daemon thread, one call at a time (the hook needs no locking). A call that does not return in time is
  given up; while it still runs, further events fail at once: at most one hung thread, ever.
- ``Notifier(sinks, retry_after)`` — an event is delivered when every sink accepted it in the same attempt.
- ``verify_signature(...)`` — what a consumer runs on every request (README, "Notifications").

Nothing here touches the ledger: shared/services/outbox.py records the results. No text made here holds the
webhook secret or a signature.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import importlib
import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any, Protocol
from urllib.parse import urlsplit

from shared.errors import ConfigError
from shared.logs import carry_context, register_secret

TIMESTAMP_HEADER = "X-Flow-Receipts-Timestamp"
SIGNATURE_HEADER = "X-Flow-Receipts-Signature"
EVENT_ID_HEADER = "X-Flow-Receipts-Event-Id"
USER_AGENT = "flow-receipts-webhook/1"
SIGNATURE_VERSION = "v1"
SIGNATURE_TOLERANCE_SECONDS = 300.0
# What the webhook and the hook receive, in this order; the ledger's payload has a few more facts (outbox table).
EVENT_FIELDS = ("event_id", "kind", "out_id", "phone", "status", "err_code", "err_msg", "resolved_by", "occurred_at")
MIN_ATTEMPT_SECONDS = 0.25  # less time than this left: do not start an attempt (it would only time out)
RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})
ANSWER_READ_MAX = 64 * 1024  # a longer answer is not read to its end (its connection is dropped)
ANSWER_EXCERPT_MAX = 200
ERROR_MAX = 500
DEFAULT_RETRY_AFTER = timedelta(seconds=60)
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_ERRNO = re.compile(r"\[Errno -?\d+\] [^')\"]+")


class Verdict(str, Enum):
    DELIVERED = "delivered"
    FAILED = "failed"  # retried later, with backoff
    REJECTED = "rejected"  # refused for good: kept for a human, never retried automatically
    UNSENT = "unsent"  # no time was left to try: due again at once


@dataclass(frozen=True)
class SendResult:
    verdict: Verdict
    error: str = ""


DELIVERED = SendResult(Verdict.DELIVERED)
UNSENT = SendResult(Verdict.UNSENT)


def failed(error: str) -> SendResult:
    return SendResult(Verdict.FAILED, _one_line(error))


def rejected(error: str) -> SendResult:
    return SendResult(Verdict.REJECTED, _one_line(error))


class Sink(Protocol):
    name: str
    timeout_seconds: float

    def send(self, event: dict[str, Any], timeout: float) -> SendResult: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


# --- the event and its signature ---------------------------------------------------------------------------------


def public_event(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The event as both sinks receive it: exactly EVENT_FIELDS, in that order (a missing one is null)."""
    return {name: payload.get(name) for name in EVENT_FIELDS}


def webhook_body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(public_event(payload), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str | None,
    body: bytes | str,
    signature: str | None,
    now: float,
    tolerance_seconds: float = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """True when ``signature`` (the X-Flow-Receipts-Signature header: ``v1=<hex>``, several comma-separated entries
    allowed) signs ``body`` with ``timestamp`` (the X-Flow-Receipts-Timestamp header) under ``secret``, and the
    timestamp is within ``tolerance_seconds`` of ``now`` (unix seconds; a replayed request is refused)."""
    if not timestamp or not signature or not _TIMESTAMP.fullmatch(timestamp.strip()):
        return False
    if abs(now - int(timestamp)) > tolerance_seconds:
        return False
    raw = body.encode("utf-8") if isinstance(body, str) else body
    expected = sign(secret, timestamp.strip(), raw).encode("ascii")
    prefix = f"{SIGNATURE_VERSION}="
    given = [part.strip()[len(prefix) :] for part in signature.split(",") if part.strip().startswith(prefix)]
    return any(hmac.compare_digest(expected, candidate.encode("utf-8", "replace")) for candidate in given)


def answer_verdict(status: int) -> Verdict:
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS:
        return Verdict.REJECTED
    return Verdict.FAILED


# --- the webhook -------------------------------------------------------------------------------------------------


class WebhookSink:
    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: Any,
        timeout_seconds: float = 5.0,
        *,
        ca_certs: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``secret``: str, bytes or pydantic SecretStr. ``ca_certs``: a CA bundle to trust instead of the system's."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("WEBHOOK_URL: must be an http or https URL")
        raw = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
        if not raw:
            raise ConfigError("WEBHOOK_SECRET: required when WEBHOOK_URL is set (every delivery is signed)")
        register_secret(raw)
        self._secret: bytes = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        self._secret_text = self._secret.decode("utf-8", "replace")
        self._url = url
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.origin = f"{parts.scheme}://{parts.netloc}"  # what logs show: the path may carry a token
        self.timeout_seconds = timeout_seconds
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._ca_certs = ca_certs
        self._clock = clock
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._tls_context: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return f"WebhookSink({self.origin!r})"

    def describe(self) -> str:
        return self.origin

    def send(self, event: dict[str, Any], timeout: float) -> SendResult:
        body = webhook_body(event)
        timestamp = str(int(self._clock()))
        signature = sign(self._secret, timestamp, body)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            EVENT_ID_HEADER: str(event.get("event_id") or ""),
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: f"{SIGNATURE_VERSION}={signature}",
        }
        try:
            status, answer, location = self._post(body, headers, timeout)
        except Exception as error:  # OSError, TLS, HTTP errors: the request may or may not have arrived
            return failed(self._clean(describe_error(error, timeout), signature))
        verdict = answer_verdict(status)
        if verdict is Verdict.DELIVERED:
            return DELIVERED
        text = f"HTTP {status}"
        if 300 <= status < 400:
            text += f" redirect to {location or '(no Location)'} (not followed)"
        if answer:  # cleaned before it is cut: no part of a secret survives at the cut
            text += f": {excerpt(self._clean(answer.decode('utf-8', 'replace'), signature))}"
        text = self._clean(text, signature)
        return rejected(text) if verdict is Verdict.REJECTED else failed(text)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        self._local = threading.local()
        for connection in connections:
            connection.close()

    def _post(self, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes, str | None]:
        """(status, the start of the answer's body, Location). One kept-alive connection per thread; a connection
        the server closed without an answer (an idle kept-alive one, typically) is reopened once, time allowing (at
        most a duplicate, which consumers drop by event id)."""
        started = time.monotonic()
        for attempt in (1, 2):
            limit = max(0.001, timeout - (time.monotonic() - started))
            connection = self._connection(limit)
            try:
                connection.request("POST", self._target, body=body, headers=headers)
                response = connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._drop(connection)
                if attempt == 2 or timeout - (time.monotonic() - started) < MIN_ATTEMPT_SECONDS:
                    raise
                continue
            except BaseException:
                self._drop(connection)
                raise
            try:
                answer = response.read(ANSWER_READ_MAX)
            except Exception:  # the status is what counts; a body that cannot be read says nothing more
                answer = b""
            if not response.isclosed() or response.will_close:  # not read to its end, or the server closes
                self._drop(connection)
            return response.status, answer, response.getheader("Location")
        raise AssertionError("unreachable")

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        """This thread's kept-alive connection, or a new one, connected within ``timeout``."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            return connection
        if self._https:
            connection = http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._tls())
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            connection.connect()
        except BaseException as error:
            connection.close()
            raise _ConnectFailed(error) from error
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self._local.connection = None
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)

    def _tls(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls_context is None:
                self._tls_context = ssl.create_default_context(cafile=self._ca_certs)  # verifies host and chain
            return self._tls_context

    def _clean(self, text: str, signature: str) -> str:
        """Error text without the secret or the signature (an answer may echo the request)."""
        for value in (signature, self._secret_text):
            if value:
                text = text.replace(value, "***")
        return text


class _ConnectFailed(Exception):
    """The connection could not be made: nothing was sent."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def excerpt(answer: str) -> str:
    """The start of an answer's body as one short printable line (told to a human in last_error)."""
    return " ".join("".join(c if c.isprintable() else " " for c in answer[:ANSWER_EXCERPT_MAX]).split())


def describe_error(error: BaseException, timeout: float) -> str:
    """What went wrong with a request, in a few words (no URL path, no header)."""
    if isinstance(error, _ConnectFailed):
        cause = error.cause
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {_reason(cause)}"
        if isinstance(cause, TimeoutError):
            return f"no connection within {timeout:.3g} s"
        return f"cannot connect: {_reason(cause)}"
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:.3g} s"
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {_reason(error)}"
    if isinstance(error, (http.client.RemoteDisconnected, ConnectionError, http.client.IncompleteRead)):
        return f"connection dropped: {_reason(error)}"
    return f"{type(error).__name__}: {_reason(error)}"


def _reason(error: BaseException) -> str:
    text = str(error)
    found = _ERRNO.search(text)
    if found:
        return found[0].strip()
    return text.rsplit("): ", 1)[-1] or type(error).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())[:ERROR_MAX]


# --- the Python hook ---------------------------------------------------------------------------------------------


def load_hook(path: str) -> Callable[[dict[str, Any]], object]:
    """``module.path:function``, imported now; ConfigError naming NOTIFY_HOOK when that cannot be done."""
    module_name, _, function_name = path.partition(":")
    if not module_name or not function_name:
        raise ConfigError(f"NOTIFY_HOOK: must look like module.path:function (got {path!r})")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or whatever the module raised while loading
        raise ConfigError(
            f"NOTIFY_HOOK: cannot import {module_name!r} ({type(error).__name__}: {_one_line(str(error))})"
        ) from None
    function = getattr(module, function_name, None)
    if function is None:
        raise ConfigError(f"NOTIFY_HOOK: module {module_name!r} has no {function_name!r}")
    if not callable(function):
        raise ConfigError(f"NOTIFY_HOOK: {path} is not callable (it is a {type(function).__name__})")
    return function


class _HookCall:
    def __init__(self, function: Callable[[dict[str, Any]], object], event: dict[str, Any]) -> None:
        self.function = function
        self.event = event
        self.started = time.monotonic()
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def run(self, release: Callable[[], None]) -> None:
        try:
            self.function(self.event)
        except BaseException as error:  # a hook calling sys.exit() is a failed delivery, not the end of the process
            self.error = error
        finally:
            self.finished.set()
            release()


class HookSink:
    name = "hook"

    def __init__(self, path: str, timeout_seconds: float = 5.0) -> None:
        self.path = path
        self.timeout_seconds = timeout_seconds
        self._function = load_hook(path)
        self._slot = threading.Lock()  # held by the running call (released by its thread when it returns)
        self._state = threading.Lock()
        self._hung: _HookCall | None = None

    def __repr__(self) -> str:
        return f"HookSink({self.path!r})"

    def describe(self) -> str:
        return self.path

    def send(self, event: dict[str, Any], timeout: float) -> SendResult:
        limit = min(self.timeout_seconds, timeout)
        with self._state:
            hung = self._hung
            if hung is not None and not hung.finished.is_set():
                running = time.monotonic() - hung.started
                return failed(f"not called: an earlier call has not returned for {running:.0f} s")
            self._hung = None
        started = time.monotonic()
        if not self._slot.acquire(timeout=limit):
            return failed(f"not called: busy with another event for {limit:g} s")
        call = _HookCall(self._function, dict(event))
        thread = threading.Thread(
            target=carry_context(call.run), args=(self._slot.release,), name="notify-hook", daemon=True
        )
        try:
            thread.start()
        except BaseException:
            self._slot.release()
            raise
        if not call.finished.wait(max(0.0, limit - (time.monotonic() - started))):
            with self._state:
                self._hung = call
            return failed(f"did not return within {limit:g} s")
        if call.error is not None:
            return failed(f"raised {type(call.error).__name__}: {call.error}")
        return DELIVERED

    @property
    def hung(self) -> bool:
        """A call that did not return in time is still running."""
        with self._state:
            return self._hung is not None and not self._hung.finished.is_set()

    def close(self) -> None:
        pass


# --- both ----------------------------------------------------------------------------------------------------------


class Notifier:
    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        retry_after: timedelta = DEFAULT_RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not sinks:
            raise ValueError("a Notifier needs at least one sink")
        self.sinks = tuple(sinks)
        self.retry_after = retry_after  # backoff before the first redelivery of a failed event (doubling)
        self._clock = clock

    def __repr__(self) -> str:
        return f"Notifier({', '.join(map(repr, self.sinks))})"

    def describe(self) -> dict[str, str]:
        """Where events go, safe to log: the webhook's scheme and host, the hook's path."""
        return {sink.name: sink.describe() for sink in self.sinks}

    def deliver(self, event: Mapping[str, Any], deadline: float | None = None) -> SendResult:
        """Sends ``event`` to every sink, each bounded by its timeout and by ``deadline`` (a clock() value). Never
        raises. Rejected when a sink rejected it, failed when one failed, UNSENT when no time was left to start."""
        public = public_event(event)
        results: list[tuple[str, SendResult]] = []
        for sink in self.sinks:
            timeout = sink.timeout_seconds if deadline is None else min(sink.timeout_seconds, deadline - self._clock())
            if timeout < min(MIN_ATTEMPT_SECONDS, sink.timeout_seconds):
                if not results:
                    return UNSENT
                results.append((sink.name, failed("not called: out of time")))
                continue
            try:
                result = sink.send(public, timeout)
            except Exception as error:  # a sink bug must not lose the event, nor fail the caller
                result = failed(f"{type(error).__name__}: {error}")
            results.append((sink.name, result))
        return _combined(results)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def _combined(results: list[tuple[str, SendResult]]) -> SendResult:
    if all(result.verdict is Verdict.DELIVERED for _, result in results):
        return DELIVERED
    errors = "; ".join(f"{name}: {result.error}" for name, result in results if result.verdict is not Verdict.DELIVERED)
    if any(result.verdict is Verdict.REJECTED for _, result in results):
        return rejected(errors)
    return failed(errors)


def build_notifier(
    *,
    webhook_url: str | None,
    webhook_secret: Any,
    webhook_timeout_seconds: float,
    hook: str | None,
    hook_timeout_seconds: float,
    retry_after: timedelta = DEFAULT_RETRY_AFTER,
) -> Notifier | None:
    """The configured sinks as one Notifier; None when neither is configured (events stay in the outbox table)."""
    sinks: list[Sink] = []
    if webhook_url:
        sinks.append(WebhookSink(webhook_url, webhook_secret, webhook_timeout_seconds))
    if hook:
        sinks.append(HookSink(hook, hook_timeout_seconds))
    return Notifier(sinks, retry_after=retry_after) if sinks else None

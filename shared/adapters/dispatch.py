"""Handing a received Envelope on: inline (the processor logic in this process) or asynchronously (FC persists an
Async invocation of the processor function and retries it; reference/fc.md §6-7).

- ``Dispatcher`` — ``dispatch(envelope) -> Dispatched``; ``Dispatched.accepted`` says the message may be deleted.
- ``InlineDispatcher(apply)`` — passes the Envelope to ``apply`` and returns its answer unchanged; errors raised by
  ``apply`` (TransientError, PoisonMessage, ...) pass through too.
- ``AsyncDispatcher(invoker)`` — the Envelope's JSON as the payload of one asynchronous invocation through an
  ``AsyncInvoker`` (``invoke_async(payload) -> request id``), the small interface an FC 3.0 invoker can implement.
- ``FcAsyncDispatcher(endpoint, credentials, service, function, timeout)`` — ``AsyncDispatcher`` over
  ``Fc2Invoker``: fc2 ``invoke_function`` with ``x-fc-invocation-type: Async``; 202 -> ``Dispatched(True,
  "accepted", <request id>)``.

Errors from FC: 429, 5xx, network errors, a connection refused, expired credentials -> ``TransientError``; a wrong
endpoint, key, service or function -> ``ConfigError`` (one line naming the setting); a payload too large for an async
invocation -> ``PoisonMessage``. No message carries the AccessKey secret or the STS token.

Why ``Fc2Invoker`` does its own HTTP round trip: fc2 2.5.2 (pinned in pyproject) builds and signs the request well,
but its transport (``Client._do_request``) (1) opens a new session and connection per call, (2) retries a refused
connection 5 times with backoff (about 30 s) before failing, (3) logs the full request headers — ``authorization``
and ``x-fc-security-token`` — through the ROOT logger on every error, and (4) raises ``JSONDecodeError`` for an error
answer whose body is not JSON (reference/fc.md §7.4). ``_Fc2Client`` overrides only ``_do_request``: one pooled
session per thread, at most two immediate reconnects (the request was never sent, so no duplicate), no read retry
(a POST may have been accepted), timeouts bounded by ``timeout``, no logging, and errors parsed whatever the body.
Backoff between attempts is the caller's (``shared.adapters.queue.retrying`` or the drain loop), within its deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import fc2
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared.domain.models import Envelope
from shared.errors import ConfigError, PoisonMessage, TransientError
from shared.logs import redactor, register_secret

ACCEPTED = "accepted"
ASYNC_HEADERS = {"x-fc-invocation-type": "Async"}
DEFAULT_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 3.05
CONNECT_RETRIES = 2
_MAX_DETAIL = 300


@dataclass
class Dispatched:
    accepted: bool
    outcome: str  # "applied", "duplicate", "conflict", "orphan", "dead_lettered", "accepted" (async), ...
    detail: str = ""


class Dispatcher(Protocol):
    def dispatch(self, envelope: Envelope) -> Dispatched: ...


class InlineDispatcher:
    """Applies the Envelope in this process (``apply`` is the processor's logic)."""

    def __init__(self, apply: Callable[[Envelope], Dispatched]) -> None:
        self._apply = apply

    def dispatch(self, envelope: Envelope) -> Dispatched:
        return self._apply(envelope)


class AsyncInvoker(Protocol):
    """Starts one asynchronous invocation of the processor with ``payload``; returns the platform's request id.

    Raises TransientError (retry later), ConfigError (wrong endpoint, credentials or function) or PoisonMessage
    (a payload the platform will never accept)."""

    def invoke_async(self, payload: bytes) -> str: ...


class AsyncDispatcher:
    """The Envelope's JSON (the processor's event) through an ``AsyncInvoker``."""

    def __init__(self, invoker: AsyncInvoker) -> None:
        self.invoker = invoker

    def dispatch(self, envelope: Envelope) -> Dispatched:
        request_id = self.invoker.invoke_async(envelope.model_dump_json().encode("utf-8"))
        return Dispatched(True, ACCEPTED, request_id)


class FcAsyncDispatcher(AsyncDispatcher):
    """Async invocations of an FC 2.0 function through fc2. ``credentials``: (AccessKey id, secret, STS token or
    None), e.g. ``shared.adapters.fc.Credentials`` from the FC context."""

    def __init__(
        self,
        endpoint: str,
        credentials: Sequence[str | None],
        service: str,
        function: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(Fc2Invoker(endpoint, credentials, service, function, timeout))

    def close(self) -> None:
        self.invoker.close()


# --- FC 2.0 through fc2 ---------------------------------------------------------------------------------------


class _FcAnswer(Exception):
    """An FC answer that is not the expected one (raised inside the client, classified by Fc2Invoker)."""

    def __init__(self, status: int, code: str, message: str, request_id: str) -> None:
        super().__init__(status, code)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


class _Fc2Client(fc2.Client):
    """fc2.Client with its transport replaced (see the module docstring); signing and paths stay fc2's."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            retry = Retry(
                total=CONNECT_RETRIES,
                connect=CONNECT_RETRIES,
                read=0,
                status=0,
                other=0,
                redirect=0,
                backoff_factor=0.05,
                allowed_methods=None,
                raise_on_status=False,
            )
            adapter = HTTPAdapter(max_retries=retry)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    def _do_request(self, method, path, headers, params=None, body=None):  # type: ignore[override]
        timeout = (min(CONNECT_TIMEOUT_SECONDS, self.timeout), self.timeout)
        response = self._session().request(
            method, f"{self.endpoint}{path}", headers=headers, params=params, data=body, timeout=timeout
        )
        request_id = response.headers.get("x-fc-request-id", "")
        if response.status_code >= 400:
            code, message = _error_fields(response)
            raise _FcAnswer(response.status_code, code, message, request_id)
        asynchronous = str(headers.get("x-fc-invocation-type", "")).lower() == "async"
        if asynchronous and response.status_code != 202:
            raise _FcAnswer(
                response.status_code,
                "",
                f"expected 202 for an async invocation, got {response.status_code}",
                request_id,
            )
        return response


def _error_fields(response: requests.Response) -> tuple[str, str]:
    """(ErrorCode, ErrorMessage) from a JSON error body; the status reason and some text otherwise."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        return str(data.get("ErrorCode") or ""), str(data.get("ErrorMessage") or "")
    return "", response.text[:_MAX_DETAIL] or response.reason or ""


class Fc2Invoker:
    """``AsyncInvoker`` for an FC 2.0 function (API 2016-08-15) with fc2 ``invoke_function``. Thread-safe."""

    def __init__(
        self,
        endpoint: str,
        credentials: Sequence[str | None],
        service: str,
        function: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        qualifier: str | None = None,
    ) -> None:
        access_key_id, access_key_secret, security_token = (*tuple(credentials), None, None)[:3]
        if not endpoint:
            raise ConfigError("FC_ENDPOINT: required for DISPATCH_MODE=async")
        if not access_key_id or not access_key_secret:
            raise ConfigError("credentials: an AccessKey id and secret are required to invoke the processor")
        self._secrets = tuple(s for s in (access_key_secret, security_token) if s)
        register_secret(*self._secrets)
        self.endpoint = endpoint
        self.service = service
        self.function = function
        self.qualifier = qualifier
        try:
            self._client = _Fc2Client(
                endpoint=endpoint,
                accessKeyID=access_key_id,
                accessKeySecret=access_key_secret,
                securityToken=security_token or "",
                Timeout=timeout,
            )
        except ValueError as error:
            raise ConfigError(f"FC_ENDPOINT: cannot build an FC client: {self._scrub(str(error))}") from None

    def __repr__(self) -> str:
        return f"Fc2Invoker({self.endpoint!r}, service={self.service!r}, function={self.function!r})"

    def close(self) -> None:
        self._client.close()

    def invoke_async(self, payload: bytes) -> str:
        try:
            response = self._client.invoke_function(
                self.service, self.function, payload=payload, headers=dict(ASYNC_HEADERS), qualifier=self.qualifier
            )
        except _FcAnswer as answer:
            raise self._classify(answer) from None
        except requests.Timeout as error:
            raise TransientError(self._line(f"timed out ({type(error).__name__})")) from None
        except requests.RequestException as error:
            raise TransientError(
                self._line(f"unreachable ({type(error).__name__}: {self._scrub(str(error))})")
            ) from None
        except fc2.FcError as error:  # fc2's own check of x-fc-error-type (never set on a 202)
            raise TransientError(self._line(f"FC error {error.status_code} {error.err_code}".rstrip())) from None
        return str(response.headers.get("x-fc-request-id", ""))

    # -- errors --

    def _classify(self, answer: _FcAnswer) -> Exception:
        status, code = answer.status, answer.code
        message = self._scrub(answer.message)
        summary = " ".join(part for part in (str(status), code, message and f"- {message}") if part)
        if answer.request_id:
            summary += f" (request {answer.request_id})"
        if status == 429 or status >= 500 or status < 400:
            return TransientError(self._line(summary))
        if code == "EntityTooLarge" or status == 413:
            return PoisonMessage(f"the envelope is too large for an async invocation of {self._target}: {summary}")
        if status == 404:
            return ConfigError(
                f"PROCESSOR_SERVICE/PROCESSOR_FUNCTION: {self._target} was not found at {self.endpoint}: {summary}"
            )
        if status in (401, 403) and ("Expired" in code or code in ("InvalidSecurityToken", "RequestTimeTooSkewed")):
            return TransientError(self._line(summary))  # the next invocation brings fresh credentials
        if status in (401, 403):
            return ConfigError(
                f"FC refused the function's credentials for {self._target} at {self.endpoint}: {summary}"
            )
        return ConfigError(f"FC rejected the async invocation of {self._target} at {self.endpoint}: {summary}")

    @property
    def _target(self) -> str:
        service = f"{self.service}.{self.qualifier}" if self.qualifier else self.service
        return f"{service}/{self.function}"

    def _line(self, what: str) -> str:
        return f"FC async invocation of {self._target} at {self.endpoint}: {what}"

    def _scrub(self, text: str) -> str:
        """One line, without the secret or the token (also in their JSON / percent-encoded forms), shortened."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = redactor.redact(" ".join(text.split()))
        return text[:_MAX_DETAIL]


__all__ = [
    "ACCEPTED",
    "AsyncDispatcher",
    "AsyncInvoker",
    "Dispatched",
    "Dispatcher",
    "Fc2Invoker",
    "FcAsyncDispatcher",
    "InlineDispatcher",
]

"""Handing a received Envelope on: inline (the processor logic in this process) or asynchronously (FC persists an
Async invocation of the processor function and retries it; reference/fc.md §6-7).

- ``Dispatcher`` — ``dispatch(envelope) -> Dispatched``; ``Dispatched.accepted`` says the message may be deleted.
- ``InlineDispatcher(apply)`` — passes the Envelope to ``apply`` and returns its answer unchanged; errors raised by
  ``apply`` (TransientError, PoisonMessage, ...) pass through too.
- ``AsyncDispatcher(invoker)`` — the Envelope's JSON as the payload of one asynchronous invocation through an
  ``AsyncInvoker`` (``invoke_async(payload) -> request id``).
- ``Fc2Invoker`` — an FC 2.0 function (API 2016-08-15, service + function) through fc2 ``invoke_function`` with
  ``x-fc-invocation-type: Async``; ``FcAsyncDispatcher(endpoint, credentials, service, function, timeout)`` is
  ``AsyncDispatcher`` over it.
- ``Fc3Invoker`` — an FC 3.0 function (API 2023-03-30, addressed by its name alone) through alibabacloud_fc20230330
  ``invoke_function`` with ``x-fc-invocation-type: Async``.
- ``fc_invoker(api, ...)`` / ``processor_dispatcher(api, ...)`` — the one the setting FUNCTION_COMPUTE_API names
  (``"2"`` or ``"3"``). Each SDK is imported when its invoker is first built, never with this module: an FC 2.0
  function does not load the FC 3.0 SDK (about three times fc2's import time: it brings aiohttp), nor an FC 3.0 one
  fc2.

Errors from FC, the same for both: 429, 5xx, network errors, a connection refused, an answer that cannot be read,
expired or skewed credentials -> ``TransientError``; a wrong endpoint, key, service or function -> ``ConfigError``
(one line naming the setting); a payload too large for an async invocation -> ``PoisonMessage``. No message carries
the AccessKey secret or the STS token.

Why ``Fc2Invoker`` does its own HTTP round trip: fc2 2.5.2 (pinned in pyproject) builds and signs the request well,
but its transport (``Client._do_request``) (1) opens a new session and connection per call, (2) retries a refused
connection 5 times with backoff (about 30 s) before failing, (3) logs the full request headers — ``authorization``
and ``x-fc-security-token`` — through the ROOT logger on every error, and (4) raises ``JSONDecodeError`` for an error
answer whose body is not JSON (reference/fc.md §7.4). ``_Fc2Client`` overrides only ``_do_request``: one pooled
session per thread, at most two immediate reconnects (the request was never sent, so no duplicate), no read retry
(a POST may have been accepted), timeouts bounded by ``timeout``, no logging, and errors parsed whatever the body.
Backoff between attempts is the caller's (``shared.adapters.queue.retrying`` or the drain loop), within its deadline.

What ``Fc3Invoker`` does about alibabacloud_fc20230330 4.8 (on alibabacloud-tea-openapi 0.4, darabonba-core 1.0): it
signs V3 (ACS3-HMAC-SHA256) and sends through a pooled requests session kept per host by darabonba, with no retry
unless retry options are configured (none are: one request per call, a POST is never resent) and timeouts from the
client's Config (set here to ``timeout``, the connect part bounded by CONNECT_TIMEOUT_SECONDS). Its quirks: (1) its
``darabonba-core`` logger is set to DEBUG with a stderr handler of its own, and with ``DEBUG=sdk`` in the environment
it prints every request's headers — ``Authorization`` and ``x-acs-security-token`` included — so the invoker raises
that logger to WARNING; (2) an error answer whose body is not JSON comes back as ``UnretryableException`` wrapping
the JSON error, without the status (classified as transient: gateways answer 5xx so); (3) a network error, a
timeout included, comes back as ``UnretryableException`` wrapping a ``RetryError``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

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
FC3_SDK_HINT = "install the FC 3.0 SDK: pip install 'flow-receipts[fc3]' (alibabacloud_fc20230330)"
_MAX_DETAIL = 300
FcApi = Literal["2", "3"]


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

    def close(self) -> None:
        close = getattr(self.invoker, "close", None)
        if close is not None:
            close()


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


def fc_invoker(
    api: FcApi,
    endpoint: str | None,
    credentials: Sequence[str | None],
    function: str,
    *,
    service: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> Fc2Invoker | Fc3Invoker:
    """The invoker of FUNCTION_COMPUTE_API: ``"2"`` -> Fc2Invoker (needs ``service``), ``"3"`` -> Fc3Invoker
    (``service`` unused)."""
    if api == "3":
        return Fc3Invoker(endpoint or "", credentials, function, timeout)
    if not service:
        raise ConfigError(
            "PROCESSOR_SERVICE: FC 2.0 (FUNCTION_COMPUTE_API=2) addresses a function by its service and name"
        )
    return Fc2Invoker(endpoint or "", credentials, service, function, timeout)


def processor_dispatcher(
    api: FcApi,
    endpoint: str | None,
    credentials: Sequence[str | None],
    service: str,
    function: str,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> AsyncDispatcher:
    """Async dispatch to the processor through the API FUNCTION_COMPUTE_API names (FcAsyncDispatcher on FC 2.0)."""
    if api == "3":
        return AsyncDispatcher(Fc3Invoker(endpoint or "", credentials, function, timeout))
    return FcAsyncDispatcher(endpoint or "", credentials, service, function, timeout)


# --- what both invokers share ---------------------------------------------------------------------------------


class _Invoker:
    """Credentials checked and registered with the log redactor, and FC's answers classified (module docstring)."""

    not_found_settings = "PROCESSOR_FUNCTION"

    def __init__(self, endpoint: str, credentials: Sequence[str | None]) -> None:
        access_key_id, access_key_secret, security_token = (*tuple(credentials), None, None)[:3]
        if not endpoint:
            raise ConfigError("FC_ENDPOINT: required for DISPATCH_MODE=async")
        if not access_key_id or not access_key_secret:
            raise ConfigError("credentials: an AccessKey id and secret are required to invoke the processor")
        self._secrets = tuple(s for s in (access_key_secret, security_token) if s)
        register_secret(*self._secrets)
        self.endpoint = endpoint
        self._key = (str(access_key_id), str(access_key_secret), str(security_token or ""))

    @property
    def _target(self) -> str:
        raise NotImplementedError

    def _classify(self, status: int, code: str, message: str, request_id: str = "") -> Exception:
        message = self._scrub(message)
        summary = " ".join(part for part in (str(status), code, message and f"- {message}") if part)
        if request_id:
            summary += f" (request {request_id})"
        if status == 429 or status >= 500 or status < 400:
            return TransientError(self._line(summary))
        if code == "EntityTooLarge" or status == 413:
            return PoisonMessage(f"the envelope is too large for an async invocation of {self._target}: {summary}")
        if status == 404:
            return ConfigError(f"{self.not_found_settings}: {self._target} was not found at {self.endpoint}: {summary}")
        if status in (401, 403) and (
            "Expired" in code or code in ("InvalidSecurityToken", "RequestTimeTooSkewed", "SignatureNonceUsed")
        ):
            return TransientError(self._line(summary))  # the next invocation brings fresh credentials
        if status in (401, 403):
            return ConfigError(
                f"FC refused the function's credentials for {self._target} at {self.endpoint}: {summary}"
            )
        return ConfigError(f"FC rejected the async invocation of {self._target} at {self.endpoint}: {summary}")

    def _line(self, what: str) -> str:
        return f"FC async invocation of {self._target} at {self.endpoint}: {what}"

    def _scrub(self, text: str) -> str:
        """One line, without the secret or the token (also in their JSON / percent-encoded forms), shortened."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = redactor.redact(" ".join(text.split()))
        return text[:_MAX_DETAIL]


# --- FC 2.0 through fc2 ---------------------------------------------------------------------------------------


class _FcAnswer(Exception):
    """An FC answer that is not the expected one (raised inside the client, classified by Fc2Invoker)."""

    def __init__(self, status: int, code: str, message: str, request_id: str) -> None:
        super().__init__(status, code)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


@functools.cache
def _fc2_client_class() -> type:
    """fc2, imported when the first Fc2Invoker is built, and the client class over it."""
    import fc2

    class _Fc2Client(_Fc2Transport, fc2.Client):  # the transport's methods first
        pass

    return _Fc2Client


class _Fc2Transport:
    """fc2.Client's transport replaced (see the module docstring); signing and paths stay fc2's."""

    timeout: float
    endpoint: str

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


class Fc2Invoker(_Invoker):
    """``AsyncInvoker`` for an FC 2.0 function (API 2016-08-15) with fc2 ``invoke_function``. Thread-safe."""

    not_found_settings = "PROCESSOR_SERVICE/PROCESSOR_FUNCTION"

    def __init__(
        self,
        endpoint: str,
        credentials: Sequence[str | None],
        service: str,
        function: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        qualifier: str | None = None,
    ) -> None:
        super().__init__(endpoint, credentials)
        self.service = service
        self.function = function
        self.qualifier = qualifier
        access_key_id, access_key_secret, security_token = self._key
        try:
            self._client = _fc2_client_class()(
                endpoint=endpoint,
                accessKeyID=access_key_id,
                accessKeySecret=access_key_secret,
                securityToken=security_token,
                Timeout=timeout,
            )
        except ValueError as error:
            raise ConfigError(f"FC_ENDPOINT: cannot build an FC client: {self._scrub(str(error))}") from None

    def __repr__(self) -> str:
        return f"Fc2Invoker({self.endpoint!r}, service={self.service!r}, function={self.function!r})"

    def close(self) -> None:
        self._client.close()

    def invoke_async(self, payload: bytes) -> str:
        import fc2  # imported already by the client class

        try:
            response = self._client.invoke_function(
                self.service, self.function, payload=payload, headers=dict(ASYNC_HEADERS), qualifier=self.qualifier
            )
        except _FcAnswer as answer:
            raise self._classify(answer.status, answer.code, answer.message, answer.request_id) from None
        except requests.Timeout as error:
            raise TransientError(self._line(f"timed out ({type(error).__name__})")) from None
        except requests.RequestException as error:
            raise TransientError(
                self._line(f"unreachable ({type(error).__name__}: {self._scrub(str(error))})")
            ) from None
        except fc2.FcError as error:  # fc2's own check of x-fc-error-type (never set on a 202)
            raise TransientError(self._line(f"FC error {error.status_code} {error.err_code}".rstrip())) from None
        return str(response.headers.get("x-fc-request-id", ""))

    @property
    def _target(self) -> str:
        service = f"{self.service}.{self.qualifier}" if self.qualifier else self.service
        return f"{service}/{self.function}"


# --- FC 3.0 through alibabacloud_fc20230330 -------------------------------------------------------------------


class Fc3Invoker(_Invoker):
    """``AsyncInvoker`` for an FC 3.0 function (API 2023-03-30), addressed by its name alone (for a function migrated
    from FC 2.0, ``<service>$<function>``), with alibabacloud_fc20230330 ``invoke_function``. Thread-safe.

    ``endpoint`` is FC_ENDPOINT (``https://<account>.<region>[-internal].fc.aliyuncs.com``, or ``http://127.0.0.1:N``
    for the local stack). The SDK is imported here, on first use; without it: ConfigError with the install hint."""

    def __init__(
        self,
        endpoint: str,
        credentials: Sequence[str | None],
        function: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        qualifier: str | None = None,
    ) -> None:
        super().__init__(endpoint, credentials)
        self.function = function
        self.qualifier = qualifier
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"FC_ENDPOINT: must be http(s)://host[:port] (got {self._scrub(endpoint)!r})")
        sdk = _fc3_sdk()
        access_key_id, access_key_secret, security_token = self._key
        config = sdk.Config(
            access_key_id=access_key_id,
            access_key_secret=access_key_secret,
            security_token=security_token or None,
            endpoint=parts.netloc,
            protocol=parts.scheme,
            connect_timeout=int(min(CONNECT_TIMEOUT_SECONDS, timeout) * 1000),
            read_timeout=int(timeout * 1000),
        )
        try:
            self._client = sdk.Client(config)
        except Exception as error:  # the SDK's own checks of its Config
            raise ConfigError(f"FC_ENDPOINT: cannot build an FC 3.0 client: {self._scrub(str(error))}") from None
        self._sdk = sdk
        self._headers = sdk.InvokeFunctionHeaders(x_fc_invocation_type="Async")
        self._runtime = sdk.RuntimeOptions()

    def __repr__(self) -> str:
        return f"Fc3Invoker({self.endpoint!r}, function={self.function!r})"

    def close(self) -> None:
        """Nothing to release: darabonba keeps its pooled sessions per host for the process."""

    def invoke_async(self, payload: bytes) -> str:
        sdk = self._sdk
        request = sdk.InvokeFunctionRequest(body=payload, qualifier=self.qualifier)
        try:
            response = self._client.invoke_function_with_options(self.function, request, self._headers, self._runtime)
        except sdk.ResponseException as error:  # an FC answer outside 2xx, its JSON error body read
            data = error.data if isinstance(error.data, dict) else {}
            message = str(data.get("Message") or data.get("message") or "")
            status = int(getattr(error, "status_code", None) or data.get("statusCode") or 0)
            raise self._classify(status, str(error.code or ""), message, str(error.request_id or "")) from None
        except sdk.UnretryableException as error:
            raise self._transport_error(error.inner_exception) from None
        except sdk.TeaException as error:
            raise ConfigError(f"the FC 3.0 SDK refused the call: {self._scrub(str(error.message))}") from None
        request_id = str((response.headers or {}).get("x-fc-request-id", ""))
        if response.status_code != 202:
            raise self._classify(
                int(response.status_code or 0), "", f"expected 202 for an async invocation, got {response.status_code}"
            )
        return request_id

    def _transport_error(self, inner: BaseException | None) -> TransientError:
        text = self._scrub(str(getattr(inner, "message", None) or inner or ""))
        if isinstance(inner, ValueError) or (isinstance(inner, RuntimeError) and "json" in text.lower()):
            # darabonba's "Failed to parse the value as json format": an error answer that is not FC's JSON
            return TransientError(self._line(f"unreadable answer ({text})"))
        if "timed out" in text.lower() or "timeout" in text.lower():
            return TransientError(self._line(f"timed out ({text})"))
        return TransientError(self._line(f"unreachable ({type(inner).__name__}: {text})"))

    @property
    def _target(self) -> str:
        return f"{self.function}:{self.qualifier}" if self.qualifier else self.function


class _Fc3Sdk:
    """What Fc3Invoker uses of the FC 3.0 SDK, imported once."""

    def __init__(self) -> None:
        try:
            from alibabacloud_fc20230330.client import Client
            from alibabacloud_fc20230330.models import InvokeFunctionHeaders, InvokeFunctionRequest
            from alibabacloud_tea_openapi.models import Config
            from alibabacloud_tea_util.models import RuntimeOptions
            from darabonba.exceptions import ResponseException, UnretryableException
            from Tea.exceptions import TeaException
        except ImportError as error:
            raise ConfigError(f"FUNCTION_COMPUTE_API=3: {FC3_SDK_HINT} ({error})") from None
        logging.getLogger("darabonba-core").setLevel(logging.WARNING)  # its DEBUG lines print credentials
        self.Client = Client
        self.Config = Config
        self.RuntimeOptions = RuntimeOptions
        self.InvokeFunctionHeaders = InvokeFunctionHeaders
        self.InvokeFunctionRequest = InvokeFunctionRequest
        self.ResponseException = ResponseException
        self.UnretryableException = UnretryableException
        self.TeaException = TeaException


@functools.cache
def _fc3_sdk() -> _Fc3Sdk:
    return _Fc3Sdk()


__all__ = [
    "ACCEPTED",
    "AsyncDispatcher",
    "AsyncInvoker",
    "Dispatched",
    "Dispatcher",
    "Fc2Invoker",
    "Fc3Invoker",
    "FcApi",
    "FcAsyncDispatcher",
    "InlineDispatcher",
    "fc_invoker",
    "processor_dispatcher",
]

"""Function Compute runtime glue: the context adapter, credentials, and event decoding (reference/fc.md §4, §5).

FC hands a Python handler ``(event: bytes, context)``. The context has ``request_id``, ``function.{name, handler,
memory, timeout}``, ``region`` and ``account_id``, in every generation and runtime; besides:

- FC 2.0, python3.10: ``credentials`` (the role's STS key) and ``service.{name, log_project, log_store, qualifier,
  version_id}`` — role, log config and VPC belong to the service;
- FC 3.0, python3.10: ``credentials``; no service (role, log config and VPC are the function's; an empty
  ``service`` is taken as none), so the function is named by ``function.name`` / ``FC_FUNCTION_NAME`` alone;
- FC 3.0, python3.12: no credentials (``ALIBABA_CLOUD_*`` variables), no service; ``log_project`` and ``log_store``
  at the top level, ``function.qualifier`` and ``function.version_id``.

Powertools' Logger wants a Lambda-shaped context, and the drainer wants a deadline: ``fc_context(context)`` gives
both, and an ARN of the generation's form (FC 2.0 ``…:services/<svc>/functions/<fn>``, FC 3.0 ``…:functions/<fn>``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from shared.errors import ConfigError, PoisonMessage

ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"


class Credentials(NamedTuple):
    """An AccessKey pair, with the STS token when it is temporary. The repr hides the secret and the token."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None

    def __repr__(self) -> str:
        token = "'***'" if self.security_token else "None"
        return f"Credentials(access_key_id={self.access_key_id!r}, access_key_secret='***', security_token={token})"

    __str__ = __repr__


class FcInvocation:
    """One invocation, as Powertools' Logger and the drainer see it.

    Duck-types the four attributes Logger reads (``function_name``, ``memory_limit_in_mb``, ``invoked_function_arn``,
    ``aws_request_id``) and ``get_remaining_time_in_millis()``; ``deadline`` is a ``time.monotonic()`` value.
    """

    __slots__ = (
        "account_id",
        "aws_request_id",
        "credentials",
        "deadline",
        "function_name",
        "handler",
        "invoked_function_arn",
        "log_project",
        "log_store",
        "memory_limit_in_mb",
        "qualifier",
        "region",
        "request_id",
        "service_name",
        "started",
        "timeout_seconds",
    )

    def __init__(
        self,
        *,
        request_id: str,
        function_name: str,
        memory_limit_in_mb: int,
        timeout_seconds: float,
        region: str = "",
        account_id: str = "",
        service_name: str | None = None,
        handler: str = "",
        credentials: Credentials | None = None,
        started: float | None = None,
        log_project: str = "",
        log_store: str = "",
        qualifier: str = "",
    ) -> None:
        self.request_id = self.aws_request_id = request_id
        self.function_name = function_name
        self.memory_limit_in_mb = memory_limit_in_mb
        self.timeout_seconds = timeout_seconds
        self.region = region
        self.account_id = account_id
        self.service_name = service_name
        self.handler = handler
        self.credentials = credentials
        self.log_project = log_project
        self.log_store = log_store
        self.qualifier = qualifier
        self.started = time.monotonic() if started is None else started
        self.deadline = self.started + timeout_seconds
        self.invoked_function_arn = function_arn(region, account_id, function_name, service_name)

    @classmethod
    def from_context(
        cls, context: Any, *, started: float | None = None, environ: Mapping[str, str] | None = None
    ) -> FcInvocation:
        """Build from an FC context: FC 2.0 or 3.0, python3.10 or python3.12 (module docstring). ``started`` defaults
        to now (monotonic). A function attribute the context lacks is taken from FC's variables (FC_FUNCTION_NAME,
        FC_TIMEOUT, FC_FUNCTION_MEMORY_SIZE, FC_FUNCTION_HANDLER), the service name from FC_SERVICE_NAME (FC 2.0
        and local runs set it; FC 3.0 has none)."""
        env = os.environ if environ is None else environ
        function = getattr(context, "function", None)
        name = getattr(function, "name", None) or env.get("FC_FUNCTION_NAME")
        timeout = getattr(function, "timeout", None) or env.get("FC_TIMEOUT")
        if function is None or not name or not timeout:
            raise TypeError(f"not an FC context (needs function.name and function.timeout): {type(context).__name__}")
        service = getattr(context, "service", None)  # FC 2.0 python3.10; FC 3.0 and python3.12 have none
        service_name = getattr(service, "name", None) or env.get("FC_SERVICE_NAME") or None
        return cls(
            request_id=str(getattr(context, "request_id", "") or ""),
            function_name=str(name),
            memory_limit_in_mb=int(getattr(function, "memory", 0) or env.get("FC_FUNCTION_MEMORY_SIZE") or 0),
            timeout_seconds=float(timeout),
            region=str(getattr(context, "region", "") or env.get("FC_REGION", "")),
            account_id=str(getattr(context, "account_id", "") or env.get("FC_ACCOUNT_ID", "")),
            service_name=service_name,
            handler=str(getattr(function, "handler", "") or env.get("FC_FUNCTION_HANDLER", "")),
            credentials=_context_credentials(context),
            started=started,
            log_project=_first_text(context, service, "log_project"),
            log_store=_first_text(context, service, "log_store"),
            qualifier=_first_text(function, service, "qualifier"),
        )

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until the function timeout; never negative."""
        return max(0, int((self.deadline - time.monotonic()) * 1000))

    def remaining_seconds(self, margin: float = 0.0) -> float:
        """Seconds left before ``deadline - margin``; never negative."""
        return max(0.0, self.deadline - margin - time.monotonic())

    def __repr__(self) -> str:
        return (
            f"FcInvocation(request_id={self.request_id!r}, function_arn={self.invoked_function_arn!r}, "
            f"memory_limit_in_mb={self.memory_limit_in_mb}, timeout_seconds={self.timeout_seconds})"
        )


def fc_context(context: Any, *, started: float | None = None, environ: Mapping[str, str] | None = None) -> FcInvocation:
    """The handler's first line: ``ctx = fc_context(context)``."""
    return FcInvocation.from_context(context, started=started, environ=environ)


def _first_text(first: Any, second: Any, attribute: str) -> str:
    return str(getattr(first, attribute, None) or getattr(second, attribute, None) or "")


def function_arn(region: str, account_id: str, function_name: str, service_name: str | None = None) -> str:
    """``acs:fc:<region>:<account>:services/<svc>/functions/<fn>`` (FC 2.0), or FC 3.0's ``…:functions/<fn>`` with no
    service (the form of FC 3.0's Destination struct, e.g. ``acs:fc:cn-shanghai:xxx:functions/f1``)."""
    if service_name:
        return f"acs:fc:{region}:{account_id}:services/{service_name}/functions/{function_name}"
    return f"acs:fc:{region}:{account_id}:functions/{function_name}"


def credentials_from(context: Any, environ: Mapping[str, str] | None = None) -> Credentials:
    """The function's AccessKey: ``context.credentials`` on python3.10, else ``ALIBABA_CLOUD_*`` (python3.12, local).

    Raises ConfigError when neither has a key id and secret.
    """
    from_context = _context_credentials(context)
    if from_context is not None:
        return from_context
    env = os.environ if environ is None else environ
    key_id, secret = env.get(ACCESS_KEY_ID, "").strip(), env.get(ACCESS_KEY_SECRET, "").strip()
    if key_id and secret:
        return Credentials(key_id, secret, env.get(SECURITY_TOKEN, "").strip() or None)
    raise ConfigError(
        f"{ACCESS_KEY_ID}: no credentials (the FC context has none, and {ACCESS_KEY_ID} / {ACCESS_KEY_SECRET} "
        "are not set)"
    )


def _context_credentials(context: Any) -> Credentials | None:
    found = getattr(context, "credentials", None)
    key_id = getattr(found, "access_key_id", None) or getattr(found, "accessKeyId", None)
    secret = getattr(found, "access_key_secret", None) or getattr(found, "accessKeySecret", None)
    if not key_id or not secret:
        return None
    token = getattr(found, "security_token", None) or getattr(found, "securityToken", None)
    return Credentials(str(key_id), str(secret), str(token) if token else None)


_EMPTY: Any = object()


class InvalidEvent(PoisonMessage, ValueError):
    """The event is not a JSON object (or a timer payload is not JSON): retrying will not help."""


def decode_event(event: bytes | bytearray | str | Mapping[str, Any] | None) -> dict[str, Any]:
    """FC's event (bytes of JSON) as a dict. An empty event is ``{}``.

    A timer event (``triggerTime`` + ``triggerName``) carries its configured ``payload`` as a string; it is decoded
    too: ``{"triggerTime": …, "triggerName": …, "payload": {…}}`` (an empty payload becomes ``{}``). FC 2.0 and FC 3.0
    document the same event (fc.md §5; FC 3.0's "Formats of event for different triggers"): both arrive here alike,
    and a payload that is already an object (an event built by a tool rather than by the timer) is kept as it is.
    Raises InvalidEvent (a PoisonMessage and a ValueError) with a one-line reason.
    """
    if event is None:
        return {}
    if isinstance(event, Mapping):
        decoded: Any = dict(event)
    else:
        decoded = _loads(event, "event")
        if decoded is _EMPTY:
            return {}
    if not isinstance(decoded, dict):
        raise InvalidEvent(f"event must be a JSON object, got a JSON {_json_kind(decoded)}")
    if "triggerTime" in decoded and "triggerName" in decoded and isinstance(decoded.get("payload"), str):
        payload = _loads(decoded["payload"], f"timer payload of trigger {decoded['triggerName']!r}")
        decoded["payload"] = {} if payload is _EMPTY else payload
    return decoded


def _loads(raw: bytes | bytearray | str, what: str) -> Any:
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"{what} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    if not isinstance(raw, str):
        raise InvalidEvent(f"{what} must be bytes, str or a dict, got {type(raw).__name__}")
    if not raw.strip():
        return _EMPTY
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else type(value).__name__

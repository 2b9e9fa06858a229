"""Alicom's APIs through aliyun-python-sdk-core (CommonRequest, RPC): the queue token, and the call shared by all.

- Dybaseapi 2017-05-25 ``QueryTokenForMnsQueue`` (reference/alicom.md §1): STS credentials for the receipt queue.
  ``TokenProvider`` caches the token per instance and refreshes it when less than the margin (120 s) remains
  before its ``ExpireTime`` — Beijing time without an offset, parsed as Asia/Shanghai whatever the host's time
  zone (pitfalls 1-3) — or at once after an MNS authentication error (``invalidate``).
- ``PopCaller``: one RPC call and its errors, shared with the flow top-up APIs (shared.adapters.flow).

Errors, as the pipeline understands them (shared/errors.py):

- ``TransientError``: network errors and timeouts, HTTP 5xx, throttling, ``isp.*`` platform errors, malformed
  answers. Retrying later may succeed (a retried Charge with the same out id is safe: one top-up per out id).
- ``ConfigError``: one line naming what to check — bad AccessKey (unknown id, wrong secret, no permission),
  wrong endpoint, a queue token refused for the configured message type / queue (``isv.INVALID_PARAMETERS``).
- ``AlicomRefused``: Alicom refused this one request (``Code`` other than OK, e.g. ``isv.MOBILE_NUMBER_ILLEGAL``);
  other requests may still succeed. ``UnreadableAnswer``: HTTP 200 with a body that is not JSON (transient).
  ``Throttled`` (transient): back off longer.

The SDK itself (about 100 ms of imports: it vendors requests) is imported when the first client is built, not when
this module is imported. No secret is ever put in a message or a log line; the token's secret and security token
are registered with the log redactor as soon as they arrive.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException

from shared.errors import ConfigError, Throttled, TransientError
from shared.logs import logger, register_secret

if TYPE_CHECKING:
    from aliyunsdkcore.client import AcsClient

try:
    from zoneinfo import ZoneInfo

    SHANGHAI: Any = ZoneInfo("Asia/Shanghai")
except Exception:  # no tz database (tzdata is a dependency): China has had no daylight saving since 1991
    SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")

DYBASEAPI_VERSION = "2017-05-25"
TOKEN_ACTION = "QueryTokenForMnsQueue"
OK = "OK"
DEFAULT_REFRESH_MARGIN_SECONDS = 120.0

# POP gateway codes (HTTP 4xx) that mean the caller's AccessKey or its permissions are wrong.
_CREDENTIAL_CODES = (
    "InvalidAccessKeyId",
    "InvalidAccessKeySecret",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSecurityToken",
)
_PERMISSION_CODES = ("Forbidden", "NoPermission", "isp.RAM_PERMISSION_DENY")
_ENDPOINT_CODES = ("InvalidAction", "InvalidVersion", "InvalidApi", "InvalidProduct", "UnsupportedHTTPMethod")
_TRANSIENT_CODES = ("Throttling", "ServiceUnavailable", "InternalError", "SignatureNonceUsed", "RequestTimeout")
# Business codes (HTTP 200) Alicom documents for Dysmsapi that concern the whole account, not one request.
_ACCOUNT_CODES = frozenset(
    {
        "isp.RAM_PERMISSION_DENY",
        "isv.ACCOUNT_NOT_EXISTS",
        "isv.ACCOUNT_ABNORMAL",
        "isv.PRODUCT_UN_SUBSCRIPT",
        "isv.PRODUCT_UNSUBSCRIBE",
        "isv.OUT_OF_SERVICE",
    }
)
_RETRY_AFTER_FAILED_REFRESH = 5.0  # seconds a still-valid token is reused after a refresh failed transiently
_ALICOM_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})?")
_QUERY_STRING = re.compile(r"\?\S*")  # URLs in SDK network errors carry the signed query (Signature, SecurityToken)
_MAX_DETAIL = 300


class UnreadableAnswer(TransientError):
    """HTTP 200 whose body is not a JSON object (a proxy's error page, a truncated answer). ``text`` is its start."""

    def __init__(self, message: str, text: str) -> None:
        super().__init__(message)
        self.text = text


class AlicomRefused(Exception):
    """Alicom refused this one request: an answer with ``Code`` other than OK (or a 4xx about its parameters)."""

    def __init__(self, code: str, message: str, raw: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.raw = dict(raw or {})


@dataclass(frozen=True)
class QueueToken:
    """STS credentials for the receipt queue. ``expires_at`` is aware UTC (ExpireTime read as Asia/Shanghai)."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str = field(repr=False)
    expires_at: datetime

    def seconds_left(self, now: float | None = None) -> float:
        return self.expires_at.timestamp() - (time.time() if now is None else now)


@dataclass(frozen=True)
class _Endpoint:
    protocol: str  # http | https (the SDK's protocol type)
    domain: str  # host[:port]
    url: str


def _endpoint(url: str, what: str) -> _Endpoint:
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"{what}: must be a URL like https://host or http://127.0.0.1:9100 (got {url!r})")
    return _Endpoint(parts.scheme, parts.netloc, f"{parts.scheme}://{parts.netloc}")


def parse_alicom_time(text: str) -> datetime:
    """``yyyy-MM-dd HH:mm:ss`` in Beijing time (reference §1.3) -> aware UTC. Never uses the host's time zone.

    A time carrying its own offset (``Z``, ``+08:00``) is taken at its word. ValueError for anything else.
    """
    value = text.strip() if isinstance(text, str) else ""
    if not _ALICOM_TIME.fullmatch(value):
        raise ValueError(f"not a yyyy-MM-dd HH:mm:ss time: {str(text)[:40]!r}")
    parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SHANGHAI)
    return parsed.astimezone(timezone.utc)


# --- the SDK ------------------------------------------------------------------------------------------------


@cache
def _sdk() -> Any:
    """The SDK's heavy modules, imported once, on first use."""
    from aliyunsdkcore import client, request
    from aliyunsdkcore.auth import credentials

    return client, request, credentials


def acs_client(
    access_key_id: str,
    access_key_secret: str,
    security_token: str | None,
    region: str,
    *,
    connect_timeout: float = 5,
    read_timeout: float = 10,
) -> AcsClient:
    """A core-SDK client for the Alicom APIs: with the STS token when there is one (FC python3.10's context).

    The SDK's own retries are off: callers decide (the drainer has a deadline, a repeated Charge is safe).
    Note: the SDK prefers ``ALIYUN_ACCESS_KEY_ID`` / ``ALIYUN_ACCESS_KEY_SECRET`` from the environment over an STS
    credential passed here; do not set those on FC.
    """
    if not access_key_id or not access_key_secret:
        raise ConfigError("ALIBABA_CLOUD_ACCESS_KEY_ID: an AccessKey id and secret are needed for the Alicom APIs")
    register_secret(access_key_secret, security_token)
    client, _, credentials = _sdk()
    options = {"auto_retry": False, "connect_timeout": connect_timeout, "timeout": read_timeout}
    if security_token:
        credential = credentials.StsTokenCredential(access_key_id, access_key_secret, security_token)
        return client.AcsClient(region_id=region, credential=credential, **options)
    return client.AcsClient(access_key_id, access_key_secret, region, **options)


def _one_line(text: object) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_DETAIL else line[:_MAX_DETAIL] + "…"


class PopCaller:
    """One RPC call through the SDK, its failures mapped onto the pipeline's errors."""

    def __init__(self, client: AcsClient, endpoint: str, what: str) -> None:
        self._client = client
        self._endpoint = _endpoint(endpoint, what)
        self._what = what  # the setting that names the endpoint

    def set_client(self, client: AcsClient) -> None:
        """Use new credentials from now on (FC rotates the function role's STS credentials)."""
        self._client = client

    @property
    def endpoint(self) -> str:
        return self._endpoint.url

    def call(self, version: str, action: str, params: Mapping[str, str], context: str) -> dict[str, Any]:
        _, request_module, _ = _sdk()
        request = request_module.CommonRequest(domain=self._endpoint.domain, version=version, action_name=action)
        request.set_protocol_type(self._endpoint.protocol)
        request.set_method("POST")
        request.set_accept_format("JSON")
        for name, value in params.items():
            request.add_query_param(name, value)
        try:
            body = self._client.do_action_with_exception(request)
        except ServerException as exc:
            raise self._server_error(exc, action, context) from None
        except ClientException as exc:
            raise self._client_error(exc, action, context) from None
        try:
            answer = json.loads(body)
        except (ValueError, TypeError):
            answer = None
        if not isinstance(answer, dict):
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
            raise UnreadableAnswer(
                f"{action} at {self.endpoint} answered something that is not a JSON object{context}", text[:500]
            )
        return answer

    def _client_error(self, exc: ClientException, action: str, context: str) -> Exception:
        code = exc.get_error_code()
        detail = _one_line(_QUERY_STRING.sub("?…", str(exc.get_error_msg())))
        if code == "SDK.HttpError":  # connection refused / reset, DNS, timeouts: nothing was answered
            return TransientError(f"{action} got no answer from {self.endpoint}{context}: {detail}")
        return ConfigError(f"{self._what}: {action} could not be sent to {self.endpoint}{context}: {code}: {detail}")

    def _server_error(self, exc: ServerException, action: str, context: str) -> Exception:
        status = exc.get_http_status() or 0
        code = str(exc.get_error_code() or "")
        said = f"{code}: {_one_line(exc.get_error_msg() or '')}"
        if code == "SignatureDoesNotMatch":  # its message quotes the server's string to sign: not useful here
            said = "SignatureDoesNotMatch: the secret does not belong to this AccessKey id"
        where = f"{action} at {self.endpoint}{context}"
        if status == 429 or code.startswith("Throttling"):
            return Throttled(f"{where} was throttled, retry later: HTTP {status} {said}")
        if status >= 500 or code.startswith(_TRANSIENT_CODES):
            return TransientError(f"{where} failed, retry later: HTTP {status} {said}")
        if code == "InvalidSecurityToken.Expired":
            return TransientError(f"{where}: the caller's STS token expired; build the client from fresh credentials")
        if code.startswith(_CREDENTIAL_CODES):
            return ConfigError(
                f"ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET: {where} rejected the AccessKey "
                f"({said}); check the function's credentials"
            )
        if code.startswith(_PERMISSION_CODES):
            return ConfigError(f"{where} was denied ({said}); check the RAM permissions of the function's role")
        if code.startswith("InvalidTimeStamp"):
            return ConfigError(f"{where} was refused ({said}); the host clock is off by more than 15 minutes")
        if code.startswith(_ENDPOINT_CODES) or status == 404:
            return ConfigError(f"{self._what}: {where} is not served there ({said}); check the endpoint")
        return AlicomRefused(code, f"{where}: HTTP {status} {said}")

    def business_error(self, action: str, answer: Mapping[str, Any], context: str) -> Exception | None:
        """The error an answer with ``Code`` other than OK stands for (None: a refusal of this request only)."""
        code = str(answer.get("Code") or "")
        said = f"{code or 'no Code'}: {_one_line(answer.get('Message') or '')}"
        where = f"{action} at {self.endpoint}{context}"
        if "LIMIT_CONTROL" in code or "Throttling" in code:
            return Throttled(f"{where} was throttled, retry later: {said}")
        if code.startswith("isp.") and code not in _ACCOUNT_CODES:
            return TransientError(f"{where} failed, retry later: {said}")
        if code in _ACCOUNT_CODES:
            return ConfigError(f"{where} was refused for the whole account ({said}); check the account and its RAM")
        return None


# --- the queue token ----------------------------------------------------------------------------------------


class TokenProvider:
    """STS credentials for the Alicom receipt queue, cached per instance (one per function instance, shared by the
    pollers: thread-safe, one fetch at a time).

    ``token()`` returns the cached token until less than ``refresh_margin_seconds`` remain before its ExpireTime,
    then fetches a new one. The margin is capped at half the token's lifetime (ExpireTime - CreateTime), so a
    token that lives less than twice the margin is still reused for half its life instead of being fetched again
    on every call. ``invalidate()`` drops the cached token: call it on an MNS authentication error
    (SecurityTokenExpired, InvalidSecurityToken, InvalidAccessKeyId).
    """

    def __init__(
        self,
        client: AcsClient,
        endpoint: str,
        message_type: str,
        queue_name: str,
        refresh_margin_seconds: float = DEFAULT_REFRESH_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not message_type:
            raise ConfigError("ALICOM_MESSAGE_TYPE: must not be empty (e.g. FlowReport)")
        if refresh_margin_seconds < 0:
            raise ConfigError(f"TOKEN_REFRESH_MARGIN_SECONDS: must be at least 0 (got {refresh_margin_seconds})")
        self._caller = PopCaller(client, endpoint, "ALICOM_API_ENDPOINT")
        self.message_type = message_type
        self.queue_name = queue_name
        self.refresh_margin_seconds = float(refresh_margin_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: QueueToken | None = None
        self._refresh_at = 0.0  # epoch seconds after which the cached token is refreshed
        self._invalidated = False

    @property
    def endpoint(self) -> str:
        return self._caller.endpoint

    def set_client(self, client: AcsClient) -> None:
        """Fetch later tokens with this client (new credentials); the cached token stays valid."""
        self._caller.set_client(client)

    def token(self) -> QueueToken:
        with self._lock:
            now = self._clock()
            cached = self._token
            if cached is not None and now <= self._refresh_at:
                return cached
            reason = "expiring" if cached is not None else "invalidated" if self._invalidated else "first"
            try:
                self._token, self._refresh_at = self._fetch(now, reason)
            except TransientError as exc:
                left = 0.0 if cached is None else cached.seconds_left(now)
                if cached is None or left <= 0:
                    raise
                # Still valid (the margin is there for clock error): keep using it, try again a little later.
                self._refresh_at = now + min(_RETRY_AFTER_FAILED_REFRESH, left / 2)
                logger.warning(
                    "queue token refresh failed; the current token is still valid",
                    extra={"message_type": self.message_type, "seconds_left": round(left, 1), "error": str(exc)},
                )
                return cached
            self._invalidated = False
            return self._token

    def invalidate(self, token: QueueToken | None = None) -> None:
        """The next ``token()`` fetches a new token. With ``token``: only if that is still the cached one (so that
        several pollers failing with the same token cause one fetch, not one each)."""
        with self._lock:
            if self._token is None or (token is not None and token.access_key_id != self._token.access_key_id):
                return
            logger.info(
                "queue token invalidated",
                extra={"message_type": self.message_type, "queue": self.queue_name},
            )
            self._token = None
            self._invalidated = True

    def _fetch(self, now: float, reason: str) -> tuple[QueueToken, float]:
        context = f" (MessageType={self.message_type}, QueueName={self.queue_name or '<not sent>'})"
        params = {"MessageType": self.message_type}
        if self.queue_name:
            params["QueueName"] = self.queue_name
        try:
            answer = self._caller.call(DYBASEAPI_VERSION, TOKEN_ACTION, params, context)
        except AlicomRefused as refused:  # a POP 4xx about the request itself: our settings built it
            raise ConfigError(
                f"ALICOM_MESSAGE_TYPE / ALICOM_QUEUE_NAME: {refused.message}; check the message type and queue"
            ) from None
        if answer.get("Code") != OK:
            error = self._caller.business_error(TOKEN_ACTION, answer, context)
            raise error or ConfigError(
                f"ALICOM_MESSAGE_TYPE / ALICOM_QUEUE_NAME: Alicom refused a queue token for "
                f"MessageType={self.message_type} QueueName={self.queue_name or '<not sent>'} "
                f"({answer.get('Code') or 'no Code'}: {_one_line(answer.get('Message') or '')})"
            )
        token, lifetime = self._token_from(answer.get("MessageTokenDTO"), now, context)
        margin = min(self.refresh_margin_seconds, lifetime / 2)
        refresh_at = token.expires_at.timestamp() - margin
        left = token.seconds_left(now)
        logger.info(
            "queue token fetched",
            extra={
                "message_type": self.message_type,
                "queue": self.queue_name,
                "reason": reason,
                "expires_at": token.expires_at.isoformat(),
                "seconds_left": round(left, 1),
            },
        )
        if left <= margin:
            logger.warning(
                "queue token expires within the refresh margin as soon as it is issued: check the host clock",
                extra={"seconds_left": round(left, 1), "margin_seconds": margin},
            )
        return token, refresh_at

    @staticmethod
    def _token_from(dto: object, now: float, context: str) -> tuple[QueueToken, float]:
        where = f"{TOKEN_ACTION} answered Code OK{context}"
        if not isinstance(dto, Mapping):
            raise TransientError(f"{where} without a MessageTokenDTO object")
        values = {}
        for name in ("AccessKeyId", "AccessKeySecret", "SecurityToken", "ExpireTime"):
            value = dto.get(name)
            if not isinstance(value, str) or not value:
                raise TransientError(f"{where} without MessageTokenDTO.{name}")
            values[name] = value
        register_secret(values["AccessKeySecret"], values["SecurityToken"])
        try:
            expires_at = parse_alicom_time(values["ExpireTime"])
        except ValueError as exc:
            raise TransientError(f"{where} with a bad MessageTokenDTO.ExpireTime: {exc}") from None
        try:
            lifetime = expires_at.timestamp() - parse_alicom_time(str(dto.get("CreateTime"))).timestamp()
        except ValueError:  # no CreateTime: the lifetime as seen from here
            lifetime = expires_at.timestamp() - now
        token = QueueToken(values["AccessKeyId"], values["AccessKeySecret"], values["SecurityToken"], expires_at)
        return token, max(lifetime, 0.0)

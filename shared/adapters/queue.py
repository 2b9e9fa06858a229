"""MNS queues through aliyun-mns-sdk: batch receive, batch delete, change visibility, and errors the pipeline
understands (reference/mns-wire.md; reference/alicom.md §1.5, §3.8, pitfalls 8-9).

``AlicomQueue(endpoint, queue_name, message_type, tokens)`` — the Alicom receipt queue, signed with queue tokens
from ``QueryTokenForMnsQueue``; its error lines name the ``ALICOM_*`` settings. ``MnsQueue`` (same arguments) is the
same queue access for a queue in the customer's own MNS, and names ``MNS_ENDPOINT`` / ``DLQ_QUEUE_NAME``;
``dlq_queue(endpoint, queue_name, credentials)`` builds one for the processor's failure destination queue, signed
with the function's own key through ``StaticTokens``. ONE instance per poller thread: the SDK client holds one
persistent HTTP connection and is not thread-safe (mns-wire.md §2.2).

- ``receive(max_count=16, wait_seconds=0, *, deadline=None) -> list[Received]``: raw mode (``set_encoding(False)``),
  so a body that is not base64 never breaks a batch (mns-wire.md §1 item 9); the body stays exactly as stored and
  ``shared.domain.models.decode_body`` decodes it later. ``[]`` on ``MessageNotExist`` (empty queue, or long-poll
  overload). ``deadline`` (a ``clock()`` value) bounds the long-poll wait and the socket timeout by the time left.
- ``delete(handles) -> DeleteResult``: batches of <= 16; what failed is reported per handle (``failed[handle] =
  code``), for a partial failure (the SDK's ``sub_errors``) and for a batch that failed whole for a transient reason
  alike; it raises only ``AccessDenied`` / ``ConfigError``. ``DeleteResult.retryable`` lists the handles worth
  another try (throttled, network); a stale handle (``MessageNotExist`` / ``ReceiptHandleError``) never is.
- ``change_visibility(handle, seconds) -> str``: the new handle (the old one is invalid from then on);
  ``StaleHandle`` when the handle no longer holds the message.

Errors: the methods classify and raise; they never sleep or loop, except ONE thing: on a token error from MNS
(``SecurityTokenExpired``, ``InvalidSecurityToken``, ``InvalidAccessKeyId``, ``SignatureDoesNotMatch``) they call
``tokens.invalidate(rejected_token)``, build a new client with a fresh token and retry the call once; a second token
error is ``TokenRejected`` (transient). ``StaticTokens`` has nothing fresher to give: the retry uses the same key,
and a key MNS rejects twice is ``TokenRejected`` too (on FC the next invocation brings the role's renewed key).
Then:

================================================  ====================================================
``MessageNotExist`` on receive                    ``[]``
``AccessDenied`` / ``AccessDeniedByRamPolicy``    ``AccessDenied`` (a ``ConfigError``): one line naming the queue
                                                  and the message type (a wrong name looks like this, pitfall 8),
                                                  or, for ``MnsQueue``, DLQ_QUEUE_NAME and the RAM policy
``QueueNotExist``, a bad endpoint                 ``ConfigError``, one line naming the settings to check
``QpsLimitExceeded``                              ``Throttled`` (a ``TransientError``): back off
``InternalError``, other server codes,            ``QueueUnavailable`` (a ``TransientError``): retry within the
network errors, unreadable answers                deadline
================================================  ====================================================

Backoff and retry live OUTSIDE the queue methods, in the caller's loop (the drainer backs off between receives) or
in ``shared.retry.retrying(call, deadline)``: bounded exponential backoff with jitter on ``TransientError`` (longer
for ``Throttled``), only while the next attempt can still start before the deadline; ``StaleHandle`` and anything
that is not transient propagate at once. Nothing is retried twice by two layers: the SDK itself never retries
(mns-wire.md §2.2, §6.6).
"""

from __future__ import annotations

import contextlib
import http.client
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from mns.account import Account
from mns.mns_exception import MNSExceptionBase, MNSServerException

from shared import errors
from shared.adapters.alicom import QueueToken
from shared.adapters.fc import Credentials
from shared.adapters.mns_receive import ReceiveClient
from shared.domain.models import Envelope
from shared.errors import ConfigError, TransientError
from shared.logs import logger, register_secret

if TYPE_CHECKING:
    from mns.queue import Queue

MAX_BATCH = 16  # messages per BatchReceive, handles per BatchDelete (mns-wire.md §6.5)
MAX_WAIT_SECONDS = 30  # long-poll limit (§6.4)
MAX_VISIBILITY_SECONDS = 43200  # ChangeMessageVisibility upper bound (§4.14)
REQUEST_TIMEOUT_SECONDS = 10.0  # socket timeout on top of the long-poll wait (the SDK's own default is 60 s)
NO_EXPIRY = datetime.max.replace(tzinfo=timezone.utc)  # a static key's expires_at: none the queue could know of
DESTINATION_MESSAGE_TYPE = "FcDestination"  # the message type of FC destination messages (reference/fc.md §6.4)

EMPTY = "MessageNotExist"
TOKEN_ERRORS = frozenset(
    {"SecurityTokenExpired", "InvalidSecurityToken", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
DENIED = frozenset({"AccessDenied", "AccessDeniedByRamPolicy"})
THROTTLED = frozenset({"QpsLimitExceeded"})
STALE = frozenset({"MessageNotExist", "ReceiptHandleError", "ReceiptHandleInvalid"})

_T = TypeVar("_T")


# --- errors ---------------------------------------------------------------------------------------------------


class _Coded(Exception):
    """An error with the MNS code and request id it came from (both may be empty)."""

    def __init__(self, message: str, *, code: str = "", request_id: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


class AccessDenied(_Coded, ConfigError):
    """MNS refused these credentials for this queue: a wrong queue name or message type (Alicom), or a RAM policy
    that does not cover the queue. One line naming the settings to check."""


class Throttled(_Coded, errors.Throttled):
    """QpsLimitExceeded: back off before the next call."""


class QueueUnavailable(_Coded, TransientError):
    """5xx, an unknown server error, a network error or an answer the SDK could not read: retry within the deadline."""


class TokenRejected(_Coded, TransientError):
    """MNS rejected the credentials on the retry too: a freshly fetched queue token (clock skew, a token not yet
    propagated), or a static key it rejected twice."""


class StaleHandle(_Coded, TransientError):
    """The receipt handle no longer holds the message (it became visible again, or a newer handle replaced it).

    Transient for the pipeline (never delete; the message comes back), but retrying the same call cannot help."""

    retry_helps = False


# --- values ---------------------------------------------------------------------------------------------------


class QueueTokens(Protocol):
    """What the queue needs from ``shared.adapters.alicom.TokenProvider`` (or ``StaticTokens``)."""

    def token(self) -> QueueToken: ...

    def invalidate(self, token: QueueToken | None = None) -> None:
        """Drop ``token`` if it is still the cached one (pollers sharing a provider refresh once, not once each)."""
        ...


class StaticTokens:
    """A fixed AccessKey as ``QueueTokens``: the function's own key (on FC the role's STS key, which FC renews
    between invocations: build one per invocation). It expires at ``NO_EXPIRY`` as far as the queue knows, and
    ``invalidate`` has nothing fresher to fetch."""

    def __init__(self, credentials: Credentials) -> None:
        register_secret(credentials.access_key_secret, credentials.security_token)
        self._token = QueueToken(
            credentials.access_key_id, credentials.access_key_secret, credentials.security_token or "", NO_EXPIRY
        )

    def __repr__(self) -> str:
        return f"StaticTokens(access_key_id={self._token.access_key_id!r})"

    def token(self) -> QueueToken:
        return self._token

    def invalidate(self, token: QueueToken | None = None) -> None:
        pass


@dataclass(frozen=True)
class Received:
    envelope: Envelope
    receipt_handle: str


@dataclass
class DeleteResult:
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # handle -> MNS error code

    @property
    def retryable(self) -> list[str]:
        """Failed handles worth another delete (throttled, network, server errors) — never stale ones."""
        return [handle for handle, code in self.failed.items() if code not in STALE]


# --- the queue ------------------------------------------------------------------------------------------------


class MnsQueue:
    """One MNS queue seen through one MNS client. Not thread-safe: one instance per poller thread.

    Error lines name ``ENDPOINT_SETTING`` and ``QUEUE_SETTING``: here a queue in the customer's own MNS (the
    processor's failure destination); ``AlicomQueue`` names the Alicom settings instead.
    """

    ENDPOINT_SETTING = "MNS_ENDPOINT"
    QUEUE_SETTING = "DLQ_QUEUE_NAME"
    REJECTED_LOG = "MNS rejected the credentials; trying once more"

    def __init__(
        self,
        endpoint: str,
        queue_name: str,
        message_type: str,
        tokens: QueueTokens,
        *,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.queue_name = queue_name
        self.message_type = message_type
        self._tokens = tokens
        self._request_timeout = request_timeout
        self._clock = clock
        self._account: Account | None = None
        self._queue: Queue | None = None
        self._token: QueueToken | None = None
        self._token_key: tuple[str, str, str] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint!r}, {self.queue_name!r}, {self.message_type!r})"

    # -- operations --

    def receive(
        self, max_count: int = MAX_BATCH, wait_seconds: int = 0, *, deadline: float | None = None
    ) -> list[Received]:
        """Up to ``max_count`` messages, long-polling up to ``wait_seconds`` (0..30) for the first one.

        With ``deadline`` the wait is cut to the whole seconds left before it, less one for the round trip, and
        ``[]`` comes back at once when the deadline has passed.
        """
        if not 1 <= max_count <= MAX_BATCH:
            raise ValueError(f"max_count must be between 1 and {MAX_BATCH}, got {max_count}")
        wait = max(0, min(MAX_WAIT_SECONDS, int(wait_seconds)))
        timeout = wait + self._request_timeout
        if deadline is not None:
            left = deadline - self._clock()
            if left <= 0:
                return []
            wait = min(wait, max(0, math.floor(left) - 1))
            timeout = max(wait + 1.0, min(wait + self._request_timeout, left))
        operation = "BatchReceiveMessage"
        try:
            messages = self._call(operation, lambda queue: queue.batch_receive_message(max_count, wait), timeout)
        except MNSServerException as error:
            if error.type == EMPTY:
                return []
            raise self._classify(operation, error) from error
        except MNSExceptionBase as error:
            raise self._classify(operation, error) from error
        return [self._received(message) for message in messages]

    def delete(self, handles: Iterable[str]) -> DeleteResult:
        """Deletes in batches of <= 16; reports per handle. Raises only AccessDenied / ConfigError."""
        result = DeleteResult()
        unique = list(dict.fromkeys(handles))
        for handle in unique:
            if not handle:
                result.failed[handle] = "ReceiptHandleInvalid"
        valid = [handle for handle in unique if handle]
        for start in range(0, len(valid), MAX_BATCH):
            self._delete_batch(valid[start : start + MAX_BATCH], result)
        return result

    def change_visibility(self, handle: str, seconds: int) -> str:
        """Makes the message invisible for ``seconds`` (0..43200) from now; returns the new receipt handle."""
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= MAX_VISIBILITY_SECONDS:
            raise ValueError(f"seconds must be an integer between 0 and {MAX_VISIBILITY_SECONDS}, got {seconds!r}")
        if not handle:
            raise StaleHandle(
                self._line("ChangeMessageVisibility", "an empty receipt handle"), code="ReceiptHandleInvalid"
            )
        operation = "ChangeMessageVisibility"
        try:
            message = self._call(
                operation, lambda queue: queue.change_message_visibility(handle, seconds), self._request_timeout
            )
        except MNSExceptionBase as error:
            raise self._classify(operation, error) from error
        return str(message.receipt_handle)

    def close(self) -> None:
        """Closes the connection (the next call opens a new one)."""
        self._drop_client()

    # -- the client and the token --

    def _client(self) -> Queue:
        token = self._tokens.token()
        key = (token.access_key_id, token.access_key_secret, token.security_token)
        if self._queue is None or key != self._token_key:  # first call, or the provider refreshed ahead of expiry
            self._connect(token, key)
        assert self._queue is not None
        return self._queue

    def _connect(self, token: QueueToken, key: tuple[str, str, str]) -> None:
        register_secret(token.access_key_secret, token.security_token)
        self._drop_client()
        try:
            account = Account(self.endpoint, token.access_key_id, token.access_key_secret, token.security_token or "")
        except (MNSExceptionBase, http.client.InvalidURL, ValueError) as error:
            detail = getattr(error, "message", None) or str(error)
            raise ConfigError(
                f"{self.ENDPOINT_SETTING}: {self.endpoint!r} is not a usable MNS endpoint "
                f"(http:// or https:// and host[:port], no path): {_one_line(detail)}"
            ) from None
        # The SDK's client with BatchReceiveMessage's response read by ElementTree (shared/adapters/mns_receive.py).
        account.mns_client = ReceiveClient(self.endpoint, credentials_provider=account.credentials_provider)
        queue = account.get_queue(self.queue_name)
        queue.set_encoding(False)  # raw: the body as stored; decoding is shared.domain.models.decode_body's job
        self._account, self._queue, self._token, self._token_key = account, queue, token, key

    def _drop_client(self) -> None:
        account, self._account, self._queue = self._account, None, None
        self._token, self._token_key = None, None
        if account is not None:
            with contextlib.suppress(Exception):  # best effort: the SDK's internals are not an API
                account.mns_client.http.conn.close()

    def _set_timeout(self, seconds: float) -> None:
        """The socket timeout of the SDK's one connection, for connect and read (http and https alike).

        The SDK fixes 60 s for http at construction and none at all for https (mns-wire.md §2.1-2.2); a long poll
        needs its wait plus a margin, and a hung peer must not outlive the invocation.
        """
        try:
            conn = self._account.mns_client.http.conn  # type: ignore[union-attr]
            conn.timeout = seconds  # http.client's connect (HTTPSConnection)
            if hasattr(conn, "connection_timeout"):
                conn.connection_timeout = seconds  # the SDK's MNSHTTPConnection.connect
            if conn.sock is not None:
                conn.sock.settimeout(seconds)
        except AttributeError:  # an SDK without these internals keeps its own timeouts
            pass

    def _call(self, operation: str, call: Callable[[Queue], _T], timeout: float) -> _T:
        """Runs one SDK call; on a token error: invalidate, reconnect with a fresh token, run it once more."""
        for attempt in (1, 2):
            queue = self._client()
            self._set_timeout(timeout)
            try:
                return call(queue)
            except MNSServerException as error:
                if error.type not in TOKEN_ERRORS:
                    raise
                if attempt == 2:
                    raise TokenRejected(
                        self._line(operation, self._rejected_twice(error.type)),
                        code=error.type,
                        request_id=error.request_id or "",
                    ) from error
                logger.info(
                    self.REJECTED_LOG,
                    extra={"queue": self.queue_name, "operation": operation, "code": error.type},
                )
                self._tokens.invalidate(self._token)
                self._drop_client()
            except MNSExceptionBase:
                raise
            except (http.client.HTTPException, OSError, KeyError, ValueError) as error:
                # what the SDK lets through unwrapped (e.g. a KeyError for a missing response header)
                raise QueueUnavailable(
                    self._line(operation, f"the MNS answer could not be read ({type(error).__name__})"),
                    code=type(error).__name__,
                ) from error
        raise AssertionError("unreachable")

    # -- results and errors --

    def _received(self, message: Any) -> Received:
        envelope = Envelope(
            message_id=message.message_id,
            message_type=self.message_type,
            body=message.message_body,
            dequeue_count=message.dequeue_count,
            enqueue_time=message.enqueue_time
            if message.enqueue_time is not None and message.enqueue_time >= 0
            else None,
        )
        return Received(envelope=envelope, receipt_handle=message.receipt_handle)

    def _delete_batch(self, batch: list[str], result: DeleteResult) -> None:
        operation = "BatchDeleteMessage"
        try:
            self._call(operation, lambda queue: queue.batch_delete_message(batch), self._request_timeout)
        except MNSServerException as error:
            if error.sub_errors:  # a partial failure: only the failed handles are listed; the others are gone
                failed = {entry.get("ReceiptHandle", ""): entry.get("ErrorCode", "") for entry in error.sub_errors}
                for handle in batch:
                    if handle in failed:
                        result.failed[handle] = failed[handle] or error.type
                    else:
                        result.deleted.append(handle)
                return
            classified = self._classify(operation, error)
            if isinstance(classified, ConfigError):
                raise classified from error
            self._fail_all(batch, error.type, result, classified)
        except MNSExceptionBase as error:
            self._fail_all(batch, error.type, result, self._classify(operation, error))
        except TokenRejected as error:
            self._fail_all(batch, error.code, result, error)
        except TransientError as error:  # no fresh token to be had (token API failing): try again later
            self._fail_all(batch, "TokenUnavailable", result, error)
        else:
            result.deleted.extend(batch)

    def _fail_all(self, batch: list[str], code: str, result: DeleteResult, error: Exception) -> None:
        logger.warning(
            "delete batch failed",
            extra={"queue": self.queue_name, "handles": len(batch), "code": code, "error": str(error)},
        )
        for handle in batch:
            result.failed[handle] = code

    def _classify(self, operation: str, error: MNSExceptionBase) -> Exception:
        code = str(error.type or "")
        request_id = str(getattr(error, "request_id", None) or error.req_id or "")
        where = f" (request {request_id})" if request_id else ""
        if not isinstance(error, MNSServerException):  # NetWorkException, RespDataDamaged, UnkownError, parameters
            detail = _one_line(str(error.message or ""))[:200]
            return QueueUnavailable(
                self._line(operation, f"{code}: {detail}" if detail else code), code=code, request_id=request_id
            )
        if code in DENIED:
            return AccessDenied(self._denied(operation, f"{code}{where}"), code=code, request_id=request_id)
        if code == "QueueNotExist":
            return ConfigError(self._missing(where))
        if code in THROTTLED:
            return Throttled(self._line(operation, f"throttled ({code}){where}"), code=code, request_id=request_id)
        if code in STALE and operation != "BatchReceiveMessage":
            return StaleHandle(
                self._line(operation, f"the receipt handle no longer holds the message ({code}){where}"),
                code=code,
                request_id=request_id,
            )
        if code in TOKEN_ERRORS:
            return TokenRejected(
                self._line(operation, f"token rejected ({code}){where}"), code=code, request_id=request_id
            )
        message = _one_line(str(error.message or ""))[:200]
        return QueueUnavailable(
            self._line(operation, f"{code}: {message}{where}" if message else f"{code}{where}"),
            code=code,
            request_id=request_id,
        )

    def _line(self, operation: str, what: str) -> str:
        return f"MNS {operation} on queue {self.queue_name}: {what}"

    # -- the lines that name settings --

    def _denied(self, operation: str, cause: str) -> str:
        return (
            f"MNS denied {operation} on queue {self.queue_name} ({cause}): the key's RAM policy must allow "
            f"mns:ReceiveMessage and mns:DeleteMessage on it; check {self.QUEUE_SETTING} and {self.ENDPOINT_SETTING}"
        )

    def _missing(self, where: str) -> str:
        return (
            f"MNS queue {self.queue_name} does not exist at {self.endpoint}{where}: "
            f"check {self.QUEUE_SETTING} and {self.ENDPOINT_SETTING}"
        )

    def _rejected_twice(self, code: str) -> str:
        return f"MNS rejected the credentials twice ({code}): check the function's AccessKey or role"


class AlicomQueue(MnsQueue):
    """The Alicom receipt queue, signed with queue tokens (``shared.adapters.alicom.TokenProvider``)."""

    ENDPOINT_SETTING = "ALICOM_MNS_ENDPOINT"
    QUEUE_SETTING = "ALICOM_QUEUE_NAME"
    REJECTED_LOG = "queue token rejected; fetching a new one"

    def _denied(self, operation: str, cause: str) -> str:
        return (
            f"MNS denied {operation} on queue {self.queue_name} for message type {self.message_type} "
            f"({cause}): the queue token covers only your own Alicom-Queue-<uid>-<MessageType> queue; "
            "check ALICOM_QUEUE_NAME and ALICOM_MESSAGE_TYPE"
        )

    def _missing(self, where: str) -> str:
        return (
            f"MNS queue {self.queue_name} (message type {self.message_type}) does not exist at {self.endpoint}"
            f"{where}: check ALICOM_QUEUE_NAME, ALICOM_MESSAGE_TYPE and ALICOM_MNS_ENDPOINT"
        )

    def _rejected_twice(self, code: str) -> str:
        return f"MNS rejected a freshly fetched queue token too ({code})"


def dlq_queue(
    endpoint: str,
    queue_name: str,
    credentials: Credentials,
    *,
    message_type: str = DESTINATION_MESSAGE_TYPE,
    request_timeout: float = REQUEST_TIMEOUT_SECONDS,
) -> MnsQueue:
    """The processor's failure destination queue in the customer's own MNS (MNS_ENDPOINT, DLQ_QUEUE_NAME), signed
    with the function's own key. Received messages carry ``message_type`` in their envelope."""
    return MnsQueue(endpoint, queue_name, message_type, StaticTokens(credentials), request_timeout=request_timeout)


def _one_line(text: str) -> str:
    return " ".join(text.split())

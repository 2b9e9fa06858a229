"""Customer accounts the emulator knows, and Alicom's queue naming.

An account is ``{AccessKeyId: (secret, uid)}``, or, for temporary (STS) credentials such as FC hands a function,
``(secret, uid, security_token)`` or ``(secret, uid, security_token, expires_at)`` (epoch seconds; None: no expiry).
``check_security_token`` says whether a request's SecurityToken (RPC parameter, or V3 header x-acs-security-token) is
the one of its key; the authenticator calls it after the key lookup. Codes, as the POP gateway names them (not in
reference/alicom.md; the product treats InvalidSecurityToken.Expired as "fetch fresh credentials"): 400
MissingSecurityToken, 400 InvalidSecurityToken.MismatchWithAccessKey, 400 InvalidSecurityToken.Expired.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from local.alicom import errors

DEFAULT_ACCOUNTS: dict[str, tuple[str, str]] = {"local-ak": ("local-sk", "1234567890123456")}
QUEUE_PREFIX = "Alicom-Queue-"
FLOW_REPORT = "FlowReport"
# The receipt types Alicom delivers through the same transport (reference §3.5, §4.2).
MESSAGE_TYPES = frozenset(
    {
        "SmsReport",
        "SmsUp",
        "VoiceReport",
        "VoiceCallReport",
        "VoiceRecordReport",
        "FlowReport",
        "SecretReport",
        "DypnsSmsVerifyReport",
    }
)


@dataclass(frozen=True)
class Customer:
    access_key_id: str
    secret: str
    uid: str
    security_token: str = field(default="", repr=False)  # "" for a permanent AccessKey
    expires_at: float | None = None  # an STS token's end (epoch seconds); None: no expiry

    def __repr__(self) -> str:  # keeps the secret and the token out of logs and assertion messages
        return f"Customer(access_key_id={self.access_key_id!r}, uid={self.uid!r})"


def check_security_token(customer: Customer, presented: str | None, now: float | None = None) -> None:
    """Raises the gateway's error when ``customer`` holds temporary credentials and ``presented`` is not their token,
    or the token has expired. A permanent AccessKey ignores any token sent with it."""
    if not customer.security_token:
        return
    if not presented:
        raise errors.PopError(400, "MissingSecurityToken", "SecurityToken is mandatory for this action.")
    if not hmac.compare_digest(presented.encode("utf-8"), customer.security_token.encode("utf-8")):
        raise errors.PopError(
            400, "InvalidSecurityToken.MismatchWithAccessKey", "Specified SecurityToken mismatch with the AccessKey."
        )
    if customer.expires_at is not None and customer.expires_at <= (time.time() if now is None else now):
        raise errors.PopError(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")


def queue_name(uid: str, message_type: str = FLOW_REPORT) -> str:
    return f"{QUEUE_PREFIX}{uid}-{message_type}"


def _customer(access_key_id: str, value: tuple) -> Customer:
    if not 2 <= len(value) <= 4:
        raise ValueError(f"account {access_key_id}: (secret, uid[, security_token[, expires_at]]), got {len(value)}")
    secret, uid = value[0], value[1]
    token = value[2] if len(value) > 2 else ""
    expires_at = value[3] if len(value) > 3 else None
    return Customer(access_key_id, secret, str(uid), token or "", None if expires_at is None else float(expires_at))


class AccountBook:
    def __init__(self, accounts: Mapping[str, tuple] | None = None) -> None:
        chosen = DEFAULT_ACCOUNTS if accounts is None else accounts
        if not chosen:
            raise ValueError("at least one account is needed")
        self._lock = threading.Lock()
        self._by_key = {key: _customer(key, tuple(value)) for key, value in chosen.items()}
        self.default_uid = next(iter(self._by_key.values())).uid

    def lookup(self, access_key_id: str) -> Customer | None:
        with self._lock:
            return self._by_key.get(access_key_id)

    def expire_token(self, access_key_id: str, at: float | None = None) -> None:
        """Ends the STS token of ``access_key_id`` at ``at`` (epoch seconds; default: now)."""
        with self._lock:
            customer = self._by_key[access_key_id]
            if not customer.security_token:
                raise ValueError(f"{access_key_id} is a permanent AccessKey: it has no token to expire")
            when = time.time() if at is None else at
            self._by_key[access_key_id] = Customer(
                customer.access_key_id, customer.secret, customer.uid, customer.security_token, when
            )

    def uids(self) -> list[str]:
        with self._lock:
            return list(dict.fromkeys(customer.uid for customer in self._by_key.values()))

    def describe(self) -> list[dict[str, str]]:
        with self._lock:
            customers = list(self._by_key.values())
        return [{"access_key_id": c.access_key_id, "uid": c.uid, "queue": queue_name(c.uid)} for c in customers]

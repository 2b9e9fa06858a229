"""The POP RPC request: parameters from the query and the form body, and their authentication."""

from __future__ import annotations

import threading
import time
from calendar import timegm
from dataclasses import dataclass
from urllib.parse import parse_qsl

from local.alicom import errors, signing
from local.alicom.accounts import AccountBook, Customer

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
AUTH_PARAMETERS = ("AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "Timestamp", "SignatureNonce")
TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class PopRequest:
    method: str
    path: str
    params: dict[str, str]


def parse_request(method: str, target: str, content_type: str | None, body: bytes) -> PopRequest:
    """Query parameters, then form-body parameters (the SDK signs the two merged)."""
    path, _, query = target.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    if body and (content_type or "").lower().startswith(FORM_CONTENT_TYPE):
        params.update(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    return PopRequest(method.upper(), path, params)


def require(params: dict[str, str], *names: str) -> None:
    for name in names:
        if not params.get(name):
            raise errors.missing_parameter(name)


def parse_timestamp(text: str) -> float:
    for layout in TIMESTAMP_FORMATS:
        try:
            return timegm(time.strptime(text, layout))
        except ValueError:
            continue
    raise errors.timestamp_malformed()


class Authenticator:
    """Checks AccessKeyId, SignatureMethod/Version, Timestamp skew, the signature, then SignatureNonce reuse
    (after the signature, so that an unsigned request cannot burn a nonce)."""

    def __init__(self, accounts: AccountBook, max_clock_skew: float | None) -> None:
        self._accounts = accounts
        self._max_clock_skew = max_clock_skew
        self._lock = threading.Lock()
        self._nonces: dict[tuple[str, str], float] = {}
        self._next_purge = 0.0

    def authenticate(self, request: PopRequest) -> Customer:
        params = request.params
        require(params, *AUTH_PARAMETERS)
        customer = self._accounts.lookup(params["AccessKeyId"])
        if customer is None:
            raise errors.access_key_not_found()
        if params["SignatureMethod"] != signing.SIGNATURE_METHOD:
            raise errors.unsupported_signature_method()
        if params["SignatureVersion"] != signing.SIGNATURE_VERSION:
            raise errors.unsupported_signature_version()
        self._check_timestamp(parse_timestamp(params["Timestamp"]))
        to_sign = signing.string_to_sign(request.method, params)
        if not signing.signature_matches(params["Signature"], signing.signature(customer.secret, to_sign)):
            raise errors.signature_does_not_match(to_sign)
        self._use_nonce(customer.access_key_id, params["SignatureNonce"])
        return customer

    def _check_timestamp(self, sent: float) -> None:
        if self._max_clock_skew is not None and abs(time.time() - sent) > self._max_clock_skew:
            raise errors.timestamp_expired()

    def _use_nonce(self, access_key_id: str, nonce: str) -> None:
        """A nonce is remembered for twice the allowed skew, long enough to outlive any timestamp it came with."""
        now = time.time()
        keep_for = 2 * (self._max_clock_skew or 900.0)
        with self._lock:
            if now >= self._next_purge:
                self._nonces = {key: until for key, until in self._nonces.items() if until > now}
                self._next_purge = now + 60
            key = (access_key_id, nonce)
            if self._nonces.get(key, 0.0) > now:
                raise errors.signature_nonce_used()
            self._nonces[key] = now + keep_for

"""The POP RPC request: parameters from the query and the form body, and their authentication.

The gateway takes two signatures and so does the emulator:

- the RPC signature (``SignatureMethod=HMAC-SHA1``, ``SignatureVersion=1.0``, ``Signature`` among the parameters;
  local/alicom/signing.py), what aliyun-python-sdk-core and the older Tea SDKs (e.g. alibabacloud_dycdpapi20180610)
  send;
- the V3 signature (``Authorization: ACS3-HMAC-SHA256 ...``; local/acs3.py), what the current Tea SDKs send (e.g.
  alibabacloud_dybaseapi20170525). The action and version then come from the x-acs-action and x-acs-version
  headers, the parameters from the query and the form body.

Both get the same checks: the key, a 15-minute window on the timestamp (RPC ``Timestamp``, V3 ``x-acs-date``), the
signature, then the nonce (after the signature, so that an unsigned request cannot burn one; one book for both
kinds). V3 also checks that the body is the one signed (x-acs-content-sha256). Errors: errors.py.
"""

from __future__ import annotations

import time
from calendar import timegm
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from local import acs3
from local.acs3 import Acs3Problem
from local.alicom import errors, signing
from local.alicom.accounts import AccountBook, Customer, check_security_token

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
AUTH_PARAMETERS = ("AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "Timestamp", "SignatureNonce")
TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class PopRequest:
    method: str
    path: str
    params: dict[str, str]
    headers: tuple[tuple[str, str], ...] = ()
    raw_query: str = ""
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name), None)

    @property
    def is_v3(self) -> bool:
        return acs3.is_v3(self.header("authorization"))


def parse_request(
    method: str,
    target: str,
    content_type: str | None,
    body: bytes,
    headers: Iterable[tuple[str, str]] = (),
) -> PopRequest:
    """Query parameters, then form-body parameters (the RPC signature covers the two merged). A V3-signed request
    names its action and version in the x-acs-action and x-acs-version headers instead."""
    path, _, query = target.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    if body and (content_type or "").lower().startswith(FORM_CONTENT_TYPE):
        params.update(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    request = PopRequest(method.upper(), path, params, tuple(headers), query, body)
    if request.is_v3:
        for param, header in (("Action", "x-acs-action"), ("Version", "x-acs-version")):
            value = request.header(header)
            if value:
                params[param] = value
    return request


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
    """RPC: checks AccessKeyId, SignatureMethod/Version, Timestamp skew, the signature, then SignatureNonce reuse
    (after the signature, so that an unsigned request cannot burn a nonce). V3: the same, in the same order, from the
    Authorization and x-acs-* headers."""

    def __init__(self, accounts: AccountBook, max_clock_skew: float | None) -> None:
        self._accounts = accounts
        self._max_clock_skew = max_clock_skew
        # A nonce is remembered for twice the allowed skew, long enough to outlive any timestamp it came with.
        self._nonces = acs3.NonceBook(2 * (max_clock_skew or 900.0))

    def authenticate(self, request: PopRequest) -> Customer:
        if request.is_v3:
            return self._authenticate_v3(request)
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
        check_security_token(customer, params.get("SecurityToken"))
        self._use_nonce(customer.access_key_id, params["SignatureNonce"])
        return customer

    def _check_timestamp(self, sent: float) -> None:
        if self._max_clock_skew is not None and abs(time.time() - sent) > self._max_clock_skew:
            raise errors.timestamp_expired()

    def _use_nonce(self, access_key_id: str, nonce: str) -> None:
        if not self._nonces.use(access_key_id, nonce):
            raise errors.signature_nonce_used()

    def _authenticate_v3(self, request: PopRequest) -> Customer:
        try:
            signed = acs3.Acs3Request(request.method, request.path, request.raw_query, request.headers, request.body)
            customer = self._accounts.lookup(signed.access_key_id)
            if customer is None:
                raise errors.access_key_not_found()
            signed.require("x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256")
            signed.check_signed_headers()
            self._check_timestamp(signed.date())
            signed.check_content_hash()
            signed.check_signature(customer.secret)
        except Acs3Problem as problem:
            raise _v3_error(problem, request) from None
        check_security_token(customer, signed.headers.get("x-acs-security-token"))
        self._use_nonce(customer.access_key_id, signed.headers["x-acs-signature-nonce"])
        return customer


def _v3_error(problem: Acs3Problem, request: PopRequest) -> errors.PopError:
    """The POP error for a V3 problem, worded as the RPC ones are (errors.py)."""
    kind = problem.kind
    if kind == Acs3Problem.ALGORITHM:
        return errors.unsupported_signature_method()
    if kind == Acs3Problem.BAD_DATE:
        return errors.timestamp_malformed()
    if kind == Acs3Problem.SIGNATURE:
        return errors.signature_does_not_match(problem.detail)
    if kind == Acs3Problem.CONTENT_HASH:
        to_sign = acs3.Acs3Request(request.method, request.path, request.raw_query, request.headers, request.body)
        return errors.content_sha256_mismatch(to_sign.string_to_sign())
    return errors.incomplete_signature(problem.detail)  # malformed, missing, unsigned or absent signed headers

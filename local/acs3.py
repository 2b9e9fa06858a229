"""Alibaba Cloud's V3 request signature (``ACS3-HMAC-SHA256``), server side, shared by the Alicom and FC emulators.

Written from Alibaba's public description ("V3 request structure and signature", help.aliyun.com document 2593177 /
alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature, and FC's "Signature mechanism"
page that points to it), not from any SDK. Its test vector (the documentation's own) is in tests/unit.

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQueryString \\n CanonicalHeaders \\n SignedHeaders \\n
                       HashedRequestPayload
    CanonicalURI          the path, each '/'-separated segment percent-encoded (RFC 3986: A-Z a-z 0-9 - _ . ~ left
                          as they are, UTF-8 bytes as %XY); RPC-style APIs use '/'
    CanonicalQueryString  the query parameters sorted by name, name and value each percent-encoded as above, joined
                          as name=value with '&' (a parameter without a value: name=); empty without a query
    CanonicalHeaders      for each signed header, sorted by lower-cased name: lowercase(name) ':' trim(value) '\\n'
    SignedHeaders         the lower-cased names of the signed headers, sorted, joined with ';'
    HashedRequestPayload  lowercase hex SHA-256 of the body (of b"" without one); also sent as x-acs-content-sha256
    StringToSign          'ACS3-HMAC-SHA256' '\\n' hex(SHA-256(CanonicalRequest))
    Signature             lowercase hex HMAC-SHA256(AccessKey secret, StringToSign)
    Authorization:        ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<SignedHeaders>,Signature=<hex>

Every common request header except Authorization that is present must be signed: host and the x-acs-* headers
(x-acs-action, x-acs-version, x-acs-date, x-acs-signature-nonce, x-acs-content-sha256, x-acs-security-token ...).
x-acs-date is UTC ``yyyy-MM-ddTHH:mm:ssZ``; x-acs-signature-nonce is unique per request (replay protection).

The verifier recomputes HashedRequestPayload from the body it received, never from the x-acs-content-sha256 header,
so a body that is not the one signed cannot pass. ``Acs3Request`` gives each check on its own (``Acs3Problem`` says
which one failed); each emulator runs them in its own order and answers with its own error codes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from calendar import timegm
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, unquote_to_bytes

ALGORITHM = "ACS3-HMAC-SHA256"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_AUTHORIZATION = re.compile(r"^(?P<algorithm>\S+)\s+(?P<fields>.*)$", re.DOTALL)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


class Acs3Problem(Exception):
    """Why a V3 request is refused. ``kind`` is one of the constants below; ``detail`` is safe to show."""

    MALFORMED = "malformed_authorization"  # not 'ALGO Credential=..,SignedHeaders=..,Signature=..'
    ALGORITHM = "unsupported_algorithm"
    MISSING_HEADER = "missing_header"  # x-acs-date, x-acs-signature-nonce or x-acs-content-sha256 absent
    UNSIGNED_HEADER = "unsigned_header"  # host or an x-acs-* header present but not in SignedHeaders
    ABSENT_SIGNED_HEADER = "absent_signed_header"  # in SignedHeaders but not in the request
    BAD_DATE = "bad_date"
    STALE_DATE = "stale_date"
    CONTENT_HASH = "content_sha256_mismatch"
    SIGNATURE = "signature_mismatch"
    NONCE_USED = "nonce_used"

    def __init__(self, kind: str, detail: str, header: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.header = header


def percent_encode(text: str) -> str:
    return "".join(chr(byte) if byte in UNRESERVED else f"%{byte:02X}" for byte in text.encode("utf-8"))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_uri(raw_path: str) -> str:
    """The path as sent (still percent-encoded), each segment decoded once and encoded by the RFC 3986 rule."""
    if not raw_path:
        return "/"
    segments = (unquote_to_bytes(segment).decode("utf-8", "surrogateescape") for segment in raw_path.split("/"))
    return "/".join(percent_encode(segment) for segment in segments)


def split_query(raw_query: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of a raw query string, percent-decoded ('+' is a space, as in a form)."""
    pairs = []
    for item in raw_query.split("&") if raw_query else []:
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((unquote(name.replace("+", " ")), unquote(value.replace("+", " "))))
    return pairs


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{percent_encode(name)}={percent_encode(value)}" for name, value in sorted(pairs))


def canonical_headers(headers: Mapping[str, str], signed: Iterable[str]) -> str:
    return "".join(f"{name}:{headers[name].strip()}\n" for name in signed)


def string_to_sign(canonical_request: str) -> str:
    return f"{ALGORITHM}\n{sha256_hex(canonical_request.encode('utf-8'))}"


def signature(secret: str, to_sign: str) -> str:
    return hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Authorization:
    algorithm: str
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def is_v3(authorization: str | None) -> bool:
    """True for an Authorization header of the V3 family (``ACS3-...``), whatever its algorithm."""
    return bool(authorization) and authorization.lstrip().upper().startswith("ACS3-")  # type: ignore[union-attr]


def parse_authorization(value: str) -> Authorization:
    match = _AUTHORIZATION.match(value.strip())
    if match is None:
        raise Acs3Problem(Acs3Problem.MALFORMED, "the Authorization header is not 'ACS3-HMAC-SHA256 Credential=...'")
    fields: dict[str, str] = {}
    for part in match["fields"].split(","):
        name, sep, field = part.strip().partition("=")
        if sep:
            fields[name.strip()] = field.strip()
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not fields.get(name)]
    if missing:
        raise Acs3Problem(Acs3Problem.MALFORMED, f"the Authorization header has no {', '.join(missing)}")
    if match["algorithm"] != ALGORITHM:
        raise Acs3Problem(Acs3Problem.ALGORITHM, f"signature algorithm {match['algorithm']} is not supported")
    signed = tuple(name.strip().lower() for name in fields["SignedHeaders"].split(";") if name.strip())
    return Authorization(match["algorithm"], fields["Credential"], signed, fields["Signature"].lower())


def parse_date(text: str) -> float:
    if not _DATE.match(text):
        raise Acs3Problem(Acs3Problem.BAD_DATE, f"x-acs-date {text!r} is not yyyy-MM-ddTHH:mm:ssZ", "x-acs-date")
    try:
        return float(timegm(time.strptime(text, DATE_FORMAT)))
    except ValueError:
        raise Acs3Problem(Acs3Problem.BAD_DATE, f"x-acs-date {text!r} is not a date", "x-acs-date") from None


class Acs3Request:
    """One request as received: ``headers`` lower-cased (repeated headers joined with ','), the raw path and query
    string (origin form, as sent), the body. Raises Acs3Problem from the constructor if Authorization is malformed."""

    def __init__(
        self, method: str, raw_path: str, raw_query: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> None:
        lowered: dict[str, list[str]] = {}
        for name, value in headers:
            lowered.setdefault(name.lower(), []).append(value)
        self.headers = {name: ",".join(values) for name, values in lowered.items()}
        self.method = method.upper()
        self.raw_path = raw_path
        self.query = split_query(raw_query)
        self.body = body
        self.authorization = parse_authorization(self.headers.get("authorization", ""))

    @property
    def access_key_id(self) -> str:
        return self.authorization.access_key_id

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def require(self, *names: str) -> None:
        for name in names:
            if not self.headers.get(name, "").strip():
                raise Acs3Problem(Acs3Problem.MISSING_HEADER, f"required HTTP header {name} was not specified", name)

    def check_signed_headers(self) -> None:
        signed = set(self.authorization.signed_headers)
        for name in sorted(self.headers):
            if (name == "host" or name.startswith("x-acs-")) and name not in signed:
                raise Acs3Problem(Acs3Problem.UNSIGNED_HEADER, f"header {name} must be in SignedHeaders", name)
        for name in self.authorization.signed_headers:
            if name not in self.headers:
                raise Acs3Problem(Acs3Problem.ABSENT_SIGNED_HEADER, f"signed header {name} is not in the request", name)

    def date(self) -> float:
        return parse_date(self.headers.get("x-acs-date", ""))

    def check_date(self, max_skew: float | None, now: float | None = None) -> None:
        sent = self.date()
        if max_skew is not None and abs((time.time() if now is None else now) - sent) > max_skew:
            raise Acs3Problem(
                Acs3Problem.STALE_DATE, f"x-acs-date {self.headers['x-acs-date']} is too far from now", "x-acs-date"
            )

    def payload_hash(self) -> str:
        return sha256_hex(self.body)

    def check_content_hash(self) -> None:
        presented = self.headers.get("x-acs-content-sha256", "").strip().lower()
        if presented and presented != self.payload_hash():
            raise Acs3Problem(
                Acs3Problem.CONTENT_HASH,
                "the x-acs-content-sha256 header is not the SHA-256 of the request body",
                "x-acs-content-sha256",
            )

    def canonical_request(self, canonical_path: str | None = None) -> str:
        """``canonical_path`` fixes CanonicalURI (RPC style: '/'); by default it is the request's path."""
        signed = sorted(set(self.authorization.signed_headers))
        return "\n".join(
            [
                self.method,
                canonical_path if canonical_path is not None else canonical_uri(self.raw_path),
                canonical_query(self.query),
                canonical_headers(self.headers, signed),
                ";".join(signed),
                self.payload_hash(),
            ]
        )

    def string_to_sign(self, canonical_path: str | None = None) -> str:
        return string_to_sign(self.canonical_request(canonical_path))

    def check_signature(self, secret: str, canonical_path: str | None = None) -> None:
        to_sign = self.string_to_sign(canonical_path)
        expected = signature(secret, to_sign)
        if not hmac.compare_digest(expected.encode(), self.authorization.signature.encode("utf-8", "replace")):
            raise Acs3Problem(Acs3Problem.SIGNATURE, to_sign)


class NonceBook:
    """Signature nonces seen per AccessKey, each remembered for ``keep_seconds`` (twice the allowed clock skew: longer
    than any date it came with stays acceptable). Thread-safe."""

    def __init__(self, keep_seconds: float) -> None:
        self.keep_seconds = keep_seconds
        self._lock = threading.Lock()
        self._until: dict[tuple[str, str], float] = {}
        self._next_purge = 0.0

    def use(self, access_key_id: str, nonce: str) -> bool:
        """Records the nonce; False when it was used already."""
        now = time.time()
        with self._lock:
            if now >= self._next_purge:
                self._until = {key: until for key, until in self._until.items() if until > now}
                self._next_purge = now + 60
            key = (access_key_id, nonce)
            if self._until.get(key, 0.0) > now:
                return False
            self._until[key] = now + self.keep_seconds
            return True

    def check(self, access_key_id: str, nonce: str) -> None:
        if not self.use(access_key_id, nonce):
            raise Acs3Problem(Acs3Problem.NONCE_USED, f"signature nonce {nonce} was used already")

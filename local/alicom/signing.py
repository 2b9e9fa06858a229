"""POP RPC request signatures (SignatureMethod HMAC-SHA1, SignatureVersion 1.0), server side.

Written from the published algorithm, not from the SDK: percent-encode every name and value (UTF-8, only
A-Z a-z 0-9 - _ . ~ left as they are, hex digits upper case), sort the pairs by name, join them as
name=value with '&', then sign  METHOD & percent("/") & percent(canonical query)  with HMAC-SHA1 keyed by
the secret followed by '&'.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

SIGNATURE_METHOD = "HMAC-SHA1"
SIGNATURE_VERSION = "1.0"
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def percent_encode(text: str) -> str:
    return "".join(chr(byte) if byte in UNRESERVED else f"%{byte:02X}" for byte in text.encode("utf-8"))


def canonical_query(params: Mapping[str, str]) -> str:
    """Every parameter except Signature itself, sorted by name."""
    pairs = sorted((name, value) for name, value in params.items() if name != "Signature")
    return "&".join(f"{percent_encode(name)}={percent_encode(value)}" for name, value in pairs)


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def signature(secret: str, to_sign: str) -> str:
    digest = hmac.new((secret + "&").encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_matches(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))

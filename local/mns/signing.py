"""MNS request signature, server side (written from the public algorithm, not from the SDK)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def string_to_sign(method: str, headers: Iterable[tuple[str, str]] | dict[str, str], resource: str) -> str:
    """VERB, Content-MD5, Content-Type, Date, sorted x-mns-* headers, then the raw request target."""
    pairs = headers.items() if isinstance(headers, dict) else headers
    lowered: dict[str, str] = {}
    for name, value in pairs:
        lowered.setdefault(name.lower(), value)
    mns_headers = "".join(f"{name}:{lowered[name]}\n" for name in sorted(lowered) if name.startswith("x-mns-"))
    return "\n".join(
        [
            method.upper(),
            lowered.get("content-md5", ""),
            lowered.get("content-type", ""),
            lowered.get("date", ""),
            mns_headers + resource,
        ]
    )


def signature(secret: str, to_sign: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def content_md5(body: bytes) -> str:
    """The MNS flavour of Content-MD5: base64 of the hex digest, not of the raw digest."""
    return base64.b64encode(hashlib.md5(body).hexdigest().encode("ascii")).decode("ascii")

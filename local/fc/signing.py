"""The FC 2016-08-15 request signature, written from the algorithm (not from the SDK):

StringToSign = METHOD \\n Content-MD5 \\n Content-Type \\n Date \\n CanonicalizedFCHeaders CanonicalizedResource
CanonicalizedFCHeaders = "name:value\\n" for every x-fc-* header, names lower-cased, sorted by name
CanonicalizedResource = the unescaped path, plus "\\n" and the sorted "key=value" query pairs if a query is sent
Authorization: FC <AccessKeyId>:base64(HMAC-SHA256(secret, StringToSign))
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def canonical_headers(headers: Iterable[tuple[str, str]]) -> str:
    pairs = sorted((name.lower(), value.strip()) for name, value in headers if name.lower().startswith("x-fc-"))
    return "".join(f"{name}:{value}\n" for name, value in pairs)


def canonical_resource(path: str, query: Iterable[str] | None) -> str:
    """`query`: the unescaped "key=value" (or bare "key") items as sent, or None when there is no query."""
    if query is None:
        return path
    return path + "\n" + "\n".join(sorted(query))


def string_to_sign(
    method: str,
    headers: Iterable[tuple[str, str]],
    path: str,
    query: Iterable[str] | None = None,
) -> str:
    headers = list(headers)
    lookup = {name.lower(): value.strip() for name, value in headers}
    return "\n".join(
        [
            method.upper(),
            lookup.get("content-md5", ""),
            lookup.get("content-type", ""),
            lookup.get("date", ""),
            canonical_headers(headers) + canonical_resource(path, query),
        ]
    )


def signature(secret: str, text: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def matches(secret: str, text: str, provided: str) -> bool:
    return hmac.compare_digest(signature(secret, text).encode(), provided.encode())

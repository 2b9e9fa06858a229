"""Hand-built V3-signed (ACS3-HMAC-SHA256) requests for the emulator tests, signed with the Tea SDK's OWN signing
function (alibabacloud_tea_openapi.utils.Utils.get_authorization), never with the emulators' verifier: a raw request
is how a test forges a stale date, a replayed nonce, a body that is not the one signed or an absolute-form target.

A plain module, not a fixture file: tests import it as ``from acs3_support import ...`` (tests/ is on sys.path).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import quote, urlsplit

from alibabacloud_tea_openapi.utils import Utils

ALGORITHM = "ACS3-HMAC-SHA256"


def acs_date(offset_seconds: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_seconds))


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def signed_headers(
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    access_key_id: str,
    secret: str,
    *,
    date: str | None = None,
    nonce: str | None = None,
    content_sha256: str | None = None,
    security_token: str | None = None,
) -> dict[str, str]:
    """``headers`` (host, x-acs-action, x-acs-version, content-type, x-fc-* ...) plus x-acs-date, nonce, content hash
    (of ``body`` unless ``content_sha256`` claims another) and the Authorization the SDK computes for them. ``path``
    is the encoded path as sent (the SDK signs it as given)."""
    signed = {
        **headers,
        "x-acs-date": date or acs_date(),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-content-sha256": content_sha256 or sha256_hex(body),
    }
    if security_token:
        signed["x-acs-accesskey-id"] = access_key_id
        signed["x-acs-security-token"] = security_token
    request = SimpleNamespace(method=method.upper(), pathname=path, query=dict(query), headers=signed)
    signed["Authorization"] = Utils.get_authorization(
        request, ALGORITHM, signed["x-acs-content-sha256"], access_key_id, secret
    )
    return signed


def query_string(query: dict[str, str]) -> str:
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in query.items())


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


def send(
    endpoint: str,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes = b"",
    *,
    absolute_form: bool = False,
) -> Answer:
    """One request with http.client; ``absolute_form`` puts ``endpoint + target`` on the request line (as a client
    talking through a proxy does). Headers go out exactly as given (no Host added unless given or absolute)."""
    parts = urlsplit(endpoint)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    try:
        line_target = endpoint + target if absolute_form else target
        has_host = any(name.lower() == "host" for name in headers)
        connection.putrequest(method, line_target, skip_host=has_host or not absolute_form, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()

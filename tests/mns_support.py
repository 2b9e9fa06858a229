"""Helpers shared by the MNS emulator tests: SDK error capture, queue set-up, the admin API and hand-signed
raw HTTP requests (mns-wire.md §2.3, §3.1).

A plain module, not a fixture file: tests import it as `from mns_support import ...` (tests/ is on sys.path
because pytest puts the directory of tests/conftest.py there).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import pytest
from emulator_credentials import OWNER_ID, OWNER_SECRET
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Queue, QueueMeta

from local.mns import MnsEmulator

# --------------------------------------------------------------------------------------------- SDK side


def sdk_error(call: Callable[..., object], *args: Any, **kwargs: Any) -> MNSServerException:
    """Run an SDK call that must raise MNSServerException; return the exception (its type is not checked)."""
    with pytest.raises(MNSServerException) as info:
        call(*args, **kwargs)
    return info.value


def server_error(code: str, call: Callable[..., object], *args: Any, **kwargs: Any) -> MNSServerException:
    """Run an SDK call that must fail with MNSServerException of type `code`; return the exception."""
    error = sdk_error(call, *args, **kwargs)
    assert error.type == code, f"expected {code}, got {error.type}: {error.message}"
    return error


def make_queue(account: Account, name: str, **meta: Any) -> Queue:
    """Create a queue with the given QueueMeta keyword arguments and return its SDK handle."""
    queue = account.get_queue(name)
    queue.create(QueueMeta(**meta))
    return queue


def queue_stats(emulator: MnsEmulator, name: str) -> dict[str, int]:
    """The emulator's {active, inactive, delayed} counts for one queue."""
    return emulator.stats()["queues"][name]


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------- admin API


def admin(emulator: MnsEmulator, method: str, path: str, body: object = None) -> tuple[int, object]:
    """Call the emulator's JSON admin API: (HTTP status, decoded JSON body or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        emulator.admin_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    return status, (json.loads(raw) if raw.strip() else None)


# --------------------------------------------------------------------------------------------- raw HTTP


def sdk_content_md5(body: bytes) -> str:
    """§1 item 5: base64 of the 32-char lowercase hex digest, not of the raw bytes."""
    return base64.b64encode(hashlib.md5(body).hexdigest().encode()).decode()


def mns_signature(secret: str, method: str, headers: dict[str, str], target: str) -> str:
    """Independent implementation of §3.1 (the emulator's own helper is tested in tests/unit)."""
    lower = {k.lower(): v for k, v in headers.items()}
    mns_headers = "".join(f"{k}:{lower[k]}\n" for k in sorted(lower) if k.startswith("x-mns-"))
    sts = (
        f"{method}\n{lower.get('content-md5', '')}\n{lower.get('content-type', '')}\n"
        f"{lower.get('date', '')}\n{mns_headers}{target}"
    )
    digest = hmac.new(secret.encode(), sts.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]  # names exactly as the server spelled them
    body: bytes

    def header_names(self) -> list[str]:
        return [name for name, _ in self.headers]

    def header(self, name: str) -> str | None:
        """The first header of that name, compared case-insensitively."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


_UNSET: Any = object()


def raw_request(
    emulator: MnsEmulator,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    key_id: str = OWNER_ID,
    secret: str = OWNER_SECRET,
    date: str | None = _UNSET,
    content_md5: str | None = None,
    authorization: str | None = _UNSET,
    security_token: str | None = None,
) -> RawResponse:
    """Build an MNS request by hand (§2.3), signed with the owner's credentials unless told otherwise, and
    send it with http.client.

    date=None leaves the Date header out (the signature then uses an empty DATE line);
    authorization=None leaves Authorization out; a string replaces it verbatim.
    """
    headers: dict[str, str] = {"x-mns-version": "2015-06-06"}
    if date is _UNSET:
        headers["date"] = formatdate(usegmt=True)
    elif date is not None:
        headers["date"] = str(date)
    if body:
        headers["content-type"] = "text/xml;charset=UTF-8"
        headers["content-md5"] = content_md5 if content_md5 is not None else sdk_content_md5(body)
    if authorization is _UNSET:
        headers["Authorization"] = f"MNS {key_id}:{mns_signature(secret, method, headers, target)}"
    elif authorization is not None:
        headers["Authorization"] = str(authorization)
    if security_token is not None:
        headers["security-token"] = security_token

    parsed = urllib.parse.urlsplit(emulator.endpoint)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=15)
    try:
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return RawResponse(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def xml_children(body: bytes) -> tuple[str, dict[str, str]]:
    """Root tag and {child tag: text} of an XML body, namespace stripped."""
    root = ET.fromstring(body)
    return _local(root.tag), {_local(child.tag): (child.text or "") for child in root}


def assert_mns_error(resp: RawResponse, status: int, code: str) -> dict[str, str]:
    """Status, lowercase x-mns-request-id (§1 item 1) and a complete <Error> body (§1 item 3, §4.15)."""
    assert resp.status == status, resp.body
    assert "x-mns-request-id" in resp.header_names(), resp.headers
    root, fields = xml_children(resp.body)
    assert root == "Error"
    assert {"Code", "Message", "RequestId", "HostId"} <= set(fields), fields
    assert fields["Code"] == code
    assert fields["RequestId"], fields
    assert fields["HostId"], fields
    assert fields["RequestId"] == resp.header("x-mns-request-id")
    return fields

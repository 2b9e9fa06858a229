"""How the receiver checks a delivery, written from the README's contract (not from shared/): HMAC-SHA256 under the
shared secret over ``<X-Flow-Receipts-Timestamp>.<raw body>``, hex, in ``X-Flow-Receipts-Signature: v1=<hex>``
(several comma-separated entries allowed), and a timestamp no further than the tolerance from now.

A timestamp is at most ``TIMESTAMP_MAX_DIGITS`` ASCII digits: a longer one is malformed (and would make ``int()`` raise
past Python's 4300-digit limit instead of answering 401)."""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP = "X-Flow-Receipts-Timestamp"
SIGNATURE = "X-Flow-Receipts-Signature"
EVENT_ID = "X-Flow-Receipts-Event-Id"
TIMESTAMP_MAX_DIGITS = 12  # unix seconds have 10 digits until the year 2286


def problem(
    secret: bytes, timestamp: str | None, signature: str | None, body: bytes, now: float, tolerance: float
) -> str:
    """Why the request is not signed by ``secret``; "" when it is."""
    if not timestamp or len(timestamp) > TIMESTAMP_MAX_DIGITS or not timestamp.isascii() or not timestamp.isdigit():
        return f"missing or malformed {TIMESTAMP}"
    if abs(now - int(timestamp)) > tolerance:
        return f"{TIMESTAMP} is {now - int(timestamp):+.0f} s from now (tolerance {tolerance:g} s)"
    entries = [entry.strip() for entry in (signature or "").split(",")]
    candidates = [entry[3:] for entry in entries if entry.startswith("v1=")]
    if not candidates:
        return f"missing {SIGNATURE} v1 entry"
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(mac.encode(), candidate.encode("utf-8", "replace")) for candidate in candidates):
        return "signature does not match"
    return ""

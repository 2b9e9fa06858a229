"""Text made storable: informational fields clipped to their columns, raw bodies kept whole."""

from __future__ import annotations

import base64

REASON_MAX = 8000
LAST_ERROR_MAX = 2000


def clip(value: str | None, limit: int) -> str | None:
    """Informational text fits its column (NUL cannot be stored by PostgreSQL)."""
    if value is None:
        return None
    return value.replace("\x00", "\ufffd")[:limit]


def storable_body(raw_body: str | bytes) -> str:
    """A raw body as text; bytes that are not UTF-8 (or text with NUL) are kept whole as "base64:<...>"."""
    if isinstance(raw_body, bytes):
        try:
            decoded = raw_body.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw_body).decode("ascii")
        raw_body = decoded
    if "\x00" in raw_body:
        return "base64:" + base64.b64encode(raw_body.encode("utf-8")).decode("ascii")
    return raw_body

"""Outbox events: one per real transition, written in the transaction that makes it; delivery bookkeeping."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from shared.adapters.ledger.schema import outbox
from shared.adapters.ledger.text import LAST_ERROR_MAX, clip
from shared.domain.orders import Decision

_INSERT_EVENT = insert(outbox)
_PAYLOAD = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_last_stamp: tuple[datetime, str] | None = None


def _iso(now: datetime) -> str:
    """``now.isoformat()``, once per batch (every event of a batch has the same ``now``)."""
    global _last_stamp
    last = _last_stamp
    if last is not None and last[0] == now:
        return last[1]
    stamp = now.isoformat()
    _last_stamp = (now, stamp)
    return stamp


def write_event(conn: Connection, decision: Decision, now: datetime, **facts: Any) -> dict[str, Any]:
    """Writes the outbox event of a transition and returns its payload: what the webhook and the hook receive
    (event_id, kind, out_id, phone, status, err_code, err_msg, resolved_by, occurred_at, and a few more facts)."""
    row, payload = event_row(decision, now, **facts)
    conn.execute(_INSERT_EVENT, row)
    return payload


def new_event_id() -> str:
    """A random (version 4) UUID in its canonical text form: ``str(uuid.uuid4())`` without building a UUID."""
    octets = bytearray(os.urandom(16))
    octets[6] = (octets[6] & 0x0F) | 0x40  # version 4
    octets[8] = (octets[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = octets.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def event_row(decision: Decision, now: datetime, **facts: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The outbox row of a transition, and its payload."""
    event_id = new_event_id()
    stamp = _iso(now)
    payload = {
        "event_id": event_id,
        "kind": decision.event_kind,
        "status": decision.new_status.value if decision.new_status else None,
        "occurred_at": stamp,
        "resolved_at": stamp,
        **facts,
    }
    row = {
        "event_id": event_id,
        "out_id": facts["out_id"],
        "kind": decision.event_kind,
        "payload": _PAYLOAD.encode(payload),
        "created_at": now,
        "delivered_at": None,
        "attempts": 0,
        "last_error": None,
    }
    return row, payload


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(_INSERT_EVENT, list(rows))


MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True)
class DeliveryFailure:
    event_id: str
    error: str
    rejected: bool = False  # refused for good (a 4xx other than 408 / 429): kept for a human, never retried


def mark_delivered(conn: Connection, event_ids: Sequence[str], now: datetime) -> int:
    """One UPDATE for a whole batch; counts only events not delivered before."""
    if not event_ids:
        return 0
    delivered = conn.execute(
        update(outbox)
        .where(outbox.c.event_id.in_(list(event_ids)), outbox.c.delivered_at.is_(None))
        .values(delivered_at=now, attempts=outbox.c.attempts + 1, last_error=None, next_attempt_at=None)
    )
    return delivered.rowcount


def record_failures(
    conn: Connection, failures: Sequence[DeliveryFailure], now: datetime, retry_after: timedelta
) -> int:
    """Counts the attempt, keeps the error, and schedules the next attempt: ``retry_after`` doubled per attempt made
    before, at most an hour. A rejected event gets no next attempt."""
    attempts = dict(
        conn.execute(
            select(outbox.c.event_id, outbox.c.attempts).where(
                outbox.c.event_id.in_([f.event_id for f in failures]), outbox.c.delivered_at.is_(None)
            )
        ).all()
    )
    recorded = 0
    for failure in failures:
        before = attempts.get(failure.event_id)
        if before is None:  # delivered meanwhile (a redelivery raced this one), or unknown
            continue
        backoff = min(MAX_BACKOFF, retry_after * 2 ** min(int(before), 20))
        values: dict[str, Any] = {"attempts": outbox.c.attempts + 1, "last_error": clip(failure.error, LAST_ERROR_MAX)}
        if failure.rejected:
            values.update(rejected_at=now, next_attempt_at=None)
        else:
            values["next_attempt_at"] = now + backoff
        conn.execute(
            update(outbox)
            .where(outbox.c.event_id == failure.event_id, outbox.c.delivered_at.is_(None))
            .values(**values)
        )
        recorded += 1
    return recorded


def due_events(conn: Connection, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Undelivered, not rejected, and due (never tried, or past its backoff): oldest first. Rows as mappings."""
    query = (
        select(outbox)
        .where(
            outbox.c.delivered_at.is_(None),
            outbox.c.rejected_at.is_(None),
            or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now),
        )
        .order_by(outbox.c.created_at, outbox.c.event_id)
        .limit(limit)
    )
    return [dict(row) for row in conn.execute(query).mappings()]


def retry_rejected(conn: Connection, event_ids: Sequence[str] | None) -> int:
    """Makes rejected events (all, or these) due again, e.g. after the webhook was fixed."""
    query = update(outbox).where(outbox.c.delivered_at.is_(None), outbox.c.rejected_at.is_not(None))
    if event_ids is not None:
        query = query.where(outbox.c.event_id.in_(list(event_ids)))
    return conn.execute(query.values(rejected_at=None, next_attempt_at=None)).rowcount

"""Outbox events: one per real transition, written in the transaction that makes it; delivery bookkeeping."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, update

from shared.adapters.ledger.schema import outbox
from shared.adapters.ledger.text import LAST_ERROR_MAX, clip
from shared.domain.orders import Decision

_INSERT_EVENT = insert(outbox)


def write_event(conn: Connection, decision: Decision, now: datetime, **facts: Any) -> str:
    event_id = str(uuid.uuid4())
    payload = {
        "event_id": event_id,
        "kind": decision.event_kind,
        "status": decision.new_status.value if decision.new_status else None,
        "resolved_at": now.isoformat(),
        **facts,
    }
    conn.execute(
        _INSERT_EVENT,
        {
            "event_id": event_id,
            "out_id": facts["out_id"],
            "kind": decision.event_kind,
            "payload": json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
            "created_at": now,
            "delivered_at": None,
            "attempts": 0,
            "last_error": None,
        },
    )
    return event_id


def mark_event_delivered(conn: Connection, event_id: str, now: datetime) -> bool:
    delivered = conn.execute(
        update(outbox)
        .where(outbox.c.event_id == event_id, outbox.c.delivered_at.is_(None))
        .values(delivered_at=now, attempts=outbox.c.attempts + 1, last_error=None)
    )
    return delivered.rowcount == 1


def record_delivery_failure(conn: Connection, event_id: str, error: str) -> bool:
    failed = conn.execute(
        update(outbox)
        .where(outbox.c.event_id == event_id, outbox.c.delivered_at.is_(None))
        .values(attempts=outbox.c.attempts + 1, last_error=clip(error, LAST_ERROR_MAX))
    )
    return failed.rowcount == 1

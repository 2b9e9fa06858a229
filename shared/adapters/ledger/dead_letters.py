"""Dead letters: messages that will never apply, kept with their raw body until a human replays them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from shared.adapters.ledger.records import DeadLetterRecord
from shared.adapters.ledger.schema import dead_letters
from shared.adapters.ledger.text import REASON_MAX, clip, storable_body


def record_dead_letter(
    conn: Connection,
    message_id: str,
    message_type: str | None,
    raw_body: str | bytes,
    reason: str,
    dequeue_count: int,
    now: datetime,
) -> None:
    """Raises IntegrityError when the message id is already dead-lettered."""
    conn.execute(
        insert(dead_letters).values(
            message_id=message_id,
            message_type=message_type,
            raw_body=storable_body(raw_body),
            reason=clip(reason, REASON_MAX),
            dequeue_count=dequeue_count,
            first_seen_at=now,
            replayed_at=None,
        )
    )


def list_dead_letters(conn: Connection, *, include_replayed: bool, limit: int) -> list[DeadLetterRecord]:
    query = select(dead_letters).order_by(dead_letters.c.first_seen_at.desc(), dead_letters.c.message_id).limit(limit)
    if not include_replayed:
        query = query.where(dead_letters.c.replayed_at.is_(None))
    return [DeadLetterRecord(**row) for row in conn.execute(query).mappings()]


def mark_replayed(conn: Connection, message_id: str, now: datetime) -> bool:
    """Marks a dead letter replayed once; False when it was already (or does not exist)."""
    marked = conn.execute(
        update(dead_letters)
        .where(dead_letters.c.message_id == message_id, dead_letters.c.replayed_at.is_(None))
        .values(replayed_at=now)
    )
    return marked.rowcount == 1

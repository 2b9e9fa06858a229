"""Dead letters: messages that will never apply, kept with their raw body until a human replays them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert

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

"""An order's life outside receipts: registered by the business, expired by the sweep."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, exc, select, update

from shared.adapters.ledger.apply import INSERT_ORDER, RESOLVE_PENDING
from shared.adapters.ledger.events import write_event
from shared.adapters.ledger.schema import ERR_MSG_MAX, orders
from shared.adapters.ledger.text import clip
from shared.domain.orders import Source, Status, transition


def register_order(conn: Connection, out_id: str, phone: str, submitted_at: datetime, now: datetime) -> bool:
    """Create a PENDING order; False when it exists. An order first seen in a receipt is claimed (registered)."""
    try:
        with conn.begin_nested():
            conn.execute(
                INSERT_ORDER,
                {
                    "out_id": out_id,
                    "phone": phone,
                    "status": Status.PENDING.value,
                    "err_code": None,
                    "err_msg": None,
                    "resolved_by": None,
                    "resolved_message_id": None,
                    "submitted_at": submitted_at,
                    "resolved_at": None,
                    "created_at": now,
                    "registered": True,
                },
            )
        return True
    except exc.IntegrityError:
        claimed = conn.execute(
            update(orders)
            .where(orders.c.out_id == out_id, orders.c.registered.is_(False))
            .values(registered=True, submitted_at=submitted_at, phone=phone)
        )
        return claimed.rowcount == 1


def expire_order(conn: Connection, out_id: str, reason: str, now: datetime) -> str | None:
    """PENDING -> EXPIRED (resolved_by expiry, the reason in err_msg) with its outbox event; None if not PENDING."""
    reason_text = clip(reason, ERR_MSG_MAX)
    expired = conn.execute(
        RESOLVE_PENDING,
        {
            "p_out_id": out_id,
            "p_status": Status.EXPIRED.value,
            "p_err_code": None,
            "p_err_msg": reason_text,
            "p_resolved_by": Source.EXPIRY.value,
            "p_message_id": None,
            "p_now": now,
        },
    )
    if expired.rowcount != 1:
        return None
    phone = conn.execute(select(orders.c.phone).where(orders.c.out_id == out_id)).scalar()
    return write_event(
        conn,
        transition(Status.PENDING, Status.EXPIRED),
        now,
        out_id=out_id,
        previous_status=Status.PENDING.value,
        registered=True,
        phone=phone,
        err_code=None,
        err_msg=reason_text,
        resolved_by=Source.EXPIRY.value,
        message_id=None,
    )

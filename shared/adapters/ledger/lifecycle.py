"""An order's life outside receipts: registered by the business (one or many at a time), its top-up placed by
flow-receipts, expired by the sweep."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from shared.adapters.ledger.apply import INSERT_ORDER, RESOLVE_PENDING
from shared.adapters.ledger.events import write_event
from shared.adapters.ledger.records import NewOrder, Registration
from shared.adapters.ledger.schema import CHARGE_ID_MAX, ERR_MSG_MAX, orders
from shared.adapters.ledger.text import clip
from shared.domain.orders import Source, Status, transition

_CLAIM = (
    update(orders)
    .where(orders.c.out_id == bindparam("p_out_id"), orders.c.registered.is_(False))
    .values(
        registered=True,
        submitted_at=bindparam("p_submitted_at"),
        phone=bindparam("p_phone"),
        product=bindparam("p_product"),
        flow_api=bindparam("p_flow_api"),
    )
)


def register_orders(conn: Connection, new: Sequence[NewOrder], now: datetime) -> Registration:
    """Registers what is new (one multi-row INSERT), claims orders first seen in a receipt, leaves the rest.

    Raises IntegrityError when a concurrent transaction created one of the orders meanwhile: run it again.
    """
    unique = list({order.out_id: order for order in reversed(new)}.values())[::-1]  # first occurrence wins
    known = dict(
        conn.execute(
            select(orders.c.out_id, orders.c.registered).where(orders.c.out_id.in_([o.out_id for o in unique]))
        ).all()
    )
    fresh = [order for order in unique if order.out_id not in known]
    if fresh:
        conn.execute(INSERT_ORDER, [_pending_row(order, now) for order in fresh])
    claimed: list[str] = []
    for order in unique:
        if known.get(order.out_id) is False:
            values = {
                "p_out_id": order.out_id,
                "p_submitted_at": order.submitted_at or now,
                "p_phone": order.phone,
                "p_product": order.product,
                "p_flow_api": order.flow_api,
            }
            if conn.execute(_CLAIM, values).rowcount == 1:
                claimed.append(order.out_id)
    existing = [order.out_id for order in unique if known.get(order.out_id) is True]
    return Registration([order.out_id for order in fresh], claimed, existing)


def _pending_row(order: NewOrder, now: datetime) -> dict[str, Any]:
    return {
        "out_id": order.out_id,
        "phone": order.phone,
        "status": Status.PENDING.value,
        "err_code": None,
        "err_msg": None,
        "resolved_by": None,
        "resolved_message_id": None,
        "submitted_at": order.submitted_at or now,
        "resolved_at": None,
        "created_at": now,
        "registered": True,
        "product": order.product,
        "flow_api": order.flow_api,
        "charge_attempts": 0,
    }


def start_charge_attempt(
    conn: Connection, out_id: str, now: datetime, product: str | None = None, flow_api: str | None = None
) -> bool:
    """Counts a flow API call about to start (before it is sent: a crash after it still shows the attempt), and
    keeps the product and flow API of an order registered without them (so the sweep can re-submit it).
    False when the order is not PENDING any more."""
    started = conn.execute(
        update(orders)
        .where(orders.c.out_id == out_id, orders.c.status == Status.PENDING.value)
        .values(
            charge_attempts=orders.c.charge_attempts + 1,
            last_charge_at=now,
            product=func.coalesce(orders.c.product, product),
            flow_api=func.coalesce(orders.c.flow_api, flow_api),
        )
    )
    return started.rowcount == 1


def record_charge_id(conn: Connection, out_id: str, charge_id: str) -> None:
    conn.execute(update(orders).where(orders.c.out_id == out_id).values(charge_id=clip(charge_id, CHARGE_ID_MAX)))


def expire_order(conn: Connection, out_id: str, reason: str, now: datetime) -> dict[str, Any] | None:
    """PENDING -> EXPIRED (resolved_by expiry, the reason in err_msg) with its outbox event (returned); None if not
    PENDING."""
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

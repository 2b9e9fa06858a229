"""What operators look at: one order with its receipts and events, the orders still PENDING."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.adapters.ledger import Ledger, OrderRecord, OutboxEvent, ReceiptRecord
from shared.adapters.ledger.records import utc_now


@dataclass(frozen=True)
class OrderDetails:
    order: OrderRecord
    receipts: list[ReceiptRecord]
    events: list[OutboxEvent]


@dataclass(frozen=True)
class PendingOrder:
    order: OrderRecord
    age: timedelta  # since it was submitted


def order_details(ledger: Ledger, out_id: str) -> OrderDetails | None:
    order = ledger.get_order(out_id)
    if order is None:
        return None
    return OrderDetails(order, ledger.receipts_for(out_id), ledger.outbox_events(out_id))


def pending_orders(
    ledger: Ledger, *, older_than: timedelta = timedelta(0), limit: int = 100, now: datetime | None = None
) -> list[PendingOrder]:
    """PENDING orders submitted at least ``older_than`` ago, oldest first."""
    now = now or utc_now()
    submitted_to = now - older_than if older_than > timedelta(0) else None
    orders = ledger.unresolved_orders(limit, submitted_to=submitted_to)
    return [PendingOrder(order, now - (order.submitted_at or order.created_at)) for order in orders]

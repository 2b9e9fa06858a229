"""The ledger's reads: single records for tests and tools, undelivered events, the reconciliation summary."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, func, select

from shared.adapters.ledger.records import (
    DeadLetterRecord,
    LedgerSummary,
    OrderRecord,
    OutboxEvent,
    ReceiptRecord,
)
from shared.adapters.ledger.schema import dead_letters, orders, outbox, receipts
from shared.domain.orders import Outcome, Source, Status


def get_order(conn: Connection, out_id: str) -> OrderRecord | None:
    row = conn.execute(select(orders).where(orders.c.out_id == out_id)).mappings().first()
    return order_from_row(row) if row is not None else None


def order_from_row(row: Any) -> OrderRecord:
    return OrderRecord(
        out_id=row["out_id"],
        phone=row["phone"],
        status=Status(row["status"]),
        err_code=row["err_code"],
        err_msg=row["err_msg"],
        resolved_by=Source(row["resolved_by"]) if row["resolved_by"] else None,
        resolved_message_id=row["resolved_message_id"],
        submitted_at=row["submitted_at"],
        resolved_at=row["resolved_at"],
        created_at=row["created_at"],
        registered=bool(row["registered"]),
        product=row["product"],
        flow_api=row["flow_api"],
        charge_id=row["charge_id"],
        charge_attempts=int(row["charge_attempts"] or 0),
        last_charge_at=row["last_charge_at"],
        last_query_at=row["last_query_at"],
        last_query_answer=row["last_query_answer"],
        last_query_note=row["last_query_note"],
    )


def receipts_for(conn: Connection, out_id: str) -> list[ReceiptRecord]:
    rows = conn.execute(
        select(receipts).where(receipts.c.out_id == out_id).order_by(receipts.c.received_at, receipts.c.message_id)
    ).mappings()
    return [
        ReceiptRecord(**{**row, "outcome": Outcome(row["outcome"]), "source": Source(row["source"])}) for row in rows
    ]


def outbox_events(conn: Connection, out_id: str | None = None) -> list[OutboxEvent]:
    query = select(outbox).order_by(outbox.c.created_at, outbox.c.event_id)
    if out_id is not None:
        query = query.where(outbox.c.out_id == out_id)
    return [event_from_row(row) for row in conn.execute(query).mappings()]


def undelivered_events(conn: Connection, limit: int) -> list[OutboxEvent]:
    query = (
        select(outbox)
        .where(outbox.c.delivered_at.is_(None))
        .order_by(outbox.c.delivered_at, outbox.c.created_at)
        .limit(limit)
    )
    return [event_from_row(row) for row in conn.execute(query).mappings()]


def event_from_row(row: Any) -> OutboxEvent:
    return OutboxEvent(**{**row, "payload": json.loads(row["payload"])})


def list_events(conn: Connection, undelivered: bool, limit: int) -> list[OutboxEvent]:
    """Newest first; with ``undelivered``, only events not delivered (rejected ones included)."""
    query = select(outbox).order_by(outbox.c.created_at.desc(), outbox.c.event_id).limit(limit)
    if undelivered:
        query = query.where(outbox.c.delivered_at.is_(None))
    return [event_from_row(row) for row in conn.execute(query).mappings()]


def get_dead_letter(conn: Connection, message_id: str) -> DeadLetterRecord | None:
    row = conn.execute(select(dead_letters).where(dead_letters.c.message_id == message_id)).mappings().first()
    return DeadLetterRecord(**row) if row is not None else None


def summary(conn: Connection) -> LedgerSummary:
    by_status = dict(conn.execute(select(orders.c.status, func.count()).group_by(orders.c.status)).all())
    by_outcome = dict(conn.execute(select(receipts.c.outcome, func.count()).group_by(receipts.c.outcome)).all())
    count = select(func.count())
    return LedgerSummary(
        orders_by_status={status.value: by_status.get(status.value, 0) for status in Status},
        unregistered_orders=conn.execute(count.select_from(orders).where(orders.c.registered.is_(False))).scalar_one(),
        receipts_by_outcome={outcome.value: by_outcome.get(outcome.value, 0) for outcome in Outcome},
        dead_letters=conn.execute(count.select_from(dead_letters)).scalar_one(),
        undelivered_events=conn.execute(count.select_from(outbox).where(outbox.c.delivered_at.is_(None))).scalar_one(),
    )

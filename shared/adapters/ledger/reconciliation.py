"""Counts for the reconciliation report, over the whole ledger or the orders submitted in a time range."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from shared.adapters.ledger.queries import order_from_row
from shared.adapters.ledger.records import OrderRecord
from shared.adapters.ledger.schema import dead_letters, orders, outbox, receipts
from shared.domain.orders import Outcome, Source, Status


@dataclass(frozen=True)
class Counts:
    orders_by_status: dict[str, int]
    orders_by_resolver: dict[str, int]
    failures_by_code: dict[str, int]
    unregistered_orders: int
    conflicts: int
    dead_letters: int  # not replayed
    undelivered_events: int  # neither delivered nor rejected
    rejected_events: int

    def as_dict(self) -> dict[str, Any]:
        return {name: (dict(value) if isinstance(value, dict) else value) for name, value in self.__dict__.items()}


def _in_range(submitted_from: datetime | None, submitted_to: datetime | None) -> list[Any]:
    """An order belongs to the range by when it was submitted (unregistered ones: when first seen)."""
    when = func.coalesce(orders.c.submitted_at, orders.c.created_at)
    conditions = []
    if submitted_from is not None:
        conditions.append(when >= submitted_from)
    if submitted_to is not None:
        conditions.append(when < submitted_to)
    return conditions


def counts(conn: Connection, submitted_from: datetime | None = None, submitted_to: datetime | None = None) -> Counts:
    scope = _in_range(submitted_from, submitted_to)
    by_status = dict(conn.execute(select(orders.c.status, func.count()).where(*scope).group_by(orders.c.status)).all())
    by_resolver = dict(
        conn.execute(
            select(orders.c.resolved_by, func.count())
            .where(orders.c.resolved_by.is_not(None), *scope)
            .group_by(orders.c.resolved_by)
        ).all()
    )
    failures: dict[str, int] = {}
    for code, n in conn.execute(
        select(orders.c.err_code, func.count())
        .where(orders.c.status == Status.FAILED.value, *scope)
        .group_by(orders.c.err_code)
    ).all():
        failures[code or "(none)"] = failures.get(code or "(none)", 0) + int(n)
    count = select(func.count())
    in_scope_orders = select(orders.c.out_id).where(*scope) if scope else None
    conflicts = count.select_from(receipts).where(receipts.c.outcome == Outcome.CONFLICT.value)
    events = count.select_from(outbox).where(outbox.c.delivered_at.is_(None))
    if in_scope_orders is not None:
        conflicts = conflicts.where(receipts.c.out_id.in_(in_scope_orders))
        events = events.where(outbox.c.out_id.in_(in_scope_orders))
    dead = count.select_from(dead_letters).where(dead_letters.c.replayed_at.is_(None))
    return Counts(
        orders_by_status={status.value: int(by_status.get(status.value, 0)) for status in Status},
        orders_by_resolver={source.value: int(by_resolver.get(source.value, 0)) for source in Source},
        failures_by_code=dict(sorted(failures.items(), key=lambda kv: (-kv[1], kv[0]))),
        unregistered_orders=conn.execute(
            count.select_from(orders).where(orders.c.registered.is_(False), *scope)
        ).scalar_one(),
        conflicts=conn.execute(conflicts).scalar_one(),
        dead_letters=conn.execute(dead).scalar_one(),
        undelivered_events=conn.execute(events.where(outbox.c.rejected_at.is_(None))).scalar_one(),
        rejected_events=conn.execute(events.where(outbox.c.rejected_at.is_not(None))).scalar_one(),
    )


def unresolved(
    conn: Connection, limit: int, submitted_from: datetime | None = None, submitted_to: datetime | None = None
) -> list[OrderRecord]:
    """PENDING orders, oldest first (keyset-friendly: the status index)."""
    query = (
        select(orders)
        .where(orders.c.status == Status.PENDING.value, *_in_range(submitted_from, submitted_to))
        .order_by(orders.c.submitted_at, orders.c.out_id)
        .limit(limit)
    )
    return [order_from_row(row) for row in conn.execute(query).mappings()]

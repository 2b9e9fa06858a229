"""What the sweep reads and writes besides reports: its lease and cursor (sweep_state), pages of PENDING orders
(keyset on ix_orders_status_submitted_at, never OFFSET), the last status query per order, and expiry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, exc, insert, or_, select, tuple_, update

from shared.adapters.ledger.records import SweepState
from shared.adapters.ledger.schema import NOTE_MAX, STATUS_MAX, orders, sweep_state
from shared.adapters.ledger.text import clip
from shared.domain.orders import Status
from shared.domain.sweep import PendingOrder

_PROGRESS_FIELDS = frozenset(
    {"cycle_id", "cycle_started_at", "phase", "cursor_submitted_at", "cursor_out_id", "counts", "last_finished_at"}
)


@dataclass(frozen=True)
class PendingRow:
    order: PendingOrder
    phone: str | None
    flow_api: str | None


# ---- the lease ---------------------------------------------------------------------------------------------


def _state(row: Any) -> SweepState:
    values = dict(row)
    values["counts"] = json.loads(values["counts"]) if values["counts"] else {}
    return SweepState(**values)


def read_state(conn: Connection, name: str) -> SweepState | None:
    row = conn.execute(select(sweep_state).where(sweep_state.c.name == name)).mappings().first()
    return _state(row) if row is not None else None


def acquire_lease(conn: Connection, name: str, holder: str, now: datetime, ttl: timedelta) -> SweepState | None:
    """The state with the lease taken by ``holder``; None while another holder's lease has not expired."""
    if read_state(conn, name) is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(sweep_state).values(name=name, updated_at=now))
        except exc.IntegrityError:
            pass  # created by a sweep starting at the same moment: the UPDATE below decides
    taken = conn.execute(
        update(sweep_state)
        .where(
            sweep_state.c.name == name,
            or_(
                sweep_state.c.holder.is_(None),
                sweep_state.c.holder == holder,
                sweep_state.c.lease_expires_at < now,
            ),
        )
        .values(holder=holder, lease_expires_at=now + ttl, updated_at=now)
    )
    return read_state(conn, name) if taken.rowcount == 1 else None


def renew_lease(
    conn: Connection, name: str, holder: str, now: datetime, ttl: timedelta | None, **progress: Any
) -> bool:
    """Extends the lease (``ttl``) or releases it (``ttl=None``), saving ``progress`` with it. False when ``holder``
    lost the lease (it expired and another sweep took it): the caller must stop."""
    unknown = set(progress) - _PROGRESS_FIELDS
    if unknown:
        raise ValueError(f"not sweep progress: {', '.join(sorted(unknown))}")
    if "counts" in progress:
        progress["counts"] = json.dumps(progress["counts"], sort_keys=True)
    lease = {"holder": holder, "lease_expires_at": now + ttl} if ttl is not None else {"holder": None}
    if ttl is None:
        lease["lease_expires_at"] = None
    renewed = conn.execute(
        update(sweep_state)
        .where(sweep_state.c.name == name, sweep_state.c.holder == holder)
        .values(updated_at=now, **lease, **progress)
    )
    return renewed.rowcount == 1


# ---- pages of PENDING orders -------------------------------------------------------------------------------


def pending_page(
    conn: Connection,
    *,
    submitted_from: datetime,
    submitted_to: datetime,
    after: tuple[datetime, str] | None,
    not_queried_since: datetime | None,
    limit: int,
) -> list[PendingRow]:
    """PENDING orders submitted in [submitted_from, submitted_to], in (submitted_at, out_id) order after ``after``.

    With ``not_queried_since``, orders whose status was queried at or after it are left out (a sweep resumed after
    a crash mid-page does not ask twice). A short page means the end.
    """
    columns = (
        orders.c.out_id,
        orders.c.phone,
        orders.c.submitted_at,
        orders.c.last_charge_at,
        orders.c.charge_attempts,
        orders.c.product,
        orders.c.flow_api,
    )
    query = (
        select(*columns)
        .where(
            orders.c.status == Status.PENDING.value,
            orders.c.submitted_at >= submitted_from,
            orders.c.submitted_at <= submitted_to,
        )
        .order_by(orders.c.submitted_at, orders.c.out_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(_after(conn, *after))
    if not_queried_since is not None:
        query = query.where(or_(orders.c.last_query_at.is_(None), orders.c.last_query_at < not_queried_since))
    return [
        PendingRow(
            PendingOrder(
                out_id=row.out_id,
                submitted_at=row.submitted_at,
                last_charge_at=row.last_charge_at,
                charge_attempts=int(row.charge_attempts or 0),
                product=row.product,
            ),
            row.phone,
            row.flow_api,
        )
        for row in conn.execute(query)
    ]


def _after(conn: Connection, submitted_at: datetime, out_id: str) -> Any:
    """(submitted_at, out_id) > (x, y): a row value, which SQLite and PostgreSQL turn into an index range; spelled
    out for MySQL, whose range optimizer handles the OR form."""
    if conn.dialect.name in ("sqlite", "postgresql"):
        return tuple_(orders.c.submitted_at, orders.c.out_id) > (submitted_at, out_id)
    return or_(
        orders.c.submitted_at > submitted_at,
        and_(orders.c.submitted_at == submitted_at, orders.c.out_id > out_id),
    )


def record_query(conn: Connection, out_id: str, answer: str, note: str, now: datetime) -> bool:
    """The sweep asked about a still PENDING order: when, what it heard, and why it stays open."""
    recorded = conn.execute(
        update(orders)
        .where(orders.c.out_id == out_id, orders.c.status == Status.PENDING.value)
        .values(last_query_at=now, last_query_answer=clip(answer, STATUS_MAX), last_query_note=clip(note, NOTE_MAX))
    )
    return recorded.rowcount == 1


def expirable(conn: Connection, submitted_before: datetime, limit: int) -> list[str]:
    """PENDING orders submitted before ``submitted_before`` (oldest first): the sweep expires them."""
    query = (
        select(orders.c.out_id)
        .where(orders.c.status == Status.PENDING.value, orders.c.submitted_at < submitted_before)
        .order_by(orders.c.submitted_at, orders.c.out_id)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())

"""Applying one report: the body of one transaction on a Connection (ledger.py opens, rolls back and retries it).

A conditional UPDATE ... WHERE status = 'PENDING' moves the order (never read-modify-write). When it matches
nothing, the order's status decides between duplicate, conflict and orphan (shared.domain.orders), and a redelivered
message id is noticed in the same query. A real transition writes one outbox event. The receipt is inserted
last: should a concurrent delivery of the same message id have committed meanwhile, its primary key fails
and the whole transaction rolls back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, exc, exists, insert, select, update

from shared.adapters.ledger.engine import is_duplicate_key
from shared.adapters.ledger.events import write_event
from shared.adapters.ledger.records import ApplyResult, ReportToApply
from shared.adapters.ledger.schema import ERR_CODE_MAX, ERR_MSG_MAX, orders, receipts
from shared.adapters.ledger.text import clip, storable_body
from shared.domain.orders import Decision, Outcome, Status, transition


class MessageSeenBefore(Exception):
    """The receipt's message id is already recorded; the transaction must roll back."""

    def __init__(self, message_id: str, order_status: Status | None) -> None:
        super().__init__(message_id)
        self.order_status = order_status  # as read in the rolled-back transaction; None if it changed it


class LostRace(Exception):
    """Another transaction created or registered the order between two statements; retry the transaction."""


RESOLVE_PENDING = (
    update(orders)
    .where(orders.c.out_id == bindparam("p_out_id"), orders.c.status == Status.PENDING.value)
    .values(
        status=bindparam("p_status"),
        err_code=bindparam("p_err_code"),
        err_msg=bindparam("p_err_msg"),
        resolved_by=bindparam("p_resolved_by"),
        resolved_message_id=bindparam("p_message_id"),
        resolved_at=bindparam("p_now"),
    )
)
# When the conditional update matched nothing: the order's state, and whether this message is already recorded
# (a redelivery is answered without provoking a key violation; the insert below still guards the races).
_ORDER_STATE = select(
    orders.c.status,
    orders.c.registered,
    exists().where(receipts.c.message_id == bindparam("p_message_id")).label("seen"),
).where(orders.c.out_id == bindparam("p_out_id"))
_INSERT_RECEIPT = insert(receipts)
INSERT_ORDER = insert(orders)


def apply_report(conn: Connection, report: ReportToApply, reported: Status, now: datetime) -> ApplyResult:
    err_code, err_msg = clip(report.err_code, ERR_CODE_MAX), clip(report.err_msg, ERR_MSG_MAX)
    previous: Status | None
    if conn.execute(RESOLVE_PENDING, resolution(report, reported, err_code, err_msg, now)).rowcount == 1:
        decision, previous, registered = Decision(Outcome.APPLIED, reported), Status.PENDING, True
    else:
        row = conn.execute(_ORDER_STATE, {"p_out_id": report.out_id, "p_message_id": report.message_id}).first()
        previous = Status(row.status) if row is not None else None
        if row is not None and row.seen:
            raise MessageSeenBefore(report.message_id, previous)
        registered = bool(row.registered) if row is not None else False
        decision = transition(previous, reported)
        if decision.outcome is Outcome.APPLIED:
            raise LostRace("order registered after the conditional update")
        if decision.outcome is Outcome.ORPHAN:
            try:
                conn.execute(INSERT_ORDER, orphan_row(report, reported, err_code, err_msg, now))
            except exc.IntegrityError:
                raise LostRace("order created by a concurrent report") from None

    event = None
    if decision.changes_order:
        event = write_event(conn, decision, now, **event_facts(report, previous, registered, err_code, err_msg))
    try:
        conn.execute(_INSERT_RECEIPT, receipt_row(report, decision.outcome, err_code, err_msg, now))
    except exc.IntegrityError as error:
        if not is_duplicate_key(error):
            raise
        # Seen before: normally the order was already terminal and nothing was written. Should this
        # transaction have changed it (a message id reused for another order), the rollback undoes that.
        raise MessageSeenBefore(report.message_id, None if decision.changes_order else previous) from None
    return ApplyResult(decision.outcome, decision.new_status or previous or reported, event)


# ---- the rows one report writes (the batch path writes the same rows, many at a time) ----------------------


def resolution(
    report: ReportToApply, reported: Status, err_code: str | None, err_msg: str | None, now: datetime
) -> dict[str, Any]:
    """The parameters of RESOLVE_PENDING for this report."""
    return {
        "p_out_id": report.out_id,
        "p_status": reported.value,
        "p_err_code": err_code,
        "p_err_msg": err_msg,
        "p_resolved_by": report.source.value,
        "p_message_id": report.message_id,
        "p_now": now,
    }


def orphan_row(
    report: ReportToApply, status: Status, err_code: str | None, err_msg: str | None, now: datetime
) -> dict[str, Any]:
    """An order first seen in this report: created with its status, marked unregistered."""
    return {
        "out_id": report.out_id,
        "phone": report.phone,
        "status": status.value,
        "err_code": err_code,
        "err_msg": err_msg,
        "resolved_by": report.source.value,
        "resolved_message_id": report.message_id,
        "submitted_at": None,
        "resolved_at": now,
        "created_at": now,
        "registered": False,
        "charge_attempts": 0,
    }


def receipt_row(
    report: ReportToApply, outcome: Outcome, err_code: str | None, err_msg: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "message_id": report.message_id,
        "message_type": report.message_type,
        "out_id": report.out_id,
        "result": report.result,
        "err_code": err_code,
        "err_msg": err_msg,
        "raw_body": storable_body(report.raw_body),
        "dequeue_count": report.dequeue_count,
        "received_at": report.received_at or now,
        "outcome": outcome.value,
        "source": report.source.value,
    }


def event_facts(
    report: ReportToApply, previous: Status | None, registered: bool, err_code: str | None, err_msg: str | None
) -> dict[str, Any]:
    """What an outbox event tells about the transition this report makes."""
    return {
        "out_id": report.out_id,
        "previous_status": previous.value if previous else None,
        "registered": registered,
        "phone": report.phone,
        "err_code": err_code,
        "err_msg": err_msg,
        "resolved_by": report.source.value,
        "message_id": report.message_id,
    }


def status_of_recorded_message(conn: Connection, message_id: str) -> Status | None:
    """The status of the order a recorded receipt belongs to; None when no receipt has this message id."""
    status = conn.execute(
        select(orders.c.status)
        .select_from(receipts.join(orders, receipts.c.out_id == orders.c.out_id))
        .where(receipts.c.message_id == message_id)
    ).scalar()
    return Status(status) if status is not None else None

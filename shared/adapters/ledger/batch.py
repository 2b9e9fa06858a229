"""A whole received batch in ONE transaction: its reports and its dead letters, committed once.

The fast path writes a batch with a handful of statements whatever its size: one query for the message ids already
recorded (duplicates), one for the orders' state, then the decisions made in memory (shared.domain.orders; a later
report for the same order sees what the earlier one did), then one executemany UPDATE for the orders it moves
(conditional on PENDING, in out_id order so concurrent batches lock rows in the same order), and one multi-row
INSERT each for the orphan orders, the outbox events, the receipts and the dead letters.

Anything the fast path did not foresee — a row changed by another transaction between its query and its UPDATE (the
UPDATE's row count says so), or a key another transaction inserted meanwhile — raises ``Unforeseen``: the ledger
rolls the whole transaction back and runs the batch again on the per-report path, one savepoint per report
(``apply_report`` with ``begin_nested``), so that one failing report rolls back only itself and the others commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, exc

from shared.adapters.ledger import apply, dead_letters
from shared.adapters.ledger.bulk import Bulk
from shared.adapters.ledger.events import event_row
from shared.adapters.ledger.records import ApplyResult, ReportToApply
from shared.adapters.ledger.schema import ERR_CODE_MAX, ERR_MSG_MAX, orders, outbox, receipts
from shared.adapters.ledger.schema import dead_letters as dead_letters_table
from shared.adapters.ledger.text import REASON_MAX, clip, storable_body
from shared.domain.orders import Decision, Outcome, Status, transition


@dataclass(frozen=True)
class DeadLetterToRecord:
    message_id: str
    message_type: str | None
    raw_body: str | bytes
    reason: str
    dequeue_count: int


@dataclass
class BatchResult:
    """Per report (in the order given): its ApplyResult, or the error that left it unapplied (its savepoint rolled
    back; the message is retried). Per dead letter: True when recorded now, False when recorded before."""

    reports: list[ApplyResult | Exception] = field(default_factory=list)
    dead_letters: list[bool] = field(default_factory=list)


class Unforeseen(Exception):
    """The fast path met another transaction's work: run the batch again, one savepoint per report."""


@dataclass
class _Order:
    status: Status
    registered: bool


def apply_batch_fast(
    conn: Connection,
    reports: Sequence[ReportToApply],
    reported: Sequence[Status],
    letters: Sequence[DeadLetterToRecord],
    now: datetime,
) -> BatchResult:
    result = BatchResult()
    bulk = Bulk.for_dialect(conn.dialect)
    seen = bulk.recorded_message_ids(conn, [report.message_id for report in reports])
    out_ids = sorted({report.out_id for report in reports})
    state = {
        out_id: _Order(Status(status), bool(registered))
        for out_id, status, registered in bulk.order_states(conn, out_ids)
    }
    resolutions, orphans, events, receipt_rows = [], [], [], []
    for report, status in zip(reports, reported, strict=True):
        known = state.get(report.out_id)
        if report.message_id in seen:  # redelivered (or twice in this batch): nothing to write
            result.reports.append(ApplyResult(Outcome.DUPLICATE, known.status if known else status, None))
            continue
        seen.add(report.message_id)
        err_code, err_msg = clip(report.err_code, ERR_CODE_MAX), clip(report.err_msg, ERR_MSG_MAX)
        previous = known.status if known else None
        decision: Decision = transition(previous, status)
        if decision.outcome is Outcome.APPLIED:
            resolutions.append(apply.resolution(report, status, err_code, err_msg, now))
        elif decision.outcome is Outcome.ORPHAN:
            orphans.append(apply.orphan_row(report, status, err_code, err_msg, now))
        event = None
        if decision.changes_order:
            facts = apply.event_facts(report, previous, known.registered if known else False, err_code, err_msg)
            row, event = event_row(decision, now, **facts)
            events.append(row)
            state[report.out_id] = _Order(status, known.registered if known else False)
        receipt_rows.append(apply.receipt_row(report, decision.outcome, err_code, err_msg, now))
        result.reports.append(ApplyResult(decision.outcome, decision.new_status or previous or status, event))
    try:
        if resolutions:
            resolutions.sort(key=lambda values: values["p_out_id"])
            moved = bulk.resolve_pending(conn, resolutions, now)
            if moved != len(resolutions):
                raise Unforeseen(f"{len(resolutions) - moved} order(s) changed by another transaction")
        bulk.insert(conn, orders, orphans)
        bulk.insert(conn, outbox, sorted(events, key=lambda row: row["event_id"]))
        bulk.insert(conn, receipts, sorted(receipt_rows, key=lambda row: row["message_id"]))
        result.dead_letters = _record_dead_letters(conn, bulk, letters, now)
    except exc.IntegrityError as error:  # a key another transaction inserted meanwhile
        raise Unforeseen(str(error.orig)[:200]) from None
    return result


def _record_dead_letters(
    conn: Connection, bulk: Bulk, letters: Sequence[DeadLetterToRecord], now: datetime
) -> list[bool]:
    if not letters:
        return []
    known = bulk.known_dead_letters(conn, [letter.message_id for letter in letters])
    new, recorded = [], []
    for letter in letters:
        fresh = letter.message_id not in known
        known.add(letter.message_id)
        recorded.append(fresh)
        if fresh:
            new.append(
                {
                    "message_id": letter.message_id,
                    "message_type": letter.message_type,
                    "raw_body": storable_body(letter.raw_body),
                    "reason": clip(letter.reason, REASON_MAX),
                    "dequeue_count": letter.dequeue_count,
                    "first_seen_at": now,
                    "replayed_at": None,
                }
            )
    bulk.insert(conn, dead_letters_table, new)
    return recorded


def apply_batch_per_report(
    conn: Connection,
    reports: Sequence[ReportToApply],
    reported: Sequence[Status],
    letters: Sequence[DeadLetterToRecord],
    now: datetime,
    seen_before: Any,
) -> BatchResult:
    """One savepoint per report and per dead letter: one that fails rolls back only itself. ``seen_before(report,
    error)`` turns a MessageSeenBefore into the duplicate's ApplyResult."""
    result = BatchResult()
    for report, status in zip(reports, reported, strict=True):
        result.reports.append(_one(conn, report, status, now, seen_before))
    for letter in letters:
        try:
            with conn.begin_nested():
                dead_letters.record_dead_letter(
                    conn, letter.message_id, letter.message_type, letter.raw_body, letter.reason,
                    letter.dequeue_count, now,
                )  # fmt: skip
            result.dead_letters.append(True)
        except exc.IntegrityError:
            result.dead_letters.append(False)
    return result


def _one(conn: Connection, report: ReportToApply, status: Status, now: datetime, seen_before: Any) -> Any:
    for _attempt in (1, 2):  # a lost race is settled by running the report again: the winner's row is visible
        try:
            with conn.begin_nested():
                return apply.apply_report(conn, report, status, now)
        except apply.MessageSeenBefore as seen:
            return seen_before(report, seen, conn)
        except apply.LostRace as race:
            error: Exception = race
        except (exc.IntegrityError, exc.DataError) as failed:  # this report only (its savepoint rolled back)
            error = failed
    return error

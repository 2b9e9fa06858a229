"""The Ledger: one engine per URL, one transaction per call, database trouble raised as TransientError."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, exc
from sqlalchemy.engine import URL

from shared.adapters.ledger import (
    apply,
    batch,
    dead_letters,
    events,
    lifecycle,
    queries,
    reconciliation,
    sweeping,
)
from shared.adapters.ledger.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    TransactionAborted,
    build_engine,
    display_url,
    is_duplicate_key,
    parse_url,
    transient_errors,
)
from shared.adapters.ledger.migrate import current_version, migrate
from shared.adapters.ledger.records import (
    OUT_ID_MAX,
    PHONE_MAX,
    ApplyResult,
    DeadLetterRecord,
    LedgerSummary,
    MigrationResult,
    NewOrder,
    OrderRecord,
    OutboxEvent,
    ReceiptRecord,
    Registration,
    ReportToApply,
    SweepState,
    require_aware,
    utc_now,
)
from shared.domain.orders import Outcome, status_for_result
from shared.errors import TransientError
from shared.logs import logger

DEFAULT_URL = "sqlite:///.local/ledger.sqlite3"
SWEEP = "sweep"  # the name of the one sweep's row in sweep_state
# A lost race (two first receipts creating the same unknown order) is settled by one retry: the winner's order
# is then visible. A deadlock victim (MySQL, under many reports for one order at once) just runs again.
APPLY_ATTEMPTS = 3


class Ledger:
    def __init__(self, url: str | URL = DEFAULT_URL, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.url = parse_url(url)
        self.engine = build_engine(self.url)
        self._clock = clock
        # SQLite has one writer at a time and every transaction here takes the write lock at BEGIN: this
        # process's threads queue on a lock of their own instead of polling the file's (busy_timeout's retries).
        self._sqlite_writer = threading.Lock() if self.engine.dialect.name == "sqlite" else None

    def __repr__(self) -> str:
        return f"Ledger({display_url(self.url)!r})"

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    # ---- schema ---------------------------------------------------------------------------------------

    def migrate(self) -> MigrationResult:
        if self.dialect == "sqlite":  # a step may rebuild a table, which needs foreign keys off (checked after)
            with self._sqlite_without_foreign_keys("migrating the schema") as conn:
                return migrate(conn)
        with self._transaction("migrating the schema") as conn:
            return migrate(conn)

    def schema_version(self) -> int:
        with self._transaction("reading the schema version") as conn:
            return current_version(conn)

    # ---- writes ---------------------------------------------------------------------------------------

    def register_order(
        self,
        out_id: str,
        phone: str,
        submitted_at: datetime | None = None,
        *,
        product: str | None = None,
        flow_api: str | None = None,
    ) -> bool:
        """True when this call registered the order (new, or first seen in a receipt); False if already registered."""
        done = self.register_orders([NewOrder(out_id, phone, product, flow_api, submitted_at)])
        return bool(done.registered or done.claimed)

    def register_orders(self, new: Sequence[NewOrder]) -> Registration:
        """Registers a batch in one transaction (PENDING, submitted now unless given). Orders first seen in a
        receipt are claimed; orders already registered are left as they are. Idempotent."""
        for order in new:
            if not order.out_id or len(order.out_id) > OUT_ID_MAX or len(order.phone) > PHONE_MAX:
                raise ValueError(f"out_id must be 1 to {OUT_ID_MAX} characters and phone at most {PHONE_MAX}")
            if "\x00" in order.out_id or "\x00" in order.phone:
                raise ValueError("out_id and phone must not contain NUL characters")
            if order.submitted_at is not None:
                require_aware(order.submitted_at, "submitted_at")
        if not new:
            return Registration()
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            try:
                with self._transaction("registering orders") as conn:
                    return lifecycle.register_orders(conn, new, self._clock())
            except exc.IntegrityError as error:  # a receipt created one of them meanwhile: the retry claims it
                if not is_duplicate_key(error) or attempt == APPLY_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def start_charge_attempt(self, out_id: str, product: str | None = None, flow_api: str | None = None) -> bool:
        """Counts a flow API call for a PENDING order before it is sent (and keeps its product and flow API if it
        was registered without them); False when the order is not PENDING."""
        with self._transaction("counting a charge attempt") as conn:
            return lifecycle.start_charge_attempt(conn, out_id, self._clock(), product, flow_api)

    def record_charge_id(self, out_id: str, charge_id: str) -> None:
        with self._transaction("recording a charge id") as conn:
            lifecycle.record_charge_id(conn, out_id, charge_id)

    def apply_report(self, report: ReportToApply) -> ApplyResult:
        reported = status_for_result(report.result)  # PoisonMessage before any I/O
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            try:
                with self._transaction("applying a report") as conn:
                    result = apply.apply_report(conn, report, reported, self._clock())
            except apply.MessageSeenBefore as seen:
                return self._seen_before(report, seen)
            except apply.LostRace as race:
                if attempt == APPLY_ATTEMPTS:
                    raise TransientError(f"applying a report kept losing a race: {race}") from None
                continue
            except TransactionAborted:
                if attempt == APPLY_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0, 0.01 * attempt))  # let the winner commit before trying again
                continue
            if result.outcome in (Outcome.CONFLICT, Outcome.ORPHAN):
                self._log_unusual(report, result)
            return result
        raise AssertionError("unreachable")

    def apply_batch(
        self, reports: Sequence[ReportToApply], letters: Sequence[batch.DeadLetterToRecord] = ()
    ) -> batch.BatchResult:
        """A received batch in ONE transaction, committed once (shared/adapters/ledger/batch.py): the reports, each
        exactly as ``apply_report`` would apply it, and the dead letters. A report that fails leaves only itself
        unapplied (its error in the result). Raises TransientError when the batch as a whole cannot be committed:
        then nothing of it is."""
        reported = [status_for_result(report.result) for report in reports]  # PoisonMessage before any I/O
        fast, aborted = True, 0
        while True:
            try:
                with self._transaction("applying a batch") as conn:
                    now = self._clock()
                    if fast:
                        return batch.apply_batch_fast(conn, reports, reported, letters, now)
                    return batch.apply_batch_per_report(conn, reports, reported, letters, now, self._seen_in)
            except batch.Unforeseen:
                fast = False  # another transaction's work got in the way: one savepoint per report (only once)
            except TransactionAborted:
                aborted += 1
                if aborted == APPLY_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0, 0.01 * aborted))

    @staticmethod
    def _seen_in(report: ReportToApply, seen: apply.MessageSeenBefore, conn: Connection) -> ApplyResult:
        status = seen.order_status or apply.status_of_recorded_message(conn, report.message_id)
        if status is None:
            raise TransientError(f"message {report.message_id} was recorded and is gone again")
        return ApplyResult(Outcome.DUPLICATE, status, None)

    def expire_order(self, out_id: str, reason: str) -> str | None:
        """PENDING -> EXPIRED with an outbox event (its id is returned); None when the order is not PENDING."""
        event = self.expire(out_id, reason)
        return event["event_id"] if event is not None else None

    def expire(self, out_id: str, reason: str) -> dict[str, Any] | None:
        """PENDING -> EXPIRED; the outbox event's payload, or None when the order is not PENDING."""
        with self._transaction("expiring an order") as conn:
            return lifecycle.expire_order(conn, out_id, reason, self._clock())

    def record_dead_letter(
        self, message_id: str, message_type: str | None, raw_body: str | bytes, reason: str, dequeue_count: int
    ) -> bool:
        """True when recorded now, False when this message id was dead-lettered before (kept as it was)."""
        now = self._clock()
        try:
            with self._transaction("recording a dead letter") as conn:
                dead_letters.record_dead_letter(conn, message_id, message_type, raw_body, reason, dequeue_count, now)
        except exc.IntegrityError as error:
            if is_duplicate_key(error):
                return False
            raise
        return True

    def mark_event_delivered(self, event_id: str) -> bool:
        return self.mark_events_delivered([event_id]) == 1

    def mark_events_delivered(self, event_ids: Sequence[str]) -> int:
        """Marks a batch delivered in one UPDATE; returns how many were not delivered before."""
        with self._transaction("marking events delivered") as conn:
            return events.mark_delivered(conn, event_ids, self._clock())

    def record_delivery_failure(self, event_id: str, error: str, *, rejected: bool = False) -> bool:
        return self.record_delivery_failures([events.DeliveryFailure(event_id, error, rejected)]) == 1

    def record_delivery_failures(
        self, failures: Sequence[events.DeliveryFailure], retry_after: timedelta = timedelta(minutes=1)
    ) -> int:
        """Counts the attempts and schedules the next ones (``retry_after`` doubled per earlier attempt, at most an
        hour); rejected events are kept for a human and not retried."""
        if not failures:
            return 0
        with self._transaction("recording delivery failures") as conn:
            return events.record_failures(conn, failures, self._clock(), retry_after)

    def retry_rejected_events(self, event_ids: Sequence[str] | None = None) -> int:
        """Makes rejected events due again (all, or these), e.g. once the webhook is fixed."""
        with self._transaction("retrying rejected events") as conn:
            return events.retry_rejected(conn, event_ids)

    def mark_dead_letter_replayed(self, message_id: str) -> bool:
        with self._transaction("marking a dead letter replayed") as conn:
            return dead_letters.mark_replayed(conn, message_id, self._clock())

    # ---- the sweep's lease, cursor and pages ----------------------------------------------------------

    def acquire_sweep_lease(self, holder: str, ttl: timedelta, name: str = SWEEP) -> SweepState | None:
        """Takes the sweep lease (free, expired, or already ours); None while another sweep holds it."""
        with self._transaction("taking the sweep lease") as conn:
            return sweeping.acquire_lease(conn, name, holder, self._clock(), ttl)

    def renew_sweep_lease(self, holder: str, ttl: timedelta | None, name: str = SWEEP, **progress: Any) -> bool:
        """Extends the lease by ``ttl`` (or releases it with ``ttl=None``) and saves the sweep's progress with it.
        False when the lease was lost to another sweep."""
        with self._transaction("saving the sweep's progress") as conn:
            return sweeping.renew_lease(conn, name, holder, self._clock(), ttl, **progress)

    def sweep_state(self, name: str = SWEEP) -> SweepState | None:
        return self._read("reading the sweep state", sweeping.read_state, name)

    def pending_page(
        self,
        *,
        submitted_from: datetime,
        submitted_to: datetime,
        after: tuple[datetime, str] | None = None,
        not_queried_since: datetime | None = None,
        limit: int = 200,
    ) -> list[sweeping.PendingRow]:
        return self._read(
            "reading pending orders",
            lambda conn: sweeping.pending_page(
                conn,
                submitted_from=submitted_from,
                submitted_to=submitted_to,
                after=after,
                not_queried_since=not_queried_since,
                limit=limit,
            ),
        )

    def record_query(self, out_id: str, answer: str, note: str) -> bool:
        with self._transaction("recording a status query") as conn:
            return sweeping.record_query(conn, out_id, answer, note, self._clock())

    def expirable_orders(self, submitted_before: datetime, limit: int = 200) -> list[str]:
        return self._read("reading expirable orders", sweeping.expirable, submitted_before, limit)

    # ---- reads ----------------------------------------------------------------------------------------

    def get_order(self, out_id: str) -> OrderRecord | None:
        return self._read("reading an order", queries.get_order, out_id)

    def receipts_for(self, out_id: str) -> list[ReceiptRecord]:
        return self._read("reading receipts", queries.receipts_for, out_id)

    def outbox_events(self, out_id: str | None = None) -> list[OutboxEvent]:
        return self._read("reading outbox events", queries.outbox_events, out_id)

    def undelivered_events(self, limit: int = 100) -> list[OutboxEvent]:
        return self._read("reading undelivered events", queries.undelivered_events, limit)

    def get_dead_letter(self, message_id: str) -> DeadLetterRecord | None:
        return self._read("reading a dead letter", queries.get_dead_letter, message_id)

    def summary(self) -> LedgerSummary:
        return self._read("summarising the ledger", queries.summary)

    def due_events(self, limit: int = 100) -> list[OutboxEvent]:
        """Events to deliver now: undelivered, not rejected, past their backoff; oldest first."""
        rows = self._read("reading due events", events.due_events, self._clock(), limit)
        return [queries.event_from_row(row) for row in rows]

    def list_events(self, *, undelivered: bool = False, limit: int = 100) -> list[OutboxEvent]:
        return self._read("listing outbox events", queries.list_events, undelivered, limit)

    def dead_letters(self, *, include_replayed: bool = False, limit: int = 100) -> list[DeadLetterRecord]:
        return self._read(
            "listing dead letters",
            lambda conn: dead_letters.list_dead_letters(conn, include_replayed=include_replayed, limit=limit),
        )

    def reconciliation(
        self, submitted_from: datetime | None = None, submitted_to: datetime | None = None
    ) -> reconciliation.Counts:
        return self._read("counting for the report", reconciliation.counts, submitted_from, submitted_to)

    def unresolved_orders(
        self, limit: int = 1000, submitted_from: datetime | None = None, submitted_to: datetime | None = None
    ) -> list[OrderRecord]:
        """PENDING orders (submitted in the range, when given), oldest first."""
        return self._read("reading unresolved orders", reconciliation.unresolved, limit, submitted_from, submitted_to)

    # ---- plumbing -------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[Connection]:
        with self._writer(doing), transient_errors(self.url, doing), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _writer(self, doing: str) -> Iterator[None]:
        lock = self._sqlite_writer
        if lock is None:
            yield
            return
        if not lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise TransientError(f"{doing}: the ledger is busy: another thread here held SQLite's write lock")
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def _sqlite_without_foreign_keys(self, doing: str) -> Iterator[Connection]:
        with self._writer(doing), transient_errors(self.url, doing), self.engine.connect() as conn:
            raw = conn.connection.dbapi_connection  # PRAGMA foreign_keys is a no-op inside a transaction
            raw.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    yield conn
            finally:
                raw.execute("PRAGMA foreign_keys=ON")

    def _read(self, doing: str, query: Callable[..., Any], *args: Any) -> Any:
        with self._transaction(doing) as conn:
            return query(conn, *args)

    def _seen_before(self, report: ReportToApply, seen: apply.MessageSeenBefore) -> ApplyResult:
        status = seen.order_status
        if status is None:
            with self._transaction("reading a recorded receipt") as conn:
                status = apply.status_of_recorded_message(conn, report.message_id)
        if status is None:
            raise TransientError(f"message {report.message_id} was recorded and is gone again")
        return ApplyResult(Outcome.DUPLICATE, status, None)

    @staticmethod
    def _log_unusual(report: ReportToApply, result: ApplyResult) -> None:
        message = {
            Outcome.CONFLICT: "report contradicts a terminal order: kept as a conflict, not applied",
            Outcome.ORPHAN: "report for an unregistered out_id: order created as unregistered",
        }[result.outcome]
        logger.warning(
            message,
            extra={
                "out_id": report.out_id,
                "message_id": report.message_id,
                "source": report.source.value,
                "order_status": result.status.value,
                "reported_result": report.result,
            },
        )

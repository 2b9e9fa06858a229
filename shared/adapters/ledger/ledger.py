"""The Ledger: one engine per URL, one transaction per call, database trouble raised as TransientError."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, exc
from sqlalchemy.engine import URL

from shared.adapters.ledger import apply, dead_letters, events, lifecycle, queries
from shared.adapters.ledger.engine import (
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
    OrderRecord,
    OutboxEvent,
    ReceiptRecord,
    ReportToApply,
    require_aware,
    utc_now,
)
from shared.domain.orders import Outcome, status_for_result
from shared.errors import TransientError
from shared.logs import logger

DEFAULT_URL = "sqlite:///.local/ledger.sqlite3"
# A lost race (two first receipts creating the same unknown order) is settled by one retry: the winner's order
# is then visible. A deadlock victim (MySQL, under many reports for one order at once) just runs again.
APPLY_ATTEMPTS = 3


class Ledger:
    def __init__(self, url: str | URL = DEFAULT_URL, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.url = parse_url(url)
        self.engine = build_engine(self.url)
        self._clock = clock

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
        with self._transaction("migrating the schema") as conn:
            return migrate(conn)

    def schema_version(self) -> int:
        with self._transaction("reading the schema version") as conn:
            return current_version(conn)

    # ---- writes ---------------------------------------------------------------------------------------

    def register_order(self, out_id: str, phone: str, submitted_at: datetime | None = None) -> bool:
        """True when this call registered the order (new, or first seen in a receipt); False if already registered."""
        if not out_id or len(out_id) > OUT_ID_MAX or len(phone) > PHONE_MAX:
            raise ValueError(f"out_id must be 1 to {OUT_ID_MAX} characters and phone at most {PHONE_MAX}")
        submitted = require_aware(submitted_at, "submitted_at") if submitted_at else self._clock()
        with self._transaction("registering an order") as conn:
            return lifecycle.register_order(conn, out_id, phone, submitted, self._clock())

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

    def expire_order(self, out_id: str, reason: str) -> str | None:
        """PENDING -> EXPIRED with an outbox event (its id is returned); None when the order is not PENDING."""
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
        with self._transaction("marking an event delivered") as conn:
            return events.mark_event_delivered(conn, event_id, self._clock())

    def record_delivery_failure(self, event_id: str, error: str) -> bool:
        with self._transaction("recording a delivery failure") as conn:
            return events.record_delivery_failure(conn, event_id, error)

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

    # ---- plumbing -------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[Connection]:
        with transient_errors(self.url, doing), self.engine.begin() as conn:
            yield conn

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

"""The drain loop: N pollers, each with its own MNS client, receive batches until the queue is empty or the
deadline nears; every message is dispatched on its own; only what was applied, dead-lettered or accepted by
FC is deleted; a message that keeps failing is dead-lettered once its DequeueCount reaches the limit. The outbox
events of what was applied here go to a background deliverer (pollers never wait for a webhook), flushed at the end
within min(notify budget, time left); what is left of that window redelivers events that earlier runs could not
deliver (unless this run's deliveries failed). Whatever is not delivered stays in the outbox for redelivery."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.adapters.ledger import Ledger, ReportToApply
from shared.adapters.ledger.batch import BatchResult, DeadLetterToRecord
from shared.adapters.notify import MIN_ATTEMPT_SECONDS, Notifier
from shared.adapters.queue import AccessDenied, AlicomQueue, DeleteResult, Received
from shared.domain.models import Envelope
from shared.domain.orders import Outcome
from shared.errors import ConfigError, PoisonMessage, TransientError
from shared.logs import carry_context, logger, message_context
from shared.services.batch import process_batch
from shared.services.outbox import BackgroundDeliverer, redeliver
from shared.services.pipeline import DEAD_LETTERED, MessageOutcome, dead_letter, validate

# The outcomes of one message: a MessageOutcome (with the events it committed, to deliver) or just its outcomes.
Dispatch = Callable[[Envelope], MessageOutcome | tuple[str, ...]]
BATCH_SIZE = 16
MAX_BACKOFF_SECONDS = 5.0


@dataclass
class DrainSummary:
    counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    stopped_by: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        names = ("received", "applied", "duplicate", "conflict", "orphan", "accepted", DEAD_LETTERED)
        summary = {
            "received": self.counts["received"],
            "applied": self.counts["applied"],
            "duplicates": self.counts["duplicate"],
            "conflicts": self.counts["conflict"],
            "orphans": self.counts["orphan"],
            "accepted": self.counts["accepted"],
            "dead_lettered": self.counts[DEAD_LETTERED],
            "deleted": self.counts["deleted"],
            "delete_failed": self.counts["delete_failed"],
            "left_for_retry": self.counts["left_for_retry"],
            "events": self.counts["events"],  # outbox events written by this drain
            "delivered": self.counts["delivered"],  # ... delivered right after their commit
            "undelivered": self.counts["events"] - self.counts["delivered"],  # ... left for redelivery
            "seconds": round(self.seconds, 3),
            "stopped_by": sorted(self.stopped_by),
        }
        summary.update({k: v for k, v in self.counts.items() if k not in names and k not in summary})
        if self.errors:
            summary["errors"] = self.errors[:5]
        return summary


class Drainer:
    def __init__(
        self,
        *,
        queue_factory: Callable[[], AlicomQueue],
        dispatch: Dispatch | None = None,
        ledger: Ledger,
        apply_batches: bool = False,
        max_dequeue_count: int,
        pollers: int = 2,
        long_poll_seconds: int = 5,
        notifier: Notifier | None = None,
        notify_budget_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if dispatch is None and not apply_batches:
            raise ValueError("a drainer needs dispatch (one message at a time) or apply_batches")
        self._queue_factory = queue_factory
        self._dispatch = dispatch
        self._ledger = ledger
        self._apply_batches = apply_batches  # inline: one ledger transaction per received batch
        self._max_dequeue_count = max_dequeue_count
        self._pollers = pollers
        self._long_poll_seconds = long_poll_seconds
        self._notifier = notifier
        self._notify_budget_seconds = notify_budget_seconds
        self._deliverer: BackgroundDeliverer | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._summary = DrainSummary()
        self._unusual = UnusualLog(clock)

    def run(self, deadline: float) -> DrainSummary:
        """Drains until the queue is empty, `deadline` (a clock() value) passes, or access is denied."""
        started = self._clock()
        self._stop.clear()
        self._summary = DrainSummary()
        self._unusual = UnusualLog(self._clock)
        notifier = self._notifier if self._notify_budget_seconds > 0 else None  # 0: leave it all to redelivery
        self._deliverer = BackgroundDeliverer(self._ledger, notifier, clock=self._clock) if notifier else None
        threads = [
            threading.Thread(target=carry_context(self._poll), args=(deadline,), name=f"poller-{n}", daemon=True)
            for n in range(self._pollers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - self._clock()) + 30)
        self._unusual.flush()
        if self._deliverer is not None:
            self._finish_delivery(self._deliverer, deadline)
        self._summary.seconds = self._clock() - started
        logger.info("drain finished", extra=self._summary.as_dict())
        return self._summary

    def _finish_delivery(self, deliverer: BackgroundDeliverer, deadline: float) -> None:
        """Flushes this run's events, then redelivers earlier ones in what is left of the notify budget."""
        window_end = self._clock() + min(self._notify_budget_seconds, max(0.0, deadline - self._clock()))
        delivery = deliverer.close(window_end - self._clock())
        self._count("delivered", by=delivery.delivered)
        for name in ("failed", "rejected"):
            if getattr(delivery, name):
                self._count(f"delivery_{name}", by=getattr(delivery, name))
        if delivery.failed or self._notifier is None or window_end - self._clock() < MIN_ATTEMPT_SECONDS:
            return  # a sink that just failed is left alone until the events' backoff has passed
        try:
            caught_up = redeliver(self._ledger, self._notifier, window_end)
        except Exception as error:  # the ledger: the events stay due; the drain itself went well
            logger.warning("redelivery after the drain failed", extra={"error": str(error)})
            return
        if caught_up["pages"]:
            self._count("redelivered", by=caught_up["delivered"])

    # ---- one poller -----------------------------------------------------------------------------------

    def _count(self, *names: str, by: int = 1) -> None:
        with self._lock:
            for name in names:
                self._summary.counts[name] += by

    def _stopping(self, reason: str, error: str = "") -> None:
        with self._lock:
            first_time = reason not in self._summary.stopped_by
            self._summary.stopped_by.add(reason)
            if error and first_time:  # N pollers hitting the same wall report it once
                self._summary.errors.append(error)

    def _pause(self, seconds: float, deadline: float) -> None:
        self._stop.wait(max(0.0, min(seconds, deadline - self._clock())))

    def _poll(self, deadline: float) -> None:
        try:
            queue = self._queue_factory()
        except Exception as error:  # e.g. the token API is down: nothing was received, nothing is lost
            logger.error("cannot reach the queue", extra={"error": str(error)})
            self._stopping("queue_unavailable", str(error))
            return
        backoff = 0.2
        last_error = ""
        while not self._stop.is_set():
            remaining = deadline - self._clock()
            if remaining <= 0:
                self._stopping("deadline", last_error)  # e.g. the token API kept failing: say why
                return
            wait = max(0, min(self._long_poll_seconds, int(remaining) - 1))
            try:
                batch = queue.receive(BATCH_SIZE, wait)
            except ConfigError as denied:  # AccessDenied, a missing queue, a bad endpoint: no retry can help
                logger.error(str(denied))
                self._stopping("access_denied" if isinstance(denied, AccessDenied) else "config_error", str(denied))
                self._stop.set()
                return
            except TransientError as error:
                self._count("receive_errors")
                last_error = str(error)
                logger.warning("receive failed; backing off", extra={"error": str(error), "backoff_s": backoff})
                self._pause(backoff, deadline)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            backoff, last_error = 0.2, ""
            if not batch:
                self._stopping("empty")
                return
            failure = self._handle_batch(queue, batch)
            if failure is not None:  # nothing in the batch could be handled: stop instead of spinning
                logger.error("drain stopped: every message of a batch failed", extra={"error": failure})
                self._stopping("batch_failed", failure)
                return

    def _handle_batch(self, queue: AlicomQueue, batch: list[Received]) -> str | None:
        """Returns the first error when nothing in the batch could be handled (e.g. the ledger is down)."""
        self._count("received", by=len(batch))
        if self._apply_batches:
            return self._apply_batch(queue, batch)
        processed = process_batch(batch, self._handle)
        events = []
        for _record, outcome in processed.results:
            self._count(*outcome.outcomes)
            events.extend(outcome.events)
        self._deliver(events)
        for record, error in processed.failures:
            logger.warning(
                "message left for retry",
                extra={
                    "message_id": record.envelope.message_id,
                    "dequeue_count": record.envelope.dequeue_count,
                    "error": str(error),
                },
            )
        self._count("left_for_retry", by=len(processed.failures))
        self._delete(queue, [record.receipt_handle for record, _ in processed.results])
        if processed.results or not processed.failures:
            return None
        return str(processed.failures[0][1])

    # ---- inline: the whole batch in one ledger transaction -----------------------------------------------

    def _apply_batch(self, queue: AlicomQueue, batch: list[Received]) -> str | None:
        """Validates every message, applies the batch's reports and dead letters in one transaction (committed
        once), then deletes what is committed in one BatchDelete. A commit that fails deletes nothing."""
        plan = BatchPlan.of(batch)
        try:
            applied = self._ledger.apply_batch(plan.reports, plan.letters)
        except TransientError as error:  # nothing of the batch is committed: nothing is deleted
            return self._batch_failed(queue, plan, error)
        done = plan.outcomes(applied, self._max_dequeue_count)
        if done.given_up:  # failing reports at the dequeue limit: dead-lettered, then deleted
            try:
                self._ledger.apply_batch([], done.given_up)
                done.handled += [handle for handle, _ in done.given_up_handles]
                done.counts[DEAD_LETTERED] += len(done.given_up)
            except TransientError as error:
                done.left += len(done.given_up)
                done.first_error = done.first_error or str(error)
        self._report(done)
        self._deliver(done.events)
        self._delete(queue, done.handled)
        if done.handled or not done.left:
            return None
        return done.first_error

    def _batch_failed(self, queue: AlicomQueue, plan: BatchPlan, error: TransientError) -> str | None:
        """Messages at the dequeue limit are dead-lettered (a transaction of their own) and deleted; the rest come
        back after their visibility timeout."""
        given_up, handles = plan.at_dequeue_limit(self._max_dequeue_count, str(error))
        if given_up:
            try:
                self._ledger.apply_batch([], given_up)
            except TransientError:
                given_up, handles = [], []
        self._count(DEAD_LETTERED, by=len(given_up))
        self._count("left_for_retry", by=len(plan.received) - len(given_up))
        logger.warning(
            "batch left for retry",
            extra={"messages": len(plan.received) - len(given_up), "dead_lettered": len(given_up), "error": str(error)},
        )
        self._delete(queue, handles)
        return None if handles else str(error)

    def _report(self, done: BatchOutcome) -> None:
        """Counts the batch, and logs what is unusual in it once per kind (never one line per receipt)."""
        with self._lock:
            self._summary.counts.update(done.counts)
            self._summary.counts["left_for_retry"] += done.left
        for kind, out_ids in done.unusual.items():
            self._unusual.add(kind, out_ids)
        if done.letters:
            logger.warning("messages dead-lettered", extra={"count": len(done.letters), "dead_letters": done.letters})
        if done.left:
            logger.warning("messages left for retry", extra={"count": done.left, "error": done.first_error})

    def _deliver(self, events: list[dict]) -> None:
        if events:
            self._count("events", by=len(events))
            if self._deliverer is not None:
                self._deliverer.submit(events)

    def _delete(self, queue: AlicomQueue, handles: list[str]) -> None:
        """Deletes what was handled; a failure only means a redelivery, recognised as a duplicate."""
        if not handles:
            return
        try:
            result = queue.delete(handles)
        except Exception as error:  # e.g. the token cannot be refreshed: the effects are committed, so the
            # messages only come back and are recognised as duplicates
            logger.warning("delete failed; messages will be redelivered", extra={"error": str(error)})
            self._count("delete_failed", by=len(handles))
            return
        deleted, failed = list(result.deleted), dict(result.failed)
        if result.retryable:
            try:
                again = queue.delete(list(result.retryable))
            except Exception:
                again = DeleteResult()
            deleted += again.deleted
            failed = {h: code for h, code in failed.items() if h not in again.deleted}
        if failed:
            logger.warning(
                "delete failed; messages will be redelivered", extra={"failed": sorted(set(failed.values()))}
            )
        self._count("deleted", by=len(deleted))
        self._count("delete_failed", by=len(failed))

    def _handle(self, received: Received) -> MessageOutcome:
        envelope = received.envelope
        with message_context(envelope.message_id):
            try:
                validate(envelope)
            except PoisonMessage as poison:
                return dead_letter(self._ledger, envelope, poison.reason)
            try:
                handled = self._dispatch(envelope)
            except Exception as error:
                if envelope.dequeue_count < self._max_dequeue_count:
                    raise
                reason = f"gave up after {envelope.dequeue_count} deliveries; last error: {error}"
                return dead_letter(self._ledger, envelope, reason)
            if isinstance(handled, MessageOutcome):
                return handled
            return MessageOutcome(envelope.message_id, tuple(handled))


# ---- one received batch, planned and then accounted for ---------------------------------------------------------

MAX_LOGGED_IDS = 200  # out ids / message ids in one log line at most
UNUSUAL_LOG_SECONDS = 10.0  # a kind's out ids gathered since its last line wait at most this long
UNUSUAL = {
    "conflict": "reports contradict a terminal order: kept as conflicts, not applied",
    "orphan": "reports for unregistered out_ids: orders created as unregistered",
}


@dataclass
class BatchPlan:
    """What one received batch asks of the ledger: every report of its messages, and a dead letter per poison one."""

    received: list[Received]
    spans: list[slice | str]  # per message: its reports in `reports`, or the reason it is poison
    reports: list[ReportToApply] = field(default_factory=list)
    letters: list[DeadLetterToRecord] = field(default_factory=list)

    @classmethod
    def of(cls, batch: list[Received]) -> BatchPlan:
        plan = cls(batch, [])
        for received in batch:
            envelope = received.envelope
            try:
                writes = validate(envelope)
            except PoisonMessage as poison:
                plan.spans.append(poison.reason)
                plan.letters.append(_letter(envelope, poison.reason))
                continue
            plan.spans.append(slice(len(plan.reports), len(plan.reports) + len(writes)))
            plan.reports.extend(writes)
        return plan

    def outcomes(self, applied: BatchResult, max_dequeue_count: int) -> BatchOutcome:
        done = BatchOutcome()
        for received, span in zip(self.received, self.spans, strict=True):
            envelope = received.envelope
            if isinstance(span, str):
                done.counts[DEAD_LETTERED] += 1
                done.letters.append({"message_id": envelope.message_id, "reason": span})
                done.handled.append(received.receipt_handle)
                continue
            results = applied.reports[span]
            failed = [result for result in results if isinstance(result, Exception)]
            if failed:
                done.first_error = done.first_error or str(failed[0])
                if envelope.dequeue_count >= max_dequeue_count:
                    reason = f"gave up after {envelope.dequeue_count} deliveries; last error: {failed[0]}"
                    done.given_up.append(_letter(envelope, reason))
                    done.given_up_handles.append((received.receipt_handle, envelope.message_id))
                else:
                    done.left += 1
                continue
            for write, result in zip(self.reports[span], results, strict=True):
                done.counts[result.outcome.value] += 1
                if result.event is not None:
                    done.events.append(result.event)
                if result.outcome in (Outcome.CONFLICT, Outcome.ORPHAN):
                    done.unusual.setdefault(result.outcome.value, []).append(write.out_id)
            done.handled.append(received.receipt_handle)
        return done

    def at_dequeue_limit(self, max_dequeue_count: int, error: str) -> tuple[list[DeadLetterToRecord], list[str]]:
        given_up, handles = [], []
        for received, span in zip(self.received, self.spans, strict=True):
            envelope = received.envelope
            if isinstance(span, str) or envelope.dequeue_count >= max_dequeue_count:
                reason = (
                    span
                    if isinstance(span, str)
                    else (f"gave up after {envelope.dequeue_count} deliveries; last error: {error}")
                )
                given_up.append(_letter(envelope, reason))
                handles.append(received.receipt_handle)
        return given_up, handles


@dataclass
class BatchOutcome:
    counts: Counter[str] = field(default_factory=Counter)
    handled: list[str] = field(default_factory=list)  # receipt handles whose effect is committed
    events: list[dict] = field(default_factory=list)
    unusual: dict[str, list[str]] = field(default_factory=dict)  # "conflict" / "orphan" -> out ids
    letters: list[dict[str, str]] = field(default_factory=list)  # dead-lettered as poison: message id, reason
    given_up: list[DeadLetterToRecord] = field(default_factory=list)  # failing at the dequeue limit
    given_up_handles: list[tuple[str, str]] = field(default_factory=list)
    left: int = 0
    first_error: str = ""


class UnusualLog:
    """The out ids of unusual outcomes (orphans, conflicts), logged per kind in lines of up to MAX_LOGGED_IDS: the
    first batch's at once, then a line when MAX_LOGGED_IDS have gathered or UNUSUAL_LOG_SECONDS have passed, and
    the rest when the run ends. So at most one line per batch, and a queue full of orphans costs about what a queue
    of registered orders does (a log line costs more than applying a receipt)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._gathered: dict[str, list[str]] = {}
        self._last_line: dict[str, float] = {}

    def add(self, kind: str, out_ids: list[str]) -> None:
        now = self._clock()
        with self._lock:
            gathered = self._gathered.setdefault(kind, [])
            gathered.extend(out_ids)
            last = self._last_line.get(kind)
            if len(gathered) < MAX_LOGGED_IDS and last is not None and now - last < UNUSUAL_LOG_SECONDS:
                return
            self._gathered[kind], self._last_line[kind] = [], now
        self._log(kind, gathered)

    def flush(self) -> None:
        with self._lock:
            gathered, self._gathered = self._gathered, {}
        for kind, out_ids in gathered.items():
            if out_ids:
                self._log(kind, out_ids)

    @staticmethod
    def _log(kind: str, out_ids: list[str]) -> None:
        for start in range(0, len(out_ids), MAX_LOGGED_IDS):
            chunk = out_ids[start : start + MAX_LOGGED_IDS]
            logger.warning(UNUSUAL[kind], extra={"count": len(chunk), "out_ids": chunk})


def _letter(envelope: Envelope, reason: str) -> DeadLetterToRecord:
    return DeadLetterToRecord(envelope.message_id, envelope.message_type, envelope.body, reason, envelope.dequeue_count)

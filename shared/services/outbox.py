"""Delivering outbox events to the notifier and recording what happened, in as few transactions as possible.

- ``deliver_now(ledger, notifier, events, deadline)`` — right after the commit that wrote ``events`` (payload dicts):
  sent before ``deadline``, recorded with one UPDATE for the delivered and one transaction for the rest. Never raises.
- ``BackgroundDeliverer(ledger, notifier)`` — the drainer's: ``submit(events)`` returns at once, worker threads send,
  the bookkeeping is batched; ``close(timeout)`` delivers what it can within ``timeout`` and stops.
- ``redeliver(ledger, notifier, deadline, batch=100)`` — pages through the due events until none is due or the
  deadline nears (the sweep, ``flow-receipts outbox redeliver``).
- ``Notifications(ledger, notifier)`` — ``deliver`` and ``redeliver`` over one ledger, for the sweep.

Whatever is not delivered stays in the outbox: unsent events are due again at once, failed ones after a backoff
(``Notifier.retry_after``, doubling per attempt), rejected ones wait for a human (``retry_rejected_events``). An
event whose delivery could not be recorded is sent again later: delivery is at least once, consumers deduplicate by
event id.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from shared.adapters.ledger import Ledger, OutboxEvent
from shared.adapters.ledger.events import DeliveryFailure
from shared.adapters.notify import MIN_ATTEMPT_SECONDS, UNSENT, Notifier, SendResult, Verdict, failed
from shared.errors import TransientError
from shared.logs import carry_context, logger

DELIVERY_WORKERS = 4  # events in flight at once, at most
BACKLOG_FOR_ANOTHER_WORKER = 64  # queued events beyond which the background deliverer adds a worker (up to 4)
RECORD_BATCH = 200  # the background deliverer records its results every this many...
RECORD_INTERVAL_SECONDS = 0.5  # ...or this often, whichever comes first
GIVE_UP_AFTER_FAILURES = 20  # in a row: the background deliverer leaves the rest of its run for redelivery
JOIN_GRACE_SECONDS = 0.2

Result = tuple[str, SendResult]  # event id, what the notifier said


@dataclass
class DeliveryCounts:
    delivered: int = 0  # accepted by every sink and marked delivered
    failed: int = 0  # retried after a backoff
    rejected: int = 0  # kept for a human
    unsent: int = 0  # not tried (out of time): due again at once
    unrecorded: int = 0  # accepted, but the ledger could not mark them: sent again later

    @property
    def undelivered(self) -> int:
        return self.failed + self.rejected + self.unsent + self.unrecorded

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def deliver_now(
    ledger: Ledger,
    notifier: Notifier | None,
    events: Sequence[Mapping[str, Any]],
    deadline: float,
    *,
    workers: int = DELIVERY_WORKERS,
    clock: Callable[[], float] = time.monotonic,
) -> DeliveryCounts:
    """Delivers events just committed, before ``deadline`` (a clock() value), and records the results. Never raises:
    a sink or ledger failure only leaves events for redelivery (one warning says so)."""
    counts = DeliveryCounts()
    payloads = [event for event in events if event]
    if not payloads:
        return counts
    if notifier is None:
        counts.unsent = len(payloads)
        return counts
    ledger_error = ""
    results: list[Result] = []
    try:
        results = send_all(notifier, payloads, deadline, workers=workers, clock=clock)
        ledger_error = record(ledger, notifier, results, counts)
    except Exception as error:  # never into the caller: its commit is done, the events are in the outbox
        ledger_error = f"{type(error).__name__}: {error}"
    counts.unsent = len(payloads) - counts.delivered - counts.failed - counts.rejected - counts.unrecorded
    if counts.undelivered:
        logger.warning("events left for redelivery", extra=_left(counts, results, ledger_error, notifier))
    return counts


def redeliver(ledger: Ledger, notifier: Notifier | None, deadline: float, batch: int = 100) -> dict[str, int]:
    """Delivers due events, oldest first, page by page, until none is due or ``deadline`` (time.monotonic) nears.

    Returns counts: delivered, failed, rejected, unsent, unrecorded, pages, deadline_reached (0 / 1) and gave_up
    (1 when a whole page failed without a single delivery: the sink is down, the rest waits for the next run). A
    ledger that cannot be read or written raises TransientError (what was sent but not recorded is sent again)."""
    counts = DeliveryCounts()
    pages = 0
    reached = gave_up = False
    attempted: set[str] = set()  # with NOTIFY_RETRY_SECONDS=0 a failed event is due again at once: once per run
    started = time.monotonic()
    while notifier is not None:
        if deadline - time.monotonic() < MIN_ATTEMPT_SECONDS:
            reached = True
            break
        due = [event for event in ledger.due_events(batch) if event.event_id not in attempted]
        if not due:
            break
        attempted.update(event.event_id for event in due)
        pages += 1
        results = send_all(notifier, [payload_of(event) for event in due], deadline)
        ledger_error = record(ledger, notifier, results, counts)
        counts.unsent += sum(result.verdict is Verdict.UNSENT for _, result in results)
        if ledger_error:
            raise TransientError(f"redelivery could not record its results: {ledger_error}")
        if any(result.verdict is Verdict.UNSENT for _, result in results):
            reached = True
            break
        verdicts = [result.verdict for _, result in results]
        failures = verdicts.count(Verdict.FAILED)
        if Verdict.DELIVERED not in verdicts and failures >= min(GIVE_UP_AFTER_FAILURES, len(due)):
            gave_up = True  # rejections do not count: a webhook refusing some events is up
            break
    answer = {**counts.as_dict(), "pages": pages, "deadline_reached": int(reached), "gave_up": int(gave_up)}
    if pages:
        logger.info("outbox redelivered", extra={**answer, "seconds": round(time.monotonic() - started, 3)})
    return answer


def payload_of(event: OutboxEvent) -> dict[str, Any]:
    return {**event.payload, "event_id": event.event_id}


class Notifications:
    """Deliver-now and redelivery over one ledger and notifier (the sweep's ``Deliverer``)."""

    def __init__(self, ledger: Ledger, notifier: Notifier, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ledger = ledger
        self.notifier = notifier
        self._clock = clock

    def deliver(
        self, events: Sequence[Mapping[str, Any]], budget_seconds: float, deadline: float | None = None
    ) -> DeliveryCounts:
        """``deliver_now`` within ``budget_seconds`` (and before ``deadline``, when given)."""
        until = self._clock() + budget_seconds
        return deliver_now(self.ledger, self.notifier, events, until if deadline is None else min(until, deadline))

    def redeliver(self, deadline: float, batch: int = 100) -> dict[str, int]:
        return redeliver(self.ledger, self.notifier, deadline, batch)


# --- sending and recording ---------------------------------------------------------------------------------------


def send_all(
    notifier: Notifier,
    payloads: Sequence[Mapping[str, Any]],
    deadline: float,
    *,
    workers: int = DELIVERY_WORKERS,
    clock: Callable[[], float] = time.monotonic,
) -> list[Result]:
    """Every payload through the notifier, up to ``workers`` at once, none started after ``deadline``. An event whose
    attempt did not end by the deadline (plus a moment) is reported UNSENT."""
    results: list[SendResult] = [UNSENT] * len(payloads)
    if len(payloads) == 1 or workers <= 1:
        for index, payload in enumerate(payloads):
            results[index] = _attempt(notifier, payload, deadline)
        return [(str(p["event_id"]), r) for p, r in zip(payloads, results, strict=True)]
    order = itertools.count()  # next() on it is atomic under the GIL: each index is taken once

    def work() -> None:
        while (index := next(order)) < len(payloads) and deadline - clock() >= MIN_ATTEMPT_SECONDS:
            results[index] = _attempt(notifier, payloads[index], deadline)

    threads = [
        threading.Thread(target=carry_context(work), name=f"notify-{n}", daemon=True)
        for n in range(min(workers, len(payloads)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - clock()) + JOIN_GRACE_SECONDS)
    finished = list(results)  # an attempt still running is left UNSENT (its late answer is not recorded)
    return [(str(p["event_id"]), r) for p, r in zip(payloads, finished, strict=True)]


def _attempt(notifier: Notifier, payload: Mapping[str, Any], deadline: float | None) -> SendResult:
    try:
        return notifier.deliver(payload, deadline)
    except Exception as error:  # Notifier.deliver does not raise; this keeps a bug from losing the whole batch
        return failed(f"{type(error).__name__}: {error}")


def record(ledger: Ledger, notifier: Notifier, results: Sequence[Result], counts: DeliveryCounts) -> str:
    """One UPDATE for the delivered events, one transaction for the failed and rejected ones; counts them. Returns
    the ledger's error ("" when both were written)."""
    delivered = [event_id for event_id, result in results if result.verdict is Verdict.DELIVERED]
    failures = [
        DeliveryFailure(event_id, result.error, rejected=result.verdict is Verdict.REJECTED)
        for event_id, result in results
        if result.verdict in (Verdict.FAILED, Verdict.REJECTED)
    ]
    error = ""
    if delivered:
        try:
            ledger.mark_events_delivered(delivered)
            counts.delivered += len(delivered)
        except Exception as exc:  # TransientError mostly: they are sent again later
            counts.unrecorded += len(delivered)
            error = str(exc)
    if failures:
        try:
            ledger.record_delivery_failures(failures, retry_after=notifier.retry_after)
        except Exception as exc:  # the events stay due: tried again without their attempts counted
            error = error or str(exc)
    counts.rejected += sum(failure.rejected for failure in failures)
    counts.failed += sum(not failure.rejected for failure in failures)
    return error


def _left(counts: DeliveryCounts, results: Sequence[Result], ledger_error: str, notifier: Notifier) -> dict[str, Any]:
    """The one warning's keys: counts, where events go, the first sink error and the ledger's."""
    first = next((result.error for _, result in results if result.error), "")
    extra: dict[str, Any] = {**counts.as_dict(), "sinks": notifier.describe()}
    if first:
        extra["error"] = first
    if ledger_error:
        extra["ledger_error"] = ledger_error
    return extra


# --- the drainer's deliverer ---------------------------------------------------------------------------------------


class BackgroundDeliverer:
    """Delivers what it is handed on worker threads, so that whoever committed the events never waits for a sink;
    records the results in batches. One worker while it keeps up (a fast webhook: the least CPU taken from the
    pollers), more as the queue grows (a slow one), up to ``workers``. ``close(timeout)`` delivers what it can
    within ``timeout`` and stops; the rest stays in the outbox. After GIVE_UP_AFTER_FAILURES failures in a row it
    stops trying until closed."""

    def __init__(
        self,
        ledger: Ledger,
        notifier: Notifier,
        *,
        workers: int = DELIVERY_WORKERS,
        record_batch: int = RECORD_BATCH,
        record_interval_seconds: float = RECORD_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ledger = ledger
        self._notifier = notifier
        self._workers = workers
        self._record_batch = record_batch
        self._record_interval = record_interval_seconds
        self._clock = clock
        self._queue: queue.SimpleQueue[Mapping[str, Any] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # pending results, counters, state
        self._recording = threading.Lock()  # one bookkeeping transaction at a time
        self._pending: list[Result] = []
        self._last_recorded = clock()
        self._counts = DeliveryCounts()
        self._submitted = 0
        self._deadline: float | None = None  # set by close(): no attempt starts after it
        self._closed = False
        self._failures_in_a_row = 0
        self._gave_up = False
        self._first_error = ""
        self._ledger_error = ""

    def submit(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Hands committed events over; returns at once. After close() they just stay in the outbox."""
        fresh = [event for event in events if event]
        if not fresh:
            return
        with self._lock:
            if self._closed or self._deadline is not None:
                return
            self._submitted += len(fresh)
            for event in fresh:
                self._queue.put(event)
            running = len(self._threads)
            if running < self._workers and (not running or self._queue.qsize() > BACKLOG_FOR_ANOTHER_WORKER):
                self._start_worker()

    def close(self, timeout: float) -> DeliveryCounts:
        """Delivers what is queued for at most ``timeout`` seconds, records the results, stops the workers."""
        with self._lock:
            if self._deadline is None:
                self._deadline = self._clock() + max(0.0, timeout)
                while self._threads and len(self._threads) < min(self._workers, self._queue.qsize()):
                    self._start_worker()  # the flush: all hands on what is left
            deadline = self._deadline
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join(max(0.0, deadline - self._clock()))
        with self._lock:
            already_closed, self._closed = self._closed, True
        self._record()
        counts = DeliveryCounts(**self._counts.as_dict())
        counts.unsent = self._submitted - counts.delivered - counts.failed - counts.rejected - counts.unrecorded
        if counts.undelivered and not already_closed:
            extra: dict[str, Any] = {**counts.as_dict(), "sinks": self._notifier.describe()}
            if self._first_error:
                extra["error"] = self._first_error
            if self._ledger_error:
                extra["ledger_error"] = self._ledger_error
            logger.warning("events left for redelivery", extra=extra)
        return counts

    def _start_worker(self) -> None:
        name = f"deliverer-{len(self._threads)}"
        thread = threading.Thread(target=carry_context(self._work), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            deadline = self._deadline
            if self._gave_up or (deadline is not None and deadline - self._clock() < MIN_ATTEMPT_SECONDS):
                continue  # left in the outbox, due again at once
            self._add(str(event["event_id"]), _attempt(self._notifier, event, deadline))

    def _add(self, event_id: str, result: SendResult) -> None:
        if result.verdict is Verdict.UNSENT:
            return
        with self._lock:
            if self._closed:  # too late to be recorded: it is sent again by redelivery
                return
            self._pending.append((event_id, result))
            if result.verdict is Verdict.DELIVERED:
                self._failures_in_a_row = 0
            else:
                self._first_error = self._first_error or result.error
                self._failures_in_a_row += 1
                if self._failures_in_a_row == GIVE_UP_AFTER_FAILURES:
                    self._gave_up = True
                    logger.warning(
                        "notifications keep failing; the rest is left for redelivery",
                        extra={"failures_in_a_row": self._failures_in_a_row, "error": result.error},
                    )
            due = len(self._pending) >= self._record_batch
            due = due or self._clock() - self._last_recorded >= self._record_interval
        if due:
            self._record()

    def _record(self) -> None:
        with self._recording:
            with self._lock:
                batch, self._pending = self._pending, []
                self._last_recorded = self._clock()
            if not batch:
                return
            error = record(self._ledger, self._notifier, batch, self._counts)
            if error and not self._ledger_error:
                self._ledger_error = error

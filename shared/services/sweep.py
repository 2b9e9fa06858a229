"""The daily sweep: closes every order the receipts did not.

One cycle, resumable at every step (its state lives in the ledger's sweep_state row, under a lease so two sweeps
never run at once; a lease whose holder died expires and is taken over):

1. **query** — pages (keyset, never OFFSET) through PENDING orders submitted between 30 days and the grace period
   before the cycle started, asks the status query about each at SWEEP_QPS with at most SWEEP_CONCURRENCY in flight
   (throttling, 5xx and timeouts retried with backoff within the deadline), and acts on the answer
   (shared.domain.sweep.decide): SUCCEEDED / FAILED go through the same transition and transaction as a receipt
   (``resolved_by = sweep``; a receipt racing it changes the order once), NOT_FOUND re-submits or fails by policy,
   anything else is recorded on the order (last_query_*: why it stays open). The cursor is saved after every page;
   orders already asked in this cycle are skipped when a killed sweep resumes mid-page.
2. **expire** — PENDING orders submitted more than 30 days before the cycle become EXPIRED ("beyond the status query
   window"), each with its outbox event.
3. **redrive** — the processor's failure destination queue, back through the processor logic (async mode).
4. **redeliver** — undelivered outbox events.
5. **report** — the reconciliation report (JSON and CSV) and one summary log line.

It stops starting new work at its deadline, saves where it is and releases the lease, so the next run (or a
self-invocation) resumes; ``dry_run`` asks the status query and says what it would do, changing nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from shared.adapters.flow import FlowApi
from shared.adapters.ledger import Ledger, ReportToApply
from shared.adapters.ledger.records import SweepState, utc_now
from shared.adapters.ledger.sweeping import PendingRow
from shared.domain.orders import Outcome, Source
from shared.domain.sweep import (
    EXPIRY_REASON,
    NOT_FOUND_CODE,
    QUERY_WINDOW,
    Answer,
    Decision,
    NotFoundRule,
    StatusAnswer,
    Step,
    decide,
)
from shared.errors import ConfigError, TransientError
from shared.logs import carry_context, logger
from shared.ratelimit import RateLimiter
from shared.retry import retrying
from shared.services import report
from shared.services.intake import submit_top_up

PHASES = ("query", "expire", "redrive", "redeliver", "report")
ERROR = "ERROR"  # last_query_answer of an order whose query kept failing in this cycle


class Deliverer(Protocol):
    """What the sweep needs from notifications: deliver new events now, and redeliver what is due."""

    def deliver(self, events: list[dict[str, Any]], budget_seconds: float) -> None: ...

    def redeliver(self, deadline: float) -> dict[str, int]: ...


@dataclass(frozen=True)
class SweepConfig:
    grace: timedelta = timedelta(hours=1)
    qps: float = 20.0
    concurrency: int = 4
    page_size: int = 200
    lease: timedelta = timedelta(minutes=5)
    not_found: NotFoundRule = field(default_factory=NotFoundRule)
    report_dir: Path | None = None
    notify_budget_seconds: float = 10.0


@dataclass
class SweepResult:
    stopped_by: str  # finished | deadline | lease_held | lease_lost | config_error | ledger_unavailable
    cycle_id: str | None = None
    resumed: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    reports: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def has_work_left(self) -> bool:
        return self.stopped_by in ("deadline", "lease_lost")

    def as_dict(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "stopped_by": self.stopped_by,
            "cycle_id": self.cycle_id,
            "resumed": self.resumed,
            **dict(sorted(self.counts.items())),
            "reports": list(self.reports),
            "seconds": round(self.seconds, 3),
        }
        if self.error:
            summary["error"] = self.error
        return summary


class _OutOfTime(Exception):
    """The deadline came before this order's turn: it is left for the next run."""


class _Stop(Exception):
    def __init__(self, reason: str, error: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class Sweeper:
    def __init__(
        self,
        ledger: Ledger,
        flow: FlowApi,
        config: SweepConfig,
        *,
        deliverer: Deliverer | None = None,
        redrive: Callable[[float], dict[str, int]] | None = None,
        holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        progress: Callable[[str, Counter[str]], None] | None = None,
    ) -> None:
        self._ledger = ledger
        self._flow = flow
        self._config = config
        self._deliverer = deliverer
        self._redrive = redrive
        self.holder = holder or f"sweep-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._now = now
        self._limiter = RateLimiter(config.qps, clock=clock)
        self.progress = progress  # called with the phase and the cycle's counts as it goes (the CLI shows them)

    # ---- one run ----------------------------------------------------------------------------------------

    def run(self, deadline: float, *, dry_run: bool = False) -> SweepResult:
        started = self._clock()
        result = self._dry_run(deadline) if dry_run else self._run(deadline)
        result.seconds = self._clock() - started
        logger.info("sweep dry run finished" if dry_run else "sweep finished", extra=result.as_dict())
        return result

    def _run(self, deadline: float) -> SweepResult:
        try:
            state = self._ledger.acquire_sweep_lease(self.holder, self._config.lease)
        except TransientError as error:
            return SweepResult("ledger_unavailable", error=str(error))
        if state is None:
            held = self._ledger.sweep_state()
            holder = held.holder if held is not None else "another sweep"
            return SweepResult("lease_held", error=f"{holder} holds the sweep lease")
        cycle = _Cycle.resume(state) if state.cycle_id else _Cycle.start(self._now())
        result = SweepResult("finished", cycle.cycle_id, resumed=state.cycle_id is not None, counts=cycle.counts)
        try:
            for phase in PHASES[PHASES.index(cycle.phase) :]:
                cycle.phase = phase
                self._save(cycle)
                getattr(self, f"_phase_{phase}")(cycle, deadline, result)
            cycle.finished = True
        except _Stop as stop:
            result.stopped_by, result.error = stop.reason, stop.error
        except ConfigError as error:
            result.stopped_by, result.error = "config_error", str(error)
        except TransientError as error:
            result.stopped_by, result.error = "ledger_unavailable", str(error)
        self._release(cycle, result)
        return result

    def _release(self, cycle: _Cycle, result: SweepResult) -> None:
        if result.stopped_by == "lease_lost":
            return  # another sweep holds it now: its progress is the one to keep
        try:
            if cycle.finished:
                self._ledger.renew_sweep_lease(
                    self.holder,
                    None,
                    cycle_id=None,
                    cycle_started_at=None,
                    phase=None,
                    cursor_submitted_at=None,
                    cursor_out_id=None,
                    counts=dict(cycle.counts),
                    last_finished_at=self._now(),
                )
            else:
                self._ledger.renew_sweep_lease(self.holder, None, **cycle.progress())
        except TransientError as error:  # the lease then expires on its own; the cursor saved last stands
            logger.warning("sweep could not release its lease", extra={"error": str(error)})

    def _save(self, cycle: _Cycle) -> None:
        if not self._ledger.renew_sweep_lease(self.holder, self._config.lease, **cycle.progress()):
            raise _Stop("lease_lost", "another sweep took the lease over (this one was too slow to renew it)")
        if self.progress is not None:
            self.progress(cycle.phase, cycle.counts)

    def _out_of_time(self, deadline: float) -> bool:
        return self._clock() >= deadline

    # ---- 1. query ---------------------------------------------------------------------------------------

    def _phase_query(self, cycle: _Cycle, deadline: float, result: SweepResult) -> None:
        while True:
            if self._out_of_time(deadline):
                raise _Stop("deadline")
            page = self._page(cycle)
            done, events = self._ask_page(page, cycle, deadline, dry_run=False)
            cycle.advance(page, done)
            self._save(cycle)
            self._deliver(events)
            if done < len(page):
                raise _Stop("deadline")
            if len(page) < self._config.page_size:
                return

    def _page(self, cycle: _Cycle) -> list[PendingRow]:
        return self._ledger.pending_page(
            submitted_from=cycle.started_at - QUERY_WINDOW,
            submitted_to=cycle.started_at - self._config.grace,
            after=cycle.cursor,
            not_queried_since=cycle.started_at,
            limit=self._config.page_size,
        )

    def _ask_page(
        self, page: list[PendingRow], cycle: _Cycle, deadline: float, *, dry_run: bool
    ) -> tuple[int, list[dict[str, Any]]]:
        """Asks about the page's orders, at most `concurrency` at a time and at most `qps` per second; returns how
        many of them, from the start of the page, were handled (the rest ran out of time), and the events their
        transitions wrote. A ledger or configuration error stops the run once the page's work in flight is done."""
        events: list[dict[str, Any]] = []
        handled = [False] * len(page)
        errors: list[BaseException] = []
        work = carry_context(self._handle)
        with ThreadPoolExecutor(self._config.concurrency, thread_name_prefix="sweep") as pool:
            futures = [pool.submit(work, row, deadline, dry_run) for row in page]
            for index, future in enumerate(futures):
                try:
                    counted, event = future.result()
                except _OutOfTime:
                    continue
                except (ConfigError, TransientError) as error:  # the ledger or the credentials
                    errors.append(error)
                    for later in futures[index + 1 :]:
                        later.cancel()
                    continue
                handled[index] = True
                cycle.counts[counted] += 1
                if counted != "query_errors":
                    cycle.counts["queried"] += 1
                if event is not None:
                    events.append(event)
        done = next((index for index, ok in enumerate(handled) if not ok), len(page))
        if errors:
            cycle.advance(page, done)
            self._deliver(events)
            raise errors[0]
        return done, events

    def _handle(self, row: PendingRow, deadline: float, dry_run: bool) -> tuple[str, dict[str, Any] | None]:
        """One order: ask, decide, act. Returns what to count and the outbox event written (if any)."""
        order = row.order
        try:
            answer = retrying(lambda: self._ask(order.out_id, deadline), deadline)
        except (ConfigError, _OutOfTime):
            raise
        except TransientError as error:
            if not dry_run:
                self._ledger.record_query(order.out_id, ERROR, f"status query failed: {error}")
            return "query_errors", None
        decision = decide(answer, order, self._config.not_found, self._now())
        if dry_run:
            return _dry_run_count(answer, decision), None
        return self._act(row, answer, decision)

    def _ask(self, out_id: str, deadline: float) -> StatusAnswer:
        if not self._limiter.wait(deadline):  # every attempt, retries too, takes a slot
            raise _OutOfTime
        return self._flow.query(out_id)

    def _act(self, row: PendingRow, answer: StatusAnswer, decision: Decision) -> tuple[str, dict | None]:
        order = row.order
        if decision.step is Step.APPLY:
            assert answer.result is not None
            return self._apply(row, answer.result, answer.err_code, answer.err_msg, answer.raw)
        if decision.step is Step.FAIL:
            return self._apply(row, "4", NOT_FOUND_CODE, decision.note, answer.raw, counted="failed_not_found")
        if decision.step is Step.RESUBMIT:
            submitted = submit_top_up(self._ledger, self._flow, order.out_id, row.phone or "", order.product or "")
            if submitted.state == "rejected":
                return "resubmit_rejected", submitted.event
            self._ledger.record_query(order.out_id, Answer.NOT_FOUND.value, f"re-submitted: {submitted.state}")
            return f"resubmitted_{submitted.state}", None
        self._ledger.record_query(order.out_id, answer.state.value, decision.note)
        return "still_pending" if answer.state is Answer.STILL_PENDING else "not_found_waiting", None

    def _apply(
        self, row: PendingRow, result: str, err_code: str, err_msg: str, raw: dict, counted: str | None = None
    ) -> tuple[str, dict | None]:
        applied = self._ledger.apply_report(
            ReportToApply(
                message_id=f"sweep-{uuid.uuid4().hex}",
                message_type=self._flow.shape.query_action,
                out_id=row.order.out_id,
                phone=row.phone,
                result=result,
                err_code=err_code or None,
                err_msg=err_msg or None,
                raw_body=json.dumps(raw, ensure_ascii=False, sort_keys=True),
                source=Source.SWEEP,
            )
        )
        if applied.outcome is not Outcome.APPLIED:  # a receipt got there first
            return f"raced_{applied.outcome.value}", None
        return counted or ("resolved_succeeded" if result == "3" else "resolved_failed"), applied.event

    # ---- 2. expire --------------------------------------------------------------------------------------

    def _phase_expire(self, cycle: _Cycle, deadline: float, result: SweepResult) -> None:
        while True:
            if self._out_of_time(deadline):
                raise _Stop("deadline")
            due = self._ledger.expirable_orders(cycle.started_at - QUERY_WINDOW, self._config.page_size)
            events = [event for event in (self._ledger.expire(out_id, EXPIRY_REASON) for out_id in due) if event]
            cycle.counts["expired"] += len(events)
            self._save(cycle)
            self._deliver(events)
            if len(due) < self._config.page_size:
                return

    # ---- 3. redrive, 4. redeliver ------------------------------------------------------------------------

    def _phase_redrive(self, cycle: _Cycle, deadline: float, result: SweepResult) -> None:
        if self._redrive is None:
            return
        for name, value in self._redrive(deadline).items():
            if isinstance(value, int):
                cycle.counts[f"redrive_{name}"] += value
        if self._out_of_time(deadline):
            raise _Stop("deadline")

    def _phase_redeliver(self, cycle: _Cycle, deadline: float, result: SweepResult) -> None:
        if self._deliverer is None:
            return
        for name, value in self._deliverer.redeliver(deadline).items():
            if isinstance(value, int):
                cycle.counts[f"redelivered_{name}"] += value
        if self._out_of_time(deadline):
            raise _Stop("deadline")

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        if self._deliverer is not None and events:
            self._deliverer.deliver(events, self._config.notify_budget_seconds)

    # ---- 5. report --------------------------------------------------------------------------------------

    def _phase_report(self, cycle: _Cycle, deadline: float, result: SweepResult) -> None:
        built = report.build(self._ledger, now=self._now(), grace=self._config.grace, sweep=dict(cycle.counts))
        if self._config.report_dir is None:
            return
        stem = f"sweep-{cycle.started_at:%Y%m%dT%H%M%SZ}"
        try:
            result.reports = [str(path) for path in report.write(built, self._config.report_dir, stem)]
        except OSError as error:  # the sweep's work is done and saved; only the files are missing
            cycle.counts["report_failed"] += 1
            logger.error(
                "sweep report not written", extra={"report_dir": str(self._config.report_dir), "error": str(error)}
            )

    # ---- dry run ----------------------------------------------------------------------------------------

    def _dry_run(self, deadline: float) -> SweepResult:
        cycle = _Cycle.start(self._now())
        result = SweepResult("finished", None, counts=cycle.counts)
        try:
            for page in self._dry_pages(cycle):
                done, _ = self._ask_page(page, cycle, deadline, dry_run=True)
                if done < len(page):
                    result.stopped_by = "deadline"
                    break
            else:
                due = self._ledger.expirable_orders(cycle.started_at - QUERY_WINDOW, 1_000_000)
                cycle.counts["would_expire"] += len(due)
        except ConfigError as error:
            result.stopped_by, result.error = "config_error", str(error)
        except TransientError as error:
            result.stopped_by, result.error = "ledger_unavailable", str(error)
        return result

    def _dry_pages(self, cycle: _Cycle) -> Iterator[list[PendingRow]]:
        while True:
            page = self._page(cycle)
            if page:
                yield page
                last = page[-1].order
                cycle.cursor = (last.submitted_at, last.out_id)
            if len(page) < self._config.page_size:
                return


def _dry_run_count(answer: StatusAnswer, decision: Decision) -> str:
    if decision.step is Step.APPLY:
        return f"would_resolve_{answer.state.value.lower()}"
    return {Step.FAIL: "would_fail_not_found", Step.RESUBMIT: "would_resubmit"}.get(decision.step, "would_keep")


@dataclass
class _Cycle:
    cycle_id: str
    started_at: datetime
    phase: str = PHASES[0]
    cursor: tuple[datetime, str] | None = None
    counts: Counter[str] = field(default_factory=Counter)
    finished: bool = False

    @classmethod
    def start(cls, now: datetime) -> _Cycle:
        return cls(str(uuid.uuid4()), now)

    @classmethod
    def resume(cls, state: SweepState) -> _Cycle:
        assert state.cycle_id is not None and state.cycle_started_at is not None
        phase = state.phase if state.phase in PHASES else PHASES[0]
        return cls(state.cycle_id, state.cycle_started_at, phase, state.cursor, Counter(state.counts))

    def advance(self, page: list[PendingRow], done: int) -> None:
        """Moves the cursor past the first ``done`` orders of the page."""
        if done:
            last = page[done - 1].order
            self.cursor = (last.submitted_at, last.out_id)

    def progress(self) -> dict[str, Any]:
        submitted_at, out_id = self.cursor if self.cursor is not None else (None, None)
        return {
            "cycle_id": self.cycle_id,
            "cycle_started_at": self.started_at,
            "phase": self.phase,
            "cursor_submitted_at": submitted_at,
            "cursor_out_id": out_id,
            "counts": dict(self.counts),
        }

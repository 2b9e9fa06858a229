"""The background scheduler that completes charges after their delay and publishes their FlowReports.

Publishing failures (MNS faults, a dropped connection) are retried with backoff until the report is out:
a receipt is lost only when its charge's outcome says so (dropped).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from local.alicom.charges import DROPPED, DUPLICATED, ChargeBook
from local.alicom.reports import QueuePublisher, error_code, flow_report_body

FIRST_RETRY_SECONDS = 0.05
MAX_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Job:
    uid: str
    out_id: str
    copies_left: int | None = None  # None until the charge is completed
    attempt: int = 0


class CompletionScheduler:
    def __init__(self, book: ChargeBook, publisher: QueuePublisher, queue_for: Callable[[str], str]) -> None:
        self._book = book
        self._publisher = publisher
        self._queue_for = queue_for
        self._condition = threading.Condition()
        self._due: list[tuple[float, int, Job]] = []
        self._order = itertools.count()
        self._running_jobs = 0
        self._stopping = False
        self._published = 0
        self._dropped = 0
        self._duplicated = 0
        self._publish_errors: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name="alicom-completions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def schedule(self, uid: str, out_id: str, delay_seconds: float) -> None:
        self._push(Job(uid, out_id), delay_seconds)

    def _push(self, job: Job, delay_seconds: float) -> None:
        with self._condition:
            heapq.heappush(self._due, (time.monotonic() + delay_seconds, next(self._order), job))
            self._condition.notify_all()

    def pending(self) -> int:
        with self._condition:
            return len(self._due) + self._running_jobs

    def wait_idle(self, timeout: float) -> bool:
        """True once every scheduled completion has been applied and its reports published."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._due and not self._running_jobs, timeout)

    def counters(self) -> dict[str, object]:
        with self._condition:
            return {
                "published": self._published,
                "dropped": self._dropped,
                "duplicated": self._duplicated,
                "publish_errors": dict(self._publish_errors),
                "pending": len(self._due) + self._running_jobs,
            }

    def _run(self) -> None:
        while True:
            with self._condition:
                job = None
                while job is None:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    if self._due and self._due[0][0] <= now:
                        job = heapq.heappop(self._due)[2]
                        self._running_jobs += 1
                    else:
                        self._condition.wait(self._due[0][0] - now if self._due else None)
            try:
                self._process(job)
            finally:
                with self._condition:
                    self._running_jobs -= 1
                    self._condition.notify_all()

    def _process(self, job: Job) -> None:
        if job.copies_left is None:
            charge = self._book.complete(job.uid, job.out_id)
            with self._condition:
                if charge.report == DROPPED:
                    self._dropped += 1
                    return
                if charge.report == DUPLICATED:
                    self._duplicated += 1
            job = replace(job, copies_left=2 if charge.report == DUPLICATED else 1)
        charge = self._book.find(job.uid, job.out_id)
        assert charge is not None and job.copies_left is not None
        body = flow_report_body(charge.phone, charge.out_id, charge.result, charge.err_code, charge.err_msg)
        copies_left = job.copies_left
        while copies_left:
            try:
                self._publisher.publish(self._queue_for(job.uid), body)
            except Exception as error:  # any failure of the MNS call: retry later, never lose the report
                with self._condition:
                    self._publish_errors[error_code(error)] += 1
                backoff = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2**job.attempt)
                self._push(replace(job, copies_left=copies_left, attempt=job.attempt + 1), backoff)
                return
            copies_left -= 1
            with self._condition:
                self._published += 1

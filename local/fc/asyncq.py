"""Asynchronous invocations: accepted events wait in an in-memory queue (durable for the emulator's life),
worker threads run them, failed attempts are retried with a doubling backoff up to the function's
max_async_retry_attempts and within its max_async_event_age_seconds, and a final failure is handed to
`on_final_failure` (which sends the destination message)."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from local.fc.destination import EXPIRED
from local.fc.functions import FunctionSpec
from local.fc.instance import Outcome


@dataclass
class AsyncEvent:
    request_id: str
    spec: FunctionSpec
    payload: bytes
    qualifier: str = "LATEST"
    api: str = "2016-08-15"  # the InvokeFunction API that accepted it (2016-08-15 or 2023-03-30)
    function_arn: str | None = None  # the ARN its destination message names; None: the FC 2.0 one of `spec`
    accepted_at: float = field(default_factory=time.time)
    accepted_monotonic: float = field(default_factory=time.monotonic)
    attempts: int = 0
    last: Outcome | None = None

    @property
    def function(self) -> str:
        return f"{self.spec.service}/{self.spec.name}"

    def age(self, now: float | None = None) -> float:
        return (now if now is not None else time.monotonic()) - self.accepted_monotonic


class AsyncDispatcher:
    def __init__(
        self,
        attempt: Callable[[AsyncEvent], Outcome],
        on_success: Callable[[AsyncEvent], None],
        on_retry: Callable[[AsyncEvent, float], None],
        on_final_failure: Callable[[AsyncEvent, str], None],
        *,
        workers: int = 2,
        backoff_seconds: float = 0.2,
        backoff_max_seconds: float = 5.0,
    ) -> None:
        self._attempt = attempt
        self._on_success = on_success
        self._on_retry = on_retry
        self._on_final_failure = on_final_failure
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self._heap: list[tuple[float, int, AsyncEvent]] = []
        self._sequence = itertools.count()
        self._in_flight: Counter = Counter()
        self._changed = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"fc-async-{i}", daemon=True) for i in range(max(1, workers))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._changed:
            self._stopping = True
            self._heap.clear()
            self._changed.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def submit(self, event: AsyncEvent, delay_seconds: float = 0.0) -> None:
        self._schedule(event, delay_seconds)

    def depths(self) -> dict[str, dict[str, int]]:
        with self._changed:
            queued = Counter(event.function for _, _, event in self._heap)
            names = set(queued) | set(self._in_flight)
            return {name: {"queue_depth": queued[name], "in_flight": self._in_flight[name]} for name in names}

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._heap or sum(self._in_flight.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def _schedule(self, event: AsyncEvent, delay_seconds: float) -> None:
        with self._changed:
            if self._stopping:
                return
            heapq.heappush(self._heap, (time.monotonic() + delay_seconds, next(self._sequence), event))
            self._changed.notify()

    def _next(self) -> AsyncEvent | None:
        with self._changed:
            while not self._stopping:
                if self._heap:
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        event = heapq.heappop(self._heap)[2]
                        self._in_flight[event.function] += 1
                        return event
                    self._changed.wait(wait)
                else:
                    self._changed.wait()
            return None

    def _work(self) -> None:
        while True:
            event = self._next()
            if event is None:
                return
            try:
                self._run(event)
            finally:
                with self._changed:
                    self._in_flight[event.function] -= 1
                    if not self._in_flight[event.function]:
                        del self._in_flight[event.function]
                    self._changed.notify_all()

    def _run(self, event: AsyncEvent) -> None:
        spec = event.spec
        if event.age() > spec.max_async_event_age_seconds:
            self._on_final_failure(event, EXPIRED)
            return
        outcome = self._attempt(event)
        event.attempts += 1
        event.last = outcome
        if outcome.ok:
            self._on_success(event)
            return
        if self._stopping:
            return
        if event.attempts > spec.max_async_retry_attempts:
            self._on_final_failure(event, outcome.error_type)
            return
        delay = min(self.backoff_seconds * 2 ** (event.attempts - 1), self.backoff_max_seconds)
        if event.age() + delay > spec.max_async_event_age_seconds:
            self._on_final_failure(event, EXPIRED)
            return
        self._on_retry(event, delay)
        self._schedule(event, delay)

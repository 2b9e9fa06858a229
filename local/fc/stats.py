"""Counters per function and per response, plus recent invocation records, for the admin API and tests."""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

FUNCTION_COUNTERS = (
    "sync_invocations",
    "sync_errors",
    "async_accepted",
    "attempts",
    "succeeded",
    "failed_attempts",
    "retries",
    "expired",
    "destination_messages",
    "destination_errors",
)


class Stats:
    def __init__(self, max_records: int = 1000) -> None:
        self._lock = threading.Lock()
        self._functions: dict[str, Counter] = {}
        self._responses: Counter = Counter()
        self._errors: Counter = Counter()
        self._faults: Counter = Counter()
        self._requests = 0
        self._records: deque[dict[str, Any]] = deque(maxlen=max_records)

    def add(self, function: str, counter: str, amount: int = 1) -> None:
        if counter not in FUNCTION_COUNTERS:
            raise KeyError(counter)
        with self._lock:
            self._functions.setdefault(function, Counter())[counter] += amount

    def request(self) -> None:
        with self._lock:
            self._requests += 1

    def response(self, status: int, code: str | None = None) -> None:
        with self._lock:
            self._responses[str(status)] += 1
            if code:
                self._errors[code] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(dict(entry))

    def records(self, function: str | None = None, request_id: str | None = None, limit: int = 100) -> list[dict]:
        with self._lock:
            found = [
                dict(r)
                for r in self._records
                if (function is None or r["function"] == function)
                and (request_id is None or r["request_id"] == request_id)
            ]
        return found[-limit:] if limit > 0 else []

    def snapshot(self, functions: list[str], gauges: dict[str, dict[str, int]]) -> dict[str, Any]:
        with self._lock:
            per_function = {}
            for name in sorted(set(functions) | set(self._functions)):
                counts = self._functions.get(name, Counter())
                per_function[name] = {key: counts[key] for key in FUNCTION_COUNTERS} | gauges.get(name, {})
            return {
                "functions": per_function,
                "operations": {
                    "InvokeFunction": {
                        "requests": self._requests,
                        "responses": dict(self._responses),
                        "errors": dict(self._errors),
                        "faults": dict(self._faults),
                    }
                },
            }

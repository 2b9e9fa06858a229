"""Per-operation counters for the admin endpoint."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._responses: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._errors: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._faults: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def request(self, operation: str) -> None:
        with self._lock:
            self._requests[operation] += 1

    def response(self, operation: str, status: int, code: str | None = None) -> None:
        with self._lock:
            self._responses[operation][str(status)] += 1
            if code:
                self._errors[operation][code] += 1

    def fault(self, operation: str, kind: str) -> None:
        with self._lock:
            self._faults[operation][kind] += 1

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            return {
                operation: {
                    "requests": count,
                    "responses": dict(self._responses[operation]),
                    "errors": dict(self._errors[operation]),
                    "faults": dict(self._faults[operation]),
                }
                for operation, count in sorted(self._requests.items())
            }

"""A rate limit shared by threads: at most ``rate`` calls per second, evenly spaced, no bursts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = clock()

    def wait(self, deadline: float | None = None) -> bool:
        """Blocks until this caller's slot; False (without waiting) when the slot would come after ``deadline``."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            if deadline is not None and slot >= deadline:
                return False
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)
        return True

"""Bounded retry: exponential backoff with jitter on TransientError, within a deadline."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from shared.errors import Throttled, TransientError
from shared.logs import logger

_T = TypeVar("_T")


def retrying(
    call: Callable[[], _T],
    deadline: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    base_seconds: float = 0.2,
    throttled_base_seconds: float = 1.0,
    max_seconds: float = 5.0,
    jitter: Callable[[], float] = random.random,
) -> _T:
    """``call()``, retried on ``TransientError`` with exponential backoff while time is left before ``deadline``.

    The n-th pause (n = 0, 1, ...) is ``min(max_seconds, base * 2**n)``, scaled by a random factor in [0.5, 1)
    ("equal jitter": callers that failed together do not retry together); ``base`` is ``throttled_base_seconds``
    after a ``Throttled`` error and ``base_seconds`` otherwise. When the pause would end at or after ``deadline``
    (a ``clock()`` value, ``time.monotonic`` by default, like ``FcInvocation.deadline``) the last error is raised.
    A transient error whose ``retry_helps`` is False (a stale MNS receipt handle), ``ConfigError``,
    ``PoisonMessage`` and anything else that is not a ``TransientError`` propagate at once.
    """
    attempt = 0
    while True:
        try:
            return call()
        except TransientError as error:
            if not error.retry_helps:
                raise
            base = throttled_base_seconds if isinstance(error, Throttled) else base_seconds
            pause = min(max_seconds, base * 2**attempt) * (0.5 + jitter() / 2)
            if clock() + pause >= deadline:
                raise
            logger.info(
                "transient error; retrying",
                extra={"error": str(error), "attempt": attempt + 1, "backoff_s": round(pause, 3)},
            )
            sleep(pause)
            attempt += 1

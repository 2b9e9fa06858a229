"""Settings and checks the property-based tests share.

``fuzz(n)`` is the settings of one test: n examples, derandomized (the same cases on every run, so CI is
reproducible), no example database, no deadline. The counts are chosen so the whole directory stays under a minute
on a small machine; ``FUZZ_SCALE`` (a float, default 1) multiplies them for a longer local run, and ``FUZZ_SEED``
(an integer) swaps the fixed cases for random ones seeded with it.
"""

from __future__ import annotations

import os

from fuzz_strategies import PHONES
from hypothesis import HealthCheck, seed, settings

from shared.adapters.ledger.text import storable_body

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
SEED = os.environ.get("FUZZ_SEED")


def fuzz(examples: int):
    chosen = settings(
        max_examples=max(1, int(examples * SCALE)),
        derandomize=SEED is None,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )
    if SEED is None:
        return chosen

    def both(test):
        return seed(int(SEED))(chosen(test))

    return both


def check_reason(reason: str) -> None:
    """A dead letter's reason: said, on one line, never a phone number."""
    assert reason and reason.strip(), "a dead letter needs a reason"
    assert "\n" not in reason and "\r" not in reason, reason
    for phone in PHONES:
        assert phone not in reason, reason


def stored(body: str | bytes) -> str:
    """How the ledger keeps a raw body (exactly, unless it cannot: NUL or non-UTF-8 bytes go in as base64:...)."""
    return storable_body(body)

"""Hooks for NOTIFY_HOOK=notify_hooks:<name> in tests (tests/ is on sys.path). Each records what it was given."""

from __future__ import annotations

import threading
from typing import Any

received: list[dict[str, Any]] = []
release = threading.Event()  # what `hang` waits for
running = threading.Semaphore(0)  # released by `hang` each time it starts
NOT_CALLABLE = "a string is not a function"


def reset() -> None:
    received.clear()
    release.clear()


def record(event: dict[str, Any]) -> None:
    received.append(event)


def explode(event: dict[str, Any]) -> None:
    received.append(event)
    raise RuntimeError(f"business code failed for {event['out_id']}")


def hang(event: dict[str, Any]) -> None:
    received.append(event)
    running.release()
    release.wait(30)

"""The JSON log lines of a CLI run go to stderr (or a file), never between the tables and JSON on stdout; the
level is WARNING unless --log-level says otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the time: a progress bar on screen swaps it to print lines above itself."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def route_logs(level: str, log_file: Path | None = None) -> Callable[[], None]:
    """Points the flow-receipts logger at stderr or ``log_file`` (appended) at ``level``; returns the undo."""
    from shared.logs import logger

    handler = logger.registered_handler
    previous_level = logger.log_level
    stream = log_file.open("a", encoding="utf-8") if log_file is not None else _CurrentStderr()
    previous_stream = handler.setStream(stream)  # type: ignore[attr-defined]
    logger.setLevel(level)

    def restore() -> None:
        handler.setStream(previous_stream)  # type: ignore[attr-defined]
        logger.setLevel(previous_level)
        if log_file is not None:
            stream.close()  # type: ignore[union-attr]

    return restore

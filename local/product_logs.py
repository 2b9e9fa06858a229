"""The product's log lines (ours and the SDKs') into a file, so that a command's terminal shows only its own output."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TextIO


def logs_to(path: Path) -> TextIO:
    """Our logger's handler and the root logger (WARNING and up) write to ``path``; the open stream is returned."""
    from shared.logs import logger

    stream = path.open("a", encoding="utf-8")
    logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger().addHandler(logging.StreamHandler(stream))
    logging.getLogger().setLevel(logging.WARNING)
    return stream

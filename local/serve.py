"""Run one emulator in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import json
import signal
import threading
from typing import Protocol


class Startable(Protocol):
    def start(self) -> object: ...

    def stop(self) -> None: ...


def serve_until_signalled(server: Startable, announcement: dict) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(json.dumps(announcement), flush=True)
    stop.wait()
    server.stop()
    return 0

"""The process behind one function instance. It talks to its Instance over one socket (pickled dicts through
multiprocessing.connection): a `setup`, then `init` once (import the handler, run the initializer), then one
`invoke` at a time. The function's prints go to this process's stdout/stderr, which the emulator points at
its own stderr; the last 4 KB of each call are also sent back (FC's x-fc-log-result)."""

from __future__ import annotations

import io
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, TextIO

from local.fc.context import FcContext
from local.fc.loader import encode_result, error_payload, load_callable, prepare_path

LOG_TAIL_BYTES = 4096


class _Tee(io.TextIOBase):
    """Writes through to the real stream and, while a call runs, into that call's log."""

    def __init__(self, stream: TextIO, sink: _LogSink) -> None:
        self._stream = stream
        self._sink = sink

    def write(self, text: str) -> int:
        self._stream.write(text)
        self._stream.flush()
        self._sink.add(text)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


class _LogSink:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: list[str] | None = None

    def start(self) -> None:
        with self._lock:
            self._parts = []

    def add(self, text: str) -> None:
        with self._lock:
            if self._parts is not None:
                self._parts.append(text)

    def stop(self) -> str:
        with self._lock:
            text, self._parts = "".join(self._parts or []), None
        return text.encode("utf-8", "replace")[-LOG_TAIL_BYTES:].decode("utf-8", "ignore")


class _Worker:
    def __init__(self, setup: dict[str, Any]) -> None:
        self.setup = setup
        self.handler: Any = None
        self.logs = _LogSink()
        sys.stdout = _Tee(sys.stdout, self.logs)
        sys.stderr = _Tee(sys.stderr, self.logs)

    def initialize(self, context: FcContext) -> dict[str, Any]:
        self.logs.start()
        try:
            prepare_path(self.setup["code_uri"], self.setup["python_path"])
            self.handler = load_callable(self.setup["code_uri"], self.setup["handler"])
            if self.setup["initializer"]:
                print(f"FC Initialize Start RequestId: {context.request_id}")
                load_callable(self.setup["code_uri"], self.setup["initializer"])(context)
                print(f"FC Initialize End RequestId: {context.request_id}")
        except (Exception, SystemExit) as exc:
            print(f"FC Initialize Error RequestId: {context.request_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return {"ok": False, "error": error_payload(exc), "logs": self.logs.stop()}
        return {"ok": True, "logs": self.logs.stop()}

    def invoke(self, event: bytes, context: FcContext) -> dict[str, Any]:
        self.logs.start()
        print(f"FC Invoke Start RequestId: {context.request_id}")
        try:
            body = encode_result(self.handler(event, context))
        except (Exception, SystemExit) as exc:
            print(f"FC Invoke Error RequestId: {context.request_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return {"ok": False, "error": error_payload(exc), "logs": self.logs.stop()}
        print(f"FC Invoke End RequestId: {context.request_id}")
        return {"ok": True, "body": body, "logs": self.logs.stop()}


def main(fd: int, bootstrap_path: str = "") -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the emulator owns the lifecycle; Ctrl-C goes to it
    if bootstrap_path and bootstrap_path in sys.path:
        sys.path.remove(bootstrap_path)
    connection = Connection(fd)
    try:
        worker = _Worker(connection.recv())
        connection.send({"ready": True})  # boot time does not count against the initializer's timeout
        while True:
            message = connection.recv()
            started = time.monotonic()
            context = FcContext.from_dict(message["context"])
            is_init = message["op"] == "init"
            reply = worker.initialize(context) if is_init else worker.invoke(message["event"], context)
            reply["duration_ms"] = (time.monotonic() - started) * 1000
            connection.send(reply)
    except (EOFError, ConnectionError, KeyboardInterrupt):
        return 0

"""One drainer process of bench.drain_throughput's scale-out phase (FC runs concurrent instances on one queue).

    python -m bench.drain_worker --result PATH [--seconds 60]

The drainer's settings come from the environment, as on FC (the parent passes the local stack's endpoints and keys,
LEDGER_URL, DISPATCH_MODE=inline, DRAIN_POLLERS, DRAIN_LONG_POLL_SECONDS). The process builds what a warm instance
holds — the Runtime, its ledger engine with one pooled connection per poller, the queue token — writes
`<PATH>.ready` (JSON: the PostgreSQL backend pids of its connections, if any) and waits for one line on stdin. Then
it runs `Runtime(...).drainer(credentials).run(deadline)` once and writes `<PATH>` (JSON): the drain's summary, its
wall and CPU time, and where its pollers spent their time, measured from outside the product:
  mns_s          in MnsQueue.receive / MnsQueue.delete (the SDK calls, with their latency), less the receives
                 that found the queue empty (empty_receive_s: each poller's last, a long poll)
  ledger_s       in Ledger.apply_batch (the whole transaction, commit included)
  lock_wait_s    in SQLite's BEGIN IMMEDIATE (waiting for the single writer's lock; 0 on servers)
  backend_cpu_s  CPU time of this process's PostgreSQL backends over the drain (read from /proc)
Poller times are summed over the pollers (poller-seconds). Exits 0 when the drain ran, whatever it found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from shared.adapters import queue as queue_module
from shared.adapters.fc import Credentials
from shared.runtime import Runtime

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Timers:
    """Poller-seconds and call counts per kind, shared by the pollers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, kind: str, seconds: float) -> None:
        with self._lock:
            self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds
            self.calls[kind] = self.calls.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"seconds": dict(self.seconds), "calls": dict(self.calls)}


def _timed(timers: Timers, kind: str, function: Any) -> Any:
    """`function`, its calls timed as `kind` (a call that returns an empty list as `<kind>_empty`)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        answer: Any = None
        try:
            answer = function(*args, **kwargs)
            return answer
        finally:
            timers.add(f"{kind}_empty" if answer == [] else kind, time.perf_counter() - started)

    return wrapper


def instrument(runtime: Runtime, timers: Timers) -> list[int]:
    """Times the MNS calls, the ledger's batches and SQLite's BEGIN IMMEDIATE; returns the list that collects the
    PostgreSQL backend pid of every connection the engine opens."""
    queue_class = queue_module.MnsQueue
    queue_class.receive = _timed(timers, "receive", queue_class.receive)  # type: ignore[method-assign]
    queue_class.delete = _timed(timers, "delete", queue_class.delete)  # type: ignore[method-assign]
    ledger = runtime.ledger
    ledger.apply_batch = _timed(timers, "ledger", ledger.apply_batch)  # type: ignore[method-assign]
    engine = ledger.engine
    backend_pids: list[int] = []

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        info = getattr(dbapi_connection, "info", None)  # psycopg 3: ConnectionInfo
        pid = getattr(info, "backend_pid", None)
        if isinstance(pid, int):
            backend_pids.append(pid)

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("BEGIN"):
            conn.info["bench_begin"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("BEGIN"):
            timers.add("lock_wait", time.perf_counter() - conn.info.pop("bench_begin", time.perf_counter()))

    return backend_pids


def process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain_worker", description=__doc__.split("\n")[0])
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=60.0, help="the drain's deadline (default 60 s)")
    args = parser.parse_args(argv)

    runtime = Runtime()  # settings from the environment, as on FC
    timers = Timers()
    backend_pids = instrument(runtime, timers)
    settings = runtime.settings
    credentials = Credentials(
        os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"], os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"], None
    )
    runtime.tokens(credentials).token()  # a warm instance holds its queue token ...
    connections = [runtime.ledger.engine.connect() for _ in range(settings.drain_pollers)]
    for connection in connections:  # ... and its pooled ledger connections
        connection.close()
    drainer = runtime.drainer(credentials)
    Path(f"{args.result}.ready").write_text(json.dumps({"backend_pids": backend_pids}))
    sys.stdin.readline()  # go

    pids_before = {pid: process_cpu_seconds(pid) for pid in backend_pids}
    cpu_before = own_cpu_seconds()
    started_at = time.time()
    summary = drainer.run(time.monotonic() + args.seconds)
    ended_at = time.time()
    cpu = own_cpu_seconds() - cpu_before
    backend_cpu = sum(process_cpu_seconds(pid) - pids_before.get(pid, 0.0) for pid in backend_pids)
    timed = timers.snapshot()
    result = {
        "pid": os.getpid(),
        "pollers": settings.drain_pollers,
        "summary": summary.as_dict(),
        "errors": summary.errors[:5],
        "started_at": started_at,
        "ended_at": ended_at,
        "cpu_s": cpu,
        "backend_cpu_s": backend_cpu,
        "backends": len(backend_pids),
        "mns_s": timed["seconds"].get("receive", 0.0) + timed["seconds"].get("delete", 0.0),
        "empty_receive_s": timed["seconds"].get("receive_empty", 0.0),
        "ledger_s": timed["seconds"].get("ledger", 0.0),
        "lock_wait_s": timed["seconds"].get("lock_wait", 0.0),
        "calls": timed["calls"],
    }
    temporary = args.result.with_suffix(".tmp")
    temporary.write_text(json.dumps(result))
    temporary.rename(args.result)
    runtime.ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

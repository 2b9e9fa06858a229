"""Ledger apply rate per backend, through the public single-report API (Ledger.apply_report).

    .venv/bin/python -m bench.ledger_apply [--backend sqlite|mariadb|postgresql|all] [--reports N] [--threads T]

For each backend: a fresh ledger (SQLite: a temporary file; MariaDB / PostgreSQL: a throw-away database /
schema on the server of TEST_MARIADB_URL / TEST_POSTGRES_URL, dropped afterwards), N registered orders
(untimed), then three timed phases of N reports each, spread over T threads:
  applies      one report per order (90 % result "3", 10 % "4")     -> applied
  redelivered  the same N messages again (same message ids)         -> duplicate
  same result  N new message ids with the same out_id and result    -> duplicate (receipt kept)
Targets: applies >= 2,000/s on SQLite and >= 1,000/s on MariaDB and PostgreSQL; both duplicate phases no
slower than applies. Prints one line per backend and one JSON line. Each phase stops at --seconds (the rate
is then over what was done). Exits non-zero only on errors (a wrong outcome, a failed call, a selected
server that cannot be reached), never on a missed target.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.adapters.ledger import Ledger, ReportToApply
from shared.adapters.ledger.scratch import scratch_namespace
from shared.domain.orders import Outcome
from shared.errors import TransientError

TARGETS = {"sqlite": 2000.0, "mariadb": 1000.0, "postgresql": 1000.0}
SERVER_URLS = {
    "mariadb": ("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/flow_receipts_test"),
    "postgresql": ("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/flow_receipts_test"),
}
# SQLite has one writer at a time: extra threads only queue on its lock. Server databases overlap round trips
# and share commit flushes (group commit) across connections.
DEFAULT_THREADS = {"sqlite": 1, "mariadb": 4, "postgresql": 4}
PHONE = "13800138000"


@dataclass
class Phase:
    name: str
    expected: Outcome
    done: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def _report(out_id: str, message_id: str, result: str) -> ReportToApply:
    body = json.dumps({"phone": PHONE, "out_id": out_id, "result": result, "err_code": "", "err_msg": ""})
    return ReportToApply(
        message_id=message_id, message_type="FlowReport", out_id=out_id, phone=PHONE, result=result, raw_body=body
    )


def _run(phase: Phase, calls: list[Callable[[], Any]], threads: int, seconds: float) -> Phase:
    """Run the calls over `threads` workers until done or the deadline; count outcomes and errors."""
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()
    cursor = iter(calls)

    def worker() -> None:
        while time.perf_counter() < deadline:
            with lock:
                call = next(cursor, None)
            if call is None:
                return
            try:
                outcome = call().outcome.value
            except Exception as error:  # a benchmark reports every failure, whatever it is
                with lock:
                    phase.errors.append(f"{type(error).__name__}: {error}"[:300])
                continue
            with lock:
                phase.done += 1
                phase.outcomes[outcome] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    phase.seconds = time.perf_counter() - started
    wrong = phase.done - phase.outcomes[phase.expected.value]
    if wrong:
        phase.errors.append(f"{wrong} reports had another outcome than {phase.expected.value}: {dict(phase.outcomes)}")
    return phase


@contextmanager
def _ledger_url(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ledger-bench-") as directory:
            yield f"sqlite:///{Path(directory) / 'ledger.sqlite3'}"
        return
    env_var, default = SERVER_URLS[backend]
    with scratch_namespace(os.environ.get(env_var) or default, "flow_receipts_bench") as url:
        yield url.render_as_string(hide_password=False)


def bench_backend(backend: str, reports: int, threads: int, seconds: float) -> dict[str, Any]:
    out_ids = [f"bench-{i:07d}" for i in range(reports)]
    applies = [
        _report(out_id, uuid.uuid4().hex.upper(), "4" if i % 10 == 9 else "3") for i, out_id in enumerate(out_ids)
    ]
    same_result = [_report(r.out_id, uuid.uuid4().hex.upper(), r.result) for r in applies]
    with _ledger_url(backend) as url, Ledger(url) as ledger:
        ledger.migrate()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda out_id: ledger.register_order(out_id, PHONE), out_ids))
        phases = [
            _run(Phase("applies", Outcome.APPLIED), [_call(ledger, r) for r in applies], threads, seconds),
            _run(Phase("redelivered", Outcome.DUPLICATE), [_call(ledger, r) for r in applies], threads, seconds),
            _run(Phase("same result", Outcome.DUPLICATE), [_call(ledger, r) for r in same_result], threads, seconds),
        ]
        events = ledger.summary().undelivered_events
    applied = phases[0].done
    errors = [f"{p.name}: {e}" for p in phases for e in p.errors[:5]]
    if events != applied:
        errors.append(f"{events} outbox events for {applied} applied reports")
    rates = {p.name: round(p.rate, 1) for p in phases}
    return {
        "threads": threads,
        "reports": reports,
        "rates": rates,
        "completed": {p.name: p.done for p in phases},
        "target_applies": TARGETS[backend],
        "applies_met": phases[0].rate >= TARGETS[backend],
        "duplicates_met": min(phases[1].rate, phases[2].rate) >= phases[0].rate,
        "errors": errors,
    }


def _call(ledger: Ledger, report: ReportToApply) -> Callable[[], Any]:
    return lambda: ledger.apply_report(report)


def _line(backend: str, result: dict[str, Any]) -> str:
    rates = result["rates"]
    verdict = "met" if result["applies_met"] else "MISSED"
    duplicates = "met" if result["duplicates_met"] else "MISSED"
    return (
        f"{backend:<10} {result['threads']} thread(s): applies {rates['applies']:>8,.0f}/s "
        f"(target >= {result['target_applies']:,.0f}/s: {verdict}); duplicates: redelivered "
        f"{rates['redelivered']:,.0f}/s, same result {rates['same result']:,.0f}/s (>= applies: {duplicates})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_apply", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--reports", type=int, default=5000, help="orders and reports per phase (default 5000)")
    parser.add_argument("--threads", type=int, help="workers (default: 1 on SQLite, 4 on the servers)")
    parser.add_argument("--seconds", type=float, default=30.0, help="time limit per phase (default 30)")
    args = parser.parse_args(argv)

    backends = list(TARGETS) if args.backend == "all" else [args.backend]
    results: dict[str, Any] = {}
    failed = False
    for backend in backends:
        threads = args.threads or DEFAULT_THREADS[backend]
        try:
            results[backend] = bench_backend(backend, args.reports, threads, args.seconds)
        except TransientError as error:
            # A server that is not there: reported; an error only when that backend was asked for by name.
            results[backend] = {"skipped": str(error)}
            print(f"{backend:<10} skipped: {error}")
            failed = failed or args.backend != "all"
            continue
        print(_line(backend, results[backend]))
        for error in results[backend]["errors"]:
            print(f"{backend:<10} ERROR {error}", file=sys.stderr)
        failed = failed or bool(results[backend]["errors"])
    print(json.dumps({"benchmark": "ledger_apply", "results": results}, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

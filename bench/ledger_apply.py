"""Ledger apply rate per backend: the product's batch path against baselines measured in the same run.

    .venv/bin/python -m bench.ledger_apply [--backend sqlite|mariadb|postgresql|all] [--reports N] [--threads T]
                                           [--rounds R] [--seconds S]

For each backend a fresh ledger per phase (SQLite: a temporary file; MariaDB / PostgreSQL: a throw-away database /
schema on the server of TEST_MARIADB_URL / TEST_POSTGRES_URL, dropped afterwards), created by the product's migrate
and holding N registered orders (untimed). Every timed phase applies N FlowReports, one per order (90 % result "3",
10 % "4"), and must end with N receipts, N orders moved and N outbox events:

  batch        Ledger.apply_batch: the drainer's inline path, 16 reports (one received batch) per transaction
  report       Ledger.apply_report: one report per transaction (the path before batching: "today")
  bare 16/tx   SQLite only: the stdlib sqlite3 module on the same schema with the product's pragmas (WAL,
               synchronous=FULL, busy_timeout, foreign_keys=ON), BEGIN IMMEDIATE, the same three statements as the
               product's (UPDATE orders ... WHERE out_id = ? AND status = 'PENDING', INSERT INTO outbox, INSERT INTO
               receipts: executemany each), COMMIT; 16 reports per transaction. Its parameters are built like the
               product's, inside the timed loop: a uuid4 event id, the event's JSON payload with the same keys and
               json.dumps settings, timestamps as SQLAlchemy stores them; message ids and raw bodies are given.
  bare 1/tx    the same, one report per transaction
The applying phases run interleaved in R rounds of N/R reports each (the machine's load drifts; every phase sees
the same drift). Then, through the batch path on the batch phase's ledger (reported, not interleaved):
  redelivered  the batch phase's messages again (same message ids)          -> duplicate, nothing written
  same result  N new message ids with the same out_id and result            -> duplicate (receipt kept)

Targets (ratios within this run, as absolute rates differ 3-4x between machines):
  SQLite (1 thread)                   batch >= 50 % of bare 16/tx
  MariaDB / PostgreSQL (T threads)    batch >= 3x report (both with T threads, default 4), and >= 1,000/s
  every backend                       both duplicate phases no slower than batch applies
Beside each rate, this process's CPU time per report (user + system; a server's own CPU is not in it). Prints a few
lines per backend and one JSON line. Each phase stops after --seconds in all (the rate is then over what
was done). Exits non-zero only on errors (a wrong outcome or count, a failed call, a selected server that cannot be
reached), never on a missed target.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.entry import run_benchmark
from bench.results import Check, write_result
from shared.adapters.ledger import Ledger, ReportToApply
from shared.adapters.ledger.engine import SQLITE_BUSY_TIMEOUT_MS
from shared.adapters.ledger.records import NewOrder
from shared.adapters.ledger.schema import orders, outbox, receipts
from shared.adapters.ledger.scratch import scratch_namespace
from shared.domain.orders import Outcome
from shared.errors import TransientError

BATCH = 16  # one received MNS batch
SQLITE_TARGET_FRACTION = 0.5  # batch >= 50 % of bare sqlite3, 16 per transaction
SERVER_TARGET_RATIO = 3.0  # batch >= 3x apply_report
SERVER_TARGET_RATE = 1000.0  # and >= 1,000 reports/s
SERVER_URLS = {
    "mariadb": ("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/flow_receipts_test"),
    "postgresql": ("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/flow_receipts_test"),
}
BACKENDS = ("sqlite", *SERVER_URLS)
# SQLite has one writer at a time: extra threads only queue on its lock. Server databases overlap round trips
# and share commit flushes (group commit) across connections.
DEFAULT_THREADS = {"sqlite": 1, "mariadb": 4, "postgresql": 4}
PHONE = "13800138000"
MESSAGE_TYPE = "FlowReport"
# The product's connection settings (shared/adapters/ledger/engine.py), for the bare sqlite3 baseline.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=FULL",
)
# The statements the product sends for one report (as SQLAlchemy compiles them for SQLite).
BARE_UPDATE = (
    "UPDATE orders SET status=?, err_code=?, err_msg=?, resolved_by=?, resolved_message_id=?, resolved_at=? "
    "WHERE orders.out_id = ? AND orders.status = ?"
)
BARE_OUTBOX = (
    "INSERT INTO outbox (event_id, out_id, kind, payload, created_at, delivered_at, attempts, last_error) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
BARE_RECEIPT = (
    "INSERT INTO receipts (message_id, message_type, out_id, result, err_code, err_msg, raw_body, dequeue_count, "
    "received_at, outcome, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
STATUS_BY_RESULT = {"3": "SUCCEEDED", "4": "FAILED"}

# A unit of work: one transaction; returns the outcome of each report it carried.
Call = Callable[[], list[str]]


@dataclass
class Phase:
    name: str
    expected: Outcome
    done: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's user + system time (the servers' own CPU is not in it)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        """CPU time of this process per report, in ms."""
        return 1000 * self.cpu_seconds / self.done if self.done else 0.0


def _body(out_id: str, result: str) -> str:
    return json.dumps({"phone": PHONE, "out_id": out_id, "result": result, "err_code": "", "err_msg": ""})


def _reports(out_ids: Sequence[str]) -> list[ReportToApply]:
    reports = []
    for i, out_id in enumerate(out_ids):
        result = "4" if i % 10 == 9 else "3"
        reports.append(
            ReportToApply(
                message_id=uuid.uuid4().hex.upper(),
                message_type=MESSAGE_TYPE,
                out_id=out_id,
                phone=PHONE,
                result=result,
                raw_body=_body(out_id, result),
            )
        )
    return reports


def _chunks(items: Sequence[Any], size: int) -> list[Any]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _run(phase: Phase, calls: Sequence[Call], threads: int, seconds: float) -> Phase:
    """Runs the calls over `threads` workers until done or `seconds` passed; adds to the phase's counts and time."""
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
                outcomes = call()
            except Exception as error:  # a benchmark reports every failure, whatever it is
                with lock:
                    phase.errors.append(f"{type(error).__name__}: {error}"[:300])
                continue
            with lock:
                phase.done += len(outcomes)
                phase.outcomes.update(outcomes)

    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    if threads == 1:
        worker()
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for future in [pool.submit(worker) for _ in range(threads)]:
                future.result()
    phase.seconds += time.perf_counter() - started
    phase.cpu_seconds += _cpu_seconds() - cpu_before
    return phase


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _check_outcomes(phase: Phase) -> None:
    wrong = phase.done - phase.outcomes[phase.expected.value]
    if wrong:
        phase.errors.append(f"{wrong} reports had another outcome than {phase.expected.value}: {dict(phase.outcomes)}")


# ---- the bare sqlite3 baseline ---------------------------------------------------------------------------------


class BareSqlite:
    """The product's three statements through the stdlib sqlite3 module: one connection per thread, the product's
    pragmas, BEGIN IMMEDIATE ... COMMIT around each call of `apply`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
            for pragma in SQLITE_PRAGMAS:
                connection.execute(pragma)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def apply(self, reports: Sequence[ReportToApply]) -> list[str]:
        connection = self._connection()
        now = datetime.now(timezone.utc)
        stored = now.replace(tzinfo=None).isoformat(" ", "microseconds")  # SQLAlchemy's SQLite DATETIME text
        moved, events, rows = [], [], []
        for report in reports:
            status = STATUS_BY_RESULT[report.result]
            moved.append((status, None, None, "receipt", report.message_id, stored, report.out_id, "PENDING"))
            event_id = str(uuid.uuid4())
            kind = f"order.{status.lower()}"
            payload = {
                "event_id": event_id,
                "kind": kind,
                "status": status,
                "occurred_at": now.isoformat(),
                "resolved_at": now.isoformat(),
                "out_id": report.out_id,
                "previous_status": "PENDING",
                "registered": True,
                "phone": report.phone,
                "err_code": None,
                "err_msg": None,
                "resolved_by": "receipt",
                "message_id": report.message_id,
            }
            text = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
            events.append((event_id, report.out_id, kind, text, stored, None, 0, None))
            rows.append(
                (
                    report.message_id, MESSAGE_TYPE, report.out_id, report.result, None, None, report.raw_body,
                    report.dequeue_count, stored, "applied", "receipt",
                )
            )  # fmt: skip
        connection.execute("BEGIN IMMEDIATE")
        try:
            if len(reports) == 1:
                changed = connection.execute(BARE_UPDATE, moved[0]).rowcount
                connection.execute(BARE_OUTBOX, events[0])
                connection.execute(BARE_RECEIPT, rows[0])
            else:
                changed = connection.executemany(BARE_UPDATE, moved).rowcount
                connection.executemany(BARE_OUTBOX, events)
                connection.executemany(BARE_RECEIPT, rows)
            if changed != len(reports):
                raise RuntimeError(f"the UPDATE moved {changed} of {len(reports)} orders")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return [Outcome.APPLIED.value] * len(reports)

    def close(self) -> None:
        for connection in self._connections:
            connection.close()


# ---- ledgers -----------------------------------------------------------------------------------------------------


@contextmanager
def _ledger_url(backend: str, work: Path, name: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{work / f'{name}.sqlite3'}"
        return
    env_var, default = SERVER_URLS[backend]
    with scratch_namespace(os.environ.get(env_var) or default, "flow_receipts_bench") as url:
        yield url.render_as_string(hide_password=False)


def _written(ledger: Ledger) -> dict[str, int]:
    """Rows the phases wrote: receipts, outbox events, orders moved out of PENDING."""
    with ledger.engine.connect() as conn:
        return {
            "receipts": conn.execute(select(func.count()).select_from(receipts)).scalar_one(),
            "events": conn.execute(select(func.count()).select_from(outbox)).scalar_one(),
            "resolved": conn.execute(select(func.count()).where(orders.c.status != "PENDING")).scalar_one(),
        }


def _expect_written(phase: Phase, written: dict[str, int], receipts_: int, events: int, resolved: int) -> None:
    expected = {"receipts": receipts_, "events": events, "resolved": resolved}
    if written != expected:
        phase.errors.append(f"rows written {written}, expected {expected}")


# ---- one backend -------------------------------------------------------------------------------------------------


SLUGS = {"bare 1/tx": "bare1", "bare 16/tx": "bare16", "report": "report", "batch": "batch"}


def bench_backend(backend: str, reports: int, threads: int, rounds: int, seconds: float) -> dict[str, Any]:
    sqlite = backend == "sqlite"
    names = ["bare 1/tx", "bare 16/tx", "report", "batch"] if sqlite else ["report", "batch"]
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as directory, ExitStack() as stack:
        work = Path(directory)
        ledgers: dict[str, Ledger] = {}
        units: dict[str, list[list[ReportToApply]]] = {}
        for name in names:  # a ledger of its own per phase: every phase writes into tables of the same size
            ledger = stack.enter_context(Ledger(stack.enter_context(_ledger_url(backend, work, SLUGS[name]))))
            ledger.migrate()
            out_ids = [f"{SLUGS[name]}-{i:07d}" for i in range(reports)]
            ledger.register_orders([NewOrder(out_id, PHONE) for out_id in out_ids])
            ledgers[name] = ledger
            units[name] = _chunks(_reports(out_ids), 1 if name in ("bare 1/tx", "report") else BATCH)
        bare = {name: BareSqlite(Path(ledgers[name].url.database or "")) for name in names if name.startswith("bare")}
        stack.callback(lambda: [connection.close() for connection in bare.values()])
        applied_units: list[list[ReportToApply]] = []  # the batch phase's, for the redelivery

        def calls(name: str, todo: Sequence[list[ReportToApply]], done: list | None = None) -> list[Call]:
            if name in bare:
                return [lambda unit=unit: bare[name].apply(unit) for unit in todo]
            ledger = ledgers[name]
            if name == "report":
                return [lambda unit=unit: [ledger.apply_report(unit[0]).outcome.value] for unit in todo]
            return [lambda unit=unit: _batch_outcomes(ledger, unit, done) for unit in todo]

        phases = {name: Phase(name, Outcome.APPLIED) for name in names}
        shares = {name: _rounds(units[name], rounds) for name in names}
        for index in range(rounds):  # interleaved: each round runs every phase on its share of the reports
            for name in names:
                done = applied_units if name == "batch" else None
                _run(phases[name], calls(name, shares[name][index], done), threads, seconds / rounds)
        for phase in phases.values():
            _check_outcomes(phase)
            _expect_written(phase, _written(ledgers[phase.name]), phase.done, phase.done, phase.done)

        same = [[_same_result(report) for report in unit] for unit in applied_units]
        redelivered = _run(Phase("redelivered", Outcome.DUPLICATE), calls("batch", applied_units), threads, seconds)
        same_result = _run(Phase("same result", Outcome.DUPLICATE), calls("batch", same), threads, seconds)
        for phase in (redelivered, same_result):
            _check_outcomes(phase)
        done = phases["batch"].done
        _expect_written(same_result, _written(ledgers["batch"]), done + same_result.done, done, done)

    all_phases = [*phases.values(), redelivered, same_result]
    result: dict[str, Any] = {
        "threads": threads,
        "reports": reports,
        "rounds": rounds,
        "rates": {phase.name: round(phase.rate, 1) for phase in all_phases},
        "completed": {phase.name: phase.done for phase in all_phases},
        "seconds": {phase.name: round(phase.seconds, 3) for phase in all_phases},
        "cpu_ms_per_report": {phase.name: round(phase.cpu_ms, 4) for phase in all_phases},
        "errors": [f"{phase.name}: {error}" for phase in all_phases for error in phase.errors[:5]],
    }
    batch_rate = phases["batch"].rate
    if sqlite:
        result["targets"] = {
            "batch_vs_bare_16": _target(_ratio(batch_rate, phases["bare 16/tx"].rate), SQLITE_TARGET_FRACTION)
        }
        result["report_vs_bare_1"] = round(_ratio(phases["report"].rate, phases["bare 1/tx"].rate), 3)
    else:
        result["targets"] = {
            "batch_vs_report": _target(_ratio(batch_rate, phases["report"].rate), SERVER_TARGET_RATIO),
            "batch_rate": _target(batch_rate, SERVER_TARGET_RATE),
        }
    duplicates = _ratio(min(redelivered.rate, same_result.rate), batch_rate)
    result["targets"]["duplicates_vs_batch"] = _target(duplicates, 1.0)
    if result["errors"]:  # no verdict on a run with errors
        for target in result["targets"].values():
            target["met"] = None
    return result


def _ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else 0.0


def _batch_outcomes(ledger: Ledger, unit: list[ReportToApply], done: list | None) -> list[str]:
    outcomes = []
    for result in ledger.apply_batch(unit).reports:
        if isinstance(result, Exception):
            raise result
        outcomes.append(result.outcome.value)
    if done is not None:
        done.append(unit)  # list.append is atomic: the workers share this list
    return outcomes


def _same_result(report: ReportToApply) -> ReportToApply:
    return ReportToApply(
        message_id=uuid.uuid4().hex.upper(),
        message_type=report.message_type,
        out_id=report.out_id,
        phone=report.phone,
        result=report.result,
        raw_body=report.raw_body,
    )


def _rounds(units: list[Any], rounds: int) -> list[list[Any]]:
    size = -(-len(units) // rounds)
    return [units[i * size : (i + 1) * size] for i in range(rounds)]


def _target(value: float, target: float) -> dict[str, Any]:
    return {"value": round(value, 3), "target": target, "met": value >= target}


# ---- output ------------------------------------------------------------------------------------------------------

VERDICT = {True: "met", False: "MISSED", None: "not evaluated"}


def _lines(backend: str, result: dict[str, Any]) -> list[str]:
    rates, targets, cpu = result["rates"], result["targets"], result["cpu_ms_per_report"]
    threads = f"{result['threads']} thread{'s' if result['threads'] > 1 else ''}"
    head = f"{backend:<10} {threads}, {result['reports']:,} reports per phase in {result['rounds']} interleaved rounds"
    if backend == "sqlite":
        share = targets["batch_vs_bare_16"]
        lines = [
            head,
            f"    batch of {BATCH}/tx   {rates['batch']:>9,.0f}/s  = {share['value']:.0%} of bare sqlite3 "
            f"{BATCH}/tx {rates['bare 16/tx']:,.0f}/s (target >= {SQLITE_TARGET_FRACTION:.0%}: "
            f"{VERDICT[share['met']]})",
            f"    apply_report   {rates['report']:>9,.0f}/s  = {result['report_vs_bare_1']:.0%} of bare sqlite3 "
            f"1/tx {rates['bare 1/tx']:,.0f}/s (reported)",
            f"    CPU per report batch {cpu['batch']:.3f} ms, bare 16/tx {cpu['bare 16/tx']:.3f} ms, apply_report "
            f"{cpu['report']:.3f} ms, bare 1/tx {cpu['bare 1/tx']:.3f} ms",
        ]
    else:
        ratio, rate = targets["batch_vs_report"], targets["batch_rate"]
        lines = [
            head,
            f"    batch of {BATCH}/tx   {rates['batch']:>9,.0f}/s  = {ratio['value']:.1f}x apply_report "
            f"{rates['report']:,.0f}/s, one report per transaction (target >= {SERVER_TARGET_RATIO:g}x: "
            f"{VERDICT[ratio['met']]}; >= {SERVER_TARGET_RATE:,.0f}/s: {VERDICT[rate['met']]})",
            f"    CPU per report in this process (the server's not counted): batch {cpu['batch']:.3f} ms, "
            f"apply_report {cpu['report']:.3f} ms",
        ]
    duplicates = targets["duplicates_vs_batch"]
    lines.append(
        f"    duplicates     redelivered {rates['redelivered']:,.0f}/s, same result {rates['same result']:,.0f}/s "
        f"through the batch path (>= batch applies: {VERDICT[duplicates['met']]})"
    )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_apply", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument("--reports", type=int, default=6400, help="orders and reports per phase (default 6400)")
    parser.add_argument("--threads", type=int, help="workers (default: 1 on SQLite, 4 on the servers)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds of the applying phases (default 8)")
    parser.add_argument("--seconds", type=float, default=30.0, help="time limit per phase (default 30)")
    args = parser.parse_args(argv)
    if args.reports < BATCH or args.rounds < 1 or (args.threads is not None and args.threads < 1):
        parser.error(f"--reports must be at least {BATCH}, --rounds and --threads at least 1")
    return args


def run(args: argparse.Namespace) -> int:
    backends = list(BACKENDS) if args.backend == "all" else [args.backend]
    results: dict[str, Any] = {}
    failed = False
    load = _load()
    print(f"ledger_apply: {os.cpu_count()} CPUs, load average {load[0]:.2f} (other work on this machine skews rates)")
    for backend in backends:
        threads = args.threads or DEFAULT_THREADS[backend]
        try:
            results[backend] = bench_backend(backend, args.reports, threads, args.rounds, args.seconds)
        except TransientError as error:
            # A server that is not there: reported; an error only when that backend was asked for by name.
            results[backend] = {"skipped": str(error)}
            print(f"{backend:<10} skipped: {error}")
            failed = failed or args.backend != "all"
            continue
        for line in _lines(backend, results[backend]):
            print(line, flush=True)
        for error in results[backend]["errors"]:
            print(f"{backend:<10} ERROR {error}", file=sys.stderr)
        failed = failed or bool(results[backend]["errors"])
    summary = {"benchmark": "ledger_apply", "batch": BATCH, "cpus": os.cpu_count(), "load_average": [load, _load()]}
    detail = {**summary, "results": results}
    print(json.dumps(detail, sort_keys=True), flush=True)
    write_result("ledger_apply", _checks(results), detail, evaluated=not failed)
    return 1 if failed else 0


NAMES = {"sqlite": "SQLite", "mariadb": "MariaDB", "postgresql": "PostgreSQL"}


def _checks(results: dict[str, Any]) -> list[Check]:
    """The table's rows: per backend, the batch path against its baseline, and duplicates against applies."""
    checks = []
    for backend, result in results.items():
        name = NAMES[backend]
        if "skipped" in result:
            checks.append(Check(backend, name, None, skipped=result["skipped"]))
            continue
        rates, threads = result["rates"], f"{result['threads']} thread{'s' if result['threads'] > 1 else ''}"
        batch = rates["batch"]
        sqlite = backend == "sqlite"
        baseline, label, target = (
            (rates["bare 16/tx"], f"bare sqlite3 {BATCH}/tx", SQLITE_TARGET_FRACTION)
            if sqlite
            else (rates["report"], "apply_report", SERVER_TARGET_RATIO)
        )
        checks.append(
            Check(
                f"{backend}_batch", f"{name} batch apply, {threads}", batch, "reports/s", baseline, label, target=target
            )
        )
        if not sqlite:
            checks.append(
                Check(
                    f"{backend}_rate", f"{name} batch apply", batch, "reports/s", target=SERVER_TARGET_RATE, on="figure"
                )
            )
        checks.append(
            Check(
                f"{backend}_duplicates",
                f"{name} duplicates (slower of 2 kinds)",
                min(rates["redelivered"], rates["same result"]),
                "reports/s",
                batch,
                "batch applies",
                target=1.0,
            )
        )
    return checks


def _load() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("ledger_apply", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Runs every benchmark in turn, then prints one summary table built from their results files.

    .venv/bin/python -m bench [--only NAME,NAME] [--quick] [--results DIR] [--timeout-factor F] [--table] [--list]

Each benchmark runs as `python -m bench.<name>` in its own process (and process group), with its own time limit:
at the limit it gets SIGTERM (it stops its emulators), then SIGKILL after a grace period. Its output goes through
as it comes, under a progress line. Each writes `<results dir>/<name>.json` (bench/results.py); the table at the
end is read from those files: one row per figure (benchmark, figure, baseline, ratio, target, met).

  --quick      small sizes (seconds per benchmark, not minutes): checks that the harness works, not a measurement;
               results go to bench/results/quick unless --results says otherwise
  --only       a comma-separated subset, in the order given
  --table      print the table from the results files already there, run nothing

Exits non-zero when a benchmark failed (an error, a time-out, no results file), never on a missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.results import (
    COMMIT_VARIABLE,
    DEFAULT_DIR,
    DIR_VARIABLE,
    PROJECT_ROOT,
    commit,
    format_table,
    load_result,
    rows,
)

GRACE_SECONDS = 20  # after SIGTERM, before SIGKILL


@dataclass(frozen=True)
class Benchmark:
    name: str
    timeout: float  # seconds, full size
    quick_args: str = ""  # the arguments of --quick (shell words)
    quick_timeout: float = 120.0

    @property
    def quick(self) -> list[str]:
        return shlex.split(self.quick_args)


BENCHMARKS = (
    Benchmark("mns_throughput", 300, "--seconds 1 --clients 2 --prefill 2000"),
    Benchmark("ledger_apply", 900, "--backend sqlite --reports 320 --rounds 2 --seconds 10"),
    Benchmark(
        "drain_throughput",
        1800,
        "--messages 160 --pollers 4 --seed-messages 16 --seed-seconds 2 --scale-processes= --scale-backends none "
        "--drain-timeout 30",
        180,
    ),
    Benchmark("async_dispatch", 600, "--messages 48 --warmup 4 --rate 0 --timeout 60"),
    Benchmark("outbox_delivery", 600, "--events 100 --seed-events 20 --webhook-latency-ms 0 --messages 160", 180),
    Benchmark("sweep_selection", 1800, "--backend sqlite --pending 200 --sizes 2000,20000"),
    Benchmark("sweep_rate", 300, "--orders 20"),
    Benchmark("import_time", 900, "--runs 1", 600),  # builds the package first (pip): minutes, even quick
    Benchmark("log_line", 600, "--lines 50 --repeat 1 --rounds 1 --before none --warmup 20"),
    Benchmark("e2e_latency", 600, "--rate 20 --seconds 1.5 --warmup 4", 180),
)
BY_NAME = {benchmark.name: benchmark for benchmark in BENCHMARKS}
QUICK_DIR = DEFAULT_DIR / "quick"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=_names, default=[b.name for b in BENCHMARKS], help="NAME,NAME (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the harness, measures nothing")
    parser.add_argument("--results", type=Path, help=f"results directory (default {DEFAULT_DIR}; quick: {QUICK_DIR})")
    parser.add_argument("--timeout-factor", type=float, default=1.0, help="multiplies every time limit (default 1)")
    parser.add_argument("--table", action="store_true", help="only print the table from the results files there")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and their quick arguments")
    return parser.parse_args(argv)


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown benchmark(s) {unknown or text!r}: use {', '.join(BY_NAME)}")
    return list(dict.fromkeys(names))


def run_one(benchmark: Benchmark, quick: bool, results: Path, limit: float, env: dict[str, str]) -> str:
    """Runs one benchmark to its end or its limit; returns "" when it wrote its results, else what went wrong."""
    path = results / f"{benchmark.name}.json"
    path.unlink(missing_ok=True)  # the table never shows the figures of an earlier run as this one's
    command = [sys.executable, "-m", f"bench.{benchmark.name}", *(benchmark.quick if quick else [])]
    proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, start_new_session=True)
    try:
        code = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        return f"timed out after {limit:.0f} s"
    except KeyboardInterrupt:
        _stop_group(proc)
        raise
    if code != 0:
        return f"exit status {code}" + ("" if path.exists() else ", no results")
    if not path.exists():
        return "no results file"
    return ""


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the benchmark's process group (it and the emulators it started); after GRACE_SECONDS, SIGKILL to
    whatever of that group is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=GRACE_SECONDS)
    time.sleep(1)  # its helpers got the SIGTERM too, and stop on their own
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def table(names: list[str], results: Path, failures: dict[str, str]) -> list[str]:
    lines: list[tuple[str, ...]] = []
    for name in names:
        path = results / f"{name}.json"
        if name in failures or not path.exists():
            problem = f"FAILED: {failures[name]}" if name in failures else "no results file"
            lines.append((name, "-", "-", "-", "-", problem[:60]))
            continue
        try:
            lines.extend(rows(load_result(path)))
        except (ValueError, KeyError, TypeError) as error:
            lines.append((name, "-", "-", "-", "-", f"bad results file: {error}"[:60]))
    return format_table(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for benchmark in BENCHMARKS:
            print(f"{benchmark.name:18s} limit {benchmark.timeout:5.0f} s; --quick: {benchmark.quick_args}")
        return 0
    results = (args.results or (QUICK_DIR if args.quick else DEFAULT_DIR)).resolve()
    if args.table:
        print("\n".join(table(args.only, results, {})))
        return 0
    results.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, DIR_VARIABLE: str(results), COMMIT_VARIABLE: commit(), "PYTHONUNBUFFERED": "1"}
    failures: dict[str, str] = {}
    started = time.monotonic()
    for index, name in enumerate(args.only, 1):
        benchmark = BY_NAME[name]
        limit = (benchmark.quick_timeout if args.quick else benchmark.timeout) * args.timeout_factor
        print(
            f"==> [{index}/{len(args.only)}] {name}{' (quick)' if args.quick else ''}, limit {limit:.0f} s, "
            f"{time.monotonic() - started:.0f} s elapsed",
            flush=True,
        )
        began = time.monotonic()
        problem = run_one(benchmark, args.quick, results, limit, env)
        if problem:
            failures[name] = problem
        print(f"<== {name}: {problem or 'done'} in {time.monotonic() - began:.1f} s", flush=True)
    print(f"\nsummary ({results}, {env[COMMIT_VARIABLE]}{', quick sizes' if args.quick else ''}):")
    print("\n".join(table(args.only, results, failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

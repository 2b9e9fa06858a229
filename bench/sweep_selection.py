"""The sweep's selection of PENDING orders: its cost grows with the pending orders, not with the ledger.

    .venv/bin/python -m bench.sweep_selection [--backend sqlite|postgresql|all] [--pending 10000]
                                              [--sizes 100000,1000000] [--page 200] [--repeat 3]

For each backend and ledger size: a fresh ledger holding `size` orders of which `pending` are PENDING (spread over
the last 29 days; the rest SUCCEEDED), built untimed. Then, in a fresh child process (so its peak RSS is the
selection's, not the build's), the sweep's keyset pages (Ledger.pending_page, `page` orders each) are read until the
end, `repeat` times: the time to the first page, the time to page through every pending order, and the child's peak
RSS. The baseline is the smallest ledger measured in the same run: the target is a cost ratio (largest / smallest,
same pending count) of at most 1.3, and a peak RSS of at most 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import insert

from bench.entry import run_benchmark
from bench.results import Check, write_result
from shared.adapters.ledger import Ledger
from shared.adapters.ledger.schema import orders
from shared.adapters.ledger.scratch import scratch_namespace
from shared.errors import TransientError

NAME = "sweep_selection"
RATIO_TARGET = 1.3
RSS_TARGET_MB = 150.0
SERVER_URLS = {"postgresql": ("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/flow_receipts_test")}
BATCH = 10_000


@contextmanager
def _ledger_url(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="sweep-bench-") as folder:
            yield f"sqlite:///{Path(folder) / 'ledger.sqlite3'}"
        return
    variable, default = SERVER_URLS[backend]
    with scratch_namespace(os.environ.get(variable) or default, "sweep_bench") as url:
        yield url.render_as_string(hide_password=False)


def _build(url: str, size: int, pending: int, now: datetime) -> None:
    span = timedelta(days=29).total_seconds()
    every = max(1, size // pending)
    with Ledger(url) as ledger:
        ledger.migrate()
        with ledger.engine.begin() as conn:
            for start in range(0, size, BATCH):
                rows = []
                for n in range(start, min(size, start + BATCH)):
                    submitted = now - timedelta(seconds=span * (n / size) + 3600)
                    is_pending = n % every == 0 and n // every < pending
                    rows.append(
                        {
                            "out_id": f"bench-{n:08d}",
                            "phone": "13800138000",
                            "status": "PENDING" if is_pending else "SUCCEEDED",
                            "resolved_by": None if is_pending else "receipt",
                            "submitted_at": submitted,
                            "resolved_at": None if is_pending else submitted,
                            "created_at": submitted,
                            "registered": True,
                            "charge_attempts": 0,
                        }
                    )
                conn.execute(insert(orders), rows)
        if ledger.dialect == "postgresql":  # what autovacuum does to a table this size soon after it grew
            with ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM (ANALYZE) orders")


def _select(url: str, page: int, repeat: int, now_iso: str) -> dict:
    """In the child: page through every PENDING order `repeat` times; the best times and the peak RSS."""
    now = datetime.fromisoformat(now_iso)
    best_first = best_all = float("inf")
    seen = 0
    with Ledger(url) as ledger:
        for _ in range(repeat):
            started = time.perf_counter()
            after, seen, first = None, 0, None
            while True:
                rows = ledger.pending_page(
                    submitted_from=now - timedelta(days=30),
                    submitted_to=now,
                    after=after,
                    not_queried_since=now,
                    limit=page,
                )
                if first is None:
                    first = time.perf_counter() - started
                seen += len(rows)
                if len(rows) < page:
                    break
                after = (rows[-1].order.submitted_at, rows[-1].order.out_id)
            best_all = min(best_all, time.perf_counter() - started)
            best_first = min(best_first, first or 0.0)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"first_page_s": best_first, "all_pages_s": best_all, "pending_seen": seen, "peak_rss_mb": rss_mb}


def _measure(backend: str, size: int, args: argparse.Namespace) -> dict:
    now = datetime.now(timezone.utc)
    with _ledger_url(backend) as url:
        started = time.perf_counter()
        _build(url, size, args.pending, now)
        built = time.perf_counter() - started
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.sweep_selection",
                "--child",
                url,
                str(args.page),
                str(args.repeat),
                now.isoformat(),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    figures.update(size=size, build_s=round(built, 1))
    if figures["pending_seen"] != args.pending:
        raise RuntimeError(f"{backend} {size}: saw {figures['pending_seen']} pending orders, expected {args.pending}")
    return figures


def _run(args: argparse.Namespace) -> int:
    backends = ["sqlite", "postgresql"] if args.backend == "all" else [args.backend]
    sizes = sorted(int(size) for size in args.sizes.split(","))
    results = {}
    skipped: dict[str, str] = {}
    for backend in backends:
        try:
            runs = [_measure(backend, size, args) for size in sizes]
        except TransientError as error:  # no server there: reported (an error when that backend was asked for)
            if args.backend != "all":
                raise
            skipped[backend] = str(error)
            print(f"{backend:10s} skipped: {error}")
            continue
        smallest, largest = runs[0], runs[-1]
        ratio = largest["all_pages_s"] / smallest["all_pages_s"]
        rss = max(run["peak_rss_mb"] for run in runs)
        met = ratio <= RATIO_TARGET and rss <= RSS_TARGET_MB
        for run in runs:
            print(
                f"{backend:10s} {run['size']:>9,} orders, {args.pending:,} pending: first page "
                f"{run['first_page_s'] * 1000:7.1f} ms, all pages {run['all_pages_s'] * 1000:8.1f} ms, "
                f"peak RSS {run['peak_rss_mb']:6.1f} MB (built in {run['build_s']} s)"
            )
        print(
            f"{backend:10s} cost {largest['size']:,} vs {smallest['size']:,} (baseline, same run): {ratio:.2f}x "
            f"(target <= {RATIO_TARGET}); peak RSS {rss:.1f} MB (target <= {RSS_TARGET_MB:.0f}) -> "
            f"{'met' if met else 'MISSED'}"
        )
        results[backend] = {"runs": runs, "cost_ratio": round(ratio, 3), "peak_rss_mb": round(rss, 1), "met": met}
    detail = {"benchmark": NAME, "pending": args.pending, "page": args.page, "results": results, "skipped": skipped}
    print(json.dumps(detail))
    write_result(NAME, _checks(results, skipped, args.pending), detail)
    return 0


def _checks(results: dict, skipped: dict[str, str], pending: int) -> list[Check]:
    """Per backend: paging through every pending order of the largest ledger against the smallest, and peak RSS."""
    checks = []
    for backend, result in results.items():
        smallest, largest = result["runs"][0], result["runs"][-1]
        checks.append(
            Check(
                f"{backend}_cost",
                f"{backend}: all pages, {pending:,} pending of {largest['size']:,}",
                largest["all_pages_s"] * 1000,
                "ms",
                smallest["all_pages_s"] * 1000,
                f"of {smallest['size']:,}",
                target=RATIO_TARGET,
                op="<=",
            )
        )
        checks.append(
            Check(
                f"{backend}_rss",
                f"{backend}: peak RSS",
                result["peak_rss_mb"],
                "MB",
                target=RSS_TARGET_MB,
                op="<=",
                on="figure",
            )
        )
    for backend, reason in skipped.items():
        checks.append(Check(backend, backend, None, skipped=reason))
    return checks


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep_selection", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--page", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        url, page, repeat, now_iso = argv[1:5]
        print(json.dumps(_select(url, int(page), int(repeat), now_iso)))
        return 0
    return run_benchmark(NAME, _parse, _run, argv)


if __name__ == "__main__":
    sys.exit(main())

"""The sweep's status-query rate against its limit, with the status API answering in 50 ms.

    .venv/bin/python -m bench.sweep_rate [--orders 300] [--qps 20] [--concurrency 4] [--latency-ms 50]

One local stack in a subprocess (the Alicom emulator answers QueryChargeDetail after --latency-ms), `orders` charges
seeded there as completed, the same orders registered PENDING (two hours old) in a fresh SQLite ledger, then one
Sweeper.run() with SWEEP_QPS = --qps and SWEEP_CONCURRENCY = --concurrency. The baseline is the configured limit:
the target is a sustained rate of at least 95 % of it, over the query phase (first to last answer recorded) and
over the whole run. CPU time of this process per query is reported too.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.drain_throughput import LocalStack, customer_credentials, own_cpu_seconds
from bench.entry import run_benchmark
from bench.results import Check, write_result
from shared.adapters.alicom import acs_client
from shared.adapters.flow import FlowApi
from shared.adapters.ledger import Ledger
from shared.adapters.ledger.records import NewOrder
from shared.services.sweep import SweepConfig, Sweeper

NAME = "sweep_rate"
TARGET_FRACTION = 0.95
PHONE = "13800138000"


def _answer_times(ledger_path: Path) -> list[float]:
    connection = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT received_at FROM receipts WHERE source = 'sweep' ORDER BY received_at")
        return [datetime.fromisoformat(str(row[0])).replace(tzinfo=timezone.utc).timestamp() for row in rows]
    finally:
        connection.close()


def _run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="sweep-rate-") as folder:
        work = Path(folder)
        stack = LocalStack(work / "stack")
        try:
            out_ids = [f"rate-{n:05d}" for n in range(args.orders)]
            for out_id in out_ids:
                stack.admin("ALICOM_API_ADMIN_URL", "POST", "/charges", {"out_id": out_id, "status": "SUCCESS"})
            stack.admin(
                "ALICOM_API_ADMIN_URL",
                "PUT",
                "/faults",
                {"operations": {"QueryChargeDetail": {"latency_ms": args.latency_ms}}},
            )
            ledger_path = work / "ledger.sqlite3"
            with Ledger(f"sqlite:///{ledger_path}") as ledger:
                ledger.migrate()
                submitted = datetime.now(timezone.utc) - timedelta(hours=2)
                ledger.register_orders([NewOrder(o, PHONE, "100M", "charge", submitted) for o in out_ids])
                key, secret, _ = customer_credentials(stack)
                flow = FlowApi(acs_client(key, secret, None, "cn-hangzhou"), stack.env["FLOW_API_ENDPOINT"])
                config = SweepConfig(grace=timedelta(hours=1), qps=args.qps, concurrency=args.concurrency)
                cpu_before, started = own_cpu_seconds(), time.monotonic()
                result = Sweeper(ledger, flow, config).run(time.monotonic() + args.orders / args.qps * 3 + 30)
                seconds, cpu = time.monotonic() - started, own_cpu_seconds() - cpu_before
            if result.stopped_by != "finished" or result.counts["resolved_succeeded"] != args.orders:
                raise RuntimeError(f"the sweep did not resolve every order: {result.as_dict()}")
            times = _answer_times(ledger_path)
        finally:
            stack.stop()
    active = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    whole = args.orders / seconds
    met = active >= TARGET_FRACTION * args.qps and whole >= TARGET_FRACTION * args.qps
    print(
        f"sweep_rate: {args.orders} orders, status API {args.latency_ms:g} ms, limit {args.qps:g} QPS (the baseline), "
        f"concurrency {args.concurrency}"
    )
    print(
        f"  query phase {active:6.2f} QPS = {active / args.qps:6.1%} of the limit; whole run {whole:6.2f} QPS = "
        f"{whole / args.qps:6.1%} (target >= {TARGET_FRACTION:.0%}) -> {'met' if met else 'MISSED'}"
    )
    print(f"  CPU {cpu * 1000 / args.orders:.2f} ms per order in this process ({cpu:.2f} s over {seconds:.1f} s)")
    detail = {
        "benchmark": NAME,
        "baseline_qps": args.qps,
        "active_qps": round(active, 3),
        "whole_run_qps": round(whole, 3),
        "fraction": round(min(active, whole) / args.qps, 4),
        "cpu_ms_per_order": round(cpu * 1000 / args.orders, 3),
        "target_fraction": TARGET_FRACTION,
        "met": met,
    }
    print(json.dumps(detail))
    rate = Check(
        "qps",
        f"status queries, {args.orders} orders (slower of query phase / whole run)",
        min(active, whole),
        "QPS",
        args.qps,
        "SWEEP_QPS limit",
        target=TARGET_FRACTION,
    )
    write_result(NAME, [rate], detail)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep_rate", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--qps", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(NAME, _parse, _run, argv)


if __name__ == "__main__":
    sys.exit(main())

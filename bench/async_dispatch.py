"""Async dispatch through the FC emulator: throughput and latency from publish to ledger.

    .venv/bin/python -m bench.async_dispatch [--messages N] [--rate R] [--rate-seconds S] [--pollers P]
                                             [--latency-ms MS] [--warmup W] [--timeout 90]

A local stack (`python -m local stack` in a subprocess; its FC emulator runs the processor of template.yml with
the stack's environment, LEDGER_URL included) and the drainer in this process with DISPATCH_MODE=async, the
stack's FC_ENDPOINT, DRAIN_LONG_POLL_SECONDS=1 and DRAIN_POLLERS at the product default unless --pollers. Every
message is handed to the processor as one asynchronous InvokeFunction and deleted once FC accepted it; the
processor applies it to the ledger. Orders are registered first; a warm-up round (W reports, not measured) starts
the processor's instances. Reports are published as Alicom does (POST <ALICOM_API_ADMIN_URL>/reports), the send
time of each kept; a round ends when the drain has ended and FC is idle (GET <FC_ADMIN_URL>/stats: queue depth
and in-flight 0), then each receipt's received_at is read with ledger.receipts_for. Two rounds:

  burst   N reports published (MNS latency 0), then one drain: throughput from the first publish to the last
          apply; the latency is mostly time spent queued behind the burst.
  paced   R reports/s for S seconds, published while the drainer runs: latency under a steady load.

Reported per round: reports applied per second (first publish -> last apply, and the processor's own rate),
latency from publish to the receipt's received_at as p50 / p90 / p99 (min, max), the phases and FC's counters.
--latency-ms adds MNS latency to every request while draining (default 0; 20 gives the drain benchmark's
conditions). No target is set: the figures are stated. Prints them, then one JSON line. Exits non-zero only on
errors (a report not applied, a failed invocation, a message left in the queue, a round over --timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.drain_throughput import LocalStack, customer_credentials, own_cpu_seconds, register_orders, stack_settings
from bench.entry import run_benchmark
from bench.results import Check, write_result
from shared.adapters.ledger import Ledger
from shared.runtime import Runtime
from shared.settings import Settings, load_settings

PROCESSOR = "flow-receipts/processor"
GAUGES = ("queue_depth", "in_flight", "instances")
POLL_SECONDS = 0.05
PACED_THREADS = 16  # enough for the schedule when MNS latency slows each publish


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def processor_stats(stack: LocalStack) -> dict[str, int]:
    return stack.admin("FC_ADMIN_URL", "GET", "/stats")["functions"].get(PROCESSOR, {})


def wait_until_idle(stack: LocalStack, deadline: float) -> bool:
    """Polls FC's admin stats (not the ledger: its reads would take SQLite's write lock from the processor) until
    no invocation of the processor is queued or running."""
    while True:
        stats = processor_stats(stack)
        if not stats.get("queue_depth") and not stats.get("in_flight"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)


def receipt_times(ledger: Ledger, out_ids: list[str]) -> dict[str, float]:
    """out_id -> received_at of its first receipt (epoch seconds), for the out_ids that have one."""
    times: dict[str, float] = {}
    for out_id in out_ids:
        receipts = ledger.receipts_for(out_id)
        if receipts:
            times[out_id] = min(r.received_at for r in receipts).timestamp()
    return times


def round_trip(
    stack: LocalStack,
    runtime: Runtime,
    ledger: Ledger,
    out_ids: list[str],
    latency_ms: float,
    timeout: float,
    rate: float | None = None,
) -> dict[str, Any]:
    """Publish -> drain -> wait for the ledger; the raw timings of one round.

    Without `rate`: every report is published (as fast as possible, MNS latency 0), then the drainer runs.
    With `rate`: reports are published at `rate`/s while the drainer runs (it starts after the first publish and
    stops at its first empty 1 s long poll, after the last one)."""
    credentials = customer_credentials(stack)
    register_orders(ledger, out_ids)
    published: dict[str, float] = {}
    stack.set_mns_latency(0 if rate is None else latency_ms)
    before = processor_stats(stack)
    deadline = time.monotonic() + timeout
    cpu_before, stack_cpu_before = own_cpu_seconds(), stack.cpu_seconds(children=True)
    publish_started = time.time()
    errors: list[str] = []
    publisher = None
    if rate is None:
        errors += stack.publish(out_ids, on_publish=published.__setitem__)
        publish_ended = time.time()
        stack.set_mns_latency(latency_ms)
    else:
        outcome: dict[str, Any] = {}

        def paced() -> None:
            outcome["errors"] = stack.publish(
                out_ids, threads=PACED_THREADS, on_publish=published.__setitem__, rate=rate
            )
            outcome["ended"] = time.time()

        publisher = threading.Thread(target=paced, name="publisher", daemon=True)
        publisher.start()
        while not published and publisher.is_alive():
            time.sleep(0.001)
    drain_started = time.time()
    summary = runtime.drainer(credentials).run(deadline)
    drain_ended = time.time()
    if publisher is not None:
        publisher.join(max(0.0, deadline - time.monotonic()))
        errors += outcome.get("errors", ["the paced publisher did not finish"])
        publish_ended = outcome.get("ended", time.time())
    if not wait_until_idle(stack, deadline):
        errors.append("FC still had queued or running invocations at the deadline")
    idle_at = time.time()
    applied = receipt_times(ledger, out_ids)
    after = processor_stats(stack)
    counters = {key: after[key] - before.get(key, 0) for key in after if key not in GAUGES}
    counters["instances"] = after.get("instances", 0)
    return {
        "out_ids": out_ids,
        "published": published,
        "applied": applied,
        "publish": (publish_started, publish_ended),
        "drain": (drain_started, drain_ended),
        "idle_at": idle_at,
        "summary": summary.as_dict(),
        "fc": counters,
        "cpu_bench_s": own_cpu_seconds() - cpu_before,
        "cpu_stack_s": stack.cpu_seconds(children=True) - stack_cpu_before,
        "errors": errors,
    }


def check(
    measured: dict[str, Any], ledger: Ledger, stack: LocalStack, timeout: float, dispatched: bool = True
) -> list[str]:
    """What went wrong in a round: reports not applied, invocations that failed, messages left. `dispatched`
    False: the drainer applied the reports itself (DISPATCH_MODE=inline)."""
    out_ids, applied, summary, counters = measured["out_ids"], measured["applied"], measured["summary"], measured["fc"]
    errors = list(measured["errors"])
    count = len(out_ids)
    if len(applied) != count:
        errors.append(f"{len(applied)} of {count} reports reached the ledger within {timeout:g} s")
    outcomes = Counter(receipt.outcome.value for out_id in applied for receipt in ledger.receipts_for(out_id))
    if outcomes["applied"] != count:
        errors.append(f"receipt outcomes {dict(outcomes)}, expected {count} applied")
    handed = "accepted" if dispatched else "applied"
    if summary[handed] != count or summary["deleted"] != count:
        errors.append(f"drainer {handed} {summary[handed]}, deleted {summary['deleted']} of {count}: {summary}")
    for key in ("failed_attempts", "destination_messages", "expired"):
        if counters.get(key):
            errors.append(f"FC {key}: {counters[key]}")
    left = stack.queue_depth()
    if left:
        errors.append(f"{left} messages left in the queue")
    return errors


def figures(measured: dict[str, Any]) -> dict[str, Any]:
    published, applied, summary = measured["published"], measured["applied"], measured["summary"]
    latencies = [applied[o] - published[o] for o in measured["out_ids"] if o in applied and o in published]
    first_publish = min(published.values()) if published else measured["publish"][0]
    last_apply = max(applied.values()) if applied else measured["idle_at"]
    first_apply = min(applied.values()) if applied else last_apply
    end_to_end = max(last_apply - first_publish, 1e-9)
    processing = max(last_apply - first_apply, 1e-9)
    publish_s = max(measured["publish"][1] - measured["publish"][0], 1e-9)
    drain_s = max(measured["drain"][1] - measured["drain"][0], 1e-9)
    result: dict[str, Any] = {
        "messages": len(measured["out_ids"]),
        "applied": len(applied),
        "throughput_per_s": round(len(applied) / end_to_end, 1),
        "end_to_end_seconds": round(end_to_end, 3),
        "first_apply_after_s": round(first_apply - first_publish, 3),
        "processor_throughput_per_s": round(len(applied) / processing, 1),
        "publish_seconds": round(publish_s, 3),
        "publish_per_s": round(len(published) / publish_s, 1),
        "drain_seconds": round(drain_s, 3),
        "drain_accepted_per_s": round(summary["accepted"] / drain_s, 1),
        "last_apply_after_drain_s": round(last_apply - measured["drain"][1], 3),
        "fc": measured["fc"],
        "cpu_bench_s": round(measured["cpu_bench_s"], 2),
        "cpu_stack_s": round(measured["cpu_stack_s"], 2),
    }
    if latencies:
        for name, fraction in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
            result[f"latency_ms_{name}"] = round(1000 * percentile(latencies, fraction), 1)
        result["latency_ms_min"] = round(1000 * min(latencies), 1)
        result["latency_ms_max"] = round(1000 * max(latencies), 1)
    return result


def show(title: str, result: dict[str, Any]) -> None:
    fc = result["fc"]
    print(f"  {title}")
    print(
        f"    publish        {result['messages']} FlowReports in {result['publish_seconds']:.2f} s "
        f"({result['publish_per_s']:.0f}/s, POST <ALICOM_API_ADMIN_URL>/reports)"
    )
    print(
        f"    drain          {result['drain_seconds']:.2f} s, {result['drain_accepted_per_s']:.0f} accepted by FC/s "
        "(Async InvokeFunction, then BatchDelete; ends with an empty 1 s long poll)"
    )
    print(
        f"    processor      first apply {result['first_apply_after_s']:.2f} s after the first publish, then "
        f"{result['processor_throughput_per_s']:.1f} applies/s; last apply {result['last_apply_after_drain_s']:+.2f} s "
        f"from the drain's end; {fc.get('instances', 0)} instance(s), {fc.get('attempts', 0)} attempts, "
        f"{fc.get('retries', 0)} retries"
    )
    print(
        f"    throughput     {result['throughput_per_s']:.1f} reports applied/s (first publish -> last apply: "
        f"{result['end_to_end_seconds']:.2f} s)"
    )
    if "latency_ms_p50" in result:
        print(
            f"    latency        publish -> ledger received_at: p50 {result['latency_ms_p50']:.0f} ms, "
            f"p90 {result['latency_ms_p90']:.0f} ms, p99 {result['latency_ms_p99']:.0f} ms "
            f"(min {result['latency_ms_min']:.0f}, max {result['latency_ms_max']:.0f})"
        )
    print(
        f"    CPU            bench process {result['cpu_bench_s']} s, stack process and FC instances "
        f"{result['cpu_stack_s']} s, over {result['end_to_end_seconds']:.2f} s on {os.cpu_count()} CPUs"
    )


def _checks(results: dict[str, Any]) -> list[Check]:
    """Reported rows, no targets: each round's throughput and its publish -> ledger latency."""
    checks = []
    for name, result in results.items():
        what = f"{name} of {result['messages']}"
        checks.append(Check(f"{name}_throughput", f"{what}, applied", result["throughput_per_s"], "reports/s"))
        for level in ("p50", "p99"):
            value = result.get(f"latency_ms_{level}")
            checks.append(Check(f"{name}_latency_{level}", f"{what}, publish -> ledger {level}", value, "ms"))
    return checks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.async_dispatch", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000, help="FlowReports of the burst round (default 3000)")
    parser.add_argument(
        "--pollers", type=int, default=None, help="DRAIN_POLLERS (default: the product default, from the settings)"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="MNS latency per request while draining (default 0)"
    )
    parser.add_argument("--warmup", type=int, default=32, help="reports of the unmeasured warm-up round (default 32)")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="reports/s of the paced round, published while draining (0: skip)"
    )
    parser.add_argument("--rate-seconds", type=float, default=5.0, help="duration of the paced round (default 5 s)")
    parser.add_argument("--timeout", type=float, default=90.0, help="limit for each round (default 90 s)")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.warmup < 0:
        parser.error("--messages must be at least 1 and --warmup at least 0")
    if args.pollers is not None and not 1 <= args.pollers <= 16:
        parser.error("--pollers must be between 1 and 16")
    return args


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="async-bench-"))
    stack = None
    ledger = None
    try:
        stack = LocalStack(work / "stack")
        settings = {"DISPATCH_MODE": "async", "DRAIN_LONG_POLL_SECONDS": "1", "LEDGER_URL": stack.env["LEDGER_URL"]}
        if args.pollers is not None:
            settings["DRAIN_POLLERS"] = str(args.pollers)
        environ = stack_settings(stack, **settings)
        runtime = Runtime(lambda: load_settings(environ))
        ledger = runtime.ledger  # the processor writes to the same SQLite file (the stack's LEDGER_URL)
        ledger.migrate()
        pollers = runtime.settings.drain_pollers
        default = int(Settings.model_fields["drain_pollers"].default)
        print(
            f"async_dispatch: local stack pid {stack.proc.pid}, {os.cpu_count()} CPUs, DRAIN_POLLERS {pollers}"
            f"{' (product default)' if pollers == default else ''}, MNS latency {args.latency_ms:g} ms, "
            f"FC_ENDPOINT {stack.env['FC_ENDPOINT']}"
        )
        errors: list[str] = []
        if args.warmup:
            warm_ids = [f"warm-{i:05d}" for i in range(args.warmup)]
            warm = round_trip(stack, runtime, ledger, warm_ids, args.latency_ms, args.timeout)
            errors += [f"warm-up: {e}" for e in check(warm, ledger, stack, args.timeout)]
            print(
                f"  warm-up          {len(warm['applied'])} reports applied in "
                f"{warm['idle_at'] - warm['publish'][0]:.2f} s (starts the processor's instances; not measured)"
            )
        results: dict[str, Any] = {}
        burst = round_trip(
            stack, runtime, ledger, [f"burst-{i:06d}" for i in range(args.messages)], args.latency_ms, args.timeout
        )
        errors += [f"burst: {e}" for e in check(burst, ledger, stack, args.timeout)]
        results["burst"] = figures(burst)
        show(f"burst: {args.messages} reports published, then drained", results["burst"])
        if args.rate:
            count = max(1, round(args.rate * args.rate_seconds))
            paced_ids = [f"paced-{i:06d}" for i in range(count)]
            paced = round_trip(stack, runtime, ledger, paced_ids, args.latency_ms, args.timeout, rate=args.rate)
            errors += [f"paced: {e}" for e in check(paced, ledger, stack, args.timeout)]
            results["paced"] = figures(paced)
            show(f"paced: {count} reports published at {args.rate:g}/s while the drainer runs", results["paced"])
        for error in errors[:20]:
            print(f"  ERROR {error}", file=sys.stderr)
        detail = {
            "benchmark": "async_dispatch",
            "pollers": pollers,
            "latency_ms": args.latency_ms,
            "cpus": os.cpu_count(),
            **results,
            "errors": len(errors),
        }
        print(json.dumps(detail), flush=True)
        write_result("async_dispatch", _checks(results), detail, evaluated=not errors)
        return 1 if errors else 0
    finally:
        if ledger is not None:
            ledger.close()
        if stack is not None:
            stack.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("async_dispatch", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())

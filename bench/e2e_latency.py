"""End-to-end latency of a receipt: published by Alicom -> in the ledger -> delivered to the customer's webhook.

    .venv/bin/python -m bench.e2e_latency [--rate 50] [--seconds 4] [--pollers P] [--latency-ms 20] [--warmup 16]
                                          [--timeout 90]

One local stack (`python -m local stack` in a subprocess) and the local webhook receiver (`python -m local.webhook`,
another), the stack started with WEBHOOK_URL / WEBHOOK_SECRET so that the processor the FC emulator runs (template.yml,
the stack's LEDGER_URL) delivers to it. MNS latency --latency-ms on every request (20 ms: the drain benchmark's
conditions). In each round, --rate FlowReports/s are published for --seconds as Alicom does (POST
<ALICOM_API_ADMIN_URL>/reports, the send time of each kept) while the consumer runs; per report:

  bound   the latency bound: DRAIN_POLLERS threads of the bare aliyun-mns-sdk, one client each, long-polling
          batch_receive_message(16, 1) on the same queue, then batch_delete_message. Latency = publish -> the receive
          call returned the report. No consumer of this queue can see a receipt sooner: it is the publish path, the
          long poll's wake-up and one MNS round trip, with nothing applied or delivered.
  inline  the drainer in this process, DISPATCH_MODE=inline, DRAIN_LONG_POLL_SECONDS=1, notifications on: it applies
          each batch in one transaction, deletes it, and its background deliverer POSTs the events.
  async   the drainer with DISPATCH_MODE=async: one asynchronous InvokeFunction per report to the FC emulator, whose
          processor applies it and delivers its event before the invocation ends.

Each product round follows an unmeasured warm-up of --warmup reports (queue token, connections; in async mode the
processor's instances: cold starts are not in the figures). Latencies: publish -> the receipt's received_at in the
ledger (stamped inside the transaction that applies it, just before its commit), and publish -> the webhook received
the event (its first 2xx delivery, after the commit), p50 / p90 / p99; the same clock throughout (one machine). The
rows of the table put each mode's publish -> delivered p50 and p99 beside the bound's: the ratio is what applying
and delivering (and, async, the FC hop) add to the queue's own latency. No target.

Not measured here: on FC the drainer runs on a timer (`@every 1m`) and ends at the first empty long poll, so a
receipt that arrives while no drainer runs waits for the next tick (up to 60 s) before any of this starts. The
figures are those of a drainer already running, i.e. of a steady stream of receipts.

Prints the figures, then one JSON line. Exits non-zero only on errors (a report not applied or not delivered, a
failed invocation, a message left in the queue, a round over --timeout).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mns.mns_exception import MNSExceptionBase

from bench.async_dispatch import PACED_THREADS, check, figures, percentile, round_trip
from bench.drain_throughput import LocalStack, purge, queue_client, sdk_receive, stack_settings
from bench.entry import run_benchmark
from bench.outbox_delivery import WebhookProcess
from bench.results import Check, write_result
from shared.runtime import Runtime
from shared.settings import load_settings

NAME = "e2e_latency"
MODES = ("inline", "async")
LEVELS = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))
POLL_SECONDS = 0.05


def stats_ms(latencies: list[float]) -> dict[str, float]:
    """p50 / p90 / p99, min and max in milliseconds of a list of seconds (empty: {})."""
    if not latencies:
        return {}
    shown = {name: round(1000 * percentile(latencies, fraction), 1) for name, fraction in LEVELS}
    return {**shown, "min": round(1000 * min(latencies), 1), "max": round(1000 * max(latencies), 1)}


def bound_round(
    stack: LocalStack, runtime: Runtime, out_ids: list[str], args: argparse.Namespace, pollers: int
) -> dict[str, Any]:
    """The bare SDK consumers on the paced stream: publish -> receive latency of every report."""
    clients = [queue_client(stack, runtime) for _ in range(pollers)]  # tokens fetched before the clock starts
    stack.set_mns_latency(args.latency_ms)
    published: dict[str, float] = {}
    received: dict[str, float] = {}
    errors: list[str] = []
    lock = threading.Lock()
    done = threading.Event()
    deadline = time.monotonic() + args.timeout

    def consume(queue: Any) -> None:
        while not done.is_set() and time.monotonic() < deadline:
            messages = sdk_receive(queue, errors, lock)
            if not messages:  # empty (the stream goes on) or an error (recorded)
                continue
            at = time.time()
            out_ids_seen = [json.loads(base64.b64decode(m.message_body))["out_id"] for m in messages]
            try:
                queue.batch_delete_message([m.receipt_handle for m in messages])
            except MNSExceptionBase as error:
                with lock:
                    errors.append(f"BatchDeleteMessage: {error.type}: {error.message}")
            with lock:
                for out_id in out_ids_seen:
                    received.setdefault(out_id, at)
                if len(received) >= len(out_ids):
                    done.set()

    threads = [threading.Thread(target=consume, args=(queue,), daemon=True) for queue in clients]
    for thread in threads:
        thread.start()
    errors += stack.publish(out_ids, threads=PACED_THREADS, on_publish=published.__setitem__, rate=args.rate)
    done.wait(max(0.0, deadline - time.monotonic()))
    done.set()
    for thread in threads:
        thread.join(5)
    if len(received) != len(out_ids):
        errors.append(f"the bare consumers received {len(received)} of {len(out_ids)} reports")
    left = stack.queue_depth()
    if left:
        stack.set_mns_latency(0)
        purge(clients[0])
        errors.append(f"{left} messages left in the queue after the bare consumers")
    latencies = [received[o] - published[o] for o in out_ids if o in received and o in published]
    return {"messages": len(out_ids), "received": len(received), "received_ms": stats_ms(latencies), "errors": errors}


def delivered_times(webhook: WebhookProcess, out_ids: list[str], deadline: float) -> dict[str, float]:
    """out_id -> when the webhook first answered 2xx to its event, waiting (until `deadline`) for every one."""
    wanted = set(out_ids)
    while True:
        answer = webhook.admin("GET", f"/deliveries?limit={4 * len(out_ids) + 100}")
        times: dict[str, float] = {}
        for delivery in answer["deliveries"]:
            out_id = (delivery.get("event") or {}).get("out_id")
            if out_id in wanted and delivery["answered"] is not None and 200 <= delivery["answered"] < 300:
                times[out_id] = min(times.get(out_id, math.inf), delivery["received_at"])
        if len(times) == len(wanted) or time.monotonic() > deadline:
            return times
        time.sleep(POLL_SECONDS)


def product_round(
    stack: LocalStack, webhook: WebhookProcess, mode: str, args: argparse.Namespace
) -> tuple[dict[str, Any], Runtime]:
    """A warm-up, then the paced round through the drainer in `mode`: ledger and webhook latencies."""
    settings = {"DISPATCH_MODE": mode, "DRAIN_LONG_POLL_SECONDS": "1", "LEDGER_URL": stack.env["LEDGER_URL"]}
    if mode == "inline":  # async: the processor (in the FC emulator) delivers, with the stack's WEBHOOK_URL
        settings.update(WEBHOOK_URL=webhook.url, WEBHOOK_SECRET=webhook.secret)
    if args.pollers is not None:
        settings["DRAIN_POLLERS"] = str(args.pollers)
    environ = stack_settings(stack, **settings)
    runtime = Runtime(lambda: load_settings(environ))
    ledger = runtime.ledger
    dispatched = mode == "async"
    errors: list[str] = []
    if args.warmup:
        warm_ids = [f"{mode}-warm-{i:05d}" for i in range(args.warmup)]
        warm = round_trip(stack, runtime, ledger, warm_ids, args.latency_ms, args.timeout)
        errors += [f"warm-up: {e}" for e in check(warm, ledger, stack, args.timeout, dispatched)]
        delivered_times(webhook, warm_ids, time.monotonic() + args.timeout)
    webhook.reset()
    out_ids = [f"{mode}-{i:06d}" for i in range(round(args.rate * args.seconds))]
    measured = round_trip(stack, runtime, ledger, out_ids, args.latency_ms, args.timeout, rate=args.rate)
    errors += check(measured, ledger, stack, args.timeout, dispatched)
    delivered = delivered_times(webhook, out_ids, time.monotonic() + args.timeout)
    if len(delivered) != len(out_ids):
        errors.append(f"{len(delivered)} of {len(out_ids)} events reached the webhook within {args.timeout:g} s")
    published, applied = measured["published"], measured["applied"]
    to_webhook = [delivered[o] - published[o] for o in out_ids if o in delivered and o in published]
    after_ledger = [delivered[o] - applied[o] for o in out_ids if o in delivered and o in applied]
    ledger_figures = figures(measured)
    result = {
        "mode": mode,
        "messages": len(out_ids),
        "delivered": len(delivered),
        "ledger_ms": {name: ledger_figures[f"latency_ms_{name}"] for name in ("p50", "p90", "p99", "min", "max")}
        if "latency_ms_p50" in ledger_figures
        else {},
        "delivered_ms": stats_ms(to_webhook),
        "ledger_to_webhook_ms": stats_ms(after_ledger),
        "fc": measured["fc"],
        "errors": errors,
    }
    return result, runtime


def _line(title: str, stage: str, values: dict[str, float]) -> str:
    if not values:
        return f"  {title:<7} {stage}: no figure"
    return (
        f"  {title:<7} {stage}: p50 {values['p50']:.0f} ms, p90 {values['p90']:.0f} ms, p99 {values['p99']:.0f} ms "
        f"(min {values['min']:.0f}, max {values['max']:.0f})"
    )


def _checks(bound: dict[str, Any], rounds: list[dict[str, Any]], args: argparse.Namespace) -> list[Check]:
    """Reported rows: each mode's publish -> delivered p50 and p99 beside the bare consumer's publish -> received."""
    checks = []
    for result in rounds:
        for level in ("p50", "p99"):
            checks.append(
                Check(
                    f"{result['mode']}_{level}",
                    f"{result['mode']}, publish -> webhook {level}, {args.rate:g}/s",
                    result["delivered_ms"].get(level),
                    "ms",
                    bound["received_ms"].get(level),
                    f"bare SDK receive {level}",
                )
            )
    return checks


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    webhook = stack = None
    runtimes: list[Runtime] = []
    try:
        webhook = WebhookProcess(work)
        stack = LocalStack(work / "stack", {"WEBHOOK_URL": webhook.url, "WEBHOOK_SECRET": webhook.secret})
        tokens = Runtime(lambda: load_settings(stack_settings(stack, LEDGER_URL=stack.env["LEDGER_URL"])))
        runtimes.append(tokens)
        pollers = args.pollers or tokens.settings.drain_pollers
        count = round(args.rate * args.seconds)
        print(
            f"{NAME}: local stack pid {stack.proc.pid}, webhook pid {webhook.proc.pid}, {os.cpu_count()} CPUs, "
            f"DRAIN_POLLERS {pollers}, MNS latency {args.latency_ms:g} ms, {args.rate:g} reports/s for "
            f"{args.seconds:g} s ({count} per round)",
            flush=True,
        )
        bound = bound_round(stack, tokens, [f"bound-{i:06d}" for i in range(count)], args, pollers)
        print(_line("bound", f"bare SDK, {pollers} threads, publish -> received", bound["received_ms"]), flush=True)
        rounds = []
        for mode in MODES:
            result, runtime = product_round(stack, webhook, mode, args)
            runtimes.append(runtime)
            rounds.append(result)
            print(_line(mode, "publish -> ledger   ", result["ledger_ms"]))
            print(_line("", "publish -> delivered", result["delivered_ms"]))
            ratios = [
                f"{result['delivered_ms'][level] / bound['received_ms'][level]:.1f}x the bound's {level}"
                for level in ("p50", "p99")
                if result["delivered_ms"].get(level) and bound["received_ms"].get(level)
            ]
            print(
                f"          ledger -> delivered p50 {result['ledger_to_webhook_ms'].get('p50', 0):.0f} ms; "
                f"{', '.join(ratios)}; {result['delivered']} of {result['messages']} delivered"
                + (f"; {result['fc'].get('instances', 0)} processor instance(s)" if mode == "async" else ""),
                flush=True,
            )
        errors = [f"bound: {e}" for e in bound["errors"]] + [f"{r['mode']}: {e}" for r in rounds for e in r["errors"]]
        for error in errors[:20]:
            print(f"  ERROR {error}", file=sys.stderr)
        detail = {
            "benchmark": NAME,
            "cpus": os.cpu_count(),
            "pollers": pollers,
            "latency_ms": args.latency_ms,
            "rate": args.rate,
            "seconds": args.seconds,
            "bound": {k: v for k, v in bound.items() if k != "errors"},
            "rounds": [{k: v for k, v in r.items() if k != "errors"} for r in rounds],
            "errors": len(errors),
        }
        print(json.dumps(detail), flush=True)
        write_result(NAME, _checks(bound, rounds, args), detail, evaluated=not errors)
        return 1 if errors else 0
    finally:
        for runtime in runtimes:
            if runtime.notifier is not None:
                runtime.notifier.close()
            runtime.ledger.close()
        if stack is not None:
            stack.stop()
        if webhook is not None:
            webhook.stop()
        shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="reports/s published in each round (default 50)")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each round (default 4 s)")
    parser.add_argument("--pollers", type=int, default=None, help="DRAIN_POLLERS (default: the product default)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="MNS latency per request (default 20)")
    parser.add_argument("--warmup", type=int, default=16, help="unmeasured reports before each mode (default 16)")
    parser.add_argument("--timeout", type=float, default=90.0, help="limit for each round (default 90 s)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or round(args.rate * args.seconds) < 1 or args.warmup < 0:
        parser.error("--rate and --seconds must give at least one report, --warmup at least 0")
    if args.pollers is not None and not 1 <= args.pollers <= 16:
        parser.error("--pollers must be between 1 and 16")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(NAME, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())

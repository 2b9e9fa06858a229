"""Outbox delivery to the local webhook, and the drain's throughput with notifications on vs off.

    .venv/bin/python -m bench.outbox_delivery [--events N] [--seed-events M] [--webhook-latency-ms 0,20]
                                              [--messages N] [--pollers P] [--latency-ms 20] [--drain-timeout 60]

One run. The local webhook receiver (`python -m local.webhook`) runs in a subprocess, so that it never shares this
interpreter; so does the local stack (`python -m local stack`) for the drain phases.

  delivery  for each webhook latency L (added by the receiver before it answers): N events committed in a fresh
            SQLite ledger, then
              seed      the seed's pattern: one event at a time, a new urllib.request connection per POST (signed),
                        then one `mark_event_delivered` transaction per event, for M events;
              product   `shared.services.outbox.deliver_now` (4 workers, one pooled urllib3 connection each, one
                        UPDATE for all the delivered events).
            Bound: 4 / L events/s (four in flight). Target: product >= 3x seed at L = 0.
  drain     N FlowReports (orders registered first), MNS latency injected as in bench.drain_throughput, DISPATCH_MODE
            inline, DRAIN_POLLERS=P: one drain with notifications off, then one with WEBHOOK_URL set (a fresh
            ledger each; the background deliverer sends while the pollers drain: one worker while it keeps up,
            up to 4). Rates over the active window (run start -> the last receipt) and over the whole run (which,
            with notifications on, includes the deliverer's final flush).
            Target: notifications on >= 80 % of off (whole run).
Prints figures, then one JSON line. Exits non-zero only on errors (a wrong outcome, a message not drained, an event
not delivered), never on a missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.drain_throughput import (
    PHONE,
    LocalStack,
    inline_runtime,
    own_cpu_seconds,
    purge,
    queue_client,
    receipt_times,
    register_orders,
)
from bench.entry import run_benchmark, stop_process
from bench.results import Check, write_result
from shared.adapters.ledger import Ledger, ReportToApply
from shared.adapters.notify import Notifier, WebhookSink, sign, webhook_body
from shared.services.outbox import DELIVERY_WORKERS, deliver_now

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TARGET_DELIVERY_RATIO = 3.0
TARGET_DRAIN_FRACTION = 0.8
START_SECONDS = 30


class WebhookProcess:
    """`python -m local.webhook` as a child process, with a fresh secret."""

    def __init__(self, work: Path) -> None:
        self.secret = "whsec-bench-" + secrets.token_hex(12)
        self._log = (work / "webhook.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local.webhook"],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "WEBHOOK_SECRET": self.secret, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError("the webhook receiver did not start")
        announced = json.loads(line)
        self.url: str = announced["url"]
        self.admin_url: str = announced["admin_url"]

    def admin(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.admin_url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def set_latency(self, latency_ms: float) -> None:
        if latency_ms:
            self.admin("PUT", "/faults", {"latency_ms": latency_ms})
        else:
            self.admin("DELETE", "/faults")

    def accepted(self) -> dict[str, int]:
        return self.admin("GET", "/deliveries?limit=0")["accepted"]

    def reset(self) -> None:
        self.admin("DELETE", "/deliveries")

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)
        self._log.close()


def committed_events(ledger: Ledger, count: int, prefix: str) -> list[dict[str, Any]]:
    events = []
    for n in range(count):
        out_id = f"{prefix}-{n:06d}"
        ledger.register_order(out_id, PHONE)
        applied = ledger.apply_report(
            ReportToApply(message_id=f"M-{out_id}", message_type="FlowReport", out_id=out_id, phone=PHONE, result="3")
        )
        assert applied.event is not None
        events.append(applied.event)
    return events


def seed_delivery(webhook: WebhookProcess, ledger: Ledger, events: list[dict[str, Any]]) -> tuple[int, float]:
    """One event at a time: a new connection per POST, one transaction per event. Returns (delivered, seconds)."""
    delivered = 0
    started = time.perf_counter()
    for event in events:
        body = webhook_body(event)
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            webhook.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Flow-Receipts-Event-Id": event["event_id"],
                "X-Flow-Receipts-Timestamp": timestamp,
                "X-Flow-Receipts-Signature": f"v1={sign(webhook.secret, timestamp, body)}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
        except (urllib.error.URLError, OSError):
            continue
        ledger.mark_event_delivered(event["event_id"])
        delivered += 1
    return delivered, time.perf_counter() - started


def delivery_phase(webhook: WebhookProcess, work: Path, latency_ms: float, args: argparse.Namespace) -> dict[str, Any]:
    errors: list[str] = []
    webhook.set_latency(latency_ms)
    tag = f"l{latency_ms:g}"
    with Ledger(f"sqlite:///{work / f'delivery-{tag}.sqlite3'}") as ledger:
        ledger.migrate()
        seed_events = committed_events(ledger, args.seed_events, f"seed-{tag}")
        seed_done, seed_seconds = seed_delivery(webhook, ledger, seed_events)
        events = committed_events(ledger, args.events, f"product-{tag}")
        notifier = Notifier([WebhookSink(webhook.url, webhook.secret, 5.0)])
        cpu_before = own_cpu_seconds()
        started = time.perf_counter()
        counts = deliver_now(ledger, notifier, events, time.monotonic() + args.delivery_timeout)
        seconds = time.perf_counter() - started
        cpu = own_cpu_seconds() - cpu_before
        notifier.close()
        undelivered = [e for e in ledger.list_events(undelivered=True, limit=10) if not e.event_id.startswith("seed")]
    if seed_done != len(seed_events):
        errors.append(f"seed pattern delivered {seed_done} of {len(seed_events)}")
    if counts.delivered != len(events) or undelivered:
        errors.append(f"product delivered {counts.delivered} of {len(events)}: {counts.as_dict()}")
    seed_rate = seed_done / seed_seconds if seed_seconds else 0.0
    rate = counts.delivered / seconds if seconds else 0.0
    return {
        "webhook_latency_ms": latency_ms,
        "seed_events": seed_done,
        "seed_seconds": round(seed_seconds, 3),
        "seed_events_per_s": round(seed_rate, 1),
        "events": counts.delivered,
        "seconds": round(seconds, 3),
        "events_per_s": round(rate, 1),
        "cpu_bench_s": round(cpu, 2),
        "cpu_ms_per_event": round(1000 * cpu / counts.delivered, 3) if counts.delivered else None,
        "ratio_to_seed": round(rate / seed_rate, 1) if seed_rate else None,
        "bound_events_per_s": round(DELIVERY_WORKERS / (latency_ms / 1000), 1) if latency_ms else None,
        "errors": errors,
    }


def drain_phase(
    stack: LocalStack, webhook: WebhookProcess | None, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    label = "on" if webhook else "off"
    out_ids = [f"drain-{label}-{i:07d}" for i in range(args.messages)]
    ledger_path = work / f"drain-{label}.sqlite3"
    notify = {"WEBHOOK_URL": webhook.url, "WEBHOOK_SECRET": webhook.secret} if webhook else {}
    runtime, ledger, credentials = inline_runtime(stack, ledger_path, args.pollers, **notify)
    stack.set_mns_latency(0)
    errors = stack.publish(out_ids)
    register_orders(ledger, out_ids)
    runtime.tokens(credentials).token()  # a warm instance holds its queue token
    drainer = runtime.drainer(credentials)
    if webhook is not None:
        webhook.reset()
    stack.set_mns_latency(args.latency_ms)

    cpu_before, stack_cpu_before = own_cpu_seconds(), stack.cpu_seconds()
    started_at = time.time()
    summary = drainer.run(time.monotonic() + args.drain_timeout)
    ended_at = time.time()
    cpu, stack_cpu = own_cpu_seconds() - cpu_before, stack.cpu_seconds() - stack_cpu_before

    counts = summary.as_dict()
    times = receipt_times(ledger_path)
    last = max(times.values()) if times else ended_at
    active = max(last - started_at, 1e-9)
    whole = max(ended_at - started_at, 1e-9)
    left = stack.queue_depth()
    if left:
        stack.set_mns_latency(0)
        purge(queue_client(stack, runtime))
    if webhook is not None and runtime.notifier is not None:
        runtime.notifier.close()
    ledger.close()
    if counts["applied"] != args.messages or counts["deleted"] != args.messages:
        errors.append(f"notifications {label}: applied {counts['applied']}, deleted {counts['deleted']}: {counts}")
    if left:
        errors.append(f"notifications {label}: {left} messages left in the queue")
    return {
        "notifications": label,
        "messages": counts["applied"],
        "active_seconds": round(active, 3),
        "run_seconds": round(whole, 3),
        "messages_per_s": round(counts["applied"] / active, 1),
        "run_messages_per_s": round(counts["applied"] / whole, 1),
        "events": counts["events"],
        "delivered": counts["delivered"],
        "undelivered": counts["undelivered"],
        "accepted_by_webhook": len(webhook.accepted()) if webhook is not None else 0,
        "cpu_bench_s": round(cpu, 2),
        "cpu_stack_s": round(stack_cpu, 2),
        "errors": errors,
    }


def _checks(deliveries: list[dict[str, Any]], drains: list[dict[str, Any]]) -> list[Check]:
    """Delivery at the first webhook latency against the seed's pattern (the target), the other latencies reported;
    the drain's whole-run rate with notifications on against off."""
    checks = []
    for index, result in enumerate(deliveries):
        latency = result["webhook_latency_ms"]
        checks.append(
            Check(
                f"delivery_{latency:g}ms",
                f"events delivered, webhook {latency:g} ms",
                result["events_per_s"],
                "events/s",
                result["seed_events_per_s"],
                "one at a time",
                target=TARGET_DELIVERY_RATIO if index == 0 else None,
            )
        )
    if len(drains) == 2:
        off, on = drains
        checks.append(
            Check(
                "drain_notifications",
                "drain with notifications on",
                on["run_messages_per_s"],
                "messages/s",
                off["run_messages_per_s"],
                "notifications off",
                target=TARGET_DRAIN_FRACTION,
            )
        )
    else:
        checks.append(Check("drain_notifications", "drain with notifications on", None, skipped="--skip-drain"))
    return checks


def _latencies(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("latencies must be >= 0")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox_delivery", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="events per product delivery run (default 2000)")
    parser.add_argument("--seed-events", type=int, default=300, help="events for the seed pattern (default 300)")
    parser.add_argument(
        "--webhook-latency-ms", type=_latencies, default=[0.0, 20.0], help="webhook latencies (default 0,20)"
    )
    parser.add_argument("--delivery-timeout", type=float, default=120.0, help="deadline of each delivery (120 s)")
    parser.add_argument("--messages", type=int, default=3000, help="FlowReports per drain (default 3000)")
    parser.add_argument("--pollers", type=int, default=4, help="DRAIN_POLLERS (default 4)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="MNS latency per request (default 20)")
    parser.add_argument("--drain-timeout", type=float, default=60.0, help="deadline of each drain (default 60 s)")
    parser.add_argument("--skip-drain", action="store_true", help="only the delivery phases")
    args = parser.parse_args(argv)
    if min(args.events, args.seed_events, args.messages) < 1:
        parser.error("--events, --seed-events and --messages must be at least 1")
    return args


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="outbox-bench-"))
    webhook = stack = None
    try:
        webhook = WebhookProcess(work)
        print(f"outbox_delivery: local webhook pid {webhook.proc.pid}, {os.cpu_count()} CPUs")
        deliveries = []
        for latency in args.webhook_latency_ms:
            result = delivery_phase(webhook, work, latency, args)
            deliveries.append(result)
            print(
                f"  delivery  webhook latency {latency:g} ms: {result['events_per_s']:.0f} events/s "
                f"({result['events']} in {result['seconds']:.2f} s, {DELIVERY_WORKERS} in flight, "
                f"{result['cpu_ms_per_event']} ms CPU each) vs seed pattern {result['seed_events_per_s']:.0f} events/s "
                f"= {result['ratio_to_seed']}x"
                + (f"; bound {result['bound_events_per_s']:.0f}/s" if result["bound_events_per_s"] else "")
            )
        webhook.set_latency(0)
        drains: list[dict[str, Any]] = []
        if not args.skip_drain:
            stack = LocalStack(work / "stack")
            for with_webhook in (None, webhook):
                result = drain_phase(stack, with_webhook, work, args)
                drains.append(result)
                print(
                    f"  drain     notifications {result['notifications']:<3}: "
                    f"{result['messages_per_s']:.0f} messages/s "
                    f"to the last receipt ({result['run_messages_per_s']:.0f}/s over the whole run of "
                    f"{result['run_seconds']:.2f} s); events {result['events']}, delivered {result['delivered']}, "
                    f"undelivered {result['undelivered']}; CPU bench {result['cpu_bench_s']} s, "
                    f"stack {result['cpu_stack_s']} s"
                )
        errors = [e for r in deliveries + drains for e in r["errors"]]
        verdict = {True: "met", False: "NOT MET", None: "not evaluated"}
        first = deliveries[0]
        delivery_met = (
            first["ratio_to_seed"] >= TARGET_DELIVERY_RATIO if not errors and first["ratio_to_seed"] else None
        )
        print(
            f"      delivery vs seed at {first['webhook_latency_ms']:g} ms: {first['ratio_to_seed']}x "
            f"(target >= {TARGET_DELIVERY_RATIO:g}x: {verdict[delivery_met]})"
        )
        fraction = run_fraction = None
        if len(drains) == 2:
            off, on = drains
            fraction = round(on["messages_per_s"] / off["messages_per_s"], 3) if off["messages_per_s"] else None
            run_fraction = (
                round(on["run_messages_per_s"] / off["run_messages_per_s"], 3) if off["run_messages_per_s"] else None
            )
            met = run_fraction >= TARGET_DRAIN_FRACTION if run_fraction is not None and not errors else None
            print(
                f"      drain on / off: {run_fraction:.0%} over the whole run, {fraction:.0%} to the last receipt "
                f"(target >= {TARGET_DRAIN_FRACTION:.0%}: {verdict[met]})"
            )
        for error in errors[:20]:
            print(f"  ERROR {error}", file=sys.stderr)
        detail = {
            "benchmark": "outbox_delivery",
            "cpus": os.cpu_count(),
            "delivery": [{k: v for k, v in r.items() if k != "errors"} for r in deliveries],
            "drain": [{k: v for k, v in r.items() if k != "errors"} for r in drains],
            "drain_on_off_fraction": fraction,
            "drain_on_off_run_fraction": run_fraction,
            "target_delivery_ratio": TARGET_DELIVERY_RATIO,
            "target_drain_fraction": TARGET_DRAIN_FRACTION,
            "errors": len(errors),
        }
        print(json.dumps(detail), flush=True)
        write_result("outbox_delivery", _checks(deliveries, drains), detail, evaluated=not errors)
        return 1 if errors else 0
    finally:
        if stack is not None:
            stack.stop()
        if webhook is not None:
            webhook.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("outbox_delivery", parse_args, run, argv)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())

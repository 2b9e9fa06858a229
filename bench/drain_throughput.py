"""Drain throughput with 20 ms of latency on every MNS request: the product drainer against the seed's pattern.

    .venv/bin/python -m bench.drain_throughput [--messages N] [--pollers P[,P...]] [--seed-seconds S]
                                               [--seed-messages M] [--latency-ms 20] [--drain-timeout 60]

One run, one local stack (`python -m local stack` in a subprocess: Alicom's MNS, the Alicom token API, FC; the
drainer runs in this process, so the emulators never share its interpreter), MNS latency injected through the
admin API (`{"latency_ms": 20}`) once the queue is pre-filled:

  seed      the seed's pattern: one aliyun-mns-sdk client (queue token from QueryTokenForMnsQueue), a loop of
            receive_message(wait 1) -> shared.services.pipeline.apply_message on a SQLite ledger -> delete_message, one
            message at a time, for --seed-seconds or M messages (whichever comes first).
  drainer   for each P (default: the product default DRAIN_POLLERS, 4 and 8): N FlowReports published as Alicom
            does (orders registered first, fresh SQLite ledger), then one Runtime(...).drainer(...).run() with
            DISPATCH_MODE=inline, DRAIN_POLLERS=P, DRAIN_LONG_POLL_SECONDS=1, a warm token, until the queue is empty.

Drainer rates are over the active window (run start -> the last receipt's received_at in the ledger) and over the
whole run (which ends with each poller's empty 1 s long poll, a fixed cost per invocation). Targets: active rate
>= 30x the seed's rate, and >= 50 % of the bound P x 16 / (2 x latency) (two MNS round trips per batch of 16).
CPU time of this process and of the stack process is reported for each phase, to show which side is saturated.
Prints figures, then one JSON line. Exits non-zero only on errors (a wrong outcome, a message not drained, a
failed call), never on a missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mns.account import Account
from mns.mns_exception import MNSExceptionBase, MNSServerException

from bench.entry import run_benchmark, stop_process
from shared.adapters.fc import Credentials
from shared.adapters.ledger import Ledger
from shared.domain.models import Envelope
from shared.runtime import Runtime
from shared.services.pipeline import apply_message
from shared.settings import Settings, load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 30.0
TARGET_BOUND_FRACTION = 0.5
BATCH = 16
PHONE = "13800138000"
PUBLISH_THREADS = 4
STACK_START_SECONDS = 60
STACK_KEYS = (
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALICOM_MNS_ENDPOINT",
    "ALICOM_API_ENDPOINT",
    "FLOW_API_ENDPOINT",
    "ALICOM_MESSAGE_TYPE",
    "ALICOM_QUEUE_NAME",
    "FC_ENDPOINT",
    "FC_ACCOUNT_ID",
    "FC_REGION",
    "MNS_ENDPOINT",
    "DLQ_QUEUE_NAME",
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def product_default_pollers() -> int:
    return int(Settings.model_fields["drain_pollers"].default)


# --------------------------------------------------------------------------------------------------
# the local stack in a subprocess (also used by bench.async_dispatch)
# --------------------------------------------------------------------------------------------------


class LocalStack:
    """`python -m local stack --state-dir <dir>` as a child process; `env` is its stack.env."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.env_file = state_dir / "stack.env"
        self.log_path = state_dir.parent / f"{state_dir.name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local", "stack", "--state-dir", str(state_dir)],
            cwd=PROJECT_ROOT,  # the FC emulator finds template.yml and functions/ there
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + STACK_START_SECONDS
        while not self.env_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the local stack did not start; log tail:\n{self.log_tail()}")
            time.sleep(0.05)
        time.sleep(0.05)  # stack.env is written by rename, so it is complete once it exists
        pairs = (line.split("=", 1) for line in self.env_file.read_text().splitlines() if "=" in line)
        self.env: dict[str, str] = {key: value for key, value in pairs if not key.startswith("#")}

    def admin(self, name: str, method: str, path: str, body: object = None) -> Any:
        """JSON admin call; `name` is the stack.env variable of the admin URL (e.g. ALICOM_MNS_ADMIN_URL)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.env[name] + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def set_mns_latency(self, latency_ms: float) -> None:
        self.admin("ALICOM_MNS_ADMIN_URL", "PUT", "/faults", {"latency_ms": latency_ms} if latency_ms else {})

    def mns_stats(self) -> dict:
        return self.admin("ALICOM_MNS_ADMIN_URL", "GET", "/stats")

    def queue_depth(self) -> int:
        depths = self.mns_stats()["queues"].get(self.env["ALICOM_QUEUE_NAME"], {})
        return sum(depths.values())

    def publish(
        self, out_ids: list[str], threads: int = PUBLISH_THREADS, on_publish=None, rate: float | None = None
    ) -> list[str]:
        """FlowReports (result 3) published as Alicom does (POST <ALICOM_API_ADMIN_URL>/reports); errors as text.

        `on_publish(out_id, sent_at)` is called for each accepted report with the time its request was sent. With
        `rate` (reports/s) they are handed to the `threads` on a steady schedule instead of as fast as possible."""
        url = urlsplit(self.env["ALICOM_API_ADMIN_URL"] + "/reports")
        local = threading.local()
        errors: list[str] = []

        def post(out_id: str) -> None:
            connection = getattr(local, "connection", None)
            if connection is None:
                connection = local.connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            body = json.dumps({"out_id": out_id, "phone": PHONE, "result": "3"}).encode()
            sent_at = time.time()
            try:
                connection.request("POST", url.path, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as error:
                local.connection = None
                errors.append(f"publish {out_id}: {type(error).__name__}: {error}")
                return
            if response.status != 201:
                errors.append(f"publish {out_id}: HTTP {response.status}: {answer[:200]!r}")
            elif on_publish is not None:
                on_publish(out_id, sent_at)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            if not rate:
                list(pool.map(post, out_ids))
                return errors
            started = time.monotonic()
            for i, out_id in enumerate(out_ids):
                time.sleep(max(0.0, started + i / rate - time.monotonic()))
                pool.submit(post, out_id)
        return errors

    def cpu_seconds(self, children: bool = False) -> float:
        """User + system CPU time of the stack process (all its threads), with `children` also of its live child
        processes (the FC emulator's function instances); 0 when /proc is not there."""
        pids = [self.proc.pid]
        if children:
            pids += _descendants(self.proc.pid)
        return sum(_process_cpu_seconds(pid) for pid in pids)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)
        self._log.close()


def _process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            for child in (task / "children").read_text().split():
                found += [int(child), *_descendants(int(child))]
    return found


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def stack_settings(stack: LocalStack, **settings: str) -> dict[str, str]:
    """The drainer's environment: the stack's endpoints and keys, plus `settings`."""
    return {**{key: stack.env[key] for key in STACK_KEYS if key in stack.env}, "LOG_LEVEL": "WARNING", **settings}


def customer_credentials(stack: LocalStack) -> Credentials:
    return Credentials(stack.env["ALIBABA_CLOUD_ACCESS_KEY_ID"], stack.env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"], None)


def register_orders(ledger: Ledger, out_ids: list[str]) -> None:
    for out_id in out_ids:
        ledger.register_order(out_id, PHONE)


def receipt_times(ledger_path: Path) -> dict[str, float]:
    """out_id -> epoch seconds of its first receipt's received_at (naive UTC text in SQLite)."""
    connection = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT out_id, MIN(received_at) FROM receipts GROUP BY out_id").fetchall()
    finally:
        connection.close()
    return {
        out_id: datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() for out_id, text in rows if text
    }


def queue_client(stack: LocalStack, runtime: Runtime) -> Any:
    """One aliyun-mns-sdk queue client with the queue token from the Alicom token API, raw bodies."""
    token = runtime.tokens(customer_credentials(stack)).token()
    account = Account(
        stack.env["ALICOM_MNS_ENDPOINT"], token.access_key_id, token.access_key_secret, token.security_token
    )
    queue = account.get_queue(stack.env["ALICOM_QUEUE_NAME"])
    queue.set_encoding(False)
    return queue


def purge(queue: Any, limit_seconds: float = 30.0) -> int:
    """Receives and deletes whatever is left (untimed housekeeping between phases)."""
    removed = 0
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        try:
            messages = queue.batch_receive_message(BATCH, 0)
        except MNSServerException as error:
            if error.type == "MessageNotExist":
                return removed
            raise
        queue.batch_delete_message([m.receipt_handle for m in messages])
        removed += len(messages)
    return removed


# --------------------------------------------------------------------------------------------------
# phases
# --------------------------------------------------------------------------------------------------


def seed_phase(stack: LocalStack, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    out_ids = [f"seed-{i:06d}" for i in range(args.seed_messages)]
    ledger_path = work / "seed-ledger.sqlite3"
    environ = stack_settings(stack, LEDGER_URL=f"sqlite:///{ledger_path}")
    runtime = Runtime(lambda: load_settings(environ))
    ledger = runtime.ledger
    ledger.migrate()
    stack.set_mns_latency(0)
    errors = stack.publish(out_ids)
    register_orders(ledger, out_ids)
    queue = queue_client(stack, runtime)
    message_type = stack.env["ALICOM_MESSAGE_TYPE"]
    stack.set_mns_latency(args.latency_ms)

    outcomes: Counter[str] = Counter()
    done = 0
    stopped_by = "time"
    cpu_before, stack_cpu_before = own_cpu_seconds(), stack.cpu_seconds()
    started = time.perf_counter()
    deadline = started + args.seed_seconds
    while time.perf_counter() < deadline:
        if done >= args.seed_messages:
            stopped_by = "messages"
            break
        try:
            message = queue.receive_message(1)
        except MNSServerException as error:
            if error.type == "MessageNotExist":
                stopped_by = "empty"
                break
            errors.append(f"ReceiveMessage: {error.type}: {error.message}")
            continue
        except MNSExceptionBase as error:
            errors.append(f"ReceiveMessage: {error.type}: {error.message}")
            continue
        envelope = Envelope(
            message_id=message.message_id,
            message_type=message_type,
            body=message.message_body,
            dequeue_count=message.dequeue_count,
            enqueue_time=message.enqueue_time if (message.enqueue_time or -1) >= 0 else None,
        )
        outcomes.update(apply_message(ledger, envelope).outcomes)
        try:
            queue.delete_message(message.receipt_handle)
        except MNSExceptionBase as error:
            errors.append(f"DeleteMessage: {error.type}: {error.message}")
            continue
        done += 1
    seconds = time.perf_counter() - started
    cpu, stack_cpu = own_cpu_seconds() - cpu_before, stack.cpu_seconds() - stack_cpu_before
    left = purge(queue)
    ledger.close()
    wrong = done - outcomes["applied"]
    if wrong:
        errors.append(f"{wrong} seed messages had another outcome than applied: {dict(outcomes)}")
    rate = done / seconds if seconds else 0.0
    return {
        "messages": done,
        "seconds": round(seconds, 3),
        "messages_per_s": round(rate, 2),
        "ms_per_message": round(1000 * seconds / done, 2) if done else None,
        "stopped_by": stopped_by,
        "purged_after": left,
        "cpu_bench_s": round(cpu, 2),
        "cpu_stack_s": round(stack_cpu, 2),
        "errors": errors,
    }


def drainer_phase(stack: LocalStack, work: Path, pollers: int, args: argparse.Namespace) -> dict[str, Any]:
    out_ids = [f"p{pollers}-{i:07d}" for i in range(args.messages)]
    ledger_path = work / f"ledger-p{pollers}.sqlite3"
    environ = stack_settings(
        stack,
        LEDGER_URL=f"sqlite:///{ledger_path}",
        DISPATCH_MODE="inline",
        DRAIN_POLLERS=str(pollers),
        DRAIN_LONG_POLL_SECONDS="1",
    )
    runtime = Runtime(lambda: load_settings(environ))
    ledger = runtime.ledger
    ledger.migrate()
    credentials = customer_credentials(stack)

    stack.set_mns_latency(0)
    errors = stack.publish(out_ids)
    register_orders(ledger, out_ids)
    depth = stack.queue_depth()
    if depth != args.messages:
        errors.append(f"queue depth {depth} after publishing {args.messages}")
    runtime.tokens(credentials).token()  # a warm instance holds its queue token
    drainer = runtime.drainer(credentials)
    stack.set_mns_latency(args.latency_ms)

    before = stack.mns_stats()["operations"]
    cpu_before, stack_cpu_before = own_cpu_seconds(), stack.cpu_seconds()
    started_at = time.time()
    summary = drainer.run(time.monotonic() + args.drain_timeout)
    ended_at = time.time()
    cpu, stack_cpu = own_cpu_seconds() - cpu_before, stack.cpu_seconds() - stack_cpu_before
    after = stack.mns_stats()["operations"]

    def requests(operation: str) -> int:
        return after.get(operation, {}).get("requests", 0) - before.get(operation, {}).get("requests", 0)

    counts = summary.as_dict()
    applied = counts["applied"]
    times = receipt_times(ledger_path)
    last = max(times.values()) if times else ended_at
    active = max(last - started_at, 1e-9)
    whole = max(ended_at - started_at, 1e-9)
    left = stack.queue_depth()
    if left:
        stack.set_mns_latency(0)
        purge(queue_client(stack, runtime))
    ledger.close()
    if applied != args.messages or counts["deleted"] != args.messages:
        errors.append(f"applied {applied}, deleted {counts['deleted']} of {args.messages}: {counts}")
    if summary.errors:
        errors.extend(summary.errors)
    if left:
        errors.append(f"{left} messages left in the queue after the drain")
    bound = pollers * BATCH / (2 * args.latency_ms / 1000) if args.latency_ms else None
    receives = requests("BatchReceiveMessage")
    return {
        "pollers": pollers,
        "messages": args.messages,
        "applied": applied,
        "active_seconds": round(active, 3),
        "run_seconds": round(whole, 3),
        "messages_per_s": round(applied / active, 1),
        "run_messages_per_s": round(applied / whole, 1),
        "bound_messages_per_s": bound,
        "bound_fraction": round(applied / active / bound, 3) if bound else None,
        "run_bound_fraction": round(applied / whole / bound, 3) if bound else None,
        "batch_receive_requests": receives,
        "batch_delete_requests": requests("BatchDeleteMessage"),
        "messages_per_receive": round(counts["received"] / receives, 2) if receives else None,
        "stopped_by": counts["stopped_by"],
        "cpu_bench_s": round(cpu, 2),
        "cpu_stack_s": round(stack_cpu, 2),
        "errors": errors,
    }


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def _pollers(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or any(not 1 <= v <= 16 for v in values):
        raise argparse.ArgumentTypeError("pollers must be between 1 and 16 (DRAIN_POLLERS' range)")
    return list(dict.fromkeys(values))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_pollers = list(dict.fromkeys([product_default_pollers(), 4, 8]))
    parser = argparse.ArgumentParser(prog="python -m bench.drain_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="FlowReports per drainer run (default 5000)")
    parser.add_argument(
        "--pollers",
        type=_pollers,
        default=default_pollers,
        help=f"DRAIN_POLLERS values, comma-separated (default {','.join(map(str, default_pollers))})",
    )
    parser.add_argument("--seed-seconds", type=float, default=8.0, help="seed pattern duration (default 8)")
    parser.add_argument("--seed-messages", type=int, default=400, help="seed pattern message cap (default 400)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="MNS latency per request (default 20)")
    parser.add_argument("--drain-timeout", type=float, default=60.0, help="deadline of each drain (default 60 s)")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.seed_messages < 1:
        parser.error("--messages and --seed-messages must be at least 1")
    return args


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="drain-bench-"))
    stack = None
    try:
        stack = LocalStack(work / "stack")
        print(
            f"drain_throughput: MNS latency {args.latency_ms:g} ms per request, local stack pid {stack.proc.pid}, "
            f"{os.cpu_count()} CPUs"
        )
        seed = seed_phase(stack, work, args)
        print(
            f"  seed pattern     {seed['messages']} messages in {seed['seconds']:.2f} s = "
            f"{seed['messages_per_s']:.1f} messages/s ({seed['ms_per_message']} ms each; receive(wait 1) -> "
            f"apply -> delete; stopped by {seed['stopped_by']}); CPU bench {seed['cpu_bench_s']} s, "
            f"stack {seed['cpu_stack_s']} s"
        )
        runs = []
        for pollers in args.pollers:
            result = drainer_phase(stack, work, pollers, args)
            runs.append(result)
            ratio = result["messages_per_s"] / seed["messages_per_s"] if seed["messages_per_s"] else None
            result["ratio_to_seed"] = round(ratio, 1) if ratio is not None else None
            result["run_ratio_to_seed"] = (
                round(result["run_messages_per_s"] / seed["messages_per_s"], 1) if seed["messages_per_s"] else None
            )
            evaluated = not result["errors"]  # no verdict on a run with errors
            result["ratio_met"] = ratio >= TARGET_RATIO if evaluated and ratio is not None else None
            fraction = result["bound_fraction"]
            result["bound_met"] = fraction >= TARGET_BOUND_FRACTION if evaluated and fraction is not None else None
            default = " (product default)" if pollers == product_default_pollers() else ""
            print(
                f"  drainer P={pollers:<2}{default:<18} {result['applied']} messages: "
                f"{result['messages_per_s']:.1f} messages/s over {result['active_seconds']:.2f} s to the last receipt "
                f"({result['run_messages_per_s']:.1f}/s over the whole run of {result['run_seconds']:.2f} s); "
                f"{result['messages_per_receive']} messages per BatchReceive; "
                f"CPU bench {result['cpu_bench_s']} s, stack {result['cpu_stack_s']} s"
            )
            verdict = {True: "met", False: "NOT MET", None: "not evaluated"}
            print(
                f"      vs seed      {result['ratio_to_seed']}x (target >= {TARGET_RATIO:g}x: "
                f"{verdict[result['ratio_met']]}; whole run {result['run_ratio_to_seed']}x)"
            )
            if fraction is None:
                print("      vs bound     no latency injected: no bound")
            else:
                print(
                    f"      vs bound     {fraction:.0%} of {pollers} x {BATCH} / (2 x {args.latency_ms:g} ms) = "
                    f"{result['bound_messages_per_s']:.0f}/s (target >= {TARGET_BOUND_FRACTION:.0%}: "
                    f"{verdict[result['bound_met']]}; whole run {result['run_bound_fraction']:.0%})"
                )
        errors = seed["errors"] + [f"P={r['pollers']}: {e}" for r in runs for e in r["errors"]]
        for error in errors[:20]:
            print(f"  ERROR {error}", file=sys.stderr)
        print(
            json.dumps(
                {
                    "benchmark": "drain_throughput",
                    "latency_ms": args.latency_ms,
                    "cpus": os.cpu_count(),
                    "product_default_pollers": product_default_pollers(),
                    "seed": {k: v for k, v in seed.items() if k != "errors"},
                    "drainer": [{k: v for k, v in r.items() if k != "errors"} for r in runs],
                    "target_ratio": TARGET_RATIO,
                    "target_bound_fraction": TARGET_BOUND_FRACTION,
                    "errors": len(errors),
                }
            ),
            flush=True,
        )
        return 1 if errors else 0
    finally:
        if stack is not None:
            stack.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("drain_throughput", parse_args, run, argv)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())

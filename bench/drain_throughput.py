"""Drain throughput and cost with 20 ms of latency on every MNS request: the product drainer against its baselines.

    .venv/bin/python -m bench.drain_throughput [--messages N] [--pollers P[,P...]] [--seed-seconds S]
                                               [--seed-messages M] [--latency-ms 20] [--drain-timeout 60]
                                               [--scale-processes 1,2,4] [--scale-backends sqlite,postgresql]
                                               [--scale-messages K]

One run, one local stack (`python -m local stack` in a subprocess: Alicom's MNS, the Alicom token API, FC; the
drainer runs in this process, so the emulators never share its interpreter), MNS latency injected through the
admin API (`{"latency_ms": 20}`) once the queue is pre-filled. Every phase drains a queue pre-filled with
FlowReports published as Alicom does; every drain is bounded by --drain-timeout.

  seed      the seed's pattern: one aliyun-mns-sdk client (queue token from QueryTokenForMnsQueue), a loop of
            receive_message(wait 1) -> shared.services.pipeline.apply_message on a SQLite ledger -> delete_message, one
            message at a time, for --seed-seconds or M messages (whichever comes first).
  sdk       the bare aliyun-mns-sdk loop, the CPU floor of draining: the product default DRAIN_POLLERS threads, each
            with its own mns.account.Account (the queue token), batch_receive_message(16, 1), base64 + json.loads of
            each body, batch_delete_message, until the queue is empty. Measured twice, before the registered and
            after the orphan drain; its CPU per receipt is the mean of both.
  drainer   for each P (default: the product default DRAIN_POLLERS, and 8): N FlowReports for registered orders (fresh
            SQLite ledger), then one Runtime(...).drainer(...).run() in this process with DISPATCH_MODE=inline,
            DRAIN_POLLERS=P, DRAIN_LONG_POLL_SECONDS=1, a warm token, until the queue is empty.
  orphans   the same with the product default P, for N FlowReports whose out_id was never registered.
  scale     1, 2 and 4 drainer PROCESSES on one queue (as FC runs concurrent instances), on SQLite (one file) and on
            PostgreSQL (a scratch schema on TEST_POSTGRES_URL): each a separate `python -m bench.drain_worker` running
            the product drainer with the product default pollers; started together once warm (token, pooled
            connections), K FlowReports in all.

Rates are over the active window (drain start -> the last receipt's received_at in the ledger) and over the whole run
(which ends with each poller's empty 1 s long poll, a fixed cost per invocation). CPU per receipt is the user +
system CPU time of the process that drains (this one, or the workers) over its drain / receipts, with the stack's
(the emulators') beside it. MNS requests per receipt = (BatchReceiveMessage + BatchDeleteMessage requests, from the
emulator's admin /stats) / receipts. Targets, all against baselines measured in this run:
  drainer, default P     active rate >= 30x the seed's rate, and >= 50 % of the bound P x 16 / (2 x latency)
  CPU per receipt        drainer (registered orders, and orphans) <= 2x the bare SDK loop's
  MNS requests           <= 0.15 per receipt (the floor is 2 / 16 = 0.125)
The scale-out phase is reported: receipts/s, speed-up over 1 process, CPU per receipt, and the evidence of what
bounds it (CPU of the workers, the stack and the PostgreSQL backends against the cores; the pollers' time in MNS
calls, in the ledger, waiting for SQLite's write lock; PostgreSQL wait events sampled from pg_stat_activity).
Prints figures, then one JSON line. Exits non-zero only on errors (a wrong outcome, a message not drained, a
failed call), never on a missed target.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import logging
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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mns.account import Account
from mns.mns_exception import MNSExceptionBase, MNSServerException
from sqlalchemy import create_engine, func, select, text

from bench.entry import run_benchmark, stop_process
from bench.results import Check, write_result
from shared.adapters.fc import Credentials
from shared.adapters.ledger import Ledger
from shared.adapters.ledger.records import NewOrder
from shared.adapters.ledger.schema import receipts
from shared.adapters.ledger.scratch import scratch_namespace
from shared.domain.models import Envelope
from shared.errors import TransientError
from shared.logs import SERVICE
from shared.runtime import Runtime
from shared.services.pipeline import apply_message
from shared.settings import Settings, load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 30.0
TARGET_BOUND_FRACTION = 0.5
TARGET_CPU_RATIO = 2.0  # drainer CPU per receipt <= 2x the bare SDK loop's
TARGET_REQUESTS_PER_RECEIPT = 0.15  # the floor: one BatchReceive and one BatchDelete per 16 = 0.125
RECEIVE, DELETE = "BatchReceiveMessage", "BatchDeleteMessage"
SCALE_BACKENDS = ("sqlite", "postgresql")
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/flow_receipts_test"  # TEST_POSTGRES_URL overrides
SAMPLE_SECONDS = 0.1  # CPU and pg_stat_activity sampling period during a scale-out run
WORKER_START_SECONDS = 60
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
    """`python -m local stack --state-dir <dir>` as a child process; `env` is its stack.env. `environ` adds
    variables to the stack's own environment (the FC emulator resolves template.yml's ${env(...)} from it, e.g.
    the processor's WEBHOOK_URL)."""

    def __init__(self, state_dir: Path, environ: dict[str, str] | None = None) -> None:
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
            env={**os.environ, **(environ or {}), "PYTHONUNBUFFERED": "1"},
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


def inline_runtime(
    stack: LocalStack, ledger_path: Path, pollers: int, **settings: str
) -> tuple[Runtime, Ledger, Credentials]:
    """An inline drainer's runtime on a migrated SQLite ledger at `ledger_path`, and the customer's credentials."""
    environ = stack_settings(
        stack,
        LEDGER_URL=f"sqlite:///{ledger_path}",
        DISPATCH_MODE="inline",
        DRAIN_POLLERS=str(pollers),
        DRAIN_LONG_POLL_SECONDS="1",
        **settings,
    )
    runtime = Runtime(lambda: load_settings(environ))
    runtime.ledger.migrate()
    return runtime, runtime.ledger, customer_credentials(stack)


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


def requests(before: dict, after: dict, operation: str) -> int:
    """Requests the MNS emulator counted for `operation` between two /stats snapshots of "operations"."""
    return after.get(operation, {}).get("requests", 0) - before.get(operation, {}).get("requests", 0)


def latency_bound(pollers: int, latency_ms: float) -> float | None:
    """pollers x 16 / (2 x latency): two MNS round trips per batch of 16, nothing else taking time."""
    return pollers * BATCH / (2 * latency_ms / 1000) if latency_ms else None


@contextlib.contextmanager
def product_logs_to(path: Path) -> Iterator[None]:
    """The product logger's lines go to `path` meanwhile (still formatted: their CPU is part of the product's)."""
    handlers = [
        handler
        for handler in logging.getLogger(SERVICE).handlers
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    ]
    with path.open("a", encoding="utf-8") as sink:
        previous = [handler.setStream(sink) for handler in handlers]
        try:
            yield
        finally:
            for handler, stream in zip(handlers, previous, strict=True):
                handler.setStream(stream)


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


def drainer_phase(
    stack: LocalStack, work: Path, pollers: int, args: argparse.Namespace, *, orphans: bool = False
) -> dict[str, Any]:
    """One in-process drain of --messages FlowReports: for registered orders, or (orphans) for out_ids never seen."""
    label = f"orphans-p{pollers}" if orphans else f"p{pollers}"
    out_ids = [f"{label}-{i:07d}" for i in range(args.messages)]
    ledger_path = work / f"ledger-{label}.sqlite3"
    runtime, ledger, credentials = inline_runtime(stack, ledger_path, pollers)

    stack.set_mns_latency(0)
    errors = stack.publish(out_ids)
    if not orphans:
        register_orders(ledger, out_ids)
    depth = stack.queue_depth()
    if depth != args.messages:
        errors.append(f"queue depth {depth} after publishing {args.messages}")
    runtime.tokens(credentials).token()  # a warm instance holds its queue token
    drainer = runtime.drainer(credentials)
    stack.set_mns_latency(args.latency_ms)

    with product_logs_to(work / f"drain-{label}.log"):
        before = stack.mns_stats()["operations"]
        cpu_before, stack_cpu_before = own_cpu_seconds(), stack.cpu_seconds()
        started_at = time.time()
        summary = drainer.run(time.monotonic() + args.drain_timeout)
        ended_at = time.time()
        cpu, stack_cpu = own_cpu_seconds() - cpu_before, stack.cpu_seconds() - stack_cpu_before
        after = stack.mns_stats()["operations"]

    counts = summary.as_dict()
    expected = "orphans" if orphans else "applied"
    handled = counts[expected]
    times = receipt_times(ledger_path)
    last = max(times.values()) if times else ended_at
    active = max(last - started_at, 1e-9)
    whole = max(ended_at - started_at, 1e-9)
    left = stack.queue_depth()
    if left:
        stack.set_mns_latency(0)
        purge(queue_client(stack, runtime))
    ledger.close()
    if handled != args.messages or counts["deleted"] != args.messages:
        errors.append(f"{expected} {handled}, deleted {counts['deleted']} of {args.messages}: {counts}")
    if summary.errors:
        errors.extend(summary.errors)
    if left:
        errors.append(f"{left} messages left in the queue after the drain")
    bound = latency_bound(pollers, args.latency_ms)
    receives, deletes = requests(before, after, RECEIVE), requests(before, after, DELETE)
    return {
        "pollers": pollers,
        "queue": "orphans" if orphans else "registered",
        "messages": args.messages,
        "handled": handled,
        "active_seconds": round(active, 3),
        "run_seconds": round(whole, 3),
        "messages_per_s": round(handled / active, 1),
        "run_messages_per_s": round(handled / whole, 1),
        "bound_messages_per_s": bound,
        "bound_fraction": round(handled / active / bound, 3) if bound else None,
        "run_bound_fraction": round(handled / whole / bound, 3) if bound else None,
        "batch_receive_requests": receives,
        "batch_delete_requests": deletes,
        "requests_per_receipt": round((receives + deletes) / handled, 4) if handled else None,
        "messages_per_receive": round(counts["received"] / receives, 2) if receives else None,
        "stopped_by": counts["stopped_by"],
        "cpu_bench_s": round(cpu, 3),
        "cpu_stack_s": round(stack_cpu, 3),
        "cpu_ms_per_receipt": round(1000 * cpu / handled, 4) if handled else None,
        "stack_cpu_ms_per_receipt": round(1000 * stack_cpu / handled, 4) if handled else None,
        "errors": errors,
    }


def sdk_receive(queue: Any, errors: list[str], lock: threading.Lock) -> list[Any] | None:
    """One batch_receive_message(16, 1) of a bare SDK loop: the messages; None when the queue was empty; [] after
    an error (added to `errors` under `lock`)."""
    try:
        return queue.batch_receive_message(BATCH, 1)
    except MNSServerException as error:
        if error.type == "MessageNotExist":
            return None
        problem = f"BatchReceiveMessage: {error.type}: {error.message}"
    except MNSExceptionBase as error:
        problem = f"BatchReceiveMessage: {error.type}: {error.message}"
    with lock:
        errors.append(problem)
    return []


def sdk_phase(stack: LocalStack, tokens: Runtime, pollers: int, label: str, args: argparse.Namespace) -> dict[str, Any]:
    """The bare aliyun-mns-sdk loop over --messages FlowReports: `pollers` threads, one SDK client each."""
    out_ids = [f"{label}-{i:07d}" for i in range(args.messages)]
    stack.set_mns_latency(0)
    errors = stack.publish(out_ids)
    depth = stack.queue_depth()
    if depth != args.messages:
        errors.append(f"queue depth {depth} after publishing {args.messages}")
    clients = [queue_client(stack, tokens) for _ in range(pollers)]  # token fetched before the clock starts
    stack.set_mns_latency(args.latency_ms)
    lock = threading.Lock()
    done = [0]
    last_delete = [0.0]

    def loop(queue: Any, deadline: float) -> None:
        while time.monotonic() < deadline:
            messages = sdk_receive(queue, errors, lock)
            if messages is None:
                return
            if not messages:
                continue
            for message in messages:
                json.loads(base64.b64decode(message.message_body))
            try:
                queue.batch_delete_message([message.receipt_handle for message in messages])
            except MNSExceptionBase as error:
                with lock:
                    errors.append(f"BatchDeleteMessage: {error.type}: {error.message}")
                continue
            deleted_at = time.time()
            with lock:
                done[0] += len(messages)
                last_delete[0] = max(last_delete[0], deleted_at)

    before = stack.mns_stats()["operations"]
    cpu_before, stack_cpu_before = own_cpu_seconds(), stack.cpu_seconds()
    started_at = time.time()
    deadline = time.monotonic() + args.drain_timeout
    threads = [threading.Thread(target=loop, args=(queue, deadline), daemon=True) for queue in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.drain_timeout + 30)
    ended_at = time.time()
    cpu, stack_cpu = own_cpu_seconds() - cpu_before, stack.cpu_seconds() - stack_cpu_before
    after = stack.mns_stats()["operations"]
    handled = done[0]
    left = stack.queue_depth()
    if left:
        stack.set_mns_latency(0)
        purge(clients[0])
        errors.append(f"{left} messages left in the queue after the bare SDK loop")
    if handled != args.messages:
        errors.append(f"the bare SDK loop deleted {handled} of {args.messages}")
    active = max((last_delete[0] or ended_at) - started_at, 1e-9)
    receives, deletes = requests(before, after, RECEIVE), requests(before, after, DELETE)
    return {
        "label": label,
        "pollers": pollers,
        "messages": handled,
        "active_seconds": round(active, 3),
        "run_seconds": round(ended_at - started_at, 3),
        "messages_per_s": round(handled / active, 1),
        "bound_fraction": round(handled / active / latency_bound(pollers, args.latency_ms), 3)
        if args.latency_ms
        else None,
        "requests_per_receipt": round((receives + deletes) / handled, 4) if handled else None,
        "cpu_bench_s": round(cpu, 3),
        "cpu_stack_s": round(stack_cpu, 3),
        "cpu_ms_per_receipt": round(1000 * cpu / handled, 4) if handled else None,
        "stack_cpu_ms_per_receipt": round(1000 * stack_cpu / handled, 4) if handled else None,
        "errors": errors,
    }


# --------------------------------------------------------------------------------------------------
# scale-out: several drainer processes on one queue
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def scale_ledger_url(backend: str, work: Path, name: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{work / f'{name}.sqlite3'}"
        return
    with scratch_namespace(os.environ.get("TEST_POSTGRES_URL") or POSTGRES_URL, "flow_receipts_bench") as url:
        yield url.render_as_string(hide_password=False)


class PgWaits(threading.Thread):
    """Samples what the workers' PostgreSQL backends are doing (pg_stat_activity) every SAMPLE_SECONDS."""

    def __init__(self, url: str, pids: list[int]) -> None:
        super().__init__(name="pg-waits", daemon=True)
        self.url, self.pids = url, pids
        self.counts: Counter[str] = Counter()
        self.samples = 0
        self.error = ""
        self.finished = threading.Event()

    def run(self) -> None:
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        query = text("SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE pid = ANY(:pids)")
        try:
            with engine.connect() as conn:
                while not self.finished.wait(SAMPLE_SECONDS):
                    for state, kind, name in conn.execute(query, {"pids": self.pids}):
                        self.counts[_pg_activity(state, kind, name)] += 1
                    self.samples += 1
        except Exception as error:  # the sampler is evidence, not the measurement: say what went wrong
            self.error = f"{type(error).__name__}: {error}"[:200]
        finally:
            engine.dispose()

    def shares(self) -> dict[str, float]:
        total = sum(self.counts.values())
        return {kind: round(count / total, 3) for kind, count in self.counts.most_common()} if total else {}


def _pg_activity(state: str | None, kind: str | None, name: str | None) -> str:
    if state == "idle":
        return "idle (no transaction)"
    if state == "idle in transaction":
        return "in a transaction, waiting for the drainer"
    if kind is None:
        return "running a statement"
    if kind == "Client":
        return "in a statement, waiting for the drainer"
    if kind == "Lock":
        return f"waiting on a lock ({name})"
    if kind in ("IO", "LWLock") and name and "WAL" in name.upper():
        return f"flushing WAL ({name})"
    return f"{state}: {kind}:{name}"


class CpuSampler(threading.Thread):
    """CPU seconds so far of groups of processes (the workers, the stack, the PostgreSQL backends) and of the whole
    machine, every SAMPLE_SECONDS, so that the cores busy can be told over the active window alone."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        super().__init__(name="cpu-sampler", daemon=True)
        self.groups = groups
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.finished = threading.Event()
        self.sample()

    def sample(self) -> None:
        values = {name: sum(_process_cpu_seconds(pid) for pid in pids) for name, pids in self.groups.items()}
        values["machine"] = _machine_cpu()[0]
        self.samples.append((time.time(), values))

    def run(self) -> None:
        while not self.finished.wait(SAMPLE_SECONDS):
            self.sample()

    def cores(self, start: float, end: float) -> dict[str, float]:
        """Cores busy per group between the last sample at or before `start` and the last one at or before `end`."""
        first = max((s for s in self.samples if s[0] <= start), default=self.samples[0], key=lambda s: s[0])
        last = max((s for s in self.samples if s[0] <= end), default=self.samples[-1], key=lambda s: s[0])
        seconds = last[0] - first[0]
        if seconds <= 0:
            return {}
        return {name: round((last[1][name] - first[1][name]) / seconds, 2) for name in first[1]}


def _machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, from /proc/stat; (0, 0) without it."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def worker_environment(stack: LocalStack, ledger_url: str) -> dict[str, str]:
    """A worker's environment: the drainer's settings only (as on FC), plus what Python needs to start."""
    kept = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV") if key in os.environ}
    settings = stack_settings(
        stack, LEDGER_URL=ledger_url, DISPATCH_MODE="inline", DRAIN_LONG_POLL_SECONDS="1", PYTHONUNBUFFERED="1"
    )
    return {**kept, **settings}


def scale_phase(
    stack: LocalStack, work: Path, backend: str, processes: int, args: argparse.Namespace
) -> dict[str, Any]:
    label = f"scale-{backend}-{processes}"
    out_ids = [f"{label}-{i:07d}" for i in range(args.scale_messages)]
    errors: list[str] = []
    with scale_ledger_url(backend, work, label) as url, Ledger(url) as ledger:
        ledger.migrate()
        ledger.register_orders([NewOrder(out_id, PHONE) for out_id in out_ids])
        stack.set_mns_latency(0)
        errors += stack.publish(out_ids)
        depth = stack.queue_depth()
        if depth != args.scale_messages:
            errors.append(f"queue depth {depth} after publishing {args.scale_messages}")
        environment = worker_environment(stack, url)
        results = [work / f"{label}-{n}.json" for n in range(processes)]
        logs = [(work / f"{label}-{n}.log").open("wb") for n in range(processes)]
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.drain_worker",
                    "--result",
                    str(result),
                    "--seconds",
                    str(args.drain_timeout),
                ],
                cwd=PROJECT_ROOT,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )
            for result, log in zip(results, logs, strict=True)
        ]
        waits = sampler = None
        try:
            ready = _wait_ready(workers, results, logs)
            stack.set_mns_latency(args.latency_ms)
            before = stack.mns_stats()["operations"]
            stack_cpu_before = stack.cpu_seconds()
            backend_pids = [pid for info in ready for pid in info["backend_pids"]]
            sampler = CpuSampler(
                {"workers": [w.pid for w in workers], "stack": [stack.proc.pid], "backends": backend_pids}
            )
            sampler.start()
            if backend == "postgresql":
                waits = PgWaits(url, backend_pids)
                waits.start()
            started_at = time.time()
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write(b"go\n")
                worker.stdin.flush()
            for worker in workers:
                try:
                    worker.wait(timeout=max(0.0, started_at + args.drain_timeout + 30 - time.time()))
                except subprocess.TimeoutExpired:
                    errors.append(f"worker {worker.pid} did not finish in time")
            ended_at = time.time()
            stack_cpu = stack.cpu_seconds() - stack_cpu_before
            after = stack.mns_stats()["operations"]
        finally:
            for thread in (waits, sampler):
                if thread is not None:
                    thread.finished.set()
                    thread.join(5)
            for worker in workers:
                stop_process(worker, timeout=5)
            for log in logs:
                log.close()
        reports = []
        for worker, result in zip(workers, results, strict=True):
            if result.exists():
                reports.append(json.loads(result.read_text()))
            else:
                tail = _tail(result.with_suffix(".log"))
                errors.append(f"worker {worker.pid} (exit {worker.returncode}) wrote no result; log tail: {tail}")
        last = _last_receipt(ledger)
    left = stack.queue_depth()
    if left:
        stack.set_mns_latency(0)
        errors.append(f"{left} messages left in the queue after the drain")
        purge(queue_client(stack, Runtime(lambda: load_settings(stack_settings(stack)))))

    summaries = [report["summary"] for report in reports]
    applied = sum(summary["applied"] for summary in summaries)
    deleted = sum(summary["deleted"] for summary in summaries)
    if applied != args.scale_messages or deleted != args.scale_messages:
        errors.append(f"applied {applied}, deleted {deleted} of {args.scale_messages}")
    errors += [f"worker {report['pid']}: {error}" for report in reports for error in report["errors"]]
    active = max((last.timestamp() if last else ended_at) - started_at, 1e-9)
    whole = max(max((report["ended_at"] for report in reports), default=ended_at) - started_at, 1e-9)
    pollers = reports[0]["pollers"] if reports else product_default_pollers()
    cpu = sum(report["cpu_s"] for report in reports)
    backend_cpu = sum(report["backend_cpu_s"] for report in reports)
    # poller-seconds of work: each poller's run less its last, empty long poll (a fixed cost per invocation)
    poller_seconds = sum(
        report["pollers"] * (report["ended_at"] - report["started_at"]) - report["empty_receive_s"]
        for report in reports
    )
    busy = sampler.cores(started_at, started_at + active) if sampler is not None else {}
    receives, deletes = requests(before, after, RECEIVE), requests(before, after, DELETE)
    bound = latency_bound(pollers * processes, args.latency_ms)
    result: dict[str, Any] = {
        "backend": backend,
        "processes": processes,
        "pollers_per_process": pollers,
        "messages": args.scale_messages,
        "applied": applied,
        "active_seconds": round(active, 3),
        "run_seconds": round(whole, 3),
        "messages_per_s": round(applied / active, 1),
        "run_messages_per_s": round(applied / whole, 1),
        "bound_messages_per_s": bound,
        "bound_fraction": round(applied / active / bound, 3) if bound else None,
        "requests_per_receipt": round((receives + deletes) / applied, 4) if applied else None,
        "cpu_workers_s": round(cpu, 3),
        "cpu_per_worker_s": [round(report["cpu_s"], 3) for report in reports],
        "cpu_stack_s": round(stack_cpu, 3),
        "cpu_backends_s": round(backend_cpu, 3),
        "cpu_ms_per_receipt": round(1000 * cpu / applied, 4) if applied else None,
        "stack_cpu_ms_per_receipt": round(1000 * stack_cpu / applied, 4) if applied else None,
        "backend_cpu_ms_per_receipt": round(1000 * backend_cpu / applied, 4) if applied and backend_cpu else None,
        # cores busy while draining (start -> the last receipt): ours (workers + stack + PostgreSQL backends) and
        # the whole machine's (anyone's: other work on this machine shows as the difference)
        "cores_workers": busy.get("workers"),
        "cores_stack": busy.get("stack"),
        "cores_backends": busy.get("backends"),
        "cores_ours": round(sum(busy.get(name, 0.0) for name in ("workers", "stack", "backends")), 2),
        "cores_machine": busy.get("machine"),
        "poller_share_mns": round(sum(r["mns_s"] for r in reports) / poller_seconds, 3) if poller_seconds else None,
        "poller_share_ledger": round(sum(r["ledger_s"] for r in reports) / poller_seconds, 3)
        if poller_seconds
        else None,
        "poller_share_lock_wait": round(sum(r["lock_wait_s"] for r in reports) / poller_seconds, 3)
        if poller_seconds
        else None,
        "ledger_ms_per_batch": round(
            1000 * sum(r["ledger_s"] for r in reports) / max(1, sum(r["calls"].get("ledger", 0) for r in reports)), 2
        ),
        "errors": errors,
    }
    if waits is not None:
        result["pg_activity"] = waits.shares()
        result["pg_samples"] = waits.samples
        if waits.error:
            result["pg_sampler_error"] = waits.error
    result["signs"] = limit_signs(result)
    return result


def limit_signs(run: dict[str, Any]) -> list[str]:
    """What the evidence of one scale-out run points at (the reader decides; these are the thresholds used)."""
    signs = []
    cores = os.cpu_count() or 1
    ours, machine = run["cores_ours"] or 0.0, run["cores_machine"] or 0.0
    if ours >= 0.85 * cores:
        signs.append(f"CPU: our processes keep {ours:.2f} of {cores} cores busy")
    elif machine >= 0.85 * cores:
        signs.append(
            f"CPU: the machine is saturated ({machine:.2f} of {cores} cores busy, {ours:.2f} of them ours; the rest "
            "is other work on this machine)"
        )
    if (run["poller_share_lock_wait"] or 0) >= 0.2:
        signs.append(f"ledger: pollers wait {run['poller_share_lock_wait']:.0%} of their time for SQLite's write lock")
    elif (run["poller_share_ledger"] or 0) >= 0.5:
        signs.append(f"ledger: pollers spend {run['poller_share_ledger']:.0%} of their time in the ledger")
    if (run["cores_stack"] or 0.0) >= 0.85:
        signs.append(f"MNS emulator: its process uses {run['cores_stack']:.2f} cores (one interpreter)")
    if run["bound_fraction"] and run["bound_fraction"] >= 0.8:
        signs.append(f"MNS round trips: {run['bound_fraction']:.0%} of the latency bound")
    return signs or ["none of CPU, ledger, MNS saturated by these thresholds"]


def _wait_ready(workers: list[subprocess.Popen], results: list[Path], logs: list[Any]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WORKER_START_SECONDS
    ready: list[dict[str, Any] | None] = [None] * len(workers)
    while any(info is None for info in ready):
        for n, (worker, result) in enumerate(zip(workers, results, strict=True)):
            marker = Path(f"{result}.ready")
            if ready[n] is None and marker.exists():
                with contextlib.suppress(ValueError):
                    ready[n] = json.loads(marker.read_text())
            if ready[n] is None and worker.poll() is not None:
                logs[n].flush()
                raise RuntimeError(
                    f"drain worker {worker.pid} exited ({worker.returncode}): {_tail(Path(logs[n].name))}"
                )
        if time.monotonic() > deadline:
            raise RuntimeError(f"drain workers not ready after {WORKER_START_SECONDS} s")
        time.sleep(0.02)
    return [info for info in ready if info is not None]


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _last_receipt(ledger: Ledger) -> datetime | None:
    with ledger.engine.connect() as conn:
        return conn.execute(select(func.max(receipts.c.received_at))).scalar()


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def _pollers(text: str) -> list[int]:
    values = _integers(text)
    if not values or any(not 1 <= v <= 16 for v in values):
        raise argparse.ArgumentTypeError("pollers must be between 1 and 16 (DRAIN_POLLERS' range)")
    return values


def _processes(text: str) -> list[int]:
    values = _integers(text)
    if any(not 1 <= v <= 16 for v in values):
        raise argparse.ArgumentTypeError("processes must be between 1 and 16")
    return values


def _integers(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    return list(dict.fromkeys(values))


def _backends(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip() and part.strip() != "none"]
    unknown = set(values) - set(SCALE_BACKENDS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backend(s) {sorted(unknown)}: use {', '.join(SCALE_BACKENDS)}")
    return list(dict.fromkeys(values))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_pollers = list(dict.fromkeys([product_default_pollers(), 8]))
    parser = argparse.ArgumentParser(prog="python -m bench.drain_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="FlowReports per in-process drain (default 5000)")
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
    parser.add_argument(
        "--scale-processes", type=_processes, default=[1, 2, 4], help="drainer processes, comma-separated ('' skips)"
    )
    parser.add_argument(
        "--scale-backends",
        type=_backends,
        default=list(SCALE_BACKENDS),
        help="ledgers of the scale-out phase: sqlite,postgresql (default both; 'none' skips)",
    )
    parser.add_argument("--scale-messages", type=int, default=8000, help="FlowReports per scale-out run (default 8000)")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.seed_messages < 1 or args.scale_messages < 1:
        parser.error("--messages, --seed-messages and --scale-messages must be at least 1")
    return args


VERDICT = {True: "met", False: "NOT MET", None: "not evaluated"}


def _evaluate(met: bool, *runs: dict[str, Any]) -> bool | None:
    return None if any(run["errors"] for run in runs) else met  # no verdict on a run with errors


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="drain-bench-"))
    stack = None
    try:
        stack = LocalStack(work / "stack")
        default = product_default_pollers()
        print(
            f"drain_throughput: MNS latency {args.latency_ms:g} ms per request, local stack pid {stack.proc.pid}, "
            f"{os.cpu_count()} CPUs, load average {_load():.2f}, product default DRAIN_POLLERS={default}",
            flush=True,
        )
        tokens = Runtime(
            lambda: load_settings(stack_settings(stack, LEDGER_URL=f"sqlite:///{work / 'unused.sqlite3'}"))
        )
        seed = seed_phase(stack, work, args)
        print(
            f"  seed pattern     {seed['messages']} messages in {seed['seconds']:.2f} s = "
            f"{seed['messages_per_s']:.1f} messages/s ({seed['ms_per_message']} ms each; receive(wait 1) -> "
            f"apply -> delete; stopped by {seed['stopped_by']}); CPU bench {seed['cpu_bench_s']} s, "
            f"stack {seed['cpu_stack_s']} s",
            flush=True,
        )
        sdk = [sdk_phase(stack, tokens, default, "sdk-before", args)]
        _print_sdk(sdk[0])
        pollers = [default, *(p for p in args.pollers if p != default)]  # the default first, beside the SDK loop
        runs = []
        orphans = None
        for p in pollers:
            if p in args.pollers:
                result = drainer_phase(stack, work, p, args)
                runs.append(result)
                _judge_rate(result, seed)
                _print_drainer(result, seed, args)
            if p == default:
                orphans = drainer_phase(stack, work, p, args, orphans=True)
                _print_drainer(orphans, seed, args)
                sdk.append(sdk_phase(stack, tokens, default, "sdk-after", args))
                _print_sdk(sdk[1])
        sdk_cpu = [s["cpu_ms_per_receipt"] for s in sdk if s["cpu_ms_per_receipt"]]
        sdk_ms = sum(sdk_cpu) / len(sdk_cpu) if sdk_cpu else None
        cost = {}
        for result in [r for r in runs if r["pollers"] == default] + ([orphans] if orphans else []):
            ratio = result["cpu_ms_per_receipt"] / sdk_ms if sdk_ms and result["cpu_ms_per_receipt"] else None
            result["cpu_ratio_to_sdk"] = round(ratio, 2) if ratio is not None else None
            result["cpu_met"] = _evaluate(ratio is not None and ratio <= TARGET_CPU_RATIO, result, *sdk)
            per = result["requests_per_receipt"]
            result["requests_met"] = _evaluate(per is not None and per <= TARGET_REQUESTS_PER_RECEIPT, result)
            cost[result["queue"]] = result
        print(
            f"  CPU per receipt (this process's user + system time / receipts; the bare SDK loop: {sdk_ms:.3f} ms,"
            f" mean of {len(sdk_cpu)} runs)"
            if sdk_ms
            else "  CPU per receipt: no bare SDK figure",
            flush=True,
        )
        for queue, result in cost.items():
            print(
                f"      {queue:<11}  {result['cpu_ms_per_receipt']:.3f} ms = {result['cpu_ratio_to_sdk']}x the "
                "SDK loop "
                f"(target <= {TARGET_CPU_RATIO:g}x: {VERDICT[result['cpu_met']]}); stack "
                f"{result['stack_cpu_ms_per_receipt']:.3f} ms; MNS requests per receipt "
                f"{result['requests_per_receipt']} (target <= {TARGET_REQUESTS_PER_RECEIPT}, floor "
                f"{2 / BATCH:.3f}: {VERDICT[result['requests_met']]})",
                flush=True,
            )

        scale: list[dict[str, Any]] = []
        skipped: dict[str, str] = {}
        if args.scale_processes:
            print(
                f"  scale-out: {args.scale_messages} FlowReports per run, each process `python -m bench.drain_worker`"
                f" with DRAIN_POLLERS={default}",
                flush=True,
            )
        for backend in args.scale_backends if args.scale_processes else []:
            first = None
            for processes in args.scale_processes:
                try:
                    result = scale_phase(stack, work, backend, processes, args)
                except TransientError as error:  # the PostgreSQL server is not there: reported, not an error
                    skipped[backend] = str(error)
                    print(f"    {backend:<10} skipped: {error}", flush=True)
                    break
                first = first or result  # the speed-up is over the first (smallest) process count
                result["speedup"] = (
                    round(result["messages_per_s"] / first["messages_per_s"], 2) if first["messages_per_s"] else None
                )
                scale.append(result)
                _print_scale(result)

        errors = (
            seed["errors"]
            + [f"sdk {s['label']}: {e}" for s in sdk for e in s["errors"]]
            + [
                f"P={r['pollers']} {r['queue']}: {e}"
                for r in [*runs, *([orphans] if orphans else [])]
                for e in r["errors"]
            ]
            + [f"scale {r['backend']} x{r['processes']}: {e}" for r in scale for e in r["errors"]]
        )
        for error in errors[:20]:
            print(f"  ERROR {error}", file=sys.stderr)
        detail = {
            "benchmark": "drain_throughput",
            "latency_ms": args.latency_ms,
            "cpus": os.cpu_count(),
            "load_average_end": round(_load(), 2),
            "product_default_pollers": default,
            "seed": _public(seed),
            "drainer": [_public(r) for r in runs],
            "orphans": _public(orphans) if orphans else None,
            "sdk": [_public(s) for s in sdk],
            "sdk_cpu_ms_per_receipt": round(sdk_ms, 4) if sdk_ms else None,
            "scale": [_public(r) for r in scale],
            "scale_skipped": skipped,
            "target_ratio": TARGET_RATIO,
            "target_bound_fraction": TARGET_BOUND_FRACTION,
            "target_cpu_ratio": TARGET_CPU_RATIO,
            "target_requests_per_receipt": TARGET_REQUESTS_PER_RECEIPT,
            "errors": len(errors),
        }
        print(json.dumps(detail), flush=True)
        checks = _checks(seed, runs, orphans, sdk_ms, scale, skipped, default, args)
        write_result("drain_throughput", checks, detail, evaluated=not errors)
        return 1 if errors else 0
    finally:
        if stack is not None:
            stack.stop()
        shutil.rmtree(work, ignore_errors=True)


def _checks(
    seed: dict[str, Any],
    runs: list[dict[str, Any]],
    orphans: dict[str, Any] | None,
    sdk_ms: float | None,
    scale: list[dict[str, Any]],
    skipped: dict[str, str],
    default: int,
    args: argparse.Namespace,
) -> list[Check]:
    """The table's rows: the targets (on the product default pollers), then what is reported."""
    checks: list[Check] = []
    where = f"inline, SQLite, {args.latency_ms:g} ms MNS"
    for run in runs:
        label = f"drain P={run['pollers']}, {where}"
        rate = run["messages_per_s"]
        if run["pollers"] != default:
            checks.append(Check(f"drain_p{run['pollers']}", label, rate, "receipts/s", seed["messages_per_s"], "seed"))
            continue
        checks.append(
            Check(
                "drain_vs_seed", label, rate, "receipts/s", seed["messages_per_s"], "seed pattern", target=TARGET_RATIO
            )
        )
        bound = run["bound_messages_per_s"]
        checks.append(
            Check(
                "drain_vs_bound",
                label,
                rate,
                "receipts/s",
                bound,
                f"bound {run['pollers']}x{BATCH}/(2x{args.latency_ms:g} ms)",
                target=TARGET_BOUND_FRACTION,
                skipped="" if bound else "no MNS latency injected: no bound",
            )
        )
    cost = [r for r in runs if r["pollers"] == default] + ([orphans] if orphans else [])
    for run in cost:
        checks.append(
            Check(
                f"cpu_{run['queue']}",
                f"drainer CPU per receipt ({run['queue']})",
                run["cpu_ms_per_receipt"],
                "ms",
                sdk_ms,
                "bare SDK loop",
                target=TARGET_CPU_RATIO,
                op="<=",
            )
        )
    for run in cost[:1]:
        checks.append(
            Check(
                "mns_requests",
                "MNS requests per receipt",
                run["requests_per_receipt"],
                "",
                2 / BATCH,
                f"floor 2/{BATCH}",
                target=TARGET_REQUESTS_PER_RECEIPT,
                op="<=",
                on="figure",
            )
        )
    for backend in dict.fromkeys(r["backend"] for r in scale):
        ordered = [r for r in scale if r["backend"] == backend]
        first, last = ordered[0], ordered[-1]
        checks.append(
            Check(
                f"scale_{backend}",
                f"drain scale-out {backend}, {last['processes']} processes",
                last["messages_per_s"],
                "receipts/s",
                first["messages_per_s"],
                f"{first['processes']} process{'es' if first['processes'] > 1 else ''}",
            )
        )
    for backend, reason in skipped.items():
        checks.append(Check(f"scale_{backend}", f"drain scale-out {backend}", None, skipped=reason))
    return checks


def _load() -> float:
    """The 1-minute load average (other work on this machine skews every rate)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def _public(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != "errors"}


def _judge_rate(result: dict[str, Any], seed: dict[str, Any]) -> None:
    ratio = result["messages_per_s"] / seed["messages_per_s"] if seed["messages_per_s"] else None
    result["ratio_to_seed"] = round(ratio, 1) if ratio is not None else None
    result["run_ratio_to_seed"] = (
        round(result["run_messages_per_s"] / seed["messages_per_s"], 1) if seed["messages_per_s"] else None
    )
    result["ratio_met"] = _evaluate(ratio is not None and ratio >= TARGET_RATIO, result, seed)
    fraction = result["bound_fraction"]
    result["bound_met"] = _evaluate(fraction is not None and fraction >= TARGET_BOUND_FRACTION, result)


def _print_sdk(result: dict[str, Any]) -> None:
    print(
        f"  bare SDK loop    {result['messages']} messages, {result['pollers']} threads: {result['messages_per_s']:.1f}"
        f" messages/s over {result['active_seconds']:.2f} s ({result['bound_fraction']:.0%} of the bound); "
        f"CPU {result['cpu_ms_per_receipt']:.3f} ms per receipt (stack {result['stack_cpu_ms_per_receipt']:.3f} ms); "
        f"{result['requests_per_receipt']} MNS requests per receipt ({result['label']})",
        flush=True,
    )


def _print_drainer(result: dict[str, Any], seed: dict[str, Any], args: argparse.Namespace) -> None:
    pollers = result["pollers"]
    default = " (product default)" if pollers == product_default_pollers() else ""
    queue = "orphans" if result["queue"] == "orphans" else "drainer"
    print(
        f"  {queue} P={pollers:<2}{default:<18} {result['handled']} messages: "
        f"{result['messages_per_s']:.1f} messages/s over {result['active_seconds']:.2f} s to the last receipt "
        f"({result['run_messages_per_s']:.1f}/s over the whole run of {result['run_seconds']:.2f} s); "
        f"{result['messages_per_receive']} messages per BatchReceive; "
        f"CPU bench {result['cpu_bench_s']} s, stack {result['cpu_stack_s']} s",
        flush=True,
    )
    if "ratio_met" not in result:
        return
    print(
        f"      vs seed      {result['ratio_to_seed']}x (target >= {TARGET_RATIO:g}x: "
        f"{VERDICT[result['ratio_met']]}; whole run {result['run_ratio_to_seed']}x)"
    )
    fraction = result["bound_fraction"]
    if fraction is None:
        print("      vs bound     no latency injected: no bound")
    else:
        print(
            f"      vs bound     {fraction:.0%} of {pollers} x {BATCH} / (2 x {args.latency_ms:g} ms) = "
            f"{result['bound_messages_per_s']:.0f}/s (target >= {TARGET_BOUND_FRACTION:.0%}: "
            f"{VERDICT[result['bound_met']]}; whole run {result['run_bound_fraction']:.0%})",
            flush=True,
        )


def _print_scale(result: dict[str, Any]) -> None:
    backend_cpu = result["backend_cpu_ms_per_receipt"]
    lines = [
        f"    {result['backend']:<10} x{result['processes']}: {result['messages_per_s']:>7.1f} receipts/s "
        f"(speed-up {result['speedup']}x; whole run {result['run_messages_per_s']:.1f}/s; "
        f"{result['bound_fraction']:.0%} of the bound {result['bound_messages_per_s']:.0f}/s); CPU per receipt "
        f"{result['cpu_ms_per_receipt']:.3f} ms in the drainers"
        + (f", {backend_cpu:.3f} ms in PostgreSQL" if backend_cpu else "")
        + f", {result['stack_cpu_ms_per_receipt']:.3f} ms in the stack",
        f"        cores busy while draining: drainers {result['cores_workers']}"
        + (f", PostgreSQL backends {result['cores_backends']}" if result["backend"] == "postgresql" else "")
        + f", stack {result['cores_stack']}: ours {result['cores_ours']} of {os.cpu_count()}, machine "
        f"{result['cores_machine']}; CPU s per process {result['cpu_per_worker_s']}; "
        f"poller time: MNS {result['poller_share_mns']:.0%}, ledger {result['poller_share_ledger']:.0%} "
        f"(write-lock wait {result['poller_share_lock_wait']:.0%}; {result['ledger_ms_per_batch']} ms per batch); "
        f"{result['requests_per_receipt']} MNS requests per receipt",
    ]
    if result.get("pg_activity"):
        top = ", ".join(f"{kind} {share:.0%}" for kind, share in list(result["pg_activity"].items())[:4])
        lines.append(f"        PostgreSQL backends ({result['pg_samples']} samples): {top}")
    lines.append(f"        signs: {'; '.join(result['signs'])}")
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("drain_throughput", parse_args, run, argv)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())

"""Throughput of the local MNS emulator under the consumer pattern flow-receipts uses.

    .venv/bin/python -m bench.mns_throughput [--seconds 10] [--clients 4] [--prefill N] [--credentials sts|owner]

Starts the emulator as a subprocess through its CLI (in memory, no faults), pre-fills one queue with
BatchSendMessage (owner credentials), then runs N client processes, each with its own SDK Account, looping
batch_receive_message(16, 1) + batch_delete_message(handles) for a fixed duration. Prints requests/s
(BatchReceiveMessage and BatchDeleteMessage counted separately and summed), messages/s and whether the
target of >= 1,000 requests/s is met, then one JSON line. Exits non-zero only on errors, never on a missed
target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

from mns.account import Account
from mns.mns_exception import MNSExceptionBase, MNSServerException
from mns.queue import Message, QueueMeta

from bench.entry import run_benchmark, stop_process
from bench.results import Check, write_result

TARGET_RPS = 1000.0
BATCH = 16
OWNER_ID, OWNER_SECRET = "bench-owner", "bench-owner-secret"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Assumed ceiling used to size the pre-fill so clients never run dry: receives/s x 16 messages each.
ASSUMED_MAX_RECEIVES_PER_S = 1500
# Top-up: BatchReceive requests/s came out at ~0.7x the pre-fill's BatchSend requests/s; sizing the
# pre-fill at 1.0x that rate x 16 x seconds leaves headroom on machines faster than the assumption above.
TOPUP_FACTOR = 1.0
MAX_PREFILL = 800_000
MAX_ERRORS_PER_CLIENT = 50


def _body(i: int) -> str:
    """A receipt-sized body, like an Alicom FlowReport entry."""
    return json.dumps(
        {
            "biz_id": f"{i:012d}^0",
            "flow_package_id": "FP-BENCH-0001",
            "phone_number": f"138{i % 10**8:08d}",
            "out_id": f"order-{i}",
            "status": "SUCCESS",
            "report_time": "2026-11-25 16:41:41",
        },
        separators=(",", ":"),
    )


# --------------------------------------------------------------------------------------------------
# emulator subprocess
# --------------------------------------------------------------------------------------------------


class Emulator:
    def __init__(self) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="mns-bench-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local",
                "mns",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--owner-id",
                OWNER_ID,
                "--owner-secret",
                OWNER_SECRET,
            ],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"the emulator did not start; log tail:\n{self.log_tail()}")
        info = json.loads(line)
        self.endpoint: str = info["endpoint"]
        self.admin_url: str = info["admin_url"]

    def admin(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.admin_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


# --------------------------------------------------------------------------------------------------
# client processes (top-level functions: they run under the "spawn" start method)
# --------------------------------------------------------------------------------------------------


def _prefill_worker(endpoint: str, queue_name: str, first: int, count: int) -> tuple[int, int, list[str]]:
    queue = Account(endpoint, OWNER_ID, OWNER_SECRET).get_queue(queue_name)
    sent = requests = 0
    errors: list[str] = []
    i = first
    while sent < count and len(errors) < MAX_ERRORS_PER_CLIENT:
        n = min(BATCH, count - sent)
        try:
            queue.batch_send_message([Message(_body(i + k)) for k in range(n)])
            sent += n
            i += n
        except MNSExceptionBase as err:
            errors.append(f"BatchSendMessage: {err.type}: {err.message}")
        requests += 1
    return sent, requests, errors


def _prefill(pool, endpoint: str, queue_name: str, first: int, count: int, workers: int, errors: list[str]):
    """Send `count` messages through the pool's processes; returns (messages sent, requests made)."""
    shares = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    firsts = [first + sum(shares[:i]) for i in range(workers)]
    results = pool.starmap(
        _prefill_worker, [(endpoint, queue_name, f, n) for f, n in zip(firsts, shares, strict=True) if n]
    )
    for result in results:
        errors.extend(result[2])
    return sum(r[0] for r in results), sum(r[1] for r in results)


def _consumer(endpoint: str, queue_name: str, cred: tuple[str, str, str], start_at: float, seconds: float, out) -> None:
    result = {
        "receive_requests": 0,
        "delete_requests": 0,
        "messages": 0,
        "empty_receives": 0,
        "errors": [],
        "started": 0.0,
        "finished": 0.0,
    }
    try:
        queue = Account(endpoint, *cred).get_queue(queue_name)
        time.sleep(max(0.0, start_at - time.time()))
        result["started"] = time.time()
        deadline = start_at + seconds
        errors: list[str] = result["errors"]
        while time.time() < deadline and len(errors) < MAX_ERRORS_PER_CLIENT:
            try:
                messages = queue.batch_receive_message(BATCH, 1)
            except MNSServerException as err:
                if err.type == "MessageNotExist":  # a normal answer (queue empty after the 1 s wait)
                    result["receive_requests"] += 1
                    result["empty_receives"] += 1
                else:
                    errors.append(f"BatchReceiveMessage: {err.type}: {err.message}")
                continue
            except MNSExceptionBase as err:
                errors.append(f"BatchReceiveMessage: {err.type}: {err.message}")
                continue
            result["receive_requests"] += 1
            try:
                queue.batch_delete_message([m.receipt_handle for m in messages])
            except MNSExceptionBase as err:
                errors.append(f"BatchDeleteMessage: {err.type}: {err.message}")
                continue
            result["delete_requests"] += 1
            result["messages"] += len(messages)
    except Exception as err:  # report, never hang the parent
        result["errors"].append(f"client crashed: {type(err).__name__}: {err}")
    result["finished"] = time.time()
    out.put(result)


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be > 0")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.mns_throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=_positive(float), default=10.0, help="measured duration (default 10)")
    parser.add_argument("--clients", type=_positive(int), default=4, help="client processes (default 4)")
    parser.add_argument(
        "--prefill",
        type=_positive(int),
        default=None,
        help="messages to pre-fill (default: sized from the measured BatchSendMessage rate, at least "
        f"{ASSUMED_MAX_RECEIVES_PER_S} receives/s x {BATCH} x seconds)",
    )
    parser.add_argument(
        "--credentials",
        choices=("sts", "owner"),
        default="sts",
        help="consumer credentials: an STS token per client, as flow-receipts uses (default), or the owner",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    ctx = mp.get_context("spawn")
    queue_name = f"Alicom-Queue-{uuid.uuid4().int % 10**16:016d}-FlowReport"
    errors: list[str] = []

    emulator = Emulator()
    try:
        Account(emulator.endpoint, OWNER_ID, OWNER_SECRET).get_queue(queue_name).create(QueueMeta(vis_timeout=300))
        print(
            f"MNS emulator throughput: {args.clients} client processes x {args.seconds:g} s of "
            f"batch_receive_message({BATCH}, 1) + batch_delete_message"
        )
        print(f"  emulator         {emulator.endpoint} (subprocess pid {emulator.proc.pid}, in memory, no faults)")

        # pre-fill, in parallel, with owner credentials: a floor first, then (unless --prefill was given)
        # a top-up sized from the measured BatchSendMessage rate, so faster machines do not run dry
        started = time.monotonic()
        with ctx.Pool(args.clients) as pool:
            floor = args.prefill or int(ASSUMED_MAX_RECEIVES_PER_S * BATCH * args.seconds)
            filled, send_requests = _prefill(pool, emulator.endpoint, queue_name, 0, floor, args.clients, errors)
            send_rps = send_requests / (time.monotonic() - started)
            wanted = min(MAX_PREFILL, int(send_rps * TOPUP_FACTOR * BATCH * args.seconds))
            if not args.prefill and not errors and wanted > filled:
                more, more_requests = _prefill(
                    pool, emulator.endpoint, queue_name, filled, wanted - filled, args.clients, errors
                )
                filled += more
                send_requests += more_requests
        fill_s = time.monotonic() - started
        depth = emulator.admin("GET", "/stats")["queues"][queue_name]
        print(
            f"  pre-filled       {filled} messages in {fill_s:.1f} s "
            f"({send_requests} BatchSendMessage requests, {send_requests / fill_s:.0f}/s); "
            f"queue depth {depth['active']}"
        )
        if errors:
            raise RuntimeError(f"pre-fill failed: {errors[0]} (+{len(errors) - 1} more)")

        # credentials for every consumer
        creds: list[tuple[str, str, str]] = []
        for _ in range(args.clients):
            if args.credentials == "owner":
                creds.append((OWNER_ID, OWNER_SECRET, ""))
            else:
                token = emulator.admin("POST", "/sts", {"queue": queue_name, "ttl_seconds": int(args.seconds) + 600})
                creds.append((token["access_key_id"], token["access_key_secret"], token["security_token"]))

        before = emulator.admin("GET", "/stats")["operations"]
        out = ctx.Queue()
        start_at = time.time() + 2.0  # time for the spawned interpreters to import the SDK
        procs = [
            ctx.Process(
                target=_consumer,
                args=(emulator.endpoint, queue_name, creds[i], start_at, args.seconds, out),
                daemon=True,
            )
            for i in range(args.clients)
        ]
        for proc in procs:
            proc.start()
        reports = []
        collect_deadline = start_at + args.seconds + 60
        while len(reports) < len(procs) and time.time() < collect_deadline:
            try:
                reports.append(out.get(timeout=1.0))
            except Empty:
                if not any(p.is_alive() for p in procs) and out.empty():
                    break
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        if len(reports) < len(procs):
            errors.append(f"only {len(reports)} of {len(procs)} clients reported")
        after = emulator.admin("GET", "/stats")

        for report in reports:
            errors.extend(report["errors"])
        receives = sum(r["receive_requests"] for r in reports)
        deletes = sum(r["delete_requests"] for r in reports)
        messages = sum(r["messages"] for r in reports)
        empty = sum(r["empty_receives"] for r in reports)
        wall = args.seconds
        if reports:
            wall = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
        wall = max(wall, 1e-9)
        rps = (receives + deletes) / wall
        met = None if errors else rps >= TARGET_RPS  # no verdict on a run with errors

        def server_count(stats: dict, op: str) -> int:
            return stats.get(op, {}).get("requests", 0)

        server_receives = server_count(after["operations"], "BatchReceiveMessage") - server_count(
            before, "BatchReceiveMessage"
        )
        server_deletes = server_count(after["operations"], "BatchDeleteMessage") - server_count(
            before, "BatchDeleteMessage"
        )
        left = after["queues"].get(queue_name, {})

        print(f"  credentials      {args.credentials} (one SDK Account per client process)")
        print(f"  measured         {wall:.2f} s wall clock")
        print(f"  BatchReceive     {receives} requests ({receives / wall:.1f}/s), {empty} found the queue empty")
        print(f"  BatchDelete      {deletes} requests ({deletes / wall:.1f}/s)")
        print(f"  total            {receives + deletes} requests = {rps:.1f} requests/s")
        print(f"  messages         {messages} received and deleted = {messages / wall:.1f} messages/s")
        print(f"  server counted   BatchReceiveMessage {server_receives}, BatchDeleteMessage {server_deletes}")
        print(f"  queue left       {left}")
        print(f"  errors           {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
        if empty:
            print("  note             the queue ran dry; the figure is a lower bound (raise --prefill)")
        verdict = {True: "MET", False: "NOT MET", None: "not evaluated (errors)"}[met]
        print(f"  target           >= {TARGET_RPS:.0f} requests/s: {verdict}")
        detail = {
            "benchmark": "mns_throughput",
            "clients": args.clients,
            "seconds": round(wall, 3),
            "credentials": args.credentials,
            "prefilled_messages": filled,
            "batch_receive_requests": receives,
            "batch_delete_requests": deletes,
            "requests": receives + deletes,
            "requests_per_s": round(rps, 1),
            "messages": messages,
            "messages_per_s": round(messages / wall, 1),
            "empty_receives": empty,
            "server_batch_receive_requests": server_receives,
            "server_batch_delete_requests": server_deletes,
            "errors": len(errors),
            "target_requests_per_s": TARGET_RPS,
            "target_met": met,
        }
        print(json.dumps(detail), flush=True)
        requests_rate = Check(
            "requests_per_s",
            f"BatchReceive(16) + BatchDelete served to {args.clients} clients",
            rps,
            "requests/s",
            target=TARGET_RPS,
            on="figure",
        )
        write_result("mns_throughput", [requests_rate], detail, evaluated=not errors)
        return 1 if errors else 0
    finally:
        emulator.stop()


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("mns_throughput", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())

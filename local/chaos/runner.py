"""Runs a chaos plan (local.chaos.plan) against the local stack (local.chaos.world) and checks the invariants
(local.chaos.invariants). See local/chaos/__init__.py for the whole story."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from mns.queue import Message

from local.chaos.invariants import Expected, Observed, Verdict, check, observe_ledger
from local.chaos.plan import (
    BASE_MNS_FAULTS,
    DRAINER_OPERATIONS,
    FC_FAULTS,
    TOKEN_EXPIRES_EVERY,
    TOKEN_TTL_SECONDS,
    Episode,
    Plan,
    Segment,
    make_plan,
)
from local.chaos.world import REPO, ChaosWorld, secrets_in_log
from local.product_logs import logs_to

VISIBILITY_SECONDS = 3
SEGMENT_TIMEOUT_SECONDS = 600
FINAL_SWEEP_ROUNDS = 8
CHARGE_STATUS = {"3": "SUCCESS", "4": "FAILED"}


@dataclass
class Options:
    receipts: int = 100_000
    seed: int = 1
    ledger: str = "sqlite"
    quick: bool = False
    folder: Path | None = None
    segment_size: int | None = None

    def plan(self) -> Plan:
        if self.quick:
            return make_plan(self.seed, self.receipts, segment_size=self.segment_size or 500, async_every=4)
        return make_plan(self.seed, self.receipts, segment_size=self.segment_size)


class Console:
    """Progress and the summary on the real stdout; everything else (our JSON logs, the SDKs', FC instances')
    goes to <folder>/product.log."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, text: str) -> None:
        self.stream.write(f"[{self.elapsed():7.1f}s] {text}\n")
        self.stream.flush()


class Worker:
    """A drainer or sweep child process (local.chaos.worker)."""

    def __init__(self, kind: str, env: dict[str, str], folder: Path, timeout: float) -> None:
        self.kind, self.env, self.folder, self.timeout = kind, env, folder, timeout
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with (self.folder / "workers.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "local.chaos.worker",
                    self.kind,
                    "--dir",
                    str(self.folder),
                    "--timeout",
                    str(self.timeout),
                ],
                env=self.env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> bool:
        if not self.alive():
            return False
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        return True

    def wait(self, timeout: float) -> int | None:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


class Run:
    def __init__(self, options: Options, folder: Path, console: Console) -> None:
        self.options = options
        self.folder = folder
        self.console = console
        self.plan = options.plan()
        self.expected = Expected()
        self.world = ChaosWorld(folder, options.ledger, token_every=TOKEN_EXPIRES_EVERY, token_ttl=TOKEN_TTL_SECONDS)
        self.counts: Counter[str] = Counter()
        self.timers: list[threading.Timer] = []
        self.outages: list[threading.Thread] = []
        self.drainer: Worker | None = None
        self.published = 0
        self.last_progress = 0.0
        self.problems: list[str] = []
        self._last_holder: str | None = None

    # ---- setup ------------------------------------------------------------------------------------------

    def env(self, mode: str) -> dict[str, str]:
        return {**os.environ, **self.world.env, "DISPATCH_MODE": mode}

    def base_faults(self, segment: Segment, throttle: float = 0.0) -> None:
        entry = dict(BASE_MNS_FAULTS)
        if throttle:
            entry["throttle"] = throttle
        self.world.set_mns_faults({op: entry for op in DRAINER_OPERATIONS}, self.plan.seed * 1000 + segment.number)
        fc = {"seed": self.plan.seed, "operations": {"InvokeFunction": FC_FAULTS}} if segment.mode == "async" else {}
        self.world.stack.fc.set_faults(fc)

    def prepare(self, segment: Segment) -> None:
        from shared.adapters.ledger import Ledger
        from shared.adapters.ledger.records import NewOrder

        now = datetime.now(timezone.utc)
        expected = self.expected
        with Ledger(self.world.ledger.url) as ledger:
            new = [NewOrder(out_id, phone) for out_id, phone in segment.orders]
            new += [NewOrder(o, p, submitted_at=now - timedelta(hours=2)) for o, p in segment.late_orders]
            new += [
                NewOrder(o, p, submitted_at=now - timedelta(days=31 + k)) for k, (o, p) in enumerate(segment.old_orders)
            ]
            for start in range(0, len(new), 1000):
                ledger.register_orders(new[start : start + 1000])
        expected.registered.update(order.out_id for order in new)
        expected.old.update(out_id for out_id, _ in segment.old_orders)
        alicom = self.world.stack.alicom
        for out_id, result in segment.charges.items():
            failed = result == "4"
            alicom.seed_charge(
                out_id,
                charged_at=time.time() - 7200,
                status=CHARGE_STATUS[result],
                err_code="BALANCE_NOT_ENOUGH" if failed else "",
                err_msg="top-up failed" if failed else "",
            )
            expected.answered[out_id] = result

    def publish(self, segment: Segment) -> None:
        queue = self.world.publisher_queue()
        messages = segment.messages
        for start in range(0, len(messages), 16):
            chunk = messages[start : start + 16]
            sent = queue.batch_send_message([Message(m.body) for m in chunk])
            for message, published in zip(sent, chunk, strict=True):
                self.expected.bodies[message.message_id] = published.body
                if published.out_id is None:
                    self.expected.poison.add(message.message_id)
                else:
                    self.expected.reports[message.message_id] = (published.out_id, published.result or "")
        self.published += len(messages)

    # ---- the drainer ------------------------------------------------------------------------------------

    def ensure_drainer(self, mode: str) -> None:
        if self.drainer is not None and self.drainer.env.get("DISPATCH_MODE") != mode:
            self.drainer.kill()
            self.drainer = None
        if self.drainer is None:
            self.drainer = Worker("drainer", self.env(mode), self.folder, timeout=15)
        if not self.drainer.alive():
            if self.drainer.process is not None and self.drainer.process.returncode not in (None, -9):
                self.counts["drainer_exited_unexpectedly"] += 1
            self.drainer.start()
            self.counts["drainer_starts"] += 1

    # ---- episodes ---------------------------------------------------------------------------------------

    def later(self, seconds: float, action) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        timer.start()
        self.timers.append(timer)

    def fire(self, segment: Segment, episode: Episode) -> None:
        world = self.world
        self.counts[f"episode:{episode.kind}"] += 1
        if episode.kind == "kill_drainer":
            if self.drainer is not None and self.drainer.kill():
                self.counts["drainer_sigkills"] += 1
        elif episode.kind == "crash_after_commit":
            (self.folder / "crash-after-commit").touch()
        elif episode.kind == "mns_restart":
            thread = threading.Thread(target=world.restart_mns, args=(episode.seconds,), daemon=True)
            thread.start()
            self.outages.append(thread)
        elif episode.kind == "ledger_outage":
            self.outages.append(world.ledger_outage(episode.seconds))
        elif episode.kind == "throttle_burst":
            self.base_faults(segment, throttle=0.9)
            self.later(episode.seconds, lambda: self.base_faults(segment))
        elif episode.kind == "fc_instances_killed":
            self.outages.append(world.kill_fc_instances(episode.seconds))
        elif episode.kind == "webhook_down":
            hook = world.webhook
            if episode.mode == "refuse":
                hook.refuse_connections()
                self.later(episode.seconds, hook.accept_connections)
            else:
                hook.misbehave(**({"status": 500} if episode.mode == "status_500" else {"down": "close"}))
                self.later(episode.seconds, hook.behave)

    def settle(self) -> None:
        for timer in self.timers:
            timer.join()
        self.timers.clear()
        for thread in self.outages:
            thread.join()
        self.outages.clear()

    # ---- the sweep --------------------------------------------------------------------------------------

    def sweep(self, kill_after: float | None, label: str) -> dict[str, Any] | None:
        """One sweep run to its end; with `kill_after`, one SIGKILLed that long after it took the lease first (the
        lease then blocks the next for up to SWEEP_LEASE_SECONDS: they report lease_held and are started again)."""
        if kill_after is not None:
            self._kill_a_sweep(kill_after)
        for _ in range(40):
            before = self._sweeps_logged()
            worker = Worker("sweep", self.env("inline"), self.folder, timeout=60)
            worker.start()
            if worker.wait(120) is None:
                worker.kill()
            results = self._sweep_results()[before:]
            result = results[-1] if results else {"stopped_by": f"exit {worker.process.returncode}"}
            self.counts["sweeps"] += 1
            stopped = result.get("stopped_by")
            if stopped == "lease_held":
                time.sleep(1)
                continue
            self.console.line(
                f"sweep ({label}): {stopped}, queried {result.get('queried', 0)}, expired {result.get('expired', 0)}, "
                f"DLQ messages re-driven {result.get('redrive_received', 0)}, "
                f"redelivered {result.get('redelivered_delivered', result.get('redelivered', 0))}"
            )
            if stopped == "finished":
                return result
        self.problems.append(f"the sweep ({label}) never finished")
        return None

    def _kill_a_sweep(self, after_lease: float) -> None:
        """Starts a sweep and SIGKILLs it `after_lease` seconds after it took the lease (it is at work then)."""
        from shared.adapters.ledger import Ledger

        victim = Worker("sweep", self.env("inline"), self.folder, timeout=60)
        victim.start()
        give_up = time.monotonic() + 30
        with Ledger(self.world.ledger.url) as ledger:
            while victim.alive() and time.monotonic() < give_up:
                state = ledger.sweep_state()
                if state is not None and state.holder and state.holder != self._last_holder:
                    self._last_holder = state.holder
                    if victim.wait(after_lease) is None and victim.kill():
                        self.counts["sweep_sigkills"] += 1
                    return
                time.sleep(0.01)
        victim.wait(60)

    def _sweep_results(self) -> list[dict[str, Any]]:
        path = self.folder / "sweeps.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def _sweeps_logged(self) -> int:
        return len(self._sweep_results())

    # ---- the run ----------------------------------------------------------------------------------------

    def progress(self, segment: Segment, depth: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_progress < 3:
            return
        self.last_progress = now
        mns = self.world.mns_counts()
        drained = self.published - depth
        rate = drained / max(self.console.elapsed(), 0.001)
        self.console.line(
            f"segment {segment.number}/{len(self.plan.segments)} {segment.mode:<6} "
            f"drained {drained}/{self.plan.messages} ({rate:.0f}/s)  queue {depth}  "
            f"mns 5xx {mns['fault:internal_error']} dropped {mns['fault:drop_connection']} "
            f"throttled {mns['fault:throttle']} token-expired {mns['error:SecurityTokenExpired']}  "
            f"kills {self.counts['drainer_sigkills']} commit+kill {self._crashes()} "
            f"mns-restarts {self.world.counts['mns_restarts']} outages {self.world.counts['ledger_outages']}"
        )

    def _crashes(self) -> int:
        path = self.folder / "crashes.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def drain_segment(self, segment: Segment) -> None:
        self.world.skew = segment.skew
        self.base_faults(segment)
        self.ensure_drainer(segment.mode)
        pending = list(segment.episodes)
        total = max(1, len(segment.messages))
        deadline = time.monotonic() + SEGMENT_TIMEOUT_SECONDS
        while True:
            try:
                depth = self.world.queue_depth()
            except Exception:  # the MNS emulator is being restarted
                time.sleep(0.1)
                continue
            done = 1 - depth / total
            while pending and (pending[0].at <= done or depth == 0):
                self.fire(segment, pending.pop(0))
            self.ensure_drainer(segment.mode)
            self.progress(segment, depth)
            if depth == 0 and not pending and all(not t.is_alive() for t in self.outages):
                break
            if time.monotonic() > deadline:
                self.problems.append(
                    f"segment {segment.number}: still {depth} messages after {SEGMENT_TIMEOUT_SECONDS}s"
                )
                break
            time.sleep(0.1)
        if segment.mode == "async" and not self.world.fc_idle(120):
            self.problems.append(f"segment {segment.number}: FC still had async invocations after 120 s")
        self.settle()
        with contextlib.suppress(FileNotFoundError):
            (self.folder / "crash-after-commit").unlink()  # not taken: no batch committed after it was armed

    def execute(self) -> Verdict:
        plan = self.plan
        self.console.line(
            f"chaos: seed {plan.seed}, {plan.receipts} receipts ({plan.messages} messages with poison and "
            f"duplicates) in {len(plan.segments)} segments, ledger {self.options.ledger}; logs in {self.folder}"
        )
        (self.folder / "plan.txt").write_text("\n".join(plan.describe()) + "\n")
        self.world.start()
        self.world.set_visibility(VISIBILITY_SECONDS)
        for segment in plan.segments:
            if self.drainer is not None and self.drainer.env.get("DISPATCH_MODE") != segment.mode:
                self.drainer.kill()  # the next segment's messages are for a drainer in its mode
                self.drainer = None
            self.prepare(segment)
            self.publish(segment)
            self.drain_segment(segment)
            if segment.sweep_after and segment is not plan.segments[-1]:
                kill = None if self.options.quick else plan.sweep_kill_after[segment.number]
                self.sweep(kill_after=kill, label=f"after segment {segment.number}")
        self.progress(plan.segments[-1], self.world.queue_depth(), force=True)
        # The chaos stops; what it left behind must now settle: the queue drains, the final sweep (killed once)
        # closes what the receipts did not, re-drives the DLQ and redelivers every event.
        self.world.set_mns_faults({}, 0)
        self.world.stack.fc.set_faults({})
        self.world.webhook.behave()
        self.world.webhook.accept_connections()
        self.world.skew = 0
        self.ensure_drainer("inline")
        give_up = time.monotonic() + 120
        while self.world.queue_depth() and time.monotonic() < give_up:
            self.ensure_drainer("inline")
            time.sleep(0.2)
        self.world.fc_idle(60)
        if self.drainer is not None:
            self.drainer.kill()
        self.sweep(kill_after=plan.sweep_kill_after[0], label="final, killed once first")
        for _ in range(FINAL_SWEEP_ROUNDS):
            if self._settled():
                break
            self.sweep(kill_after=None, label="final, again")
        return self.verdict()

    def _settled(self) -> bool:
        from shared.adapters.ledger import Ledger

        with Ledger(self.world.ledger.url) as ledger:
            summary = ledger.summary()
            pending = summary.orders_by_status.get("PENDING", 0)
            undelivered = len(ledger.undelivered_events(limit=1))
        return not pending and not undelivered and not self.world.dlq_depth() and not self.world.queue_depth()

    def verdict(self) -> Verdict:
        receipts, orders, letters, events = observe_ledger(self.world.ledger.url)
        observed = Observed(
            receipts=receipts,
            orders=orders,
            dead_letters=letters,
            events=events,
            webhook_accepted=set(self.world.webhook.accepted()),
            queue_depth=self.world.queue_depth(),
            dlq_depth=self.world.dlq_depth(),
            leaks=self.leaks(),
        )
        return check(self.expected, observed)

    def leaks(self) -> list[str]:
        world = self.world
        named = {
            "the AccessKey secret": world.stack.access_key_secret,
            "the webhook secret": world.webhook_secret,
            "an Alicom MNS owner or publisher secret": world.mns.owner[1],
        }
        phones = {phone for s in self.plan.segments for _, phone in (*s.orders, *s.late_orders, *s.old_orders)}
        found = []
        for name in ("product.log", "workers.log"):
            path = self.folder / name
            if path.exists():
                found += secrets_in_log(path, named, world.issued_secrets, phones)
        return found

    def figures(self, verdict: Verdict, wall: float) -> dict[str, Any]:
        mns = self.world.mns_counts()
        fc = self.world.fc_counters()
        hook = self.world.webhook.stats()
        drains = self.folder / "drains.jsonl"
        drained: Counter[str] = Counter()
        if drains.exists():
            for line in drains.read_text().splitlines():
                record = json.loads(line)
                drained.update({k: v for k, v in record.items() if isinstance(v, int) and not isinstance(v, bool)})
        swept: Counter[str] = Counter()
        for record in self._sweep_results():
            swept.update({k: v for k, v in record.items() if isinstance(v, int) and not isinstance(v, bool)})
        return {
            "seed": self.plan.seed,
            "receipts": self.plan.receipts,
            "messages": self.plan.messages,
            "ledger": self.options.ledger,
            "segments": len(self.plan.segments),
            "async_segments": sum(1 for s in self.plan.segments if s.mode == "async"),
            "wall_seconds": round(wall, 1),
            "messages_per_second": round(self.plan.messages / wall, 1),
            "invariants_hold": verdict.ok,
            "violations": len(verdict.violations),
            "problems": self.problems,
            "outcomes": verdict.figures,
            "faults": {
                "mns_requests": mns["requests"],
                "mns_5xx": mns["fault:internal_error"],
                "mns_dropped_connections": mns["fault:drop_connection"],
                "mns_throttled": mns["fault:throttle"],
                "mns_security_token_expired": mns["error:SecurityTokenExpired"],
                "mns_invalid_access_key": mns["error:InvalidAccessKeyId"],
                "tokens_expired_by_hook": self.world.counts["tokens"],
                "tokens_issued": self.world.counts["tokens_issued"],
                "tokens_skewed": self.world.counts["skewed_tokens"],
                "drainer_sigkills": self.counts["drainer_sigkills"],
                "crashes_between_commit_and_delete": self._crashes(),
                "drainer_starts": self.counts["drainer_starts"],
                "mns_restarts": self.world.counts["mns_restarts"],
                "ledger_outages": self.world.counts["ledger_outages"],
                "ledger_connections_killed": self.world.counts["ledger_connections_killed"]
                if self.options.ledger != "sqlite"
                else 0,
                "ledger_outage_errors": self.world.counts["ledger_outage_errors"],
                "throttle_bursts": self.counts["episode:throttle_burst"],
                "webhook_down_episodes": self.counts["episode:webhook_down"],
                "webhook_requests": hook.get("requests", 0),
                "webhook_requests_not_accepted": hook.get("requests", 0) - hook.get("accepted_requests", 0),
                "webhook_duplicate_deliveries": hook.get("duplicates", 0),
                "fc_instances_killed": self.world.counts["fc_instances_killed"],
                "fc_async_accepted": fc.get("async_accepted", 0),
                "fc_failed_attempts": fc.get("failed_attempts", 0),
                "fc_retries": fc.get("retries", 0),
                "fc_destination_messages": fc.get("destination_messages", 0),
                "fc_invoke_faults": sum(self.world.stack.fc.stats()["operations"]["InvokeFunction"]["faults"].values()),
                "sweep_sigkills": self.counts["sweep_sigkills"],
                "sweep_runs": self.counts["sweeps"],
            },
            "drains": {
                k: drained[k]
                for k in (
                    "received",
                    "applied",
                    "duplicates",
                    "conflicts",
                    "orphans",
                    "dead_lettered",
                    "deleted",
                    "delete_failed",
                    "left_for_retry",
                )
            },
            "sweep": {k: v for k, v in sorted(swept.items()) if k not in ("pid",)},
        }


def _logs_to(path: Path) -> None:
    """The product log also takes file descriptor 2: FC instances write there."""
    os.dup2(logs_to(path).fileno(), 2)


def print_summary(console: Console, figures: dict[str, Any], verdict: Verdict, folder: Path) -> None:
    from rich.console import Console as Rich
    from rich.table import Table

    table = Table(
        title=f"chaos run: seed {figures['seed']}, ledger {figures['ledger']}", show_header=False, title_justify="left"
    )
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("receipts published", figures["receipts"]),
        ("messages (with duplicates and poison)", figures["messages"]),
        ("segments (async)", f"{figures['segments']} ({figures['async_segments']})"),
        ("wall time", f"{figures['wall_seconds']} s"),
        ("messages per second", figures["messages_per_second"]),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    table.add_section()
    for name, value in figures["faults"].items():
        table.add_row(name.replace("_", " "), str(value))
    table.add_section()
    for name, value in sorted(figures["outcomes"].items()):
        table.add_row(name.replace("_", " "), str(value))
    Rich(file=console.stream, width=100).print(table)
    console.stream.write(verdict.report() + "\n")
    for problem in figures["problems"]:
        console.stream.write(f"problem: {problem}\n")
    console.stream.write(
        ("ALL INVARIANTS HOLD" if verdict.ok and not figures["problems"] else "INVARIANTS BROKEN")
        + f"  (summary {folder / 'summary.json'}, product logs {folder / 'product.log'})\n"
    )
    console.stream.flush()


def run(options: Options) -> int:
    os.chdir(REPO)
    folder = options.folder or REPO / ".local" / "chaos" / f"{time.strftime('%Y%m%dT%H%M%S')}-seed{options.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    console = Console(os.fdopen(os.dup(1), "w", buffering=1))
    _logs_to(folder / "product.log")
    chaos = Run(options, folder, console)
    started = time.monotonic()
    try:
        verdict = chaos.execute()
        wall = time.monotonic() - started
        figures = chaos.figures(verdict, wall)
        (folder / "summary.json").write_text(
            json.dumps({**figures, "violations_detail": [asdict(v) for v in verdict.violations[:200]]}, indent=2)
        )
        print_summary(console, figures, verdict, folder)
        return 0 if verdict.ok and not chaos.problems else 1
    finally:
        if chaos.drainer is not None:
            chaos.drainer.kill()
        chaos.world.stop()

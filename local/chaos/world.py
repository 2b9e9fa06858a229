"""The local stack of a chaos run, with the fault hooks the emulators' admin APIs do not offer themselves.

Everything Alibaba-side runs in this process (local.stack.Stack: Alicom's MNS on a data directory, the Alicom API,
FC with the processor of template.yml, the customer's MNS with the DLQ) plus the webhook receiver; the drainer
and the sweep run as child processes (local.chaos.worker) so that they can be SIGKILLed.

Hooks (instance-level, this process only; the emulators' code is unchanged):
- token expiry every N MNS requests: the MNS request counter expires every STS token on each Nth request;
- clock skew on the token: QueryTokenForMnsQueue's CreateTime / ExpireTime shifted by the skew;
- MNS restart: the emulator is stopped (its open connections cut, as a dying process's are) and a new one is
  started on the same port and data directory; the Alicom API is pointed at it.
Ledger outages: SQLite held locked by another connection (BEGIN EXCLUSIVE); PostgreSQL / MariaDB: the ledger's
server connections killed from the server side (pg_terminate_backend / KILL), again and again for the outage.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import socket
import sqlite3
import threading
import time
import weakref
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mns.account import Account
from mns.queue import QueueMeta
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from local.fc.functions import load_template
from local.mns import MnsEmulator
from local.stack import Stack
from local.webhook import WebhookReceiver

REPO = Path(__file__).resolve().parents[2]
SHORT_BACKLOG = 24  # FC async events queued or running when the processor instances start being killed
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SERVERS = {
    "mariadb": ("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/flow_receipts_test"),
    "postgresql": ("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/flow_receipts_test"),
}


# ---- the ledger ---------------------------------------------------------------------------------------------


class LedgerBackend:
    """A fresh ledger of its own for the run, and the outage that fits the backend."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.name = f"flow_receipts_chaos_{secrets.token_hex(4)}"
        self._admin = None
        if kind == "sqlite":
            self.path = folder / "ledger.sqlite3"
            self.url = f"sqlite:///{self.path}"
            return
        env_var, default = SERVERS[kind]
        base = make_url(os.environ.get(env_var) or default)
        self._admin = create_engine(base, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        quoted = f'"{self.name}"' if kind == "postgresql" else f"`{self.name}`"
        with self._admin.connect() as conn:  # a database of its own: outages kill only its connections
            conn.execute(text(f"CREATE DATABASE {quoted}" + (" CHARACTER SET utf8mb4" if kind == "mariadb" else "")))
        self.url = base.set(database=self.name).render_as_string(hide_password=False)

    def outage(self, seconds: float, stop: threading.Event) -> int:
        """Blocks for `seconds` (or until `stop`); returns how many connections were killed (SQLite: 1 lock)."""
        end = time.monotonic() + seconds
        if self.kind == "sqlite":
            blocker = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
            try:
                blocker.execute("BEGIN EXCLUSIVE")
                stop.wait(max(0.0, end - time.monotonic()))
                blocker.execute("ROLLBACK")
            finally:
                blocker.close()
            return 1
        killed = 0
        assert self._admin is not None
        while time.monotonic() < end and not stop.is_set():
            with contextlib.suppress(Exception), self._admin.connect() as conn:
                if self.kind == "postgresql":
                    rows = conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :db AND pid <> pg_backend_pid()"
                        ),
                        {"db": self.name},
                    ).all()
                    killed += sum(1 for (done,) in rows if done)
                else:
                    ids = conn.execute(
                        text("SELECT id FROM information_schema.processlist WHERE db = :db AND id <> CONNECTION_ID()"),
                        {"db": self.name},
                    ).scalars()
                    for connection_id in list(ids):
                        with contextlib.suppress(Exception):
                            conn.execute(text(f"KILL {int(connection_id)}"))
                            killed += 1
            stop.wait(0.25)
        return killed

    def drop(self) -> None:
        if self._admin is None:
            return
        with contextlib.suppress(Exception), self._admin.connect() as conn:
            if self.kind == "postgresql":
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{self.name}`"))
        self._admin.dispose()


# ---- hooks on the in-process emulators ------------------------------------------------------------------------


def _cut_connections(emulator: MnsEmulator) -> None:
    """Remembers every accepted socket, so that a restart can cut them (a dead process's sockets close)."""
    server = emulator._background.server
    sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
    accept = server.get_request

    def get_request():
        connection, address = accept()
        sockets.add(connection)
        return connection, address

    server.get_request = get_request  # type: ignore[method-assign]
    emulator._chaos_sockets = sockets  # type: ignore[attr-defined]


def _expire_tokens_every(emulator: MnsEmulator, every: int, counter: itertools.count, expired: Counter) -> None:
    count = emulator.stats_counters.request

    def request(operation: str) -> None:
        count(operation)
        if every and next(counter) % every == every - 1:
            expired["tokens"] += emulator.expire_sts()

    emulator.stats_counters.request = request  # type: ignore[method-assign]


def _stop_like_a_dead_process(emulator: MnsEmulator) -> None:
    """Stops listening, cuts the open connections, then closes the journal while holding the store's lock.

    (MnsEmulator.stop() closes the journal outside that lock: a request still in flight on a keep-alive connection
    then uses a closed sqlite3 connection from another thread, which can crash the whole process with SIGSEGV.)"""
    emulator._background.stop()
    for connection in list(getattr(emulator, "_chaos_sockets", ())):
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
    store = emulator.store
    with store._lock:
        store._closing = True
        for queue in store._queues.values():
            queue.condition.notify_all()
        store._journal.close()


def _refuse_truncated_fc_bodies() -> None:
    """Hook (this process only): a request whose body ends before its Content-Length is refused.

    Without it the FC emulator accepts what arrived: a drainer SIGKILLed while sending an Async InvokeFunction
    left FC an empty event, which the processor dead-lettered as ``invalid-event-<request id>`` (the real FC does
    not run a request it did not receive whole). Found by this runner; reported, not fixed in local/fc."""
    from local.fc import server

    if getattr(server.FcHandler, "_chaos_checked", False):
        return
    read_body = server.FcHandler.read_body

    def whole_body(self) -> bytes:
        body = read_body(self)
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if not chunked and len(body) < int(self.headers.get("Content-Length") or 0):
            self.close_connection = True
            raise server.MalformedBody("the request body ended before its Content-Length")
        return body

    server.FcHandler.read_body = whole_body  # type: ignore[method-assign]
    server.FcHandler._chaos_checked = True  # type: ignore[attr-defined]


def _shift(beijing: str, seconds: float) -> str:
    return (datetime.strptime(beijing, TIME_FORMAT) + timedelta(seconds=seconds)).strftime(TIME_FORMAT)


class ChaosWorld:
    def __init__(self, folder: Path, ledger: str, *, token_every: int, token_ttl: float) -> None:
        self.folder = folder
        self.ledger = LedgerBackend(ledger, folder)
        self.token_every = token_every
        self._requests = itertools.count()
        self.counts: Counter[str] = Counter()  # what the hooks did
        self.mns_totals: Counter[str] = Counter()  # MNS faults and errors of emulators already restarted
        self.skew = 0.0
        self._restarting = False
        functions = load_template(REPO / "template.yml", python_path=[REPO])
        self.stack = Stack(folder / "stack", functions=functions)
        self.webhook_secret = secrets.token_urlsafe(24)
        self.webhook = WebhookReceiver(self.webhook_secret)
        self.env: dict[str, str] = {}
        self.token_ttl = token_ttl
        self._outage_stop = threading.Event()
        self.issued_secrets: set[str] = set()  # every STS AccessKeySecret and SecurityToken handed out

    # ---- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.webhook.start()
        stack = self.stack
        self.env = {
            **stack.environment(),
            "LEDGER_URL": self.ledger.url,
            "WEBHOOK_URL": self.webhook.url,
            "WEBHOOK_SECRET": self.webhook_secret,
            "WEBHOOK_TIMEOUT_SECONDS": "2",
            "DRAIN_POLLERS": "4",
            "DRAIN_LONG_POLL_SECONDS": "1",
            "DRAIN_DEADLINE_MARGIN_SECONDS": "1",
            "MAX_DEQUEUE_COUNT": "1000",  # a good report is never given up on because of the chaos
            "NOTIFY_BUDGET_SECONDS": "3",
            "NOTIFY_RETRY_SECONDS": "0",
            "SWEEP_GRACE_SECONDS": "3600",  # orders registered now are left to their receipts
            "SWEEP_NOT_FOUND": "fail",
            "SWEEP_LEASE_SECONDS": "10",
            "SWEEP_CONCURRENCY": "8",
            "SWEEP_PAGE_SIZE": "500",
            "SWEEP_DEADLINE_MARGIN_SECONDS": "2",
            "REPORT_DIR": str(self.folder / "reports"),
            "LOG_LEVEL": "INFO",
            "PYTHONPATH": str(REPO),
        }
        stack.fc.environment.update(self.env)
        _refuse_truncated_fc_bodies()
        from shared.adapters.ledger import Ledger

        with Ledger(self.ledger.url) as ledger:
            ledger.migrate()
        stack.start()
        self._hook_mns(stack.alicom_mns)
        self._hook_tokens()
        stack.alicom.set_behaviour(token_ttl_seconds=self.token_ttl)

    def stop(self) -> None:
        self._outage_stop.set()
        with contextlib.suppress(Exception):
            self.stack.stop()
        with contextlib.suppress(Exception):
            self.webhook.stop()
        self.ledger.drop()

    # ---- hooks ----------------------------------------------------------------------------------------------

    def _hook_mns(self, emulator: MnsEmulator) -> None:
        _cut_connections(emulator)
        _expire_tokens_every(emulator, self.token_every, self._requests, self.counts)

    def _hook_tokens(self) -> None:
        api = self.stack.alicom.api
        real = api._QueryTokenForMnsQueue

        def skewed(customer: Any, params: dict[str, str], request_id: str) -> dict:
            answer = real(customer, params, request_id)
            token = answer.get("MessageTokenDTO")
            if token:
                self.issued_secrets.update((token["AccessKeySecret"], token["SecurityToken"]))
            if token and self.skew:
                token["CreateTime"] = _shift(token["CreateTime"], self.skew)
                token["ExpireTime"] = _shift(token["ExpireTime"], self.skew)
                self.counts["skewed_tokens"] += 1
            self.counts["tokens_issued"] += 1
            return answer

        api._QueryTokenForMnsQueue = skewed  # type: ignore[method-assign]

    # ---- faults ---------------------------------------------------------------------------------------------

    @property
    def mns(self) -> MnsEmulator:
        return self.stack.alicom_mns

    def set_mns_faults(self, operations: dict[str, dict[str, float]], seed: int) -> None:
        self.mns.set_faults({"seed": seed, "operations": operations})

    def restart_mns(self, down_seconds: float) -> None:
        old = self.stack.alicom_mns
        port = int(old.endpoint.rsplit(":", 1)[1])
        faults = old.faults()
        self._restarting = True  # its counts move into mns_totals
        self._remember(old.stats()["operations"])
        _stop_like_a_dead_process(old)
        time.sleep(down_seconds)
        for attempt in range(50):
            try:
                new = MnsEmulator(
                    port=port,
                    owner=old.owner,
                    publisher=old.publisher,
                    data_dir=self.folder / "stack" / "alicom-mns",
                    faults=faults,
                )
                break
            except OSError:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        self._hook_mns(new)
        new.start()
        self.stack.alicom_mns = new
        self.stack.alicom.mns = new
        self.stack.alicom.api._mns = new
        self._restarting = False
        self.counts["mns_restarts"] += 1

    def _remember(self, operations: dict[str, Any]) -> None:
        for counters in operations.values():
            for kind, value in counters.get("faults", {}).items():
                self.mns_totals[f"fault:{kind}"] += value
            for code, value in counters.get("errors", {}).items():
                self.mns_totals[f"error:{code}"] += value
            self.mns_totals["requests"] += counters.get("requests", 0)

    def mns_counts(self) -> Counter[str]:
        totals = Counter(self.mns_totals)
        if self._restarting:
            return totals
        for counters in self.mns.stats()["operations"].values():
            for kind, value in counters.get("faults", {}).items():
                totals[f"fault:{kind}"] += value
            for code, value in counters.get("errors", {}).items():
                totals[f"error:{code}"] += value
            totals["requests"] += counters.get("requests", 0)
        return totals

    def ledger_outage(self, seconds: float) -> threading.Thread:
        def run() -> None:
            try:
                self.counts["ledger_connections_killed"] += self.ledger.outage(seconds, self._outage_stop)
                self.counts["ledger_outages"] += 1
            except Exception as error:  # an outage that could not be staged is reported, not fatal
                self.counts["ledger_outage_errors"] += 1
                self.counts[f"ledger_outage_error:{type(error).__name__}"] += 1

        thread = threading.Thread(target=run, name="ledger-outage", daemon=True)
        thread.start()
        return thread

    def kill_fc_instances(self, seconds: float, destinations: int = 1, longest: float = 30.0) -> threading.Thread:
        """SIGKILLs every running processor instance, again and again: the attempts running fail and FC retries
        them; an event whose three attempts all fail goes to the on-failure destination (the DLQ). Goes on for at
        least `seconds`, and until `destinations` more destination messages were sent (at most `longest`)."""
        stop = self._outage_stop

        def sent() -> int:
            return self.fc_counters().get("destination_messages", 0)

        def backlog() -> int:
            counters = self.fc_counters()
            return counters.get("queue_depth", 0) + counters.get("in_flight", 0)

        def run() -> None:
            # FC retries an event behind every event queued before it: with a long backlog, killing spreads the
            # failures over all of them and none fails three times. Strike when the backlog is short.
            settle = time.monotonic() + 120
            while backlog() > SHORT_BACKLOG and time.monotonic() < settle and not stop.is_set():
                stop.wait(0.02)
            start = time.monotonic()
            wanted = sent() + destinations
            while not stop.is_set():
                elapsed = time.monotonic() - start
                if elapsed > longest or (elapsed > seconds and sent() >= wanted):
                    break
                for pool in list(self.stack.fc._pools.values()):
                    with pool._changed:
                        instances = list(pool._all)
                    for instance in instances:
                        process = instance._process
                        if process is not None and process.poll() is None:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(process.pid, 9)
                                self.counts["fc_instances_killed"] += 1
                stop.wait(0.05)

        thread = threading.Thread(target=run, name="fc-instance-killer", daemon=True)
        thread.start()
        return thread

    # ---- looking --------------------------------------------------------------------------------------------

    @property
    def queue_name(self) -> str:
        return self.env["ALICOM_QUEUE_NAME"]

    def queue_depth(self) -> int:
        return sum(self.mns.stats()["queues"].get(self.queue_name, {}).values())

    def dlq_depth(self) -> int:
        return sum(self.stack.customer_mns.stats()["queues"].get(self.env["DLQ_QUEUE_NAME"], {}).values())

    def publisher_queue(self):
        queue = Account(self.mns.endpoint, *self.mns.publisher).get_queue(self.queue_name)
        queue.set_encoding(False)  # bodies are given exactly as MNS stores them
        return queue

    def set_visibility(self, seconds: int) -> None:
        Account(self.mns.endpoint, *self.mns.owner).get_queue(self.queue_name).set_attributes(
            QueueMeta(vis_timeout=seconds)
        )

    def fc_idle(self, timeout: float) -> bool:
        return self.stack.fc._dispatcher.wait_idle(timeout)

    def fc_counters(self) -> dict[str, int]:
        return dict(self.stack.fc.stats()["functions"].get("flow-receipts/processor", {}))


def secrets_in_log(path: Path, named: dict[str, str], words: set[str], phones: set[str]) -> list[str]:
    """What a log file leaks: `named` secrets anywhere in it, any of `words` (STS secrets and tokens, which are
    URL-safe base64 words) as a whole word, any of `phones` unmasked. One description per kind found."""
    found: Counter[str] = Counter()
    word = re.compile(r"[A-Za-z0-9_\-]{20,}")
    digits = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
    with path.open(encoding="utf-8", errors="replace") as log:
        for line in log:
            for name, secret in named.items():
                if secret and secret in line:
                    found[name] += 1
            if any(w in words for w in word.findall(line)):
                found["an STS AccessKeySecret or SecurityToken"] += 1
            if any(p in phones for p in digits.findall(line)):
                found["an unmasked phone number"] += 1
    return [f"{name} in {count} line(s) of {path.name}" for name, count in found.items()]

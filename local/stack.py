"""The whole local Alibaba side in one process: Alicom's MNS, the Alicom API, FC, and the customer's own
MNS (for dead-letter destinations). `up` runs it in the background and writes `<state dir>/stack.env`;
`down` stops it. Ports are chosen free, so several stacks (different state dirs) can run side by side."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import QueueMeta

from local.alicom import AlicomEmulator
from local.fc import FcEmulator
from local.fc.functions import FunctionSpec, load_template
from local.mns import MnsEmulator

DEFAULT_STATE_DIR = ".local"
MESSAGE_TYPE = "FlowReport"
DLQ_QUEUE = "flow-receipts-dlq"
TEMPLATE = Path("template.yml")
READY_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class StackFiles:
    state_dir: Path

    @property
    def env(self) -> Path:
        return self.state_dir / "stack.env"

    @property
    def pid(self) -> Path:
        return self.state_dir / "stack.pid"

    @property
    def log(self) -> Path:
        return self.state_dir / "stack.log"


def read_env(state_dir: str | Path = DEFAULT_STATE_DIR) -> dict[str, str]:
    """The variables of a running stack, or a clear error when none is up."""
    path = StackFiles(Path(state_dir)).env
    if not path.exists():
        raise RuntimeError(f"no local stack is running for {state_dir} (start one with `make local-up`)")
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key: value for key, value in pairs}


class Stack:
    def __init__(self, state_dir: Path, functions: list[FunctionSpec] | None = None) -> None:
        self.files = StackFiles(state_dir)
        self.access_key_id = "local-ak-" + secrets.token_hex(4)
        self.access_key_secret = secrets.token_urlsafe(18)
        self.uid = "1" + "".join(secrets.choice("0123456789") for _ in range(15))
        self.alicom_mns = MnsEmulator(
            owner=("alicom-owner", secrets.token_urlsafe(18)),
            publisher=("alicom-publisher", secrets.token_urlsafe(18)),
            data_dir=state_dir / "alicom-mns",
        )
        self.customer_mns = MnsEmulator(
            owner=(self.access_key_id, self.access_key_secret),
            publisher=("unused-publisher", secrets.token_urlsafe(18)),
            data_dir=state_dir / "customer-mns",
        )
        self.alicom = AlicomEmulator(self.alicom_mns, accounts={self.access_key_id: (self.access_key_secret, self.uid)})
        if functions is None:
            # shared/ lives beside functions/, outside each codeUri: put the repo root on the instances' path.
            functions = load_template(TEMPLATE, python_path=[Path.cwd()]) if TEMPLATE.exists() else []
        self.fc = FcEmulator(
            functions,
            credentials={self.access_key_id: self.access_key_secret},
            account_id=self.uid,
            mns_endpoint=self.customer_mns.endpoint,
            mns_credentials=(self.access_key_id, self.access_key_secret),
        )
        # Functions run by the FC emulator see the same variables a developer sources from stack.env.
        self.fc.environment.update(self.environment())

    def start(self) -> None:
        from shared.adapters.ledger import Ledger

        with Ledger(self.environment()["LEDGER_URL"]) as ledger:  # the ledger stack.env advertises is ready to use
            ledger.migrate()
        for part in (self.alicom_mns, self.customer_mns, self.alicom, self.fc):
            part.start()
        self.alicom.ensure_queues()
        dlq = Account(self.customer_mns.endpoint, self.access_key_id, self.access_key_secret).get_queue(DLQ_QUEUE)
        try:
            dlq.create(QueueMeta())
        except MNSServerException as exc:
            if exc.type != "QueueAlreadyExist":
                raise

    def stop(self) -> None:
        for part in (self.fc, self.alicom, self.customer_mns, self.alicom_mns):
            part.stop()

    def environment(self) -> dict[str, str]:
        ledger = (self.files.state_dir / "ledger.sqlite3").resolve()
        return {
            "ALICOM_MNS_ENDPOINT": self.alicom_mns.endpoint,
            "ALICOM_API_ENDPOINT": self.alicom.endpoint,
            "FLOW_API_ENDPOINT": self.alicom.endpoint,
            "FC_ENDPOINT": self.fc.endpoint,
            "MNS_ENDPOINT": self.customer_mns.endpoint,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": self.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": self.access_key_secret,
            "ALICOM_MESSAGE_TYPE": MESSAGE_TYPE,
            "ALICOM_QUEUE_NAME": self.alicom.queue_name(self.uid, MESSAGE_TYPE),
            "DLQ_QUEUE_NAME": DLQ_QUEUE,
            "FC_ACCOUNT_ID": self.uid,
            "FC_REGION": "cn-hangzhou",
            "LEDGER_URL": f"sqlite:///{ledger}",
            "ALICOM_MNS_ADMIN_URL": self.alicom_mns.admin_url,
            "ALICOM_API_ADMIN_URL": self.alicom.admin_url,
            "FC_ADMIN_URL": self.fc.admin_url,
            "MNS_ADMIN_URL": self.customer_mns.admin_url,
            "LOCAL_STACK_PID": str(os.getpid()),
        }

    def write_env(self) -> None:
        lines = ["# written by `python -m local stack`; removed when the stack stops"]
        lines += [f"{key}={value}" for key, value in self.environment().items()]
        temporary = self.files.env.with_suffix(".tmp")
        temporary.write_text("\n".join(lines) + "\n")
        temporary.chmod(0o600)
        temporary.replace(self.files.env)


def run_foreground(state_dir: Path) -> int:
    """Runs the stack until SIGTERM/SIGINT; stack.env exists exactly while it serves."""
    state_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stack = Stack(state_dir)
    stack.start()
    try:
        stack.write_env()
        print(json.dumps({"state_dir": str(state_dir), "env": str(stack.files.env)}), flush=True)
        stop.wait()
    finally:
        stack.files.env.unlink(missing_ok=True)
        stack.stop()
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running_pid(files: StackFiles) -> int | None:
    if not files.pid.exists():
        return None
    pid = int(files.pid.read_text().strip() or 0)
    return pid if pid and _alive(pid) else None


def up(state_dir: Path) -> int:
    files = StackFiles(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    running = _running_pid(files)
    if running is not None and files.env.exists():
        print(f"local stack already running (pid {running}); variables in {files.env}")
        return 0
    files.env.unlink(missing_ok=True)
    with files.log.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "local", "stack", "--state-dir", str(state_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    files.pid.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if files.env.exists():
            print(f"local stack up (pid {process.pid}); variables in {files.env}")
            return 0
        if process.poll() is not None:
            break
        time.sleep(0.1)
    _stop_group(process.pid)
    files.pid.unlink(missing_ok=True)
    tail = "\n".join(files.log.read_text(errors="replace").splitlines()[-20:])
    print(f"local stack failed to start; last lines of {files.log}:\n{tail}", file=sys.stderr)
    return 1


def _stop_group(pid: int, grace_seconds: float = 10) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def down(state_dir: Path) -> int:
    files = StackFiles(state_dir)
    if not files.pid.exists():
        print(f"no local stack recorded in {state_dir}")
        return 0
    pid = int(files.pid.read_text().strip() or 0)
    if pid:
        _stop_group(pid)
    files.pid.unlink(missing_ok=True)
    files.env.unlink(missing_ok=True)
    print(f"local stack stopped (pid {pid})")
    return 0

"""One function process of a chaos run: `python -m local.chaos.worker drainer|sweep --dir DIR`.

The drainer worker invokes functions/drainer/index.handler again and again, as the minute timer would if every
tick came at once, until it is killed; the sweep worker invokes functions/sweep/index.handler once. Both take their
settings from the environment the runner gives them, write the product's JSON logs to DIR/product.log and one JSON
line per invocation to DIR/drains.jsonl or DIR/sweeps.jsonl.

The crash between commit and delete is injected where tests/reliability/test_batches.py injects it, after
`Ledger.apply_batch` returned (the batch is committed, its BatchDelete not sent yet), but as a real SIGKILL of this
process: the runner arms it by creating DIR/crash-after-commit; the next committed batch removes the file, records
the crash in DIR/crashes.jsonl and kills the process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from local.product_logs import logs_to

ARM_FILE = "crash-after-commit"


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
        out.flush()
        os.fsync(out.fileno())


def _arm_crash_after_commit(folder: Path) -> None:
    from shared.adapters.ledger import Ledger

    real = Ledger.apply_batch
    armed = folder / ARM_FILE

    def apply_then_maybe_die(self, reports, letters=()):
        done = real(self, reports, letters)  # committed ...
        if armed.exists():
            try:
                armed.unlink()
            except FileNotFoundError:  # another poller took it
                return done
            _append(folder / "crashes.jsonl", {"at": time.time(), "pid": os.getpid(), "batch": len(reports)})
            os.kill(os.getpid(), signal.SIGKILL)  # ... and the instance is gone before the delete
        return done

    Ledger.apply_batch = apply_then_maybe_die  # type: ignore[method-assign]


def _invoke(name: str, timeout: float, event: dict[str, Any]) -> dict[str, Any]:
    import importlib

    from local.fc.context import Credentials, build_context
    from local.fc.functions import FunctionSpec

    handler = importlib.import_module(f"functions.{name}.index").handler
    spec = FunctionSpec(
        service="flow-receipts", name=name, handler="index.handler", code_uri=f"functions/{name}", timeout=timeout
    )
    env = os.environ
    credentials = Credentials(env["ALIBABA_CLOUD_ACCESS_KEY_ID"], env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"], "")
    context = build_context(spec, credentials, account_id=env["FC_ACCOUNT_ID"], region=env["FC_REGION"])
    timer = {
        "triggerTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "triggerName": f"chaos-{name}",
        "payload": json.dumps(event),
    }
    return json.loads(handler(json.dumps(timer).encode(), context))


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the runner dies, so that no drainer outlives a run."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    _die_with_parent()
    parser = argparse.ArgumentParser(prog="python -m local.chaos.worker")
    parser.add_argument("function", choices=["drainer", "sweep"])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=15)
    args = parser.parse_args(argv)
    logs_to(args.dir / "product.log")
    if args.function == "sweep":
        started = time.time()
        result = _invoke("sweep", args.timeout, {"job": "sweep"})
        _append(args.dir / "sweeps.jsonl", {"pid": os.getpid(), "seconds": time.time() - started, **result})
        return 0
    _arm_crash_after_commit(args.dir)
    while True:
        started = time.time()
        summary = _invoke("drainer", args.timeout, {"job": "drain"})
        _append(
            args.dir / "drains.jsonl",
            {
                "pid": os.getpid(),
                "mode": os.environ.get("DISPATCH_MODE", "inline"),
                "seconds": time.time() - started,
                **summary,
            },
        )


if __name__ == "__main__":
    sys.exit(main())

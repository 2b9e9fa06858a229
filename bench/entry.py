"""The shared way a benchmark runs from the command line: bounded, one JSON line even on errors, and an exit
status that is non-zero only for errors (a missed target is reported, not failed)."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from collections.abc import Callable


def run_benchmark(
    name: str,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    args = parse_args(argv)

    def on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        print(f"{name}: error: {type(err).__name__}: {err}", file=sys.stderr)
        print(json.dumps({"benchmark": name, "error": f"{type(err).__name__}: {err}"}), flush=True)
        return 1


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Terminates a helper process (an emulator, a stack), killing it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

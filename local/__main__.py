"""Command line for the local stack: `python -m local mns --port 0 [--data-dir DIR] [--faults JSON]`."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from local.mns import MnsEmulator


def _faults(text: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--faults is not JSON: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    mns = commands.add_parser("mns", help="run the MNS queue emulator in the foreground")
    mns.add_argument("--host", default="127.0.0.1")
    mns.add_argument("--port", type=int, default=0, help="0 picks a free port")
    mns.add_argument("--data-dir", help="keep queues and messages here across restarts (default: memory only)")
    mns.add_argument("--faults", type=_faults, default=None, help="initial fault configuration, JSON")
    mns.add_argument("--owner-id", default="local-owner")
    mns.add_argument("--owner-secret", default="local-owner-secret")
    mns.add_argument("--publisher-id", default="alicom-publisher")
    mns.add_argument("--publisher-secret", default="alicom-publisher-secret")
    mns.add_argument("--max-clock-skew", type=float, default=900.0, help="seconds; 0 disables the Date check")
    return parser


def _serve_until_signalled(emulator: MnsEmulator) -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    emulator.start()
    print(json.dumps({"endpoint": emulator.endpoint, "admin_url": emulator.admin_url}), flush=True)
    stop.wait()
    emulator.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "mns":
        try:
            emulator = MnsEmulator(
                args.host,
                args.port,
                owner=(args.owner_id, args.owner_secret),
                publisher=(args.publisher_id, args.publisher_secret),
                data_dir=args.data_dir,
                faults=args.faults,
                max_clock_skew=args.max_clock_skew or None,
            )
        except ValueError as exc:
            print(f"mns: {exc}", file=sys.stderr)
            return 2
        _serve_until_signalled(emulator)
    return 0


if __name__ == "__main__":
    sys.exit(main())

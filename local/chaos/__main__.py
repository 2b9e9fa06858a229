"""`python -m local.chaos [--receipts N] [--seed S] [--ledger sqlite|postgresql|mariadb] [--quick] [--dir DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from local.chaos.runner import Options, run

QUICK_RECEIPTS = 3000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.chaos",
        description="A seeded chaos run of the whole pipeline on the local stack, then the invariants.",
    )
    parser.add_argument("--receipts", type=int, default=None, help="reports published (default 100000; --quick 3000)")
    parser.add_argument("--seed", type=int, default=1, help="the seed of the plan: receipts and fault schedule")
    parser.add_argument("--ledger", choices=["sqlite", "postgresql", "mariadb"], default="sqlite")
    parser.add_argument("--quick", action="store_true", help="small segments, one async, sweeps not killed mid-run")
    parser.add_argument("--segment-size", type=int, default=None, help="messages per segment (default: 40 segments)")
    parser.add_argument("--dir", type=Path, default=None, help="where logs and the summary go (.local/chaos/<run>)")
    args = parser.parse_args(argv)
    receipts = args.receipts if args.receipts is not None else (QUICK_RECEIPTS if args.quick else 100_000)
    options = Options(receipts, args.seed, args.ledger, args.quick, args.dir, args.segment_size)
    return run(options)


if __name__ == "__main__":
    sys.exit(main())

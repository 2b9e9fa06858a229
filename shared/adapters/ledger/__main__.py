"""python -m shared.adapters.ledger migrate|summary [--url URL]

URL: --url, else LEDGER_URL, else the local SQLite file."""

from __future__ import annotations

import argparse
import json
import os
import sys

from shared.adapters.ledger.engine import display_url
from shared.adapters.ledger.ledger import DEFAULT_URL, Ledger
from shared.errors import ConfigError, TransientError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.adapters.ledger", description="Manage the flow-receipts ledger."
    )
    parser.add_argument("command", choices=["migrate", "summary"])
    parser.add_argument("--url", help=f"database URL (default: $LEDGER_URL, else {DEFAULT_URL})")
    args = parser.parse_args(argv)
    url = args.url or os.environ.get("LEDGER_URL") or DEFAULT_URL
    try:
        with Ledger(url) as ledger:
            where = display_url(ledger.url)
            if args.command == "migrate":
                result = ledger.migrate()
                if result.changed:
                    print(f"ledger schema migrated from version {result.from_version} to {result.to_version}: {where}")
                else:
                    print(f"ledger schema already at version {result.to_version}: {where}")
            else:
                print(json.dumps(ledger.summary().as_dict(), sort_keys=True))
    except ConfigError as error:
        print(f"ledger: configuration error: {error}", file=sys.stderr)
        return 2
    except TransientError as error:
        print(f"ledger: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

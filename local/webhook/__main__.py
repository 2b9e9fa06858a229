"""Run the local webhook receiver in the foreground:

    python -m local.webhook [--host 127.0.0.1] [--port 0] [--tls] [--path /hooks/flow-receipts]

The secret is read from WEBHOOK_SECRET (never from the command line, which other users can see). Prints one JSON
line (url, admin_url, cert_file) once listening; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import sys

from local.serve import serve_until_signalled
from local.webhook.receiver import DEFAULT_PATH, WebhookReceiver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.webhook", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", action="store_true", help="HTTPS with a self-signed certificate made at start")
    parser.add_argument("--path", default=DEFAULT_PATH)
    args = parser.parse_args(argv)
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        print("WEBHOOK_SECRET: required (the key deliveries are signed with)", file=sys.stderr)
        return 2
    receiver = WebhookReceiver(secret, args.host, args.port, tls=args.tls, path=args.path)
    announcement = {
        "url": receiver.url,
        "admin_url": receiver.admin_url,
        "cert_file": str(receiver.cert_file) if receiver.cert_file else None,
    }
    return serve_until_signalled(receiver, announcement)


if __name__ == "__main__":
    sys.exit(main())

"""`make demo`: the main job end to end on a running local stack, until every order is closed.

Registers a few hundred orders and places their top-ups through the emulated flow API (registered first: Alicom then
publishes their FlowReports, dropping and duplicating some), registers a few whose process "died" before the flow API
call, seeds a few orders older than 30 days, publishes one poison message, then runs the drainer and the daily sweep
(as FC would run them, with a webhook receiver standing in for the business's endpoint) until every order is
terminal. Prints a reconciliation table; the log lines go to <state dir>/demo.log. Exits 0 when every order is
terminal, the queue is empty, every outbox event reached the webhook, and only the poison message was dead-lettered.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from local.fc.context import Credentials, build_context
from local.fc.functions import FunctionSpec
from local.product_logs import logs_to
from local.stack import read_env
from local.webhook import WebhookReceiver

DEFAULT_ORDERS = 300
CRASHED_ORDERS = 3  # registered, then the process "died" before calling the flow API
OLD_ORDERS = 4  # registered 31+ days ago, never settled: beyond the status query window
POISON_BODY = "this is not a FlowReport"
FAILURE_CODES = [["BALANCE_NOT_ENOUGH", "余额不足"], ["MOBILE_NOT_SUPPORTED", "号码不支持"]]
MAX_ROUNDS = 4  # drain + sweep rounds; resubmitted orders need a second one
GRADE = "100M"


def _admin(url: str, method: str = "GET", payload: object = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read() or b"null")


def _queue_depth(env: dict[str, str]) -> int:
    stats = _admin(env["ALICOM_MNS_ADMIN_URL"] + "/stats")
    return sum(stats["queues"].get(env["ALICOM_QUEUE_NAME"], {}).values())


def _invoke(name: str, timeout: float, env: dict[str, str], event: dict[str, Any]) -> dict[str, Any]:
    """One FC invocation of functions/<name>/index.handler with an FC-shaped context."""
    import importlib

    handler = importlib.import_module(f"functions.{name}.index").handler
    spec = FunctionSpec(
        service="flow-receipts", name=name, handler="index.handler", code_uri=f"functions/{name}", timeout=timeout
    )
    credentials = Credentials(env["ALIBABA_CLOUD_ACCESS_KEY_ID"], env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"], "")
    context = build_context(spec, credentials, account_id=env["FC_ACCOUNT_ID"], region=env["FC_REGION"])
    timer = {
        "triggerTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "triggerName": f"demo-{name}",
        "payload": json.dumps(event),
    }
    return json.loads(handler(json.dumps(timer).encode(), context))


def _place_orders(env: dict[str, str], rng: random.Random, count: int, run_id: str) -> tuple[list[str], Counter]:
    """Registers and charges the orders the way `flow-receipts charge` does: registered first, then placed."""
    from shared.adapters.ledger import Ledger
    from shared.runtime import runtime
    from shared.services.intake import charge

    flow = runtime.flow_api(runtime_credentials(env))
    outcomes: Counter[str] = Counter()
    out_ids = []
    with Ledger(env["LEDGER_URL"]) as ledger:
        for n in range(count):
            out_id = f"demo-{run_id}-{n:04d}"
            outcomes[charge(ledger, flow, out_id, _phone(rng), GRADE).state] += 1
            out_ids.append(out_id)
    return out_ids, outcomes


def runtime_credentials(env: dict[str, str]):
    from shared.adapters.fc import Credentials as Key

    return Key(env["ALIBABA_CLOUD_ACCESS_KEY_ID"], env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"], None)


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"


def run(state_dir: Path, orders_count: int, seed: int) -> int:
    env = read_env(state_dir)
    secret = secrets.token_urlsafe(24)
    reports = (state_dir / "reports").resolve()
    demo_env = {
        **env,
        "WEBHOOK_SECRET": secret,
        "SWEEP_GRACE_SECONDS": "0",  # the demo's orders are seconds old; in production an hour
        "SWEEP_NOT_FOUND_AFTER_SECONDS": "0",
        "REPORT_DIR": str(reports),
        "LOG_LEVEL": "INFO",
    }
    with WebhookReceiver(secret) as receiver:
        os.environ.update({**demo_env, "WEBHOOK_URL": receiver.url})
        logs_to(state_dir / "demo.log")
        return _run(env, state_dir, reports, receiver, orders_count, seed)


def _run(
    env: dict[str, str], state_dir: Path, reports: Path, receiver: WebhookReceiver, orders_count: int, seed: int
) -> int:
    from datetime import datetime, timedelta, timezone

    from shared.adapters.ledger import Ledger
    from shared.adapters.ledger.records import NewOrder

    alicom = env["ALICOM_API_ADMIN_URL"]
    _admin(
        alicom + "/behaviour",
        "PUT",
        {
            "charge_delay_seconds": 0.05,
            "success_rate": 0.85,
            "failure_codes": FAILURE_CODES,
            "drop_rate": 0.04,
            "duplicate_rate": 0.1,
            "seed": seed,
        },
    )
    rng = random.Random(seed)
    run_id = time.strftime("%Y%m%d%H%M%S")
    print(f"placing {orders_count} top-ups (each order registered first) ...", flush=True)
    placed, placing = _place_orders(env, rng, orders_count, run_id)
    with Ledger(env["LEDGER_URL"]) as ledger:
        crashed = [f"demo-{run_id}-crashed-{n}" for n in range(CRASHED_ORDERS)]
        ledger.register_orders([NewOrder(out_id, _phone(rng), GRADE, "charge") for out_id in crashed])
        now = datetime.now(timezone.utc)
        old = [f"demo-{run_id}-old-{n}" for n in range(OLD_ORDERS)]
        ledger.register_orders(
            [NewOrder(o, _phone(rng), GRADE, "charge", now - timedelta(days=31 + n)) for n, o in enumerate(old)]
        )
        for n, out_id in enumerate(old):  # charged back then; the status query no longer knows them
            _admin(alicom + "/charges", "POST", {"out_id": out_id, "days_ago": 31 + n, "status": "SUCCESS"})
        _admin(alicom + "/reports", "POST", {"raw_body": POISON_BODY})
        _admin(alicom + "/idle?timeout=60")
        every = placed + crashed + old
        print(
            f"{len(placed)} placed, {len(crashed)} registered but never placed (a crash), {len(old)} older than "
            "30 days, 1 poison message; draining and sweeping ...",
            flush=True,
        )
        rounds = []
        for number in range(1, MAX_ROUNDS + 1):
            drained = _drain_until_empty(env)
            swept = _invoke("sweep", 900, env, {"job": "sweep"})
            rounds.append((number, drained, swept))
            print(
                f"round {number}: drained {sum(d['received'] for d in drained)} messages, swept "
                f"{swept.get('queried', 0)} orders ({swept['stopped_by']})",
                flush=True,
            )
            if ledger.summary().orders_by_status["PENDING"] == 0:
                break
            _admin(alicom + "/idle?timeout=60")  # resubmitted top-ups complete and report
        events = ledger.outbox_events()
        receiver.wait_for_accepted({event.event_id for event in events}, timeout=30)
        outcome = _summary(env, ledger, every, rounds, receiver, placing, state_dir, reports)
    return outcome


def _drain_until_empty(env: dict[str, str]) -> list[dict[str, Any]]:
    drained = []
    for _ in range(5):
        drained.append(_invoke("drainer", 55, env, {"job": "drain"}))
        if _queue_depth(env) == 0:
            break
    return drained


def _summary(env, ledger, every, rounds, receiver, placing, state_dir: Path, reports: Path) -> int:
    """Prints the reconciliation table and the closing lines; 0 when everything is closed, delivered and drained."""
    from rich.console import Console
    from rich.table import Table

    receipts = ledger.summary().as_dict()["receipts"]
    dead_letters = ledger.summary().dead_letters
    counts = ledger.reconciliation()
    events = ledger.outbox_events()
    delivered = sum(1 for event in events if event.delivered_at is not None)
    accepted = receiver.accepted()
    depth = _queue_depth(env)
    alicom = _admin(env["ALICOM_API_ADMIN_URL"] + "/stats")["reports"]
    open_orders = [out_id for out_id in every if ledger.get_order(out_id).status.value == "PENDING"]
    resolvers = counts.orders_by_resolver

    def joined(values: dict) -> str:
        return ", ".join(f"{name} {value}" for name, value in values.items())

    rows = [
        ("orders", len(every), joined(counts.orders_by_status)),
        ("closed by receipts", resolvers["receipt"], "FlowReports from the Alicom queue"),
        ("closed by the sweep", resolvers["sweep"], "status query answers, for receipts Alicom dropped"),
        ("closed by expiry", resolvers["expiry"], "beyond the status query window (30 days)"),
        ("closed by a rejected charge", resolvers["charge"], "the flow API refused the top-up"),
        ("still open", len(open_orders), ", ".join(open_orders[:5])),
        None,
        ("top-ups placed", placing["placed"], joined(placing)),
        (
            "re-submitted by the sweep",
            sum(swept.get("resubmitted_placed", 0) for _, _, swept in rounds),
            "registered, never placed (a crash): the sweep placed them",
        ),
        (
            "receipts from Alicom",
            alicom["published"],
            f"{alicom['dropped']} dropped, {alicom['duplicated']} duplicated",
        ),
        ("receipts and answers kept", sum(receipts.values()), joined(receipts)),
        ("dead letters", dead_letters, "the poison message, kept with its raw body"),
        ("queue depth now", depth, ""),
        None,
        ("outbox events", len(events), "one per transition"),
        (
            "delivered to the webhook",
            delivered,
            f"{len(accepted)} events received, {sum(accepted.values())} deliveries, "
            f"{receiver.bad_signatures} bad signatures",
        ),
        ("drain + sweep rounds", len(rounds), ""),
    ]
    table = Table(title="flow-receipts demo: reconciliation", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    table.add_column("detail")
    for row in rows:
        if row is None:
            table.add_section()
        else:
            table.add_row(row[0], str(row[1]), row[2])
    Console(width=None if sys.stdout.isatty() else 110).print(table)
    problems = [
        *([f"{len(open_orders)} order(s) still open"] if open_orders else []),
        *([f"{depth} message(s) left in the queue"] if depth else []),
        *([f"{len(events) - delivered} event(s) not delivered"] if delivered != len(events) else []),
        *([f"{dead_letters} dead letters, expected 1"] if dead_letters != 1 else []),
        *([f"{receiver.bad_signatures} bad signature(s)"] if receiver.bad_signatures else []),
    ]
    print("every order is closed and its event delivered" if not problems else "NOT RECONCILED: " + "; ".join(problems))
    print(f"log lines: {(state_dir / 'demo.log').resolve()}")
    print(f"ledger: {Path(ledger.url.database).resolve()}  reports: {reports}")
    return 0 if not problems else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("LOCAL_DIR", ".local")))
    parser.add_argument("--orders", type=int, default=DEFAULT_ORDERS)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    return run(args.state_dir, args.orders, args.seed)


if __name__ == "__main__":
    sys.exit(main())

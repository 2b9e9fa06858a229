"""`make demo`: the main job end to end on a running local stack.

Registers a few hundred orders, charges them through the emulated flow API (Alicom then publishes their
FlowReports, dropping and duplicating some), publishes one poison message, runs the drainer until the queue
is empty, and prints a reconciliation summary. Exits 0 when every published receipt was applied once or
dead-lettered and the queue is empty.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import urllib.request
from pathlib import Path

from local.fc.context import build_context
from local.fc.functions import FunctionSpec
from local.stack import read_env

DEFAULT_ORDERS = 300
POISON_BODY = "this is not a FlowReport"
FAILURE_CODES = [["BALANCE_NOT_ENOUGH", "余额不足"], ["MOBILE_NOT_SUPPORTED", "号码不支持"]]
MAX_DRAIN_RUNS = 10


def _admin(url: str, method: str = "GET", payload: object = None) -> object:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read() or b"null")


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"


def _queue_depth(env: dict[str, str]) -> int:
    stats = _admin(env["ALICOM_MNS_ADMIN_URL"] + "/stats")
    depths = stats["queues"].get(env["ALICOM_QUEUE_NAME"], {})
    return sum(depths.values())


def _charge_everything(env: dict[str, str], orders: list[tuple[str, str]]) -> None:
    from shared.adapters.alicom import acs_client
    from shared.adapters.flow import FlowApi

    client = acs_client(
        env["ALIBABA_CLOUD_ACCESS_KEY_ID"], env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"], None, env["FC_REGION"]
    )
    flow = FlowApi(client, env["FLOW_API_ENDPOINT"])
    for out_id, phone in orders:
        flow.place(out_id, phone, "100")


def _drain_once(spec: FunctionSpec, env: dict[str, str]) -> dict:
    from functions.drainer.index import handler
    from local.fc.context import Credentials

    credentials = Credentials(env["ALIBABA_CLOUD_ACCESS_KEY_ID"], env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"], "")
    context = build_context(spec, credentials, account_id=env["FC_ACCOUNT_ID"], region=env["FC_REGION"])
    event = json.dumps({"triggerTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "payload": "{}"})
    return json.loads(handler(event.encode(), context))


def run(state_dir: Path, orders_count: int, seed: int) -> int:
    env = read_env(state_dir)
    os.environ.update(env)
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # the demo prints its own summary; warnings still show
    from shared.adapters.ledger import Ledger
    from shared.logs import logger

    logger.setLevel(os.environ["LOG_LEVEL"])

    ledger = Ledger(env["LEDGER_URL"])
    ledger.migrate()
    _admin(
        env["ALICOM_API_ADMIN_URL"] + "/behaviour",
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
    orders = [
        (f"demo-{run_id}-{n:04d}", f"1{rng.choice('3578')}{rng.randrange(10**9):09d}") for n in range(orders_count)
    ]
    for out_id, phone in orders:
        ledger.register_order(out_id, phone)
    print(f"registered {len(orders)} orders; charging them through the flow API ...")
    _charge_everything(env, orders)
    _admin(env["ALICOM_API_ADMIN_URL"] + "/reports", "POST", {"raw_body": POISON_BODY})
    _admin(env["ALICOM_API_ADMIN_URL"] + "/idle?timeout=60")
    alicom = _admin(env["ALICOM_API_ADMIN_URL"] + "/stats")

    spec = FunctionSpec(
        service="flow-receipts", name="drainer", handler="index.handler", code_uri="functions/drainer", timeout=55
    )
    drained: list[dict] = []
    for _ in range(MAX_DRAIN_RUNS):
        drained.append(_drain_once(spec, env))
        if _queue_depth(env) == 0:
            break
    depth = _queue_depth(env)
    summary = ledger.summary().as_dict()
    _print_report(alicom, drained, summary, depth)
    return 0 if depth == 0 else 1


def _print_report(alicom: dict, drained: list[dict], ledger: dict, depth: int) -> None:
    reports = alicom.get("reports", alicom)
    print("\n== Alicom side (emulated) ==")
    print(json.dumps(reports, indent=1, ensure_ascii=False))
    print(f"\n== Drainer: {len(drained)} run(s) ==")
    for number, summary in enumerate(drained, 1):
        print(f"run {number}: " + ", ".join(f"{k}={v}" for k, v in summary.items()))
    print("\n== Ledger reconciliation ==")
    print("orders by status:   " + ", ".join(f"{k}={v}" for k, v in ledger["orders"].items()))
    print("receipts by outcome: " + ", ".join(f"{k}={v}" for k, v in ledger["receipts"].items()))
    print(f"dead letters:       {ledger['dead_letters']}")
    print(f"undelivered events: {ledger['undelivered_events']}")
    print(f"queue depth now:    {depth}")
    pending = ledger["orders"].get("PENDING", 0)
    if pending:
        print(
            f"\n{pending} order(s) are still PENDING: Alicom dropped their receipts. The daily sweep (next issue) "
            "asks the status query API about them and closes them."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("LOCAL_DIR", ".local")))
    parser.add_argument("--orders", type=int, default=DEFAULT_ORDERS)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    return run(args.state_dir, args.orders, args.seed)


if __name__ == "__main__":
    sys.exit(main())

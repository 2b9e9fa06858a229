"""`make demo`: the main job end to end on a fresh local stack (.local/demo), until every order is closed.

Proves: exit status 0; every order terminal, closed by receipts, by the sweep (the receipts Alicom dropped) and by
expiry (the orders older than 30 days); the orders registered but never placed re-submitted by the sweep; every
outbox event delivered to the demo's webhook receiver; one dead letter; the queue empty; no log line in the output;
the last line naming the ledger file and the reports folder, both left there; no process of the stack left behind."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from process_support import processes_mentioning

from local.demo import CRASHED_ORDERS, DEFAULT_ORDERS, OLD_ORDERS
from shared.settings import Settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = ".local/demo"  # the Makefile's DEMO_DIR
SETTINGS_VARIABLES = frozenset(field.alias for field in Settings.model_fields.values() if field.alias)


def row(output: str, label: str) -> tuple[int, str]:
    """The count and the detail of one row of the demo's table (│ label │ count │ detail │)."""
    match = re.search(rf"│ {re.escape(label)}\s*│\s*(\d+) │ (.*?)\s*│", output)
    assert match, f"no {label!r} row in the demo output:\n{output}"
    return int(match.group(1)), match.group(2)


def test_make_demo_closes_every_order_tells_the_webhook_and_leaves_no_process_behind() -> None:
    already = processes_mentioning(DEMO_DIR)
    if already:
        pytest.skip(f"another `make demo` is running in this tree (pids {sorted(already)})")
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("ALICOM_", "ALIBABA_CLOUD_", "FC_")) or k in SETTINGS_VARIABLES or k == "LOCAL_DIR")
    }

    result = subprocess.run(["make", "-s", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)

    output = result.stdout
    assert result.returncode == 0, f"{output[-3000:]}\n{result.stderr[-3000:]}"
    total = DEFAULT_ORDERS + CRASHED_ORDERS + OLD_ORDERS
    orders, by_status = row(output, "orders")
    assert orders == total and by_status.startswith("PENDING 0, ")
    by_receipts, by_sweep, by_expiry = (
        row(output, f"closed by {who}")[0] for who in ("receipts", "the sweep", "expiry")
    )
    assert by_receipts + by_sweep + by_expiry + row(output, "closed by a rejected charge")[0] == total
    assert by_sweep > 0 and by_expiry == OLD_ORDERS and row(output, "still open")[0] == 0
    assert row(output, "re-submitted by the sweep")[0] == CRASHED_ORDERS
    dropped = int(re.search(r"(\d+) dropped", row(output, "receipts from Alicom")[1]).group(1))
    assert by_sweep == dropped  # the sweep closed exactly the orders whose receipts Alicom dropped
    assert row(output, "dead letters")[0] == 1 and row(output, "queue depth now")[0] == 0
    events = row(output, "outbox events")[0]
    assert events == total and row(output, "delivered to the webhook")[0] == events
    assert "0 bad signatures" in row(output, "delivered to the webhook")[1]
    assert not any(line.lstrip().startswith("{") for line in output.splitlines())  # no log line interleaved

    last = output.strip().splitlines()[-1]
    match = re.fullmatch(r"ledger: (\S+)  reports: (\S+)", last)
    assert match, last
    ledger_path, reports = Path(match.group(1)), Path(match.group(2))
    with sqlite3.connect(ledger_path) as db:
        assert db.execute("SELECT COUNT(*) FROM orders WHERE status = 'PENDING'").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone() == (0,)
    [report] = sorted(reports.glob("*.json"))[-1:]
    assert json.loads(report.read_text())["orders_by_status"]["PENDING"] == 0
    assert report.with_suffix(".csv").exists()

    assert processes_mentioning(DEMO_DIR) == []
    assert not (REPO / DEMO_DIR / "stack.env").exists()

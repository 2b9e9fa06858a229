"""`make demo`: the main job end to end on a fresh local stack (.local/demo), then the reconciliation summary.

Proves: exit status 0; the summary's sections are there (orders by status, receipts by outcome, dead letters: 1,
queue depth now: 0) and add up (every order accounted for, the orders whose receipts Alicom dropped still
PENDING and named as such, Alicom's duplicates recognised); and no process of the demo's stack is left behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from process_support import processes_mentioning

from shared.settings import Settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = ".local/demo"  # the Makefile's DEMO_DIR
ORDERS = 300  # local/demo.py's default
SETTINGS_VARIABLES = frozenset(field.alias for field in Settings.model_fields.values() if field.alias)


def counts(line: str) -> dict[str, int]:
    """``orders by status:   PENDING=17, SUCCEEDED=239`` -> {"PENDING": 17, "SUCCEEDED": 239}."""
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def section_line(output: str, label: str) -> str:
    match = re.search(rf"^{re.escape(label)}:\s*(.*)$", output, re.MULTILINE)
    assert match, f"no {label!r} line in the demo output:\n{output}"
    return match.group(1)


def test_make_demo_reconciles_and_leaves_no_process_behind() -> None:
    already = processes_mentioning(DEMO_DIR)
    if already:
        pytest.skip(f"another `make demo` is running in this tree (pids {sorted(already)})")
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("ALICOM_", "ALIBABA_CLOUD_", "FC_")) or k in SETTINGS_VARIABLES or k == "LOCAL_DIR")
    }

    result = subprocess.run(["make", "-s", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)

    output = result.stdout
    assert result.returncode == 0, f"{output[-3000:]}\n{result.stderr[-3000:]}"
    assert "== Ledger reconciliation ==" in output
    orders = counts(section_line(output, "orders by status"))
    receipts = counts(section_line(output, "receipts by outcome"))
    assert section_line(output, "dead letters").strip() == "1"  # the one poison message the demo publishes
    assert section_line(output, "queue depth now").strip() == "0"

    statuses = {status: orders[status] for status in ("PENDING", "SUCCEEDED", "FAILED", "EXPIRED")}
    assert sum(statuses.values()) == ORDERS
    assert orders["unregistered"] == 0
    assert receipts["applied"] == statuses["SUCCEEDED"] + statuses["FAILED"]
    assert receipts["conflict"] == receipts["orphan"] == 0

    alicom = json.loads(re.search(r"== Alicom side \(emulated\) ==\n(\{.*?\n\})", output, re.DOTALL).group(1))
    assert statuses["PENDING"] == alicom["dropped"]  # only the orders whose receipts Alicom dropped stay open
    assert receipts["duplicate"] == alicom["duplicated"]
    assert statuses["PENDING"] > 0  # the demo drops about 4% of the receipts (seeded)
    assert f"{statuses['PENDING']} order(s) are still PENDING" in output

    assert processes_mentioning(DEMO_DIR) == []
    assert not (REPO / DEMO_DIR / "stack.env").exists()

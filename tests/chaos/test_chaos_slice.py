"""A fast slice of `make chaos`: the real runner (`python -m local.chaos --quick`) on a few thousand receipts, with
every fault kind of the long run, ends with every invariant holding; and the checker names a broken invariant with a
diff. The long run is `make chaos` (100,000 receipts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local.chaos.invariants import Expected, Observed, check
from local.chaos.plan import make_plan

REPO = Path(__file__).resolve().parents[2]
# seed 19: its quick plan (2 segments: inline, then async) holds every episode kind, a crash between commit and
# delete included; the sweeps are killed at the end.
SLICE = {"receipts": 1000, "seed": 19}
SERVERS = ("postgresql", "mariadb")


def run_chaos(tmp_path: Path, ledger: str) -> tuple[subprocess.CompletedProcess, dict]:
    command = [sys.executable, "-m", "local.chaos", "--quick", "--receipts", str(SLICE["receipts"]),
               "--seed", str(SLICE["seed"]), "--ledger", ledger, "--dir", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=150)
    summary = tmp_path / "summary.json"
    assert summary.exists(), f"no summary; exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done, json.loads(summary.read_text())


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("ledger", ["sqlite", *SERVERS])
def test_a_quick_chaos_run_ends_with_every_invariant_holding(tmp_path, ledger):
    if ledger in SERVERS and os.environ.get("CHAOS_SLICE_SERVERS") != "1":
        pytest.skip("the server ledgers' slices run with CHAOS_SLICE_SERVERS=1 (about 30 s each)")
    started = time.monotonic()
    done, summary = run_chaos(tmp_path, ledger)

    assert done.returncode == 0 and summary["invariants_hold"], done.stdout[-6000:]
    assert summary["problems"] == []
    assert "ALL INVARIANTS HOLD" in done.stdout
    faults = summary["faults"]
    for kind in ("mns_5xx", "mns_dropped_connections", "mns_throttled", "mns_security_token_expired",
                 "tokens_expired_by_hook", "tokens_skewed", "drainer_sigkills", "crashes_between_commit_and_delete",
                 "mns_restarts", "ledger_outages", "webhook_down_episodes", "webhook_requests_not_accepted",
                 "fc_invoke_faults", "fc_retries", "fc_destination_messages", "sweep_sigkills"):  # fmt: skip
        assert faults[kind] > 0, (kind, faults)
    if ledger in SERVERS:
        assert faults["ledger_connections_killed"] > 0, faults
    outcomes = summary["outcomes"]
    assert outcomes["receipts_applied"] > 800 and outcomes["receipts_duplicate"] > 0, outcomes
    assert outcomes["poison_dead_lettered"] > 0 and outcomes["resolved_by_sweep"] > 0, outcomes
    assert outcomes["orders_expired"] > 0 and outcomes["events"] == outcomes["events_accepted_by_webhook"]
    # progress and the summary on stdout; the product's JSON log lines in their file, never interleaved
    assert not [line for line in done.stdout.splitlines() if line.lstrip().startswith("{")]
    logged = (tmp_path / "product.log").read_text()
    assert '"message":"drain finished"' in logged and '"message":"sweep finished"' in logged
    assert time.monotonic() - started < 90


def clean_world() -> tuple[Expected, Observed]:
    """Two reports (one applied, one a duplicate by content), a poison message, an order the sweep answered."""
    expected = Expected(
        reports={"m-1": ("o-1", "3"), "m-2": ("o-1", "3"), "m-3": ("o-2", "4")},
        poison={"m-4"},
        bodies={"m-1": "b1", "m-2": "b2", "m-3": "b3", "m-4": "%%% poison"},
        registered={"o-1", "o-2", "o-3"},
        answered={"o-3": "3"},
    )
    observed = Observed(
        receipts=[
            {"message_id": "m-1", "out_id": "o-1", "result": "3", "outcome": "applied", "source": "receipt"},
            {"message_id": "m-2", "out_id": "o-1", "result": "3", "outcome": "duplicate", "source": "receipt"},
            {"message_id": "m-3", "out_id": "o-2", "result": "4", "outcome": "applied", "source": "receipt"},
            {"message_id": "sweep-1", "out_id": "o-3", "result": "3", "outcome": "applied", "source": "sweep"},
        ],
        orders={
            "o-1": {"status": "SUCCEEDED", "resolved_by": "receipt", "resolved_message_id": "m-1"},
            "o-2": {"status": "FAILED", "resolved_by": "receipt", "resolved_message_id": "m-3"},
            "o-3": {"status": "SUCCEEDED", "resolved_by": "sweep", "resolved_message_id": "sweep-1"},
        },
        dead_letters={"m-4": "%%% poison"},
        events=[
            {"event_id": "e-1", "out_id": "o-1", "kind": "order.succeeded", "delivered": True},
            {"event_id": "e-2", "out_id": "o-2", "kind": "order.failed", "delivered": True},
            {"event_id": "e-3", "out_id": "o-3", "kind": "order.succeeded", "delivered": True},
        ],
        webhook_accepted={"e-1", "e-2", "e-3"},
    )
    return expected, observed


def test_the_checker_passes_a_clean_ledger():
    verdict = check(*clean_world())
    assert verdict.ok, verdict.report()
    assert verdict.figures["receipts_applied"] == 2 and verdict.figures["resolved_by_sweep"] == 1
    assert "BROKEN" not in verdict.report()


def test_a_doubled_receipt_is_reported_with_a_diff():
    expected, observed = clean_world()
    doubled = {"message_id": "m-3", "out_id": "o-2", "result": "4", "outcome": "applied", "source": "receipt"}
    observed.receipts.append(doubled)  # the same report applied twice
    observed.events.append({"event_id": "e-4", "out_id": "o-2", "kind": "order.failed", "delivered": True})
    observed.webhook_accepted.add("e-4")

    verdict = check(expected, observed)

    assert not verdict.ok
    assert set(verdict.by_invariant()) == {"reports", "transitions", "outbox"}
    report = verdict.report()
    assert "BROKEN  every published report is applied exactly once or dead-lettered with its raw body" in report
    assert (
        "  message m-3 (out_id o-2, result 4)\n"
        "  - expected: 1 receipt with that out_id and result, or a dead letter with its raw body\n"
        "  + found:    2 receipt(s): [m-3 o-2 result 4 applied], [m-3 o-2 result 4 applied]"
    ) in report
    assert "  - expected: events ['order.failed']\n  + found:    events ['order.failed', 'order.failed']" in report
    assert "holds   every order is terminal after the sweep" in report


def test_lost_poison_an_open_order_an_undelivered_event_and_a_full_queue_are_each_named():
    expected, observed = clean_world()
    observed.dead_letters["m-4"] = "% poison"  # not the raw body as published
    observed.orders["o-3"]["status"] = "PENDING"
    observed.receipts = [r for r in observed.receipts if r["out_id"] != "o-3"]
    observed.events = [e for e in observed.events if e["out_id"] != "o-3"]
    observed.webhook_accepted.discard("e-2")
    observed.queue_depth, observed.dlq_depth = 3, 1

    verdict = check(expected, observed)

    assert set(verdict.by_invariant()) == {"reports", "transitions", "terminal", "delivered", "queues"}
    report = verdict.report()
    assert "+ found:    dead letter '% poison'" in report
    assert "  order o-3\n  - expected: SUCCEEDED, FAILED or EXPIRED\n  + found:    PENDING" in report
    assert "webhook never accepted it" in report
    assert "  the Alicom queue\n  - expected: 0 messages\n  + found:    3 messages" in report


def test_the_plan_is_reproducible_from_its_seed():
    first, again, other = make_plan(7, 3000), make_plan(7, 3000), make_plan(8, 3000)
    assert first.describe() == again.describe() != other.describe()
    assert [m.body for s in first.segments for m in s.messages] == [m.body for s in again.segments for m in s.messages]
    kinds = {e.kind for s in make_plan(1, 100_000).segments for e in s.episodes}
    assert kinds == {"kill_drainer", "crash_after_commit", "mns_restart", "ledger_outage", "throttle_burst",
                     "webhook_down", "fc_instances_killed"}  # fmt: skip


def test_a_secret_or_an_unmasked_phone_in_the_logs_breaks_the_logs_invariant(tmp_path):
    from local.chaos.world import secrets_in_log

    log = tmp_path / "product.log"
    token = "CAIS" + "x" * 40
    log.write_text(
        '{"message":"queue token fetched","token":"' + token + '"}\n'
        '{"message":"drain finished","phone":"138****8000"}\n'
        '{"message":"oops","phone":"13800138000","key":"sk-123456"}\n'
    )
    leaks = secrets_in_log(log, {"the AccessKey secret": "sk-123456"}, {token}, {"13800138000"})
    assert sorted(leaks) == [
        "an STS AccessKeySecret or SecurityToken in 1 line(s) of product.log",
        "an unmasked phone number in 1 line(s) of product.log",
        "the AccessKey secret in 1 line(s) of product.log",
    ]
    expected, observed = clean_world()
    observed.leaks = leaks
    verdict = check(expected, observed)
    assert set(verdict.by_invariant()) == {"logs"}
    assert "+ found:    the AccessKey secret in 1 line(s) of product.log" in verdict.report()

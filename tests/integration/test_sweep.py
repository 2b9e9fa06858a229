"""The daily sweep against the Alicom emulator's status queries: dropped receipts compensated, NOT_FOUND re-submitted
or failed, orders past 30 days expired, one sweep at a time, stopping at the deadline and resuming, a sweep killed
mid-page, status API faults, the report files, and a dry run that changes nothing."""

from __future__ import annotations

import csv
import json
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from pipeline_support import pipeline_world
from sweep_support import ago, charge, queries, statuses, sweep_config, sweeper

from shared.adapters.ledger.records import NewOrder
from shared.domain.orders import Outcome, Source, Status
from shared.domain.sweep import NotFoundRule

ROOT = Path(__file__).resolve().parents[2]
PHONE = "13800138000"


@pytest.fixture
def world(tmp_path):
    with pipeline_world(tmp_path) as world:
        yield world


# ---- compensation --------------------------------------------------------------------------------------


def test_orders_whose_receipts_were_dropped_are_closed_by_the_sweep_with_one_event_each(world, tmp_path):
    out_ids = [f"drop-{n:03d}" for n in range(30)]
    world.alicom.set_behaviour(success_rate=0.7, seed=5)
    charge(world, out_ids)

    result = sweeper(world, sweep_config(page_size=7, report_dir=tmp_path / "reports")).run(time.monotonic() + 30)

    assert result.stopped_by == "finished" and not result.resumed
    closed = statuses(world, out_ids)
    assert closed["PENDING"] == 0 and closed["SUCCEEDED"] + closed["FAILED"] == 30 and closed["FAILED"] > 0
    for out_id in out_ids:
        order = world.ledger.get_order(out_id)
        assert order.resolved_by is Source.SWEEP
        [event] = world.ledger.outbox_events(out_id)
        assert event.payload["resolved_by"] == "sweep" and event.payload["status"] == order.status.value
        [answer] = world.ledger.receipts_for(out_id)
        assert answer.source is Source.SWEEP and json.loads(answer.raw_body)["ChargeDetail"]["OutId"] == out_id
    assert result.counts["resolved_succeeded"] + result.counts["resolved_failed"] == 30
    assert result.counts["queried"] == 30 and queries(world) == Counter({out_id: 1 for out_id in out_ids})
    again = sweeper(world).run(time.monotonic() + 30)
    assert again.stopped_by == "finished" and again.counts["queried"] == 0


def test_failed_answers_keep_the_providers_code(world):
    world.alicom.set_behaviour(success_rate=0.0, failure_codes=[["E_QUOTA", "余额不足"]])
    charge(world, ["fail-1"])

    sweeper(world).run(time.monotonic() + 30)

    order = world.ledger.get_order("fail-1")
    assert (order.status, order.err_code, order.err_msg) == (Status.FAILED, "E_QUOTA", "余额不足")


def test_orders_still_processing_stay_pending_with_the_reason(world):
    world.alicom.set_behaviour(charge_delay_seconds=300)
    world.ledger.register_order("slow-1", PHONE, ago(hours=2), product="100M", flow_api="charge")
    world.runtime.flow_api(world.credentials).place("slow-1", PHONE, "100M")

    result = sweeper(world).run(time.monotonic() + 30)

    order = world.ledger.get_order("slow-1")
    assert order.status is Status.PENDING and result.counts["still_pending"] == 1
    assert (order.last_query_answer, order.last_query_note) == (
        "STILL_PENDING", "the provider is still processing the top-up",
    )  # fmt: skip


def test_orders_younger_than_the_grace_period_are_left_to_their_receipts(world):
    charge(world, ["young-1"], hours_ago=0)
    charge(world, ["old-enough-1"], hours_ago=2)

    result = sweeper(world, sweep_config(grace=timedelta(hours=1))).run(time.monotonic() + 30)

    assert result.counts["queried"] == 1 and queries(world) == Counter({"old-enough-1": 1})
    assert world.ledger.get_order("young-1").status is Status.PENDING


# ---- NOT_FOUND and expiry ------------------------------------------------------------------------------


def test_an_order_registered_but_never_submitted_is_submitted_by_the_sweep_and_then_closed(world):
    world.alicom.set_behaviour(drop_rate=1.0, success_rate=1.0)
    world.ledger.register_order("crashed-1", PHONE, ago(hours=2), product="100M", flow_api="charge")  # then died

    first = sweeper(world).run(time.monotonic() + 30)

    assert first.counts["resubmitted_placed"] == 1
    order = world.ledger.get_order("crashed-1")
    assert order.status is Status.PENDING and order.charge_attempts == 1 and order.charge_id
    assert world.alicom.charge("crashed-1")["status"] in ("PROCESSING", "SUCCESS")
    assert world.alicom.wait_idle(10)
    later = sweeper(world, sweep_config(not_found=NotFoundRule(believe_after=timedelta(0)))).run(time.monotonic() + 30)
    assert later.counts["resolved_succeeded"] == 1
    assert world.ledger.get_order("crashed-1").status is Status.SUCCEEDED


def test_not_found_twice_after_submitting_fails_the_order_with_not_found(world):
    world.ledger.register_order("ghost-1", PHONE, ago(hours=2), product="100M", flow_api="charge")
    world.alicom.set_faults({"operations": {"Charge": {"drop_connection": 1.0}}})  # the re-submissions never arrive

    for _ in range(3):
        sweeper(world).run(time.monotonic() + 30)

    order = world.ledger.get_order("ghost-1")
    assert (order.status, order.err_code, order.charge_attempts) == (Status.FAILED, "NOT_FOUND", 2)
    assert order.resolved_by is Source.SWEEP and "already submitted 2 times" in order.err_msg
    assert [event.kind for event in world.ledger.outbox_events("ghost-1")] == ["order.failed"]


def test_not_found_for_an_order_the_business_placed_itself_fails_it_or_waits_by_policy(world):
    world.ledger.register_order("theirs-1", PHONE, ago(hours=2))
    world.ledger.register_order("theirs-2", PHONE, ago(hours=2))

    waiting = sweep_config(not_found=NotFoundRule("wait", believe_after=timedelta(0)))
    sweeper(world, waiting).run(time.monotonic() + 30)
    assert statuses(world, ["theirs-1", "theirs-2"]) == Counter({"PENDING": 2})

    sweeper(world, sweep_config(not_found=NotFoundRule("fail", believe_after=timedelta(0)))).run(time.monotonic() + 30)
    assert statuses(world, ["theirs-1", "theirs-2"]) == Counter({"FAILED": 2})
    assert world.alicom.charge("theirs-1") is None  # never charged by the sweep


def test_orders_past_the_30_day_window_are_expired_with_the_reason_and_an_event(world):
    world.ledger.register_orders([NewOrder(f"old-{n}", PHONE, submitted_at=ago(days=31 + n)) for n in range(3)])
    world.ledger.register_order("recent", PHONE, ago(days=29), product="100M", flow_api="charge")
    world.alicom.seed_charge("recent", days_ago=29, status="SUCCESS")

    result = sweeper(world).run(time.monotonic() + 30)

    assert result.counts["expired"] == 3 and result.counts["queried"] == 1
    for n in range(3):
        order = world.ledger.get_order(f"old-{n}")
        assert (order.status, order.resolved_by, order.err_msg) == (
            Status.EXPIRED, Source.EXPIRY, "beyond the status query window",
        )  # fmt: skip
        assert [event.kind for event in world.ledger.outbox_events(f"old-{n}")] == ["order.expired"]
    assert world.ledger.get_order("recent").status is Status.SUCCEEDED
    assert "old-0" not in queries(world)  # never asked: the provider would not know it


# ---- one sweep at a time, deadlines, resuming ----------------------------------------------------------


def test_a_sweep_stops_at_its_deadline_and_the_next_run_resumes_where_it_stopped(world):
    out_ids = [f"later-{n:02d}" for n in range(40)]
    charge(world, out_ids)
    world.alicom.set_faults({"operations": {"QueryChargeDetail": {"latency_ms": 25}}})

    first = sweeper(world, sweep_config(qps=40, concurrency=1, page_size=10)).run(time.monotonic() + 0.6)

    assert first.stopped_by == "deadline" and 0 < first.counts["queried"] < 40
    state = world.ledger.sweep_state()
    assert state.holder is None and state.cycle_id == first.cycle_id and state.phase == "query"
    second = sweeper(world).run(time.monotonic() + 30)
    assert (second.stopped_by, second.resumed, second.cycle_id) == ("finished", True, first.cycle_id)
    assert second.counts["queried"] == 40  # the cycle's counts, over both runs
    assert queries(world) == Counter({out_id: 1 for out_id in out_ids})
    assert world.ledger.sweep_state().cycle_id is None and world.ledger.sweep_state().last_finished_at


# ---- the status API misbehaving ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["throttle", "internal_error", "unavailable", "drop_connection"])
def test_status_api_faults_are_retried_within_the_run(world, fault: str):
    out_ids = [f"flaky-{n:02d}" for n in range(12)]
    charge(world, out_ids)
    world.alicom.set_faults({"seed": 3, "operations": {"QueryChargeDetail": {fault: 0.4}}})

    result = sweeper(world).run(time.monotonic() + 60)

    assert result.stopped_by == "finished" and statuses(world, out_ids) == Counter({"SUCCEEDED": 12})
    assert world.alicom.stats()["actions"]["QueryChargeDetail"]["faults"][fault] > 0


def test_a_status_api_that_keeps_failing_leaves_the_orders_pending_with_the_error(world):
    charge(world, ["down-1", "down-2"])
    world.alicom.set_faults({"operations": {"QueryChargeDetail": {"unavailable": 1.0}}})

    result = sweeper(world).run(time.monotonic() + 2)

    assert result.counts["query_errors"] == 2 and statuses(world, ["down-1", "down-2"]) == Counter({"PENDING": 2})
    order = world.ledger.get_order("down-1")
    assert order.last_query_answer == "ERROR" and "ServiceUnavailable" in order.last_query_note


def test_timeouts_are_retried_and_do_not_hold_the_sweep_past_its_deadline(world):
    charge(world, ["slow-answer-1"])
    world.alicom.set_faults({"operations": {"QueryChargeDetail": {"latency_ms": 1500}}})

    started = time.monotonic()
    result = sweeper(world, read_timeout=0.3).run(time.monotonic() + 1.2)

    assert time.monotonic() - started < 3
    assert result.counts["query_errors"] == 1 and world.ledger.get_order("slow-answer-1").status is Status.PENDING


@pytest.mark.parametrize("fault", ["unknown_status", "garbled"])
def test_answers_the_sweep_does_not_understand_never_close_an_order(world, fault: str):
    charge(world, ["odd-1"])
    world.alicom.set_faults({"operations": {"QueryChargeDetail": {fault: 1.0}}})

    result = sweeper(world).run(time.monotonic() + 30)

    order = world.ledger.get_order("odd-1")
    assert order.status is Status.PENDING and result.counts["still_pending"] == 1
    assert order.last_query_note.startswith("unrecognised answer")


# ---- report and dry run --------------------------------------------------------------------------------


def test_the_report_counts_by_status_and_resolver_and_lists_open_orders_with_why(world, tmp_path):
    world.alicom.set_behaviour(success_rate=1.0)
    charge(world, ["rep-1", "rep-2"])
    world.ledger.register_order("rep-expired", PHONE, ago(days=40))
    world.ledger.register_order("rep-young", PHONE, ago(minutes=1))
    world.alicom.set_behaviour(charge_delay_seconds=300)
    world.ledger.register_order("rep-slow", PHONE, ago(hours=3), product="100M", flow_api="charge")
    world.runtime.flow_api(world.credentials).place("rep-slow", PHONE, "100M")

    result = sweeper(world, sweep_config(grace=timedelta(minutes=30), report_dir=tmp_path / "r")).run(
        time.monotonic() + 30
    )

    json_path, csv_path = (Path(path) for path in result.reports)
    report = json.loads(json_path.read_text())
    assert report["orders_by_status"] == {"PENDING": 2, "SUCCEEDED": 2, "FAILED": 0, "EXPIRED": 1}
    assert report["orders_by_resolver"]["sweep"] == 2 and report["orders_by_resolver"]["expiry"] == 1
    assert report["sweep"]["queried"] == 3 and report["unresolved_total"] == 2
    why = {row["out_id"]: row["why"] for row in report["unresolved"]}
    assert why == {
        "rep-slow": "the provider is still processing the top-up",
        "rep-young": "younger than the sweep's grace period: waiting for its receipt",
    }
    with csv_path.open(newline="") as rows:
        listed = list(csv.DictReader(rows))
    assert [row["out_id"] for row in listed] == ["rep-slow", "rep-young"] and listed[0]["phone"] == "138****8000"


def test_a_dry_run_asks_and_tells_but_changes_nothing(world):
    charge(world, ["dry-1", "dry-2"])
    world.ledger.register_order("dry-ghost", PHONE, ago(hours=2), product="100M", flow_api="charge")
    world.ledger.register_order("dry-old", PHONE, ago(days=31))

    result = sweeper(world).run(time.monotonic() + 30, dry_run=True)

    assert result.counts["would_resolve_succeeded"] + result.counts["would_resolve_failed"] == 2
    assert (result.counts["would_resubmit"], result.counts["would_expire"]) == (1, 1)
    assert statuses(world, ["dry-1", "dry-2", "dry-ghost", "dry-old"]) == Counter({"PENDING": 4})
    assert world.alicom.charge("dry-ghost") is None and world.ledger.sweep_state() is None
    assert world.ledger.get_order("dry-1").last_query_at is None


def test_a_receipt_arriving_with_the_sweeps_answer_changes_the_order_once(world):
    world.alicom.set_behaviour(success_rate=1.0)
    charge(world, ["both-1"], drop=False)  # its receipt is in the queue too
    world.alicom.set_faults({"operations": {"QueryChargeDetail": {"latency_ms": 50}}})
    sweep = threading.Thread(target=lambda: sweeper(world).run(time.monotonic() + 30))
    sweep.start()
    world.drain_until_empty()
    sweep.join()

    order = world.ledger.get_order("both-1")
    assert order.status is Status.SUCCEEDED and len(world.ledger.outbox_events("both-1")) == 1
    outcomes = sorted(receipt.outcome.value for receipt in world.ledger.receipts_for("both-1"))
    assert outcomes in (["applied", "duplicate"], ["applied"]) and Outcome.APPLIED.value in outcomes

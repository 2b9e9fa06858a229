"""Good reports in awkward shapes and orders, through the whole drain: unknown extra fields, arrays, duplicates by
message id and by content, a result contradicting a closed order, an out_id nobody registered. Each published
report ends applied once (one outbox event per transition) and every other delivery is recorded for what it is."""

from __future__ import annotations

import json
import logging
import time

import pytest

from shared.domain.models import Envelope
from shared.domain.orders import Outcome, Status
from shared.services.pipeline import apply_message

PHONE = "13800138000"


def flow_report(out_id: str, result: str = "3", **extra: object) -> dict:
    return {"phone": PHONE, "out_id": out_id, "result": result, "err_code": "", "err_msg": "", **extra}


def outcomes(world, out_id: str) -> list[Outcome]:
    return sorted((r.outcome for r in world.ledger.receipts_for(out_id)), key=lambda o: o.value)


def test_unknown_extra_fields_are_applied_and_kept_in_the_raw_body(make_world):
    world = make_world()
    world.world.register("extra-1")
    extras = {"biz_id": "B-77", "extend": {"channel": "promo", "n": [1, 2]}, "sign_name": "阿里云通信"}
    message_id = world.publish(flow_report("extra-1", "4", err_code="E-1", err_msg="quota", **extras))

    summary = world.drain()

    assert summary.counts["applied"] == 1 and summary.counts["deleted"] == 1, summary.as_dict()
    (receipt,) = world.ledger.receipts_for("extra-1")
    assert receipt.message_id == message_id and receipt.outcome is Outcome.APPLIED
    kept = json.loads(receipt.raw_body)
    assert {name: kept[name] for name in extras} == extras
    order = world.ledger.get_order("extra-1")
    assert (order.status, order.err_code, order.err_msg) == (Status.FAILED, "E-1", "quota")
    assert [event.kind for event in world.ledger.outbox_events("extra-1")] == ["order.failed"]
    assert world.ledger.summary().dead_letters == 0


def test_lenient_values_and_arrays_are_applied(make_world):
    """Numbers for result / out_id / phone, null error fields, a JSON array carrying several reports."""
    world = make_world()
    for out_id in ("1001", "arr-1", "arr-2", "arr-3"):
        world.world.register(out_id)
    world.publish({"phone": 13800138000, "out_id": 1001, "result": 4, "err_code": None, "err_msg": None})
    array_id = world.publish([flow_report("arr-1"), flow_report("arr-2", "4"), flow_report("arr-3")])

    summary = world.drain()

    assert summary.counts["applied"] == 4 and summary.counts["deleted"] == 2, summary.as_dict()
    assert world.ledger.get_order("1001").status is Status.FAILED
    statuses = [world.ledger.get_order(f"arr-{n}").status for n in (1, 2, 3)]
    assert statuses == [Status.SUCCEEDED, Status.FAILED, Status.SUCCEEDED]
    assert [r.message_id for n in (1, 2, 3) for r in world.ledger.receipts_for(f"arr-{n}")] == [
        f"{array_id}#{n}" for n in (0, 1, 2)
    ]
    assert world.queue_depth() == 0


@pytest.mark.slow
def test_a_redelivered_message_is_applied_once(make_world):
    """Duplicate by message id: the delete fails, the message comes back after the visibility timeout."""
    world = make_world(visibility=2, DRAIN_POLLERS="1")
    world.world.register("redeliver-1")
    message_id = world.publish(flow_report("redeliver-1"))
    world.mns.set_faults({"operations": {"BatchDeleteMessage": {"internal_error": 1.0}}})

    first = world.drain(3)

    assert first.counts["applied"] == 1 and first.counts["deleted"] == 0, first.as_dict()
    assert first.counts["delete_failed"] == 1
    assert world.queue_depth() == 1
    world.mns.set_faults({})
    time.sleep(2.2)
    later = world.drain_until_empty()

    totals = world.totals(later)
    assert totals["duplicate"] == 1 and totals["applied"] == 0 and totals["deleted"] == 1, totals
    (receipt,) = world.ledger.receipts_for("redeliver-1")
    assert (receipt.message_id, receipt.outcome, receipt.dequeue_count) == (message_id, Outcome.APPLIED, 1)
    assert len(world.ledger.outbox_events("redeliver-1")) == 1
    assert world.ledger.get_order("redeliver-1").resolved_message_id == message_id
    assert world.queue_depth() == 0


def test_the_same_envelope_applied_twice_is_one_receipt_and_one_event(make_world):
    """Duplicate by message id without MNS: FC retrying the processor with the same event, arrays included."""
    world = make_world()
    world.world.register("twice-1")
    world.world.register("twice-2")
    single = Envelope(message_id="M-TWICE", body=world.encode(flow_report("twice-1")))
    array = Envelope(message_id="M-ARRAY", body=world.encode([flow_report("twice-2", "4"), flow_report("orph-9")]))

    assert apply_message(world.ledger, single).outcomes == ("applied",)
    assert apply_message(world.ledger, single).outcomes == ("duplicate",)
    assert apply_message(world.ledger, array).outcomes == ("applied", "orphan")
    assert apply_message(world.ledger, array).outcomes == ("duplicate", "duplicate")

    for out_id in ("twice-1", "twice-2", "orph-9"):
        assert len(world.ledger.receipts_for(out_id)) == 1, out_id
        assert len(world.ledger.outbox_events(out_id)) == 1, out_id


def test_duplicates_by_content_are_recorded_not_applied(make_world):
    """The same report under new message ids (Alicom resends): one applied, the others duplicates, one event."""
    world = make_world()
    world.world.register("same-1")
    ids = [world.publish(flow_report("same-1")) for _ in range(3)]
    ids += [world.publish(flow_report("orphan-same", "4")) for _ in range(2)]

    summary = world.drain()

    counts = summary.as_dict()
    assert (counts["applied"], counts["orphans"], counts["duplicates"], counts["deleted"]) == (1, 1, 3, 5), counts
    assert outcomes(world, "same-1") == [Outcome.APPLIED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert outcomes(world, "orphan-same") == [Outcome.DUPLICATE, Outcome.ORPHAN]
    assert {r.message_id for r in world.ledger.receipts_for("same-1")} == set(ids[:3])
    assert len(world.ledger.outbox_events("same-1")) == 1
    assert len(world.ledger.outbox_events("orphan-same")) == 1
    assert world.ledger.get_order("same-1").status is Status.SUCCEEDED
    assert world.queue_depth() == 0


def test_a_result_contradicting_a_closed_order_is_a_conflict(make_world, caplog):
    world = make_world()
    world.world.register("closed-1")
    first = world.publish(flow_report("closed-1", "3"))
    world.drain()
    second = world.publish(flow_report("closed-1", "4", err_code="LATE", err_msg="too late"))
    world.publish(flow_report("closed-orphan", "4"))
    world.drain()
    third = world.publish(flow_report("closed-orphan", "3"))

    summary = world.drain()

    assert summary.counts["conflict"] == 1 and summary.counts["deleted"] == 1, summary.as_dict()
    order = world.ledger.get_order("closed-1")
    assert (order.status, order.err_code, order.resolved_message_id) == (Status.SUCCEEDED, None, first)
    by_id = {r.message_id: r.outcome for r in world.ledger.receipts_for("closed-1")}
    assert by_id == {first: Outcome.APPLIED, second: Outcome.CONFLICT}
    assert [e.kind for e in world.ledger.outbox_events("closed-1")] == ["order.succeeded"]
    assert world.ledger.get_order("closed-orphan").status is Status.FAILED
    assert {r.message_id: r.outcome for r in world.ledger.receipts_for("closed-orphan")}[third] is Outcome.CONFLICT
    assert [e.kind for e in world.ledger.outbox_events("closed-orphan")] == ["order.failed"]
    # logged for humans once per batch, with the out_ids as an extra (never one line per receipt)
    warned = [r for r in caplog.records if "contradict a terminal order" in r.getMessage()]
    assert {out_id for r in warned for out_id in r.out_ids} == {"closed-1", "closed-orphan"}
    assert all(r.levelno == logging.WARNING for r in warned)


def test_a_queue_of_orphans_is_logged_in_few_lines_that_name_every_out_id(make_world, caplog):
    world = make_world()
    out_ids = {f"stranger-{n:03d}" for n in range(120)}
    for out_id in sorted(out_ids):
        world.publish(flow_report(out_id, "3"))

    summary = world.drain()

    assert summary.counts["orphan"] == len(out_ids), summary.as_dict()
    warned = [r for r in caplog.records if "reports for unregistered out_ids" in r.getMessage()]
    batches = summary.counts["received"] / 16
    assert 1 <= len(warned) <= min(batches, 3)  # at most one line per batch; here the first batch's, then the rest
    assert [out_id for r in warned for out_id in r.out_ids] and {o for r in warned for o in r.out_ids} == out_ids
    assert sum(r.count for r in warned) == len(out_ids)


def test_an_unknown_out_id_is_kept_as_an_unregistered_order(make_world):
    world = make_world()
    message_id = world.publish(flow_report("never-registered", "4", err_code="CARRIER", err_msg="busy"))

    summary = world.drain()

    assert summary.counts["orphan"] == 1 and summary.counts["applied"] == 0, summary.as_dict()
    order = world.ledger.get_order("never-registered")
    assert (order.status, order.registered, order.submitted_at) == (Status.FAILED, False, None)
    assert (order.err_code, order.err_msg, order.resolved_message_id) == ("CARRIER", "busy", message_id)
    (receipt,) = world.ledger.receipts_for("never-registered")
    assert receipt.outcome is Outcome.ORPHAN
    (event,) = world.ledger.outbox_events("never-registered")
    assert event.kind == "order.failed" and event.payload["registered"] is False
    assert world.ledger.summary().unregistered_orders == 1


def test_each_drain_returns_and_logs_one_summary(make_world, log_lines):
    world = make_world()
    world.world.register("sum-1")
    world.world.register("sum-2")
    world.publish(flow_report("sum-1"))
    world.publish(flow_report("sum-1"))
    world.publish(flow_report("sum-2", "3"))
    world.drain()
    world.publish(flow_report("sum-2", "4"))
    world.publish(flow_report("sum-unknown"))
    world.publish_text("?")

    summary = world.drain()

    (line,) = [line for line in log_lines() if line["message"] == "drain finished"][1:]
    expected = {
        "received": 3,
        "applied": 0,
        "duplicates": 0,
        "conflicts": 1,
        "orphans": 1,
        "dead_lettered": 1,
        "deleted": 3,
        "left_for_retry": 0,
        "stopped_by": ["empty"],
    }
    assert {name: line[name] for name in expected} == expected
    assert {name: summary.as_dict()[name] for name in expected} == expected
    assert isinstance(line["seconds"], float) and 0 <= line["seconds"] < 10

"""Notifications during a drain (DISPATCH_MODE=inline), against the emulated Alibaba side and the local webhook: each
new event is delivered once right after its commit; a dead, slow or hanging sink never blocks or fails the drain —
it finishes in bounded time, deletes what it applied, and leaves the events in the outbox, where redelivery delivers
them once the sink is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import notify_hooks
import pytest
from webhook_support import webhook_receiver, webhook_settings

from local.webhook import WebhookReceiver
from shared.adapters.ledger import Ledger
from shared.adapters.ledger.records import utc_now
from shared.services.outbox import redeliver


@pytest.fixture
def receiver(pytestconfig: pytest.Config) -> Iterator[WebhookReceiver]:
    with webhook_receiver(pytestconfig) as running:
        yield running


@pytest.fixture
def hooks() -> Iterator[None]:
    notify_hooks.reset()
    yield
    notify_hooks.release.set()


def report(out_id: str, result: str = "3") -> dict:
    return {"phone": "13800138000", "out_id": out_id, "result": result, "err_code": "", "err_msg": ""}


def publish_orders(world, prefix: str, count: int) -> list[str]:
    out_ids = [f"{prefix}-{n}" for n in range(count)]
    for out_id in out_ids:
        world.world.register(out_id)
        world.publish(report(out_id))
    return out_ids


def redeliver_after_backoff(world, notifier) -> dict[str, int]:
    """What the sweep does a while later (every backoff has passed)."""
    with Ledger(world.ledger.url, clock=lambda: utc_now() + timedelta(hours=2)) as later:
        return redeliver(later, notifier, time.monotonic() + 10)


def event_ids(world, out_ids: list[str]) -> set[str]:
    return {event.event_id for out_id in out_ids for event in world.ledger.outbox_events(out_id)}


def test_a_drain_delivers_each_new_event_once_right_after_its_commit(make_world, receiver, log_lines) -> None:
    world = make_world(**webhook_settings(receiver))
    out_ids = publish_orders(world, "ok", 20)
    world.publish(report("ok-0"))  # a duplicate receipt: no second event

    summary = world.drain()

    counts = summary.as_dict()
    assert (counts["applied"], counts["duplicates"], counts["deleted"]) == (20, 1, 21)
    assert (counts["events"], counts["delivered"], counts["undelivered"]) == (20, 20, 0)
    ids = event_ids(world, out_ids)
    assert receiver.accepted() == dict.fromkeys(ids, 1)
    assert all(event.delivered_at is not None for event in world.ledger.outbox_events())
    (line,) = [line for line in log_lines() if line["message"] == "drain finished"]
    assert (line["events"], line["delivered"], line["undelivered"]) == (20, 20, 0)
    for delivery in receiver.deliveries():
        assert delivery.signature_valid and delivery.event["phone"] == "13800138000"


def test_a_drain_with_a_dead_webhook_finishes_and_redelivery_catches_up(make_world, receiver, log_lines) -> None:
    world = make_world(**webhook_settings(receiver))
    out_ids = publish_orders(world, "dead", 24)
    receiver.refuse_connections()

    started = time.monotonic()
    summary = world.drain()
    took = time.monotonic() - started

    counts = summary.as_dict()
    assert (counts["applied"], counts["deleted"], counts["left_for_retry"]) == (24, 24, 0)  # nothing lost, no retry
    assert (counts["events"], counts["delivered"], counts["undelivered"]) == (24, 0, 24)
    assert world.queue_depth() == 0
    assert took < 8  # loose sanity bound (NOTIFY_BUDGET_SECONDS=3)
    assert all(event.delivered_at is None for event in world.ledger.outbox_events())
    warnings = [line for line in log_lines() if line["message"] == "events left for redelivery"]
    assert len(warnings) == 1 and "Connection refused" in warnings[0]["error"]

    receiver.accept_connections()
    notifier = world.world.runtime.notifier
    again = redeliver_after_backoff(world, notifier)

    assert again["delivered"] == 24
    assert receiver.accepted() == dict.fromkeys(event_ids(world, out_ids), 1)
    assert all(event.delivered_at is not None for event in world.ledger.outbox_events())


def test_the_next_drain_delivers_what_an_earlier_one_left_behind(make_world, receiver) -> None:
    world = make_world(**webhook_settings(receiver, NOTIFY_RETRY_SECONDS="0"))
    left_behind = publish_orders(world, "earlier", 12)
    receiver.refuse_connections()
    assert world.drain().as_dict()["undelivered"] == 12
    receiver.accept_connections()
    new = publish_orders(world, "later", 3)

    counts = world.drain().as_dict()

    assert (counts["events"], counts["delivered"], counts["redelivered"]) == (3, 3, 12)
    assert receiver.accepted() == dict.fromkeys(event_ids(world, left_behind + new), 1)
    assert world.ledger.due_events() == []


def test_a_slow_webhook_never_holds_up_the_drain(make_world, receiver) -> None:
    world = make_world(**webhook_settings(receiver, NOTIFY_BUDGET_SECONDS="1"))
    out_ids = publish_orders(world, "slow", 16)
    receiver.misbehave(latency_ms=4000)  # far beyond WEBHOOK_TIMEOUT_SECONDS=0.5

    started = time.monotonic()
    summary = world.drain()
    took = time.monotonic() - started

    counts = summary.as_dict()
    assert (counts["applied"], counts["deleted"]) == (16, 16)
    assert counts["delivered"] == 0 and counts["undelivered"] == 16
    assert took < 6  # loose sanity bound: 16 events x 0.5 s would be 8 s one at a time
    attempted = [event for event in world.ledger.outbox_events() if event.attempts]
    assert all(event.delivered_at is None and "no answer within" in event.last_error for event in attempted)

    receiver.behave()
    again = redeliver_after_backoff(world, world.world.runtime.notifier)

    assert again["delivered"] == 16
    assert set(receiver.accepted()) == event_ids(world, out_ids)  # some twice: the slow webhook processed them late


def test_a_hanging_hook_never_holds_up_the_drain(make_world, hooks) -> None:
    world = make_world(NOTIFY_HOOK="notify_hooks:hang", NOTIFY_HOOK_TIMEOUT_SECONDS="0.5", NOTIFY_BUDGET_SECONDS="2")
    publish_orders(world, "hang", 10)

    started = time.monotonic()
    summary = world.drain()

    counts = summary.as_dict()
    assert (counts["applied"], counts["deleted"], counts["delivered"], counts["undelivered"]) == (10, 10, 0, 10)
    assert time.monotonic() - started < 6  # loose sanity bound
    assert len(notify_hooks.received) == 1  # the hung call was the only one started

    notify_hooks.release.set()
    deadline = time.monotonic() + 5
    notifier = world.world.runtime.notifier
    while notifier.sinks[0].hung and time.monotonic() < deadline:
        time.sleep(0.01)
    assert redeliver_after_backoff(world, notifier)["delivered"] == 10


def test_a_raising_hook_keeps_every_event_for_redelivery(make_world, hooks) -> None:
    world = make_world(NOTIFY_HOOK="notify_hooks:explode", NOTIFY_BUDGET_SECONDS="2")
    publish_orders(world, "boom", 5)

    counts = world.drain().as_dict()

    assert (counts["applied"], counts["deleted"], counts["delivered"], counts["undelivered"]) == (5, 5, 0, 5)
    assert all(
        event.attempts == 1 and event.last_error.startswith("hook: raised RuntimeError")
        for event in world.ledger.outbox_events()
    )


def test_a_drain_without_sinks_leaves_its_events_in_the_outbox(make_world) -> None:
    world = make_world()
    publish_orders(world, "quiet", 5)

    counts = world.drain().as_dict()

    assert (counts["events"], counts["delivered"], counts["undelivered"]) == (5, 0, 5)
    assert len(world.ledger.due_events()) == 5


def test_a_zero_notify_budget_leaves_every_event_to_redelivery(make_world, receiver) -> None:
    world = make_world(**webhook_settings(receiver, NOTIFY_BUDGET_SECONDS="0"))
    publish_orders(world, "later", 4)

    counts = world.drain().as_dict()

    assert (counts["applied"], counts["events"], counts["delivered"], counts["undelivered"]) == (4, 4, 0, 4)
    assert receiver.deliveries() == []
    assert redeliver(world.ledger, world.world.runtime.notifier, time.monotonic() + 5)["delivered"] == 4

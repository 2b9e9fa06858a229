"""Outbox delivery (shared/services/outbox.py) on a real SQLite ledger and the local webhook: right after the commit
(bounded by a deadline, never raising), in the background (the drainer's), and by redelivery. Every webhook fault
leaves the event in the outbox — attempt counted, error kept, never marked delivered — and redelivery delivers it
once the webhook is back; a rejected event waits for a human."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from webhook_support import WEBHOOK_SECRET, webhook_receiver

from local.webhook import WebhookReceiver
from shared.adapters.ledger import Ledger, ReportToApply
from shared.adapters.ledger.records import utc_now
from shared.adapters.notify import Notifier, WebhookSink
from shared.errors import TransientError
from shared.services.outbox import (
    DELIVERY_WORKERS,
    GIVE_UP_AFTER_FAILURES,
    BackgroundDeliverer,
    deliver_now,
    redeliver,
)

TIMEOUT = 0.5
RETRY_AFTER = timedelta(seconds=60)
UNREACHABLE_LEDGER = "postgresql+psycopg://flow@127.0.0.1:9/flow_receipts"  # nothing listens on port 9: refused


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as opened:
        opened.migrate()
        yield opened


@pytest.fixture
def receiver(pytestconfig: pytest.Config) -> Iterator[WebhookReceiver]:
    with webhook_receiver(pytestconfig) as running:
        yield running


@pytest.fixture
def notifier(receiver: WebhookReceiver) -> Iterator[Notifier]:
    built = Notifier([WebhookSink(receiver.url, WEBHOOK_SECRET, TIMEOUT)], retry_after=RETRY_AFTER)
    yield built
    built.close()


def commit_events(ledger: Ledger, count: int, prefix: str = "order") -> list[dict]:
    """Orders registered, then their receipts applied: one committed outbox event each (the payloads)."""
    events = []
    for n in range(count):
        out_id = f"{prefix}-{n}"
        ledger.register_order(out_id, "13800138000")
        result = ledger.apply_report(
            ReportToApply(
                message_id=f"M-{out_id}", message_type="FlowReport", out_id=out_id, phone="13800138000", result="3"
            )
        )
        assert result.event is not None
        events.append(result.event)
    return events


def later(ledger: Ledger, by: timedelta) -> Ledger:
    """The same ledger seen from `by` in the future (past every backoff)."""
    return Ledger(ledger.url, clock=lambda: utc_now() + by)


def stored(ledger: Ledger, events: list[dict]):
    by_id = {e.event_id: e for e in ledger.outbox_events()}
    return [by_id[event["event_id"]] for event in events]


def test_events_delivered_right_after_their_commit_are_marked_in_the_outbox(ledger, receiver, notifier) -> None:
    events = commit_events(ledger, 5)

    counts = deliver_now(ledger, notifier, events, time.monotonic() + 5)

    assert counts.as_dict() == {"delivered": 5, "failed": 0, "rejected": 0, "unsent": 0, "unrecorded": 0}
    assert receiver.accepted() == {event["event_id"]: 1 for event in events}
    for row in stored(ledger, events):
        assert row.delivered_at is not None and row.attempts == 1 and row.last_error is None
    assert ledger.due_events() == []


FAULTS = {
    "refused": ({}, "Connection refused"),
    "connection closed": ({"down": "close"}, "connection dropped"),
    "slow": ({"latency_ms": 2000}, "no answer within 0.5 s"),
    "500": ({"status": 500}, "HTTP 500"),
    "503": ({"status": 503}, "HTTP 503"),
    "408": ({"status": 408}, "HTTP 408"),
    "429": ({"status": 429}, "HTTP 429"),
    "redirect": ({"status": 302, "location": "http://127.0.0.1:9/elsewhere"}, "HTTP 302 redirect"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_webhook_fault_keeps_the_event_and_redelivery_delivers_it_once_the_webhook_is_back(
    ledger: Ledger, receiver: WebhookReceiver, notifier: Notifier, fault: str
) -> None:
    settings, says = FAULTS[fault]
    (event,) = commit_events(ledger, 1)
    if fault == "refused":
        receiver.refuse_connections()
    else:
        receiver.misbehave(**settings)

    counts = deliver_now(ledger, notifier, [event], time.monotonic() + 5)

    (row,) = stored(ledger, [event])
    assert counts.failed == 1 and counts.delivered == 0
    assert row.delivered_at is None and row.rejected_at is None and row.attempts == 1
    assert says in (row.last_error or "")
    assert row.next_attempt_at is not None and row.next_attempt_at > utc_now() + timedelta(seconds=50)
    assert ledger.due_events() == []  # not hammered again before its backoff

    receiver.accept_connections()
    receiver.behave()
    with later(ledger, timedelta(minutes=2)) as after_backoff:
        again = redeliver(after_backoff, notifier, time.monotonic() + 5)

    assert again["delivered"] == 1 and again["failed"] == 0
    (row,) = stored(ledger, [event])
    assert row.delivered_at is not None and row.attempts == 2 and row.last_error is None
    assert receiver.accepted()[event["event_id"]] >= 1  # a slow webhook may have processed the first one too


def test_the_backoff_doubles_per_failed_attempt(ledger, receiver, notifier) -> None:
    (event,) = commit_events(ledger, 1)
    receiver.misbehave(status=500)
    deliver_now(ledger, notifier, [event], time.monotonic() + 5)

    with later(ledger, timedelta(minutes=2)) as after_first:
        started = after_first._clock()
        assert redeliver(after_first, notifier, time.monotonic() + 5)["failed"] == 1
        (row,) = stored(ledger, [event])

    assert row.attempts == 2
    assert timedelta(seconds=110) < row.next_attempt_at - started <= timedelta(seconds=121)


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_rejected_event_is_kept_for_a_human_and_not_redelivered(ledger, receiver, notifier, status) -> None:
    (event,) = commit_events(ledger, 1)
    receiver.misbehave(status=status)

    counts = deliver_now(ledger, notifier, [event], time.monotonic() + 5)

    (row,) = stored(ledger, [event])
    assert counts.rejected == 1
    assert row.rejected_at is not None and row.delivered_at is None
    assert row.last_error.startswith(f"webhook: HTTP {status}")
    receiver.behave()
    with later(ledger, timedelta(days=1)) as much_later:
        assert redeliver(much_later, notifier, time.monotonic() + 5)["pages"] == 0

    assert ledger.retry_rejected_events([event["event_id"]]) == 1  # the human fixed the webhook
    assert redeliver(ledger, notifier, time.monotonic() + 5)["delivered"] == 1
    assert stored(ledger, [event])[0].delivered_at is not None


def test_a_self_signed_webhook_certificate_keeps_the_event_for_redelivery(pytestconfig, ledger) -> None:
    (event,) = commit_events(ledger, 1)
    with webhook_receiver(pytestconfig, tls=True) as https:
        untrusting = Notifier([WebhookSink(https.url, WEBHOOK_SECRET, TIMEOUT)])

        counts = deliver_now(ledger, untrusting, [event], time.monotonic() + 5)

        (row,) = stored(ledger, [event])
        assert counts.failed == 1 and row.delivered_at is None and "certificate verify failed" in row.last_error
        assert https.deliveries() == []
        untrusting.close()


def test_delivery_right_after_commit_stops_at_its_deadline(ledger, receiver) -> None:
    events = commit_events(ledger, 6)
    receiver.misbehave(latency_ms=3000)
    patient = Notifier([WebhookSink(receiver.url, WEBHOOK_SECRET, 10.0)])

    started = time.monotonic()
    counts = deliver_now(ledger, patient, events, time.monotonic() + 0.6)

    assert time.monotonic() - started < 2.5  # loose sanity bound: the deadline, not the 10 s timeout
    assert counts.delivered == 0 and counts.undelivered == 6
    assert all(row.delivered_at is None for row in stored(ledger, events))
    patient.close()


def test_delivery_right_after_commit_never_raises_when_the_ledger_cannot_record(receiver, notifier) -> None:
    with Ledger(UNREACHABLE_LEDGER) as unusable:
        counts = deliver_now(unusable, notifier, [{"event_id": "evt-lost-record"}], time.monotonic() + 5)

    assert counts.unrecorded == 1 and counts.delivered == 0  # sent, so it will be sent again: consumers dedupe
    assert receiver.accepted() == {"evt-lost-record": 1}


def test_without_a_notifier_events_just_stay_in_the_outbox(ledger) -> None:
    events = commit_events(ledger, 2)

    counts = deliver_now(ledger, None, events, time.monotonic() + 5)

    assert counts.unsent == 2
    assert [e.event_id for e in ledger.due_events()] == [e["event_id"] for e in events]
    assert redeliver(ledger, None, time.monotonic() + 5)["pages"] == 0


def test_redelivery_pages_through_every_due_event_once(ledger, receiver, notifier) -> None:
    events = commit_events(ledger, 25)

    counts = redeliver(ledger, notifier, time.monotonic() + 10, batch=10)

    assert counts["delivered"] == 25 and counts["pages"] == 3 and counts["deadline_reached"] == 0
    assert receiver.accepted() == {event["event_id"]: 1 for event in events}
    assert redeliver(ledger, notifier, time.monotonic() + 10)["pages"] == 0


def test_redelivery_stops_before_its_deadline_and_leaves_the_rest_due(ledger, receiver) -> None:
    events = commit_events(ledger, 30)
    receiver.misbehave(latency_ms=400)
    notifier = Notifier([WebhookSink(receiver.url, WEBHOOK_SECRET, 2.0)])

    started = time.monotonic()
    counts = redeliver(ledger, notifier, time.monotonic() + 1.0, batch=10)

    assert time.monotonic() - started < 3.0  # loose sanity bound
    assert counts["deadline_reached"] == 1 and 0 < counts["delivered"] < 30
    assert len(ledger.due_events(100)) == 30 - counts["delivered"]  # unsent ones are due again at once
    assert all(row.attempts <= 1 for row in stored(ledger, events))
    notifier.close()


def test_redelivery_gives_up_on_a_webhook_that_is_down_after_one_page(ledger, receiver, notifier) -> None:
    commit_events(ledger, 60)
    receiver.refuse_connections()

    counts = redeliver(ledger, notifier, time.monotonic() + 10, batch=25)

    assert (counts["pages"], counts["failed"], counts["gave_up"], counts["delivered"]) == (1, 25, 1, 0)
    assert len(ledger.due_events(100)) == 35  # never tried: the next run starts with them


def test_redelivery_goes_on_past_a_page_of_rejections(ledger, receiver, notifier) -> None:
    commit_events(ledger, 30)
    receiver.misbehave(status=422, times=25)

    counts = redeliver(ledger, notifier, time.monotonic() + 10, batch=25)

    assert (counts["rejected"], counts["delivered"], counts["gave_up"]) == (25, 5, 0)


def test_redelivery_raises_when_the_ledger_is_unavailable(notifier) -> None:
    with Ledger(UNREACHABLE_LEDGER) as unusable, pytest.raises(TransientError, match="ledger database unavailable"):
        redeliver(unusable, notifier, time.monotonic() + 5)


def test_the_background_deliverer_delivers_while_the_caller_goes_on(ledger, receiver, notifier) -> None:
    events = commit_events(ledger, 40)
    deliverer = BackgroundDeliverer(ledger, notifier, record_batch=15)

    started = time.monotonic()
    for n in range(0, 40, 8):
        deliverer.submit(events[n : n + 8])
    handed_over = time.monotonic() - started
    counts = deliverer.close(5.0)

    assert handed_over < 0.5  # loose sanity bound: submitting never waits for the webhook
    assert counts.delivered == 40 and counts.undelivered == 0
    assert receiver.accepted() == {event["event_id"]: 1 for event in events}
    assert all(row.delivered_at is not None for row in stored(ledger, events))


def test_a_slow_webhook_gets_several_events_in_flight_at_once(ledger, receiver, notifier) -> None:
    events = commit_events(ledger, 128)
    receiver.misbehave(latency_ms=30)
    deliverer = BackgroundDeliverer(ledger, notifier)

    for n in range(0, 128, 16):  # as a drain hands over its batches
        deliverer.submit(events[n : n + 16])
        time.sleep(0.02)
    counts = deliverer.close(20.0)

    assert counts.delivered == 128
    assert 2 <= receiver.stats()["max_in_flight"] <= DELIVERY_WORKERS


def test_the_background_deliverer_closes_within_its_timeout_and_keeps_the_rest(ledger, receiver) -> None:
    events = commit_events(ledger, 12)
    receiver.misbehave(latency_ms=3000)
    notifier = Notifier([WebhookSink(receiver.url, WEBHOOK_SECRET, 5.0)])
    deliverer = BackgroundDeliverer(ledger, notifier)
    deliverer.submit(events)

    started = time.monotonic()
    counts = deliverer.close(0.5)

    assert time.monotonic() - started < 2.0  # loose sanity bound: the close timeout, not the webhook's 5 s
    assert counts.delivered == 0 and counts.undelivered == 12
    assert all(row.delivered_at is None for row in stored(ledger, events))
    assert len(ledger.due_events(100)) == 12 - counts.failed  # the rest were never answered: due again at once
    deliverer.submit(commit_events(ledger, 1, prefix="after-close"))  # ignored: stays in the outbox
    assert len(ledger.due_events(100)) == 13 - counts.failed
    notifier.close()


def test_the_background_deliverer_stops_hammering_a_dead_webhook(ledger, receiver, notifier) -> None:
    events = commit_events(ledger, 60)
    receiver.refuse_connections()
    deliverer = BackgroundDeliverer(ledger, notifier)

    deliverer.submit(events)
    counts = deliverer.close(5.0)

    assert counts.delivered == 0 and counts.undelivered == 60
    assert GIVE_UP_AFTER_FAILURES <= counts.failed < GIVE_UP_AFTER_FAILURES + 8  # workers in flight when it gave up
    assert counts.unsent == 60 - counts.failed
    attempted = [row for row in stored(ledger, events) if row.attempts]
    assert len(attempted) == counts.failed and all("Connection refused" in row.last_error for row in attempted)


def test_a_redelivery_racing_a_late_delivery_records_the_event_once(ledger, receiver, notifier) -> None:
    (event,) = commit_events(ledger, 1)

    deliver_now(ledger, notifier, [event], time.monotonic() + 5)
    counts = deliver_now(ledger, notifier, [event], time.monotonic() + 5)  # e.g. the sweep sent it meanwhile

    assert counts.delivered == 1
    (row,) = stored(ledger, [event])
    assert row.attempts == 1 and isinstance(row.delivered_at, datetime)

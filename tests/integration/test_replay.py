"""Dead letters replayed after a fix (shared.services.replay): through the processor's logic again, marked replayed
once applied and never applied twice; one still poison stays, with the reason it fails now."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters.ledger import Ledger
from shared.domain.models import Envelope
from shared.domain.orders import Status
from shared.services.pipeline import apply_message
from shared.services.replay import PAGE, Replayed, replay_dead_letters

PHONE = "13800138000"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as opened:
        opened.migrate()
        yield opened


def body(out_id: str, result: str = "3") -> str:
    report = {"phone": PHONE, "out_id": out_id, "result": result, "err_code": "", "err_msg": ""}
    return base64.b64encode(json.dumps(report).encode()).decode()


def dead_letter_a_good_message(ledger: Ledger, message_id: str, out_id: str) -> None:
    """What the drainer does when the ledger kept failing for a valid message: dead-letter it after N deliveries."""
    ledger.register_order(out_id, PHONE)
    ledger.record_dead_letter(message_id, "FlowReport", body(out_id), "ledger unavailable (5 deliveries)", 5)


def test_a_replayed_dead_letter_is_applied_once_and_marked(ledger: Ledger) -> None:
    dead_letter_a_good_message(ledger, "m-1", "o-1")

    (result,) = replay_dead_letters(ledger)

    assert result == Replayed("m-1", "replayed", ("applied",))
    order = ledger.get_order("o-1")
    assert (order.status, order.resolved_message_id) == (Status.SUCCEEDED, "m-1")
    (receipt,) = ledger.receipts_for("o-1")
    assert (receipt.message_id, receipt.dequeue_count) == ("m-1", 5)
    assert ledger.get_dead_letter("m-1").replayed_at is not None
    assert replay_dead_letters(ledger) == []
    assert replay_dead_letters(ledger, ["m-1"]) == [Replayed("m-1", "already_replayed")]
    assert len(ledger.receipts_for("o-1")) == 1 and len(ledger.outbox_events("o-1")) == 1


def test_a_replay_interrupted_before_marking_applies_nothing_twice(ledger: Ledger) -> None:
    dead_letter_a_good_message(ledger, "m-1", "o-1")
    record = ledger.get_dead_letter("m-1")
    envelope = Envelope(message_id="m-1", body=record.raw_body, dequeue_count=record.dequeue_count)
    apply_message(ledger, envelope)  # applied, then the replay died before marking it

    assert replay_dead_letters(ledger) == [Replayed("m-1", "replayed", ("duplicate",))]
    assert len(ledger.outbox_events("o-1")) == 1


def test_a_dead_letter_still_poison_stays_with_its_reason(ledger: Ledger) -> None:
    ledger.record_dead_letter("m-bad", "FlowReport", "not base64 at all!", "body is not valid base64", 1)
    dead_letter_a_good_message(ledger, "m-good", "o-1")

    results = {result.message_id: result for result in replay_dead_letters(ledger)}

    assert results["m-good"].state == "replayed"
    assert results["m-bad"].state == "still_poison"
    assert results["m-bad"].reason.startswith("body is not valid base64: character '!'")
    assert ledger.get_dead_letter("m-bad").replayed_at is None
    assert [record.message_id for record in ledger.dead_letters()] == ["m-bad"]
    assert ledger.summary().dead_letters == 2  # kept, both


def test_replaying_every_dead_letter_gets_past_a_page_of_poison(ledger: Ledger) -> None:
    for n in range(PAGE + 5):
        ledger.record_dead_letter(f"poison-{n:03d}", "FlowReport", "garbage!", "body is not valid base64", 1)
    dead_letter_a_good_message(ledger, "m-good", "o-1")

    results = replay_dead_letters(ledger)

    assert len(results) == PAGE + 6
    assert [r.message_id for r in results if r.state == "replayed"] == ["m-good"]


def test_an_unknown_message_id_is_not_found(ledger: Ledger) -> None:
    assert replay_dead_letters(ledger, ["nope", "nope"]) == [Replayed("nope", "not_found")]

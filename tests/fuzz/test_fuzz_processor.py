"""The processor (one message per invocation, ``process_event``) on generated events, against a SQLite ledger.

Properties, for every event: no exception escapes (a TransientError would be one: SQLite in a temp dir never has
a reason to raise it); an event that is not an envelope is dead-lettered under the invocation's fallback id with the
event text kept; otherwise the message is either dead-lettered with its raw body, its dequeue count and a one-line
reason, or every report in it is recorded as a receipt; a valid report is never dead-lettered and a poison one never
applied; delivering the same event again changes nothing (duplicates, one dead letter)."""

from __future__ import annotations

import base64
import json

import pytest
from fuzz_strategies import POISON, VALID, Event, events, fresh_id
from fuzz_support import check_reason, fuzz, stored
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.domain.models import Envelope
from shared.domain.orders import Outcome
from shared.services.pipeline import process_event, report_message_id

OUTCOMES = {outcome.value for outcome in Outcome}


def _check_one(ledger, event: Event) -> None:
    fallback = fresh_id("invalid-event")
    try:
        envelope = Envelope.model_validate_json(event.data)
    except ValidationError:
        envelope = None

    outcome = process_event(ledger, event.data, fallback)

    if envelope is None:
        assert outcome.dead_lettered, (event, outcome)
        assert outcome.message_id == fallback
        letter = ledger.get_dead_letter(fallback)
        assert letter is not None and letter.message_type == "unknown"
        assert letter.raw_body == stored(event.data.decode("utf-8", "replace"))
        assert outcome.reason.startswith("event is not a message envelope")
        check_reason(letter.reason)
        return
    expect = POISON if event.damaged == "body" else event.message.expect
    assert outcome.message_id == envelope.message_id
    if outcome.dead_lettered:
        assert expect != VALID, (event, outcome.reason)
        letter = ledger.get_dead_letter(envelope.message_id)
        assert letter is not None, outcome
        assert letter.raw_body == stored(envelope.body)  # the body exactly as it came off the queue
        assert letter.reason == outcome.reason
        assert letter.dequeue_count == envelope.dequeue_count
        check_reason(letter.reason)
    else:
        assert expect != POISON, (event, outcome)
        assert ledger.get_dead_letter(envelope.message_id) is None
        assert outcome.outcomes and set(outcome.outcomes) <= OUTCOMES
        if expect == VALID:
            assert len(outcome.outcomes) == event.message.reports
        count = len(outcome.outcomes)
        for index, out_id in enumerate(outcome.out_ids):
            receipt_id = report_message_id(envelope, index, count)
            assert receipt_id in {receipt.message_id for receipt in ledger.receipts_for(out_id)}, (receipt_id, out_id)
            assert ledger.get_order(out_id).status.is_terminal  # a receipt always leaves its order terminal

    again = process_event(ledger, event.data, fallback)  # FC retried the invocation, or MNS redelivered
    if outcome.dead_lettered:
        assert again.dead_lettered and again.reason == outcome.reason
    else:
        assert again.outcomes == (Outcome.DUPLICATE.value,) * len(outcome.outcomes)
        assert again.events == ()


@fuzz(800)
@given(st.lists(events(), min_size=1, max_size=4))
def test_every_event_is_applied_or_dead_lettered_once(ledger, batch):
    for event in batch:
        _check_one(ledger, event)


def _event(body_text: str, **fields: object) -> bytes:
    body = base64.b64encode(body_text.encode("utf-8")).decode("ascii")
    return json.dumps({"message_id": fresh_id("regression"), "body": body, **fields}).encode()


# Events fuzzing found that crashed process_event (so FC retried them forever) instead of dead-lettering them.
REGRESSIONS = {
    # OverflowError: Python int too large to convert to SQLite INTEGER (the dead letter's dequeue_count)
    "dequeue-count-beyond-integer": (_event("{}", dequeue_count=10**23), "dequeue_count"),
    # UnicodeEncodeError: 'utf-8' codec can't encode character '\ud800' (SQLite, writing the order)
    "lone-surrogate-out-id": (_event('{"phone":"1","out_id":"\\ud800","result":"3"}'), "lone UTF-16 surrogate"),
    # PydanticSerializationError: a report of an array could not be written as JSON
    "lone-surrogate-in-array": (
        _event('[{"phone":"1","out_id":"a","result":"3","x":"\\ud800"},{"phone":"1","out_id":"b","result":"3"}]'),
        "lone UTF-16 surrogate",
    ),
    # ValueError: Exceeds the limit (4300 digits) for integer string conversion
    "int-too-long": (_event('{"phone":"1","out_id":' + "9" * 5000 + ',"result":"3"}'), "not JSON this receiver"),
    # dead-lettered under a message id longer than the dead_letters column (MySQL and PostgreSQL refuse it)
    "message-id-too-long": (json.dumps({"message_id": "M" * 200, "body": "e30="}).encode(), "message_id"),
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_fuzzing_regressions_are_dead_lettered(ledger, case):
    event, fragment = REGRESSIONS[case]
    fallback = fresh_id("invalid-event")

    outcome = process_event(ledger, event, fallback)

    assert outcome.dead_lettered and fragment in outcome.reason, outcome
    letter = ledger.get_dead_letter(outcome.message_id)
    assert letter is not None and letter.reason == outcome.reason
    assert len(letter.message_id) <= 128

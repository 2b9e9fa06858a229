"""The drainer's inline batch path on generated batches of up to 16 messages, valid and poison mixed: the batch is
planned (``BatchPlan.of``: every message validated, a dead letter for each poison one), applied in ONE ledger
transaction (``Ledger.apply_batch``) and accounted for (``BatchPlan.outcomes``), exactly as ``Drainer._apply_batch``
does between its receive and its delete. There is no in-memory MNS queue in the repository, so receive and delete are
left to the reliability tests (tests/reliability/test_bad_input.py drains the same kinds of bodies through the real
SDK and the MNS emulator).

Properties: nothing raises; no message is lost (every receipt handle of the batch is safe to delete: applied or
dead-lettered, never left over on a healthy ledger); the counts add up (one per report, one per dead letter); every
poison message has its dead letter with the raw body; the batch path gives each message the outcomes one-at-a-time
processing (``apply_message``) gives it, and leaves the ledger in the same state; a redelivered batch is all
duplicates and writes nothing new."""

from __future__ import annotations

import base64

import pytest
from fuzz_strategies import POISON, VALID, Message, batches
from fuzz_support import check_reason, fuzz, stored
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.ledger import Ledger
from shared.adapters.queue import Received
from shared.domain.models import Envelope
from shared.services.drain import BATCH_SIZE, BatchPlan
from shared.services.pipeline import DEAD_LETTERED, apply_message

MAX_DEQUEUE_COUNT = 5


@pytest.fixture
def one_at_a_time(tmp_path):
    with Ledger(f"sqlite:///{tmp_path / 'one-at-a-time.sqlite3'}") as opened:
        opened.migrate()
        yield opened


def _received(message: Message, index: int) -> Received:
    envelope = Envelope(message_id=message.message_id, body=message.body, dequeue_count=message.dequeue_count)
    return Received(envelope=envelope, receipt_handle=f"8-{message.message_id}-{index}")


def _apply(ledger: Ledger, batch: list[Received]):
    plan = BatchPlan.of(batch)
    applied = ledger.apply_batch(plan.reports, plan.letters)
    return plan, applied, plan.outcomes(applied, MAX_DEQUEUE_COUNT)


BATCHES = st.tuples(batches(BATCH_SIZE), st.lists(st.integers(min_value=1, max_value=MAX_DEQUEUE_COUNT + 1)))


@fuzz(300)
@given(BATCHES)
def test_a_batch_is_applied_or_dead_lettered_whole(ledger, one_at_a_time, drawn):
    messages, dequeue_counts = drawn
    for message, dequeue_count in zip(messages, dequeue_counts, strict=False):
        message.dequeue_count = dequeue_count
    batch = [_received(message, index) for index, message in enumerate(messages)]

    plan, applied, done = _apply(ledger, batch)

    # nothing lost: every message may be deleted, nothing is left for retry on a healthy ledger
    assert done.left == 0 and not done.given_up, done
    assert sorted(done.handled) == sorted(received.receipt_handle for received in batch)
    # the counts add up: one per report written, one per dead letter
    assert sum(done.counts.values()) == len(plan.reports) + len(plan.letters)
    assert done.counts[DEAD_LETTERED] == len(plan.letters) == len(done.letters)
    by_id = {message.message_id: message for message in messages}
    for span, received in zip(plan.spans, batch, strict=True):
        message = by_id[received.envelope.message_id]
        if isinstance(span, str):  # poison: dead-lettered with its raw body, its dequeue count, a reason
            assert message.expect != VALID, (message, span)
            letter = ledger.get_dead_letter(message.message_id)
            assert letter is not None and letter.raw_body == stored(message.body)
            assert letter.dequeue_count == message.dequeue_count and letter.reason == span
            check_reason(span)
        else:
            assert message.expect != POISON, message
            if message.expect == VALID:
                assert span.stop - span.start == message.reports

    # the same messages one at a time (the processor's path) come to the same outcomes and the same ledger
    for received, span in zip(batch, plan.spans, strict=True):
        alone = apply_message(one_at_a_time, received.envelope)
        if isinstance(span, str):
            assert alone.outcomes == (DEAD_LETTERED,) and alone.reason == span
        else:
            batched = tuple(result.outcome.value for result in applied.reports[span])
            assert alone.outcomes == batched, (received, alone, batched)
    out_ids = {report.out_id for report in plan.reports}
    for out_id in out_ids:
        batched, alone = ledger.get_order(out_id), one_at_a_time.get_order(out_id)
        assert (batched.status, batched.err_code, batched.registered) == (
            alone.status,
            alone.err_code,
            alone.registered,
        )
        assert len(ledger.outbox_events(out_id)) == len(one_at_a_time.outbox_events(out_id))

    # MNS redelivers the whole batch (the delete was lost): duplicates only, nothing new written
    events_before = len(ledger.outbox_events())
    _, _, again = _apply(ledger, batch)
    assert sorted(again.handled) == sorted(done.handled) and again.left == 0
    assert set(again.counts) <= {"duplicate", DEAD_LETTERED}
    assert again.events == [] and len(ledger.outbox_events()) == events_before


def test_a_lone_surrogate_no_longer_fails_its_whole_batch(ledger):
    """Found by fuzzing: a report whose out_id escaped a lone surrogate reached the batch INSERT, which raised
    UnicodeEncodeError (not a TransientError): the poller died and the whole batch, good reports too, came back
    forever. Now that message is poison and the rest of the batch is applied."""
    good = Message(base64.b64encode(b'{"phone":"1","out_id":"batch-good","result":"3"}').decode(), VALID, 1)
    poison = Message(base64.b64encode(b'{"phone":"1","out_id":"\\ud800","result":"3"}').decode(), POISON)
    batch = [_received(good, 0), _received(poison, 1)]

    _, _, done = _apply(ledger, batch)

    assert done.counts == {"orphan": 1, DEAD_LETTERED: 1} and len(done.handled) == 2
    assert "lone UTF-16 surrogate" in ledger.get_dead_letter(poison.message_id).reason

"""Bad input through the whole drain (real MNS SDK against the emulator, SQLite ledger): a body that can never be a
FlowReport is dead-lettered with the body exactly as it came off the queue, a reason naming what was wrong and
its dequeue count, then deleted; a good report in the same batch is applied all the same."""

from __future__ import annotations

import base64
import json

import pytest

from shared.domain.models import MAX_BODY_BYTES, Envelope
from shared.domain.orders import Outcome, Status
from shared.services.pipeline import DEAD_LETTERED, apply_message

PHONE = "13800138000"


def b64(data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def report(out_id: object = "bad-1", result: object = "3", **fields: object) -> str:
    return json.dumps({"phone": PHONE, "out_id": out_id, "result": result, **fields}, separators=(",", ":"))


def without(name: str) -> str:
    data = {"phone": PHONE, "out_id": "bad-1", "result": "3", "err_code": "", "err_msg": ""}
    del data[name]
    return json.dumps(data)


# body text as stored in MNS -> a fragment the dead letter's reason must contain
POISON = {
    "base64-bad-character": ("this is not base64!", "not valid base64"),
    "base64-bad-length": ("eyJwaG9uZSI", "not valid base64: its length 11"),
    "base64-bad-padding": ("eyJh=Jw==", "not valid base64"),
    "blank": ("   \n  ", "body is empty"),
    "not-utf8": (b64(b'{"phone":"138","out_id":"\xff\xfe","result":"3"}'), "not UTF-8"),
    "not-json": (b64("hello, world"), "not JSON"),
    "truncated-json": (b64('{"phone":"13800138000","out_id":"bad-1","result":'), "not JSON"),
    "nan": (b64('{"phone":"13800138000","out_id":"bad-1","result":NaN}'), "NaN is not a JSON value"),
    "json-string": (b64('"a FlowReport"'), "not a FlowReport"),
    "json-number": (b64("3"), "not a FlowReport"),
    "json-object-not-a-report": (b64('{"biz_id":"1","status":"DELIVERED"}'), "not a FlowReport"),
    "empty-array": (b64("[]"), "empty JSON array"),
    "array-of-strings": (b64('["x"]'), "report 1 of 1"),
    "missing-out-id": (b64(without("out_id")), "out_id is missing"),
    "missing-phone": (b64(without("phone")), "phone is missing"),
    "missing-result": (b64(without("result")), "result is missing"),
    "result-5": (b64(report(result="5")), 'result must be "3" (success) or "4" (failure)'),
    "result-number-2": (b64(report(result=2)), 'result must be "3"'),
    "result-boolean": (b64(report(result=True)), 'result must be "3"'),
    "result-null": (b64(report(result=None)), 'result must be "3"'),
    "out-id-boolean": (b64(report(out_id=True)), "out_id must be a string or a number, got a boolean (true)"),
    "out-id-empty": (b64(report(out_id=" ")), "out_id is empty"),
    "out-id-oversized": (b64(report(out_id="x" * 200)), "out_id is longer than 128 characters"),
    "phone-oversized": (b64(report(out_id="bad-1").replace(PHONE, "1" * 40)), "phone is longer than 32"),
    "duplicate-key": (b64('{"phone":"1","out_id":"bad-1","out_id":"bad-2","result":"3"}'), "appears twice"),
    "array-one-bad": (b64(f"[{report(out_id='bad-1')},{report(out_id='bad-2', result='7')}]"), "report 2 of 2"),
}


@pytest.mark.parametrize("case", sorted(POISON))
def test_poison_is_dead_lettered_with_its_raw_body_and_deleted(make_world, case):
    body, fragment = POISON[case]
    world = make_world()
    world.world.register("bad-1")
    world.world.register("good-1")
    good = world.publish({"phone": PHONE, "out_id": "good-1", "result": "3", "err_code": "", "err_msg": ""})
    poison = world.publish_text(body)

    summary = world.drain()

    letter = world.ledger.get_dead_letter(poison)
    assert letter is not None, summary.as_dict()
    assert letter.raw_body == body  # exactly the MNS body text, not decoded, not re-encoded
    assert fragment in letter.reason
    assert PHONE not in letter.reason and "\n" not in letter.reason
    assert letter.dequeue_count == 1
    assert letter.message_type == "FlowReport"
    counts = summary.as_dict()
    assert (counts["received"], counts["dead_lettered"], counts["applied"], counts["deleted"]) == (2, 1, 1, 2)
    assert counts["left_for_retry"] == 0
    assert world.queue_depth() == 0
    # the good report of the same batch was applied; the poison changed nothing
    assert world.ledger.get_dead_letter(good) is None
    assert world.ledger.get_order("good-1").status is Status.SUCCEEDED
    assert world.ledger.get_order("bad-1").status is Status.PENDING
    assert world.ledger.receipts_for("bad-1") == []
    assert world.ledger.outbox_events("bad-1") == []
    assert world.ledger.summary().dead_letters == 1


def test_base64_cases_are_really_not_base64():
    """Guards the table above: the 'bad base64' bodies must fail for the reason they are there for."""
    for case in ("base64-bad-length", "base64-bad-padding"):
        with pytest.raises(ValueError):
            base64.b64decode(POISON[case][0], validate=True)


@pytest.fixture
def ledger(make_world):
    return make_world().ledger


def test_oversized_body_is_dead_lettered_whole(ledger):
    """MNS refuses bodies over 64 KB, so such a body can only come as an envelope (the processor's event): it is
    dead-lettered with all of it kept."""
    body = b64(report(filler="y" * MAX_BODY_BYTES))
    assert len(body) > MAX_BODY_BYTES
    outcome = apply_message(ledger, Envelope(message_id="M-OVERSIZED", body=body, dequeue_count=3))
    assert outcome.outcomes == (DEAD_LETTERED,)
    letter = ledger.get_dead_letter("M-OVERSIZED")
    assert letter.raw_body == body
    assert f"larger than {MAX_BODY_BYTES} bytes" in letter.reason
    assert letter.dequeue_count == 3


def test_the_largest_body_mns_carries_is_applied(make_world):
    """A report padded with an unknown field to exactly 64 KB of base64 (MNS's limit) is not 'oversized'."""
    world = make_world()
    world.world.register("big-1")
    head = report(out_id="big-1", filler="")
    text = head[:-2] + "z" * (MAX_BODY_BYTES // 4 * 3 - len(head)) + head[-2:]
    body = b64(text)
    assert len(body) == MAX_BODY_BYTES
    message_id = world.publish_text(body)

    summary = world.drain()

    assert summary.counts["applied"] == 1, summary.as_dict()
    (receipt,) = world.ledger.receipts_for("big-1")
    assert receipt.message_id == message_id and receipt.outcome is Outcome.APPLIED
    assert json.loads(receipt.raw_body)["filler"] == "z" * (MAX_BODY_BYTES // 4 * 3 - len(head))
    assert world.queue_depth() == 0

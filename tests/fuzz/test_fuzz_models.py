"""The message model on generated bodies: it either yields FlowReports or raises PoisonMessage with a one-line reason,
never anything else; valid reports are read as Alicom meant them; near-valid mutations are poison.

Regression cases found by fuzzing are pinned at the end with the inputs that failed."""

from __future__ import annotations

import base64
import json

import pytest
from fuzz_strategies import POISON, VALID, Body, Message, bodies, mns_bodies, valid_reports
from fuzz_support import check_reason, fuzz
from hypothesis import given

from shared.domain.models import Envelope, FlowReport, parse_reports
from shared.errors import PoisonMessage
from shared.services.pipeline import validate


@fuzz(1500)
@given(bodies())
def test_a_decoded_body_is_reports_or_poison(body: Body):
    text = body.text if isinstance(body.text, str) else body.text.decode("utf-8", "replace")
    try:
        reports = parse_reports(text)
    except PoisonMessage as poison:
        assert body.expect != VALID, (body.note, poison.reason)
        check_reason(poison.reason)
        return
    assert body.expect != POISON or "too_long" in body.note, (body.note, reports)  # the columns' limits come later
    assert reports and all(isinstance(report, FlowReport) for report in reports)
    if body.expect == VALID:
        assert len(reports) == body.reports
    for report in reports:
        assert report.result in ("3", "4")
        assert report.out_id.strip() and report.phone.strip()
        report.model_dump_json()  # what the ledger stores for a report of an array: always serialisable


@fuzz(1200)
@given(mns_bodies())
def test_a_message_body_validates_or_is_poison(message: Message):
    envelope = Envelope(message_id=message.message_id, body=message.body)
    try:
        writes = validate(envelope)
    except PoisonMessage as poison:
        assert message.expect != VALID, (message.note, poison.reason)
        check_reason(poison.reason)
        return
    assert message.expect != POISON, message.note
    if message.expect == VALID:
        assert len(writes) == message.reports
    assert len({write.message_id for write in writes}) == len(writes)  # every report of an array its own receipt
    for write in writes:
        assert write.result in ("3", "4")
        json.loads(write.raw_body)  # a receipt keeps JSON text


@fuzz(300)
@given(valid_reports())
def test_a_valid_report_reads_as_sent(data):
    (report,) = parse_reports(json.dumps(data, ensure_ascii=False))
    assert report.out_id == str(data["out_id"])
    assert report.phone == str(data["phone"])
    assert report.result == str(data["result"])
    for name in ("err_code", "err_msg"):
        expected = data.get(name)
        assert getattr(report, name) == ("" if expected is None else str(expected))
    extra = {k: v for k, v in data.items() if k not in ("phone", "out_id", "result", "err_code", "err_msg")}
    assert report.extra_fields == extra


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii")


# Inputs fuzzing found that raised something other than PoisonMessage (or reached the ledger and crashed it).
REGRESSIONS = {
    # json.loads refuses ints of more than 4300 digits with a plain ValueError (not a JSONDecodeError)
    "int-too-long": ('{"phone":"1","out_id":' + "9" * 5000 + ',"result":"3"}', "not JSON this receiver accepts"),
    # a lone surrogate escape decodes to a str SQLite (and every UTF-8 driver) cannot encode: UnicodeEncodeError
    "lone-surrogate-out-id": ('{"phone":"1","out_id":"\\ud800","result":"3"}', "lone UTF-16 surrogate"),
    # ... and in an array, the report's JSON could not even be written (PydanticSerializationError)
    "lone-surrogate-in-array": (
        '[{"phone":"1","out_id":"a","result":"3","x":"\\udfff"},{"phone":"1","out_id":"b","result":"4"}]',
        "lone UTF-16 surrogate",
    ),
    "lone-surrogate-key": ('{"phone":"1","out_id":"a","result":"3","\\udc00":1}', "lone UTF-16 surrogate"),
    # NUL in a key column: PostgreSQL refuses to store it (a DataError on every redelivery)
    "nul-out-id": ('{"phone":"1","out_id":"a\\u0000","result":"3"}', "out_id contains a NUL character"),
    "nul-phone": ('{"phone":"1\\u0000","out_id":"a","result":"3"}', "phone contains a NUL character"),
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_fuzzing_regressions_are_poison(case):
    text, fragment = REGRESSIONS[case]
    with pytest.raises(PoisonMessage) as raised:
        validate(Envelope(message_id="M-1", body=_b64(text)))
    assert fragment in raised.value.reason
    check_reason(raised.value.reason)


def test_a_surrogate_pair_escape_is_text_not_poison():
    """The surrogate check must not refuse a proper pair (an emoji escaped by an ASCII-only encoder)."""
    (report,) = parse_reports('{"phone":"1","out_id":"a\\ud83d\\ude00","result":"3"}')
    assert report.out_id == "a\U0001f600"

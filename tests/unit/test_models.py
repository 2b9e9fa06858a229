"""FlowReport bodies as Alicom (and less careful senders) produce them: what is accepted, and the exact reason
for everything that is poison."""

from __future__ import annotations

import base64
import json

import pytest

from local.alicom.reports import flow_report_body
from shared.domain.models import MAX_BODY_BYTES, Envelope, FlowReport, decode_body, parse_reports, reports_from
from shared.domain.orders import Status, status_for_result
from shared.errors import PoisonMessage

PHONE = "13800138000"
REPORT = {"phone": PHONE, "out_id": "order-1", "result": "3", "err_code": "", "err_msg": ""}


def b64(data: object) -> str:
    """A queue message body: base64 of the JSON text (or of the given text / bytes as they are)."""
    if isinstance(data, bytes):
        raw = data
    elif isinstance(data, str):
        raw = data.encode("utf-8")
    else:
        raw = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return base64.b64encode(raw).decode("ascii")


def envelope(body: str) -> Envelope:
    return Envelope(message_id="msg-1", body=body)


def poison_reason(body: str) -> str:
    with pytest.raises(PoisonMessage) as info:
        reports_from(envelope(body))
    assert str(info.value) == info.value.reason
    return info.value.reason


# --- what is accepted ------------------------------------------------------------------------------------------


def test_the_body_alicom_sends_is_one_report() -> None:
    body = b64(flow_report_body(PHONE, "order-1", "4", "UNKNOW", "未知错误"))

    (report,) = reports_from(envelope(body))

    assert report == FlowReport(phone=PHONE, out_id="order-1", result="4", err_code="UNKNOW", err_msg="未知错误")
    assert not report.succeeded
    assert status_for_result(report.result) is Status.FAILED


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ({"result": 3}, {"result": "3"}),
        ({"result": 4}, {"result": "4"}),
        ({"out_id": 12345678901234567890}, {"out_id": "12345678901234567890"}),  # kept exactly, no float on the way
        ({"out_id": 0}, {"out_id": "0"}),
        ({"out_id": -7}, {"out_id": "-7"}),
        ({"phone": 13800138000}, {"phone": PHONE}),
        ({"err_code": None, "err_msg": None}, {"err_code": "", "err_msg": ""}),
        ({"err_code": 10004}, {"err_code": "10004"}),
    ],
)
def test_lenient_where_real_senders_differ(sent: dict, expected: dict) -> None:
    (report,) = reports_from(envelope(b64({**REPORT, **sent})))

    assert report.model_dump() == {**REPORT, **expected}


def test_optional_fields_may_be_absent() -> None:
    (report,) = parse_reports('{"phone":"13800138000","out_id":"o","result":"3"}')

    assert (report.err_code, report.err_msg) == ("", "")
    assert report.succeeded


@pytest.mark.parametrize("ensure_ascii", [False, True], ids=["utf8", "escaped"])
def test_non_ascii_err_msg(ensure_ascii: bool) -> None:
    sent = {**REPORT, "result": "4", "err_code": "OPERATOR_FAILED", "err_msg": "运营商充值失败"}
    text = json.dumps(sent, ensure_ascii=ensure_ascii)

    (report,) = reports_from(envelope(b64(text)))

    assert report.err_msg == "运营商充值失败"
    assert "运营商充值失败" in report.model_dump_json()


def test_an_array_carries_several_reports_in_order() -> None:
    body = b64([{**REPORT, "out_id": "a"}, {**REPORT, "out_id": 2, "result": 4}, {**REPORT, "out_id": "c"}])

    reports = reports_from(envelope(body))

    assert [(r.out_id, r.result) for r in reports] == [("a", "3"), ("2", "4"), ("c", "3")]


def test_unknown_extra_fields_are_kept() -> None:
    sent = {**REPORT, "biz_id": "B-1", "report_time": "2024-05-01 12:00:00", "nested": {"k": [1, 2]}}

    (report,) = reports_from(envelope(b64(sent)))

    assert report.extra_fields == {"biz_id": "B-1", "report_time": "2024-05-01 12:00:00", "nested": {"k": [1, 2]}}
    assert json.loads(report.model_dump_json()) == sent  # what the ledger keeps as the receipt's raw body
    assert report.out_id == "order-1"


def test_extra_fields_named_like_model_attributes_do_not_break_it() -> None:
    (report,) = parse_reports(json.dumps({**REPORT, "model_dump": 1, "schema": "x", "__class__": 2}))

    assert report.extra_fields == {"model_dump": 1, "schema": "x", "__class__": 2}
    assert report.model_dump()["out_id"] == "order-1"


def test_wrapped_base64_and_a_byte_order_mark_are_accepted() -> None:
    encoded = b64(b"\xef\xbb\xbf" + json.dumps(REPORT).encode())
    wrapped = "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + "\n"

    assert json.loads(decode_body(wrapped)) == REPORT


def test_body_of_exactly_the_limit_is_accepted() -> None:
    padding = "x" * 60000
    body = b64({**REPORT, "err_msg": padding})
    body = b64({**REPORT, "err_msg": padding[: len(padding) - (len(body) - MAX_BODY_BYTES) * 3 // 4]})
    assert MAX_BODY_BYTES - 4 <= len(body) <= MAX_BODY_BYTES

    (report,) = reports_from(envelope(body))

    assert report.err_msg.startswith("xxx")


def test_repr_masks_the_phone_number() -> None:
    report = FlowReport(phone=PHONE, out_id="o", result="3")

    assert PHONE not in repr(report)
    assert "138****8000" in repr(report)


# --- poison, each with its precise reason -----------------------------------------------------------------------


def test_undecodable_base64() -> None:
    assert poison_reason('{"phone": "1"}') == (
        "body is not valid base64: character '{' at offset 0 is not in the base64 alphabet"
    )
    assert poison_reason("abcde") == "body is not valid base64: its length 5 is not a multiple of 4"
    assert poison_reason("QQ==QQ==") == "body is not valid base64: Excess data after padding"


def test_empty_body() -> None:
    assert poison_reason("") == "body is empty"
    assert poison_reason(" \r\n") == "body is empty"


def test_not_utf8() -> None:
    body = b64(b'{"phone":"13800138000","out_id":"o","result":"3","err_msg":"\xd3\xe0\xb6\xee"}')  # GBK

    assert poison_reason(body) == "body is not UTF-8: byte 0xd3 at offset 60 (invalid continuation byte)"


def test_oversized_body() -> None:
    body = b64({**REPORT, "err_msg": "x" * MAX_BODY_BYTES})

    assert poison_reason(body) == f"body is larger than 65536 bytes (got {len(body)} bytes)"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "body is not JSON: Expecting value at line 1 column 1"),
        ('{"phone": "1", ', "body is not JSON: Expecting property name enclosed in double quotes at line 1 column 16"),
        ('{"out_id": NaN}', "body is not JSON: NaN is not a JSON value"),
        (
            '{"phone":"1","out_id":"a","result":"3","out_id":"b"}',
            "body is ambiguous JSON: the key 'out_id' appears twice in one object",
        ),
    ],
)
def test_not_json(text: str, reason: str) -> None:
    assert poison_reason(b64(text)) == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ('"order-1"', "body is JSON but not a FlowReport: it is the string 'order-1', not an object or an array"),
        (3, "body is JSON but not a FlowReport: it is the number 3, not an object or an array"),
        (None, "body is JSON but not a FlowReport: it is null, not an object or an array"),
        ({}, "JSON object is not a FlowReport: no phone, out_id or result (it is an empty object)"),
        (
            {"phone_number": PHONE, "success": True, "biz_id": "1", "send_time": "x"},  # an SmsReport
            "JSON object is not a FlowReport: no phone, out_id or result "
            "(its keys are biz_id, phone_number, send_time, success)",
        ),
        ([], "body is an empty JSON array: no FlowReport in it"),
        ([REPORT, "x"], "report 2 of 2 is the string 'x', not a JSON object"),
        ([[REPORT]], "report 1 of 1 is an array, not a JSON object"),
    ],
)
def test_json_that_is_not_a_report(data: object, reason: str) -> None:
    assert poison_reason(b64(data)) == reason


@pytest.mark.parametrize(
    ("missing", "reason"),
    [
        (["out_id"], "out_id is missing"),
        (["phone"], "phone is missing"),
        (["result"], "result is missing"),
        (["out_id", "result"], "out_id and result are missing"),
    ],
)
def test_missing_required_fields(missing: list[str], reason: str) -> None:
    sent = {k: v for k, v in REPORT.items() if k not in missing}

    assert poison_reason(b64(sent)) == reason


@pytest.mark.parametrize(
    ("result", "shown"),
    [
        ("5", "the string '5'"),
        ("", "the string ''"),
        (" 3", "the string ' 3'"),
        ("success", "the string 'success'"),
        (0, "the number 0"),
        (3.0, "the fractional number 3.0"),
        (True, "a boolean (true)"),
        (None, "null"),
        (["3"], "an array"),
    ],
)
def test_result_outside_3_and_4(result: object, shown: str) -> None:
    assert poison_reason(b64({**REPORT, "result": result})) == (
        f'result must be "3" (success) or "4" (failure), got {shown}'
    )


@pytest.mark.parametrize(("value", "shown"), [(True, "true"), (False, "false")])
def test_boolean_out_id_is_rejected_not_coerced(value: bool, shown: str) -> None:
    assert poison_reason(b64({**REPORT, "out_id": value})) == (
        f"out_id must be a string or a number, got a boolean ({shown})"
    )


@pytest.mark.parametrize(
    ("out_id", "reason"),
    [
        (None, "out_id must be a string or a number, got null"),
        (1.5, "out_id must be a string or a whole number, got the fractional number 1.5"),
        (1e3, "out_id must be a string or a whole number, got the fractional number 1000.0"),
        ({"id": 1}, "out_id must be a string or a number, got an object"),
        ("", "out_id is empty"),
        ("  ", "out_id is empty"),
    ],
)
def test_other_bad_out_ids(out_id: object, reason: str) -> None:
    assert poison_reason(b64({**REPORT, "out_id": out_id})) == reason


@pytest.mark.parametrize(
    ("phone", "reason"),
    [
        (True, "phone must be a string or a number, got a boolean (true)"),
        (13800138000.0, "phone must be a string or a whole number, got a fractional number"),
        ([PHONE], "phone must be a string or a number, got an array"),
        ("", "phone is empty"),
    ],
)
def test_bad_phones_never_show_the_number(phone: object, reason: str) -> None:
    assert poison_reason(b64({**REPORT, "phone": phone})) == reason


def test_bad_optional_fields() -> None:
    assert poison_reason(b64({**REPORT, "err_msg": ["a"]})) == (
        "err_msg must be a string, a number or null, got an array"
    )
    assert poison_reason(b64({**REPORT, "err_code": False})) == (
        "err_code must be a string, a number or null, got a boolean (false)"
    )


def test_every_problem_of_a_report_is_named() -> None:
    sent = {"out_id": True, "result": "9"}

    assert poison_reason(b64(sent)) == (
        'phone is missing; out_id must be a string or a number, got a boolean (true); result must be "3" (success) '
        "or \"4\" (failure), got the string '9'"
    )


def test_a_bad_report_in_an_array_is_named_by_position() -> None:
    body = b64([REPORT, {**REPORT, "out_id": True}, REPORT])

    assert poison_reason(body) == "report 2 of 3: out_id must be a string or a number, got a boolean (true)"


def test_long_values_are_shortened_in_reasons() -> None:
    reason = poison_reason(b64({**REPORT, "result": "y" * 500}))

    assert reason == f'result must be "3" (success) or "4" (failure), got the string \'{"y" * 40}…\''


def test_deeply_nested_json_is_poison_not_a_crash() -> None:
    assert poison_reason(b64("[" * 20000 + "]" * 20000)) == "body is not JSON this receiver accepts: nested too deeply"


# --- the envelope -------------------------------------------------------------------------------------------------


def test_envelope_is_the_processor_event() -> None:
    event = json.dumps({"message_id": "m-1", "body": b64(REPORT), "dequeue_count": 3, "enqueue_time": 1714550400000})

    parsed = Envelope.model_validate_json(event)

    assert parsed == Envelope(message_id="m-1", body=b64(REPORT), dequeue_count=3, enqueue_time=1714550400000)
    assert parsed.message_type == "FlowReport"
    assert Envelope.model_validate_json(parsed.model_dump_json()) == parsed
    assert reports_from(parsed)[0].out_id == "order-1"


def test_envelope_defaults_and_required_fields() -> None:
    minimal = Envelope(message_id="m", body="")

    assert (minimal.message_type, minimal.dequeue_count, minimal.enqueue_time) == ("FlowReport", 1, None)
    with pytest.raises(ValueError):
        Envelope(message_id="", body="x")
    with pytest.raises(ValueError):
        Envelope.model_validate({"message_id": "m"})


def test_envelope_keeps_a_poison_body_as_it_is() -> None:
    raw = "  not base64 at all {}\n"

    assert Envelope(message_id="m", body=raw).body == raw

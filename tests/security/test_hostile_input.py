"""Hostile text in every FlowReport field and in order registration reaches the ledger as data, on SQLite, MariaDB
and PostgreSQL (the ``ledger`` fixture of tests/backends), or is refused as poison with a reason that says why.

The receipts go the processor's way: a queue message (base64 of the JSON Alicom sends) through
``shared.services.pipeline.apply_message``. Where the schema sets limits (shared/adapters/ledger/schema.py and
records.py): ``out_id`` at most 128 characters and ``phone`` at most 32 are keys and facts, so a longer one is poison
(dead-lettered with the reason and the raw body, never truncated); ``err_code`` (64) and ``err_msg`` (512) are
informational and clipped to their columns, the receipt's raw body keeping the whole text; an MNS message body is at
most 64 KB, so a report carrying a 64 KB field is poison before any field is looked at. NUL cannot be stored by
PostgreSQL: a NUL in a key is poison, in a message it is replaced (U+FFFD) while the raw body keeps the JSON escape.

Out ids with SQL metacharacters through the order file and the ledger: tests/backends/test_intake_backends.py and
test_ledger_lifecycle.py. Here: the other fields, more kinds of text (RTL, combining marks, zero-width, escapes),
NUL, lone surrogates and 64 KB values, for receipts and for registration.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from shared.adapters.ledger import Ledger, ReportToApply
from shared.adapters.ledger.records import OUT_ID_MAX, PHONE_MAX
from shared.adapters.ledger.schema import ERR_CODE_MAX, ERR_MSG_MAX
from shared.domain.intake import InvalidOrder
from shared.domain.models import Envelope
from shared.domain.orders import Status
from shared.errors import PoisonMessage
from shared.services.intake import register
from shared.services.pipeline import apply_message

PHONE = "13800138000"
KB64 = 64 * 1024
FIELDS = ("phone", "out_id", "err_code", "err_msg")
# At most 32 characters each, so that every one fits every field's column.
TRICKY = {
    "sql-quote": "x'; DROP TABLE orders; --",
    "quotes-and-backslashes": "a\"b\\c\\\\d\\'e\\",
    "escapes-as-text": "\\n\\t\\0\\x00\\u0000\\Z",
    "like-wildcards": "%_%\\%\\_[a-z]*?",
    "statement-chain": "1;DELETE FROM receipts;--",
    "comments-and-dollars": "/* */ -- # ` $$ $1 :p %(x)s",
    "emoji": "🚀🔥👨‍👩‍👧‍👦🇨🇳",
    "rtl": "\u202eevil\u202c مرحبا עברית",
    "combining-marks": "e\u0301\u0308a\u030a\u0338Z\u0336",
    "zero-width": "a\u200bb\ufeffc\u2060d",
    "cjk": "运营商失败：余额不足",
    "whitespace": " lead\ttab\r\nend ",
}


def report(field: str, value: str, out_id: str) -> dict[str, str]:
    values = {"phone": PHONE, "out_id": out_id, "result": "4", "err_code": "E-1", "err_msg": "failed"}
    values[field] = value
    return values


def envelope(text: str, message_id: str | None = None) -> Envelope:
    body = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return Envelope(message_id=message_id or uuid.uuid4().hex.upper(), body=body, dequeue_count=1)


def as_json(values: dict[str, str]) -> str:
    return json.dumps(values, ensure_ascii=False)  # UTF-8 as it comes, not \u escapes


def assert_dead_lettered(ledger: Ledger, message: Envelope, outcome, reason: str) -> None:
    assert outcome.outcomes == ("dead_lettered",), outcome
    assert reason in outcome.reason, outcome.reason
    letter = ledger.get_dead_letter(message.message_id)
    assert letter is not None and reason in letter.reason
    assert letter.raw_body == message.body  # the body exactly as it came off the queue


# ---- receipts -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS)
def test_tricky_text_in_a_report_field_is_stored_exactly(ledger: Ledger, field: str) -> None:
    for name, value in TRICKY.items():
        out_id = value if field == "out_id" else f"tricky-{field}-{name}"
        registered = field != "phone"  # a receipt for an unregistered order creates it with the receipt's phone
        if registered:
            assert ledger.register_order(out_id, PHONE) is True
        text = as_json(report(field, value, out_id))
        message = envelope(text)

        outcome = apply_message(ledger, message)

        assert len(outcome.outcomes) == 1 and outcome.outcomes[0] in ("applied", "orphan"), (name, outcome)
        order = ledger.get_order(out_id)
        assert order is not None and order.out_id == out_id and order.status is Status.FAILED, name
        assert getattr(order, field) == value, name
        [receipt] = ledger.receipts_for(out_id)
        assert receipt.raw_body == text, name
        if field in ("err_code", "err_msg"):
            assert getattr(receipt, field) == value, name
        [event] = ledger.outbox_events(out_id)
        assert event.payload[field] == value, name
    assert sum(ledger.summary().orders_by_status.values()) == len(TRICKY)


@pytest.mark.parametrize("field", ["phone", "out_id"])
def test_a_nul_in_a_key_field_is_poison_with_its_reason(ledger: Ledger, field: str) -> None:
    message = envelope(as_json(report(field, "a\x00b", "nul-key-" + field)))

    outcome = apply_message(ledger, message)

    assert_dead_lettered(ledger, message, outcome, f"{field} contains a NUL character")
    assert ledger.get_order("nul-key-" + field) is None


@pytest.mark.parametrize("field", ["err_code", "err_msg"])
def test_a_nul_in_a_message_field_is_replaced_and_the_raw_body_keeps_it(ledger: Ledger, field: str) -> None:
    out_id = "nul-text-" + field
    ledger.register_order(out_id, PHONE)
    text = as_json(report(field, "before\x00after", out_id))
    assert "\\u0000" in text  # JSON escapes it: the raw body text itself holds no NUL

    outcome = apply_message(ledger, envelope(text))

    assert outcome.outcomes == ("applied",)
    assert getattr(ledger.get_order(out_id), field) == "before\ufffdafter"
    [receipt] = ledger.receipts_for(out_id)
    assert receipt.raw_body == text and json.loads(receipt.raw_body)[field] == "before\x00after"


def test_a_raw_nul_byte_in_the_json_is_poison_and_the_body_is_kept(ledger: Ledger) -> None:
    text = '{"phone":"13800138000","out_id":"raw-nul","result":"3","err_msg":"a\x00b"}'
    message = envelope(text)

    outcome = apply_message(ledger, message)

    assert outcome.outcomes == ("dead_lettered",) and outcome.reason
    letter = ledger.get_dead_letter(message.message_id)
    assert letter is not None and letter.raw_body == message.body
    assert base64.b64decode(letter.raw_body).decode("utf-8") == text


@pytest.mark.parametrize("field", FIELDS)
def test_a_lone_surrogate_is_poison_with_a_reason(ledger: Ledger, field: str) -> None:
    values = report(field, "PLACEHOLDER", "surrogate-" + field)
    text = json.dumps(values).replace("PLACEHOLDER", "a\\ud800b")  # valid JSON, not storable as UTF-8
    message = envelope(text)

    outcome = apply_message(ledger, message)

    assert outcome.outcomes == ("dead_lettered",) and outcome.reason
    assert ledger.get_dead_letter(message.message_id).raw_body == message.body
    assert ledger.get_order("surrogate-" + field) is None


@pytest.mark.parametrize("field", FIELDS)
def test_a_report_with_a_64_kb_field_is_larger_than_a_queue_message_and_poison(ledger: Ledger, field: str) -> None:
    out_id = "huge-" + field
    ledger.register_order(out_id, PHONE)
    message = envelope(as_json(report(field, "é" * (KB64 // 2), out_id)))  # 64 KB of UTF-8

    outcome = apply_message(ledger, message)

    assert_dead_lettered(ledger, message, outcome, "body is larger than 65536 bytes")
    assert ledger.get_order(out_id).status is Status.PENDING


@pytest.mark.parametrize(
    ("field", "reason"),
    [("out_id", f"out_id is longer than {OUT_ID_MAX} characters"), ("phone", f"phone is longer than {PHONE_MAX}")],
)
def test_an_over_long_key_in_the_largest_message_is_poison_never_truncated(ledger: Ledger, field, reason) -> None:
    long_value = "9" * 40_000  # the body stays under 64 KB once base64-encoded
    message = envelope(as_json(report(field, long_value, "long-key-" + field)))

    outcome = apply_message(ledger, message)

    assert_dead_lettered(ledger, message, outcome, reason)
    assert ledger.get_order(long_value[:OUT_ID_MAX]) is None and ledger.get_order("long-key-" + field) is None


@pytest.mark.parametrize(("field", "limit"), [("err_code", ERR_CODE_MAX), ("err_msg", ERR_MSG_MAX)])
def test_an_over_long_message_field_is_clipped_and_kept_whole_in_the_raw_body(ledger: Ledger, field, limit) -> None:
    out_id = "long-text-" + field
    ledger.register_order(out_id, PHONE)
    long_value = "运营商" * 4000 + "'; DROP TABLE orders; --"  # 12 000 characters, 36 KB of UTF-8
    text = as_json(report(field, long_value, out_id))

    outcome = apply_message(ledger, envelope(text))

    assert outcome.outcomes == ("applied",)
    assert getattr(ledger.get_order(out_id), field) == long_value[:limit]
    [receipt] = ledger.receipts_for(out_id)
    assert receipt.raw_body == text and json.loads(receipt.raw_body)[field] == long_value


def test_64_kb_values_handed_to_the_ledger_directly_are_refused_or_clipped(ledger: Ledger) -> None:
    huge = "🚀" * (KB64 // 4)  # 64 KB of UTF-8, 16 384 characters
    for field, reason in (("out_id", "out_id is longer than"), ("phone", "phone is longer than")):
        values = {"out_id": "direct-huge", "phone": PHONE, field: huge}
        with pytest.raises(PoisonMessage, match=reason):
            ReportToApply(message_id=f"DIRECT-{field}", message_type="FlowReport", result="4", **values)
    ledger.register_order("direct-huge", PHONE)
    raw = json.dumps({"phone": PHONE, "out_id": "direct-huge", "result": "4", "err_msg": huge}, ensure_ascii=False)

    ledger.apply_report(
        ReportToApply(
            message_id="DIRECT-err",
            message_type="FlowReport",
            out_id="direct-huge",
            phone=PHONE,
            result="4",
            err_code=huge,
            err_msg=huge,
            raw_body=raw,
        )
    )

    order = ledger.get_order("direct-huge")
    assert (order.err_code, order.err_msg) == (huge[:ERR_CODE_MAX], huge[:ERR_MSG_MAX])
    assert ledger.receipts_for("direct-huge")[0].raw_body == raw  # 64 KB and more, whole, on every backend


# ---- registration ------------------------------------------------------------------------------------------------


def test_tricky_out_ids_are_registered_as_data_and_tricky_phones_refused_with_reasons(ledger: Ledger) -> None:
    control = {"whitespace"}  # tabs and line breaks: refused by the intake rules
    for name, value in TRICKY.items():
        if name in control:
            with pytest.raises(InvalidOrder, match="out_id contains a control character"):
                register(ledger, value, PHONE, flow_api="charge")
            continue
        done = register(ledger, value, PHONE, flow_api="charge")
        assert done.state == "registered" and ledger.get_order(value.strip()).out_id == value.strip(), name
        with pytest.raises(InvalidOrder, match="phone is not"):
            register(ledger, f"phone-{name}", value, flow_api="charge")
        assert ledger.get_order(f"phone-{name}") is None
    for bad, reason in (("a\x00b", "control character"), ("x" * KB64, f"out_id is {KB64} characters long")):
        with pytest.raises(InvalidOrder, match=reason):
            register(ledger, bad, PHONE, flow_api="charge")
    with pytest.raises(InvalidOrder, match="phone is not"):
        register(ledger, "huge-phone", "1" * KB64, flow_api="charge")


def test_the_ledger_refuses_over_long_registrations_clearly(ledger: Ledger) -> None:
    for out_id, phone in (("x" * KB64, PHONE), ("long-phone", "1" * KB64)):
        with pytest.raises(ValueError, match=f"out_id must be 1 to {OUT_ID_MAX} characters and phone at most"):
            ledger.register_order(out_id, phone)
    assert sum(ledger.summary().orders_by_status.values()) == 0


@pytest.mark.parametrize(("out_id", "phone"), [("nul\x00id", PHONE), ("nul-phone", "138\x000138000")])
def test_the_ledger_refuses_a_nul_in_a_registration_on_every_backend(ledger: Ledger, out_id: str, phone: str) -> None:
    with pytest.raises(ValueError, match="NUL"):
        ledger.register_order(out_id, phone)

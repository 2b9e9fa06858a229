"""The intake rules: what an order and an order file's header must look like. No file, no database."""

from __future__ import annotations

from datetime import timedelta

import pytest
import typer

from cli.params import format_duration, parse_duration
from shared.adapters.ledger.records import OUT_ID_MAX as LEDGER_OUT_ID_MAX
from shared.adapters.ledger.schema import PRODUCT_MAX as LEDGER_PRODUCT_MAX
from shared.domain.intake import (
    OUT_ID_MAX,
    PRODUCT_MAX,
    BadHeader,
    InvalidOrder,
    OrderLine,
    csv_layout,
    normalise_phone,
    order_line,
)


def test_the_limits_are_the_ledger_columns():
    assert (OUT_ID_MAX, PRODUCT_MAX) == (LEDGER_OUT_ID_MAX, LEDGER_PRODUCT_MAX)


# ---- phone numbers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "13800138000",
        " 13800138000 ",
        "138 0013 8000",
        "138-0013-8000",
        "+8613800138000",
        "+86 138 0013 8000",
        "+86-138-0013-8000",
        "008613800138000",
        "8613800138000",
        "１３８００１３８０００",  # full-width digits, as typed with a Chinese input method
    ],
)
def test_a_mainland_mobile_number_is_normalised_to_its_11_digits(written):
    assert normalise_phone(written) == "13800138000"


@pytest.mark.parametrize(
    "written",
    ["", "   ", "1380013800", "138001380001", "12800138000", "23800138000", "+8512800138000", "1380013800x", "+86"],
)
def test_anything_else_is_not_a_phone_number_and_the_reason_never_repeats_it(written):
    with pytest.raises(InvalidOrder) as raised:
        normalise_phone(written)
    reason = str(raised.value)
    assert reason.startswith("phone is")
    assert len(written.strip()) < 5 or written.strip() not in reason


# ---- orders ----------------------------------------------------------------------------------------------------


def test_an_order_is_cleaned():
    assert order_line("  order-1 ", "+86 139 0013 9000", " 100M ", "charge") == OrderLine(
        "order-1", "13900139000", "100M"
    )
    assert order_line("order-2", "13900139000", None, "charge").product is None
    assert order_line("order-3", "13900139000", "007", "cdp").product == "7"


@pytest.mark.parametrize(
    "out_id",
    ["'; DROP TABLE orders; --", "a\"b'c\\d%_*?", "订单-2024-001", "emoji-🚀", "x" * OUT_ID_MAX, "[red]markup[/red]"],
)
def test_sql_metacharacters_unicode_and_128_characters_are_just_data(out_id):
    assert order_line(out_id, "13800138000", None, "charge").out_id == out_id


@pytest.mark.parametrize(
    ("out_id", "reason"),
    [
        ("", "out_id is empty"),
        ("   ", "out_id is empty"),
        ("x" * 200, "out_id is 200 characters long; at most 128 are allowed"),
        ("a\tb", "out_id contains a control character"),
        ("a\x00b", "out_id contains a control character"),
    ],
)
def test_a_bad_out_id_says_why(out_id, reason):
    with pytest.raises(InvalidOrder, match=reason):
        order_line(out_id, "13800138000", None, "charge")


@pytest.mark.parametrize(
    ("product", "api", "reason"),
    [
        ("", "charge", "grade is empty"),
        ("  ", "charge", "grade is empty"),
        ("g" * 65, "charge", "grade is 65 characters long"),
        ("", "cdp", "offer_id is empty"),
        ("12a", "cdp", "offer_id must be a positive whole number"),
        ("-5", "cdp", "offer_id must be a positive whole number"),
        ("0", "cdp", "offer_id must be a positive whole number"),
        ("1.5", "cdp", "offer_id must be a positive whole number"),
    ],
)
def test_a_bad_product_says_why(product, api, reason):
    with pytest.raises(InvalidOrder, match=reason):
        order_line("order-1", "13800138000", product, api)


def test_every_problem_of_an_order_is_named_at_once():
    with pytest.raises(InvalidOrder) as raised:
        order_line("", "123", "", "charge")
    assert str(raised.value).split("; ")[0::2] == ["out_id is empty", "grade is empty"]
    assert "phone is not" in str(raised.value)


# ---- the header row --------------------------------------------------------------------------------------------


def test_the_columns_may_come_in_any_order_and_any_case():
    layout = csv_layout([" Phone", "GRADE ", "out_id"], "charge")
    assert (layout.out_id, layout.phone, layout.product, layout.width) == (2, 0, 1, 3)
    assert layout.order(["13800138000", "100M", "o-1"]) == OrderLine("o-1", "13800138000", "100M")


def test_a_byte_order_mark_before_the_first_name_is_not_part_of_it():
    assert csv_layout(["\ufeffout_id", "phone"], "charge").out_id == 0


def test_the_product_column_is_optional_for_registering_and_required_for_charging():
    assert csv_layout(["out_id", "phone"], "cdp").product is None
    with pytest.raises(BadHeader, match=r"must name the columns out_id,phone,offer_id .*missing offer_id"):
        csv_layout(["out_id", "phone"], "cdp", product_required=True)


@pytest.mark.parametrize(
    ("header", "api", "problem"),
    [
        (["id", "mobile"], "charge", "missing out_id, phone; unknown columns id, mobile"),
        (["out_id", "phone", "note"], "charge", "unknown column note"),
        (["out_id", "phone", "offer_id"], "charge", "offer_id is the product of FLOW_API=cdp; FLOW_API is charge"),
        (["out_id", "phone", "grade"], "cdp", "grade is the product of FLOW_API=charge; FLOW_API is cdp"),
        (["out_id", "phone", "Phone"], "charge", "phone appears more than once"),
        (["out_id", "phone", ""], "charge", "column 3 has no name"),
        (["13800138000", "order-1"], "charge", "missing out_id, phone"),  # a file without a header row
    ],
)
def test_a_wrong_header_is_refused_naming_the_expected_columns(header, api, problem):
    with pytest.raises(BadHeader) as raised:
        csv_layout(header, api)
    message = str(raised.value)
    product = "grade" if api == "charge" else "offer_id"
    assert message.startswith(f"the header row must name the columns out_id,phone[,{product}] (any order")
    assert problem in message


def test_a_row_with_the_wrong_number_of_fields_is_bad():
    layout = csv_layout(["out_id", "phone"], "charge")
    with pytest.raises(InvalidOrder, match="the row has 3 fields; the header has 2"):
        layout.order(["o-1", "13800138000", "extra"])


# ---- durations (CLI options) -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("90s", 90),
        ("1w", 604800),
        ("0", 0),
        ("1.5h", 5400),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2", "2x", "h", "2h-", "two hours", "-1h"])
def test_bad_durations(text):
    with pytest.raises(typer.BadParameter, match="is not a duration like 30m, 2h, 1d or 1h30m"):
        parse_duration(text)


def test_durations_read_back():
    assert [format_duration(timedelta(seconds=s)) for s in (0, 59, 3700, 90061)] == ["0s", "59s", "1h 1m", "1d 1h"]

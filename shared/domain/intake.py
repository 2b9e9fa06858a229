"""Orders in: what an order must look like before it is registered, and how an order file's header and rows are
read. Pure rules: no file, no database, no SDK.

An order is an ``out_id`` (the business's top-up serial number: any text up to 128 characters, surrounding
whitespace dropped, no control characters), a mainland China mobile ``phone`` (normalised to its 11 digits) and,
when flow-receipts places the top-up, a product in the form FLOW_API needs: a ``grade`` for ``charge``
(Dycdpapi 2017-05-25 Charge) or an ``offer_id`` (a whole number) for ``cdp`` (2018-06-10 CreateCdpOrder).

An order file is CSV with a header row naming its columns (any order, names case-insensitive):
``out_id`` and ``phone`` are required, the product column (``grade`` or ``offer_id``, the one FLOW_API takes) is
optional for registering and required for charging; any other column refuses the whole file.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FlowApiName = Literal["charge", "cdp"]

OUT_ID_MAX = 128  # the ledger's orders.out_id column (shared.adapters.ledger.records.OUT_ID_MAX)
PRODUCT_MAX = 64  # the ledger's orders.product column
OUT_ID, PHONE = "out_id", "phone"
PRODUCT_COLUMNS: dict[FlowApiName, str] = {"charge": "grade", "cdp": "offer_id"}
_API_OF_COLUMN = {column: api for api, column in PRODUCT_COLUMNS.items()}

# Mainland mobile numbers: 11 digits, 13x-19x (the same numbers the log redactor masks).
_MOBILE = re.compile(r"1[3-9][0-9]{9}", re.ASCII)
_PHONE_SEPARATORS = re.compile(r"[\s\-]+")
_COUNTRY_PREFIX = re.compile(r"^(?:\+86|0086|86)(?=[0-9]{11}$)", re.ASCII)
_WHOLE_NUMBER = re.compile(r"[0-9]+", re.ASCII)
PHONE_RULE = "a mainland China mobile number: 11 digits starting with 13 to 19 (+86, spaces, dashes allowed)"


class InvalidOrder(ValueError):
    """An order that cannot be registered; the message says why (every problem, never the phone number)."""


class BadHeader(ValueError):
    """An order file whose header row is not one this reader takes; the message names the expected columns."""


class CsvUnreadable(ValueError):
    """An order file that stopped being readable text (not UTF-8, or not CSV at all)."""


@dataclass(frozen=True)
class OrderLine:
    out_id: str
    phone: str  # 11 digits
    product: str | None = None  # the grade or offer id, when the order is to be charged by flow-receipts


def _control_character(text: str) -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cs") for char in text)


def out_id_problem(value: str) -> str | None:
    if not value:
        return "out_id is empty"
    if len(value) > OUT_ID_MAX:
        return f"out_id is {len(value)} characters long; at most {OUT_ID_MAX} are allowed"
    if _control_character(value):
        return "out_id contains a control character (a tab, a line break, NUL...)"
    return None


def normalise_phone(value: str) -> str:
    """``+86 138-0013-8000`` -> ``13800138000``. Full-width digits are read as digits. InvalidOrder otherwise."""
    text = _PHONE_SEPARATORS.sub("", unicodedata.normalize("NFKC", value))
    if not text:
        raise InvalidOrder("phone is empty")
    national = _COUNTRY_PREFIX.sub("", text, count=1)
    if not _MOBILE.fullmatch(national):
        raise InvalidOrder(f"phone is not {PHONE_RULE}")
    return national


def product_problem(value: str, flow_api: FlowApiName) -> tuple[str | None, str]:
    """(problem, the product as it is sent to the flow API)."""
    name = PRODUCT_COLUMNS[flow_api]
    if flow_api == "cdp":
        value = unicodedata.normalize("NFKC", value)
    if not value:
        return f"{name} is empty", value
    if flow_api == "cdp":
        if not _WHOLE_NUMBER.fullmatch(value) or not value.strip("0"):
            return f"{name} must be a positive whole number", value
        value = value.lstrip("0")
    if len(value) > PRODUCT_MAX:
        return f"{name} is {len(value)} characters long; at most {PRODUCT_MAX} are allowed", value
    if _control_character(value):
        return f"{name} contains a control character", value
    return None, value


def order_line(out_id: str, phone: str, product: str | None, flow_api: FlowApiName) -> OrderLine:
    """The order, cleaned (surrounding whitespace dropped, the phone normalised); InvalidOrder naming every problem.
    ``product`` None: the order is registered without one (the business places its top-up itself)."""
    problems: list[str] = []
    out_id = out_id.strip()
    problem = out_id_problem(out_id)
    if problem:
        problems.append(problem)
    normalised = ""
    try:
        normalised = normalise_phone(phone)
    except InvalidOrder as invalid:
        problems.append(str(invalid))
    if product is not None:
        problem, product = product_problem(product.strip(), flow_api)
        if problem:
            problems.append(problem)
    if problems:
        raise InvalidOrder("; ".join(problems))
    return OrderLine(out_id, normalised, product)


# ---- order files ---------------------------------------------------------------------------------------------


def expected_columns(flow_api: FlowApiName, product_required: bool) -> str:
    product = PRODUCT_COLUMNS[flow_api]
    return f"{OUT_ID},{PHONE},{product}" if product_required else f"{OUT_ID},{PHONE}[,{product}]"


@dataclass(frozen=True)
class CsvLayout:
    """Where each value is in a row of a file with this header."""

    flow_api: FlowApiName
    out_id: int
    phone: int
    product: int | None
    width: int

    def order(self, cells: Sequence[str]) -> OrderLine:
        """The order in one data row; InvalidOrder when the row is bad."""
        if len(cells) != self.width:
            raise InvalidOrder(f"the row has {len(cells)} fields; the header has {self.width}")
        product = cells[self.product] if self.product is not None else None
        return order_line(cells[self.out_id], cells[self.phone], product, self.flow_api)


def is_blank(cells: Sequence[str]) -> bool:
    """An empty line, or one of only commas and spaces: skipped, not a row."""
    return all(not cell.strip() for cell in cells)


def _names(names: Sequence[str]) -> str:
    """Column names as a one-line message shows them: quoted and escaped when not printable (a line break)."""
    return ", ".join(name if name.isprintable() else repr(name) for name in names)


def csv_layout(header: Sequence[str], flow_api: FlowApiName, *, product_required: bool = False) -> CsvLayout:
    """The layout of a file with this header row; BadHeader naming what is wrong and the expected columns."""
    names = [name.lstrip("\ufeff").strip().lower() for name in header]  # a BOM left by an already open stream
    product = PRODUCT_COLUMNS[flow_api]
    problems: list[str] = []
    unnamed = [str(index) for index, name in enumerate(names, start=1) if not name]
    if unnamed:
        problems.append(f"column {', '.join(unnamed)} {'has' if len(unnamed) == 1 else 'have'} no name")
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        problems.append(f"{_names(repeated)} appear{'s' if len(repeated) == 1 else ''} more than once")
    wanted = [OUT_ID, PHONE] + ([product] if product_required else [])
    missing = [name for name in wanted if name not in names]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    for name in names:
        other_api = _API_OF_COLUMN.get(name)
        if other_api is not None and other_api != flow_api:
            problems.append(f"{name} is the product of FLOW_API={other_api}; FLOW_API is {flow_api} (use {product})")
    known = {OUT_ID, PHONE, *PRODUCT_COLUMNS.values()}
    unknown = [name for name in dict.fromkeys(names) if name and name not in known]
    if unknown:
        problems.append(f"unknown column{'s' if len(unknown) > 1 else ''} {_names(unknown)}")
    if problems:
        shown = ",".join(header) if header else "an empty line"
        if len(shown) > 200:
            shown = shown[:200] + "…"
        raise BadHeader(
            f"the header row must name the columns {expected_columns(flow_api, product_required)} "
            f"(any order, names case-insensitive); got {shown!r}: {'; '.join(problems)}"
        )
    return CsvLayout(
        flow_api=flow_api,
        out_id=names.index(OUT_ID),
        phone=names.index(PHONE),
        product=names.index(product) if product in names else None,
        width=len(names),
    )

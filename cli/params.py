"""Options and values several commands share."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import Enum
from typing import Annotated

import typer

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str | timedelta) -> timedelta:
    """``30m``, ``2h``, ``1d``, ``1h30m``, ``90s`` (s, m, h, d, w); ``0`` is no time at all."""
    if isinstance(text, timedelta):  # a default
        return text
    compact = text.strip().lower().replace(" ", "")
    if compact == "0":
        return timedelta(0)
    parts = _PART.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact:
        raise typer.BadParameter(f"{text!r} is not a duration like 30m, 2h, 1d or 1h30m")
    return timedelta(seconds=sum(float(number) * _UNITS[unit] for number, unit in parts))


def format_duration(value: timedelta) -> str:
    """``1d 2h``, ``2h 5m``, ``5m 3s``, ``3s``: the two largest units."""
    seconds = max(int(value.total_seconds()), 0)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


class FlowApiChoice(str, Enum):
    charge = "charge"
    cdp = "cdp"


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
Limit = Annotated[int, typer.Option("--limit", min=1, max=100_000, help="Show at most this many.")]
Grade = Annotated[str | None, typer.Option("--grade", help="The package tier (FLOW_API=charge).")]
OfferId = Annotated[str | None, typer.Option("--offer-id", help="The offer id, a whole number (FLOW_API=cdp).")]
FlowApiOption = Annotated[
    FlowApiChoice,
    typer.Option(
        "--flow-api",
        envvar="FLOW_API",
        case_sensitive=False,
        help="The flow API the orders will be charged with: it decides the product column (grade or offer_id).",
    ),
]


def product_option(grade: str | None, offer_id: str | None, flow_api: str) -> str | None:
    """The product given with --grade or --offer-id, checked against FLOW_API."""
    if grade is not None and offer_id is not None:
        raise typer.BadParameter("give --grade or --offer-id, not both")
    wanted = "--grade" if flow_api == "charge" else "--offer-id"
    given = "--grade" if grade is not None else "--offer-id" if offer_id is not None else None
    if given is not None and given != wanted:
        raise typer.BadParameter(f"FLOW_API is {flow_api}: its top-ups take {wanted}, not {given}")
    return grade if grade is not None else offer_id


class LogLevel(str, Enum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"

"""flow-receipts report [--date YYYY-MM-DD] [--out DIR]"""

from __future__ import annotations

import os
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import typer

from cli import output
from cli.common import fail, ledger
from cli.params import JsonFlag

UNRESOLVED_SHOWN = 20
UNRESOLVED_COLUMNS = ("out_id", "phone", "submitted_at", "age_hours", "charge_attempts", "why")


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    ctx: typer.Context,
    day: Annotated[
        str | None,
        typer.Option(
            "--date",
            metavar="YYYY-MM-DD",
            help="Only orders submitted on this day, Beijing time (default: the whole ledger).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="DIR", help="Also write the report there as JSON and CSV.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """The reconciliation report: orders by status and by resolver, failures by error code, and every order still
    open with why."""
    from shared.adapters.ledger.records import utc_now
    from shared.services import report as reconciliation

    submitted_from, submitted_to = _day_range(day) if day else (None, None)
    now = utc_now()
    built = reconciliation.build(
        ledger(ctx), now=now, grace=_grace(), submitted_from=submitted_from, submitted_to=submitted_to
    )
    written = []
    if out is not None:
        stem = f"reconciliation-{day}" if day else f"reconciliation-{now:%Y%m%dT%H%M%SZ}"
        written = [str(path) for path in reconciliation.write(built, out, stem)]
    if as_json:
        output.print_json({**built, "files": written})
        return
    scope = f"orders submitted on {day} (Beijing time)" if day else "the whole ledger"
    output.line(f"reconciliation of {scope}, {now:%Y-%m-%d %H:%M:%S} UTC", style="bold")
    output.render(output.fields_table(built["orders_by_status"], title="orders by status"))
    output.render(output.fields_table(built["orders_by_resolver"], title="closed by"))
    if built["failures_by_code"]:
        output.render(output.fields_table(built["failures_by_code"], title="failures by error code"))
    other = {
        "unregistered orders": built["unregistered_orders"],
        "conflicts": built["conflicts"],
        "dead letters (not replayed)": built["dead_letters"],
        "undelivered events": built["undelivered_events"],
        "rejected events": built["rejected_events"],
    }
    output.render(output.fields_table(other, title="needs a look"))
    open_orders = built["unresolved"][:UNRESOLVED_SHOWN]
    title = f"still open: {built['unresolved_total']}" + (
        f" (first {UNRESOLVED_SHOWN})" if built["unresolved_total"] > UNRESOLVED_SHOWN else ""
    )
    output.show(open_orders, False, UNRESOLVED_COLUMNS, title=title, empty="every order is closed")
    for path in written:
        output.line(f"written: {path}")


def _day_range(text: str) -> tuple[datetime, datetime]:
    from shared.adapters.alicom import SHANGHAI

    try:
        day = date.fromisoformat(text)
    except ValueError:
        fail(f"--date must be a day like 2026-12-01, got {text!r}")
    start = datetime.combine(day, time(0), tzinfo=SHANGHAI)
    return start, start + timedelta(days=1)


def _grace() -> timedelta:
    """SWEEP_GRACE_SECONDS when it is set (what the sweep uses to say an order is simply young)."""
    from shared.settings import Settings

    raw = os.environ.get("SWEEP_GRACE_SECONDS", "").strip()
    try:
        return timedelta(seconds=float(raw or Settings.model_fields["sweep_grace_seconds"].default))
    except ValueError:
        fail(f"SWEEP_GRACE_SECONDS: must be a number of seconds (got {raw!r})")

"""flow-receipts charge: place a top-up (one, or every row of a CSV file at CHARGE_RATE_PER_SECOND)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli import output
from cli.common import ExitCode, fail, ledger, state
from cli.orders import print_bad_rows
from cli.params import Grade, JsonFlag, OfferId, product_option

SHOWN = 20
# What a single top-up's answer means for the exit code and for the person reading.
SINGLE: dict[str, tuple[ExitCode, str]] = {
    "placed": (ExitCode.OK, "placed: its receipt (or the sweep) settles the order"),
    "duplicate": (ExitCode.OK, "the provider says this out id was used before: the order stays PENDING"),
    "not_pending": (ExitCode.OK, "already resolved: the order is not PENDING, nothing was placed"),
    "unknown": (ExitCode.UNAVAILABLE, "no answer: the order stays PENDING (running this again is safe)"),
    "rejected": (ExitCode.INCOMPLETE, "rejected by the provider: the order is FAILED"),
}


def register(app: typer.Typer) -> None:
    app.command("charge")(charge)


def charge(
    ctx: typer.Context,
    out_id: Annotated[str | None, typer.Option("--out-id", help="Your top-up serial number.")] = None,
    phone: Annotated[str | None, typer.Option("--phone", help="A mainland China mobile number.")] = None,
    grade: Grade = None,
    offer_id: OfferId = None,
    from_csv: Annotated[
        Path | None,
        typer.Option("--from-csv", metavar="FILE", help="Charge every row: header out_id,phone,grade|offer_id."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=64, help="Top-ups in flight at once (--from-csv).")
    ] = 4,
    as_json: JsonFlag = False,
) -> None:
    """Register an order and place its top-up with FLOW_API; or every order of a file, at CHARGE_RATE_PER_SECOND.

    A timeout or a duplicate out id leaves the order PENDING; a rejection makes it FAILED. Running a file again
    resumes it: resolved and already placed orders are skipped."""
    if from_csv is not None:
        if any(value is not None for value in (out_id, phone, grade, offer_id)):
            fail("give --from-csv FILE, or --out-id, --phone and --grade/--offer-id; not both")
        charge_file(ctx, from_csv, concurrency, as_json)
    elif out_id is None or phone is None or (grade is None and offer_id is None):
        fail("give --out-id, --phone and --grade (FLOW_API=charge) or --offer-id (FLOW_API=cdp), or --from-csv FILE")
    else:
        charge_one(ctx, out_id, phone, grade, offer_id, as_json)


def charge_one(
    ctx: typer.Context, out_id: str, phone: str, grade: str | None, offer_id: str | None, as_json: bool
) -> None:
    from shared.services.intake import charge as charge_order

    product = product_option(grade, offer_id, state(ctx).settings().flow_api)
    outcome = charge_order(ledger(ctx), state(ctx).flow_api(), out_id, phone, product)
    code, meaning = SINGLE[outcome.state]
    if as_json:
        output.print_json({"out_id": outcome.out_id, "state": outcome.state, "detail": outcome.detail})
    else:
        output.line(f"{outcome.out_id}: {meaning}" + (f" ({outcome.detail})" if outcome.detail else ""))
    if code is not ExitCode.OK:
        raise typer.Exit(code)


def charge_file(ctx: typer.Context, path: Path, concurrency: int, as_json: bool) -> None:
    from shared.services.intake import RunStopped, charge_csv, count_rows

    rate = state(ctx).settings().charge_rate_per_second
    orders_ledger, flow, total = ledger(ctx), state(ctx).flow_api(), count_rows(path)

    def progress(summary: Any) -> None:
        bar.update(summary.done, f"placed {summary.placed} · unknown {summary.unknown} · rejected {summary.rejected}")

    with output.progress_bar("charging", total) as bar:
        try:
            summary = charge_csv(
                orders_ledger, flow, path, rate_per_second=rate, concurrency=concurrency, progress=progress
            )
        except RunStopped as stopped:
            print_charges(stopped.summary, as_json)
            raise stopped.cause from None
    print_charges(summary, as_json)
    if summary.bad or summary.rejected or summary.unknown:
        raise typer.Exit(ExitCode.INCOMPLETE)


def print_charges(summary: Any, as_json: bool) -> None:
    if as_json:
        output.print_json(summary)
        return
    counts = output.as_mapping(summary)
    labels = {
        "rows": "rows read",
        "registered": "registered now",
        "existing": "registered before",
        "placed": "placed",
        "duplicate": "duplicate out id (PENDING)",
        "unknown": "no answer (PENDING)",
        "rejected": "rejected (FAILED)",
        "already_resolved": "already resolved, skipped",
        "already_placed": "placed before, skipped",
        "bad": "bad rows",
    }
    output.render(output.fields_table({label: counts[name] for name, label in labels.items()}, title="charge"))
    print_bad_rows(counts["bad_rows"], counts["bad"])
    not_placed = counts["not_placed"]
    if not_placed:
        output.show(not_placed[:SHOWN], False, ("line", "out_id", "state", "detail"), title="not placed")
        more = counts["unknown"] + counts["rejected"] - SHOWN
        if more > 0:
            output.line(f"… and {more} more: `flow-receipts orders pending` lists the PENDING ones")

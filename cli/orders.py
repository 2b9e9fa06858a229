"""flow-receipts orders show | pending | register | import"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from cli import output
from cli.common import ExitCode, fail, ledger
from cli.params import FlowApiChoice, FlowApiOption, Grade, JsonFlag, Limit, OfferId, parse_duration, product_option

app = typer.Typer(help="Orders: look one up, list the pending ones, register them one by one or from a CSV file.")

ORDER_FIELDS = (
    "out_id",
    "phone",
    "status",
    "err_code",
    "err_msg",
    "resolved_by",
    "submitted_at",
    "resolved_at",
    "registered",
    "product",
    "flow_api",
    "charge_id",
    "charge_attempts",
    "last_charge_at",
    "last_query_at",
    "last_query_answer",
)
RECEIPT_COLUMNS = ("message_id", "source", "result", "outcome", "err_code", "received_at")
EVENT_COLUMNS = ("event_id", "kind", "created_at", "delivered_at", "attempts", "last_error")
PENDING_COLUMNS = ("out_id", "phone", "submitted_at", "age", "charge_attempts", "last_query_answer")
BAD_ROWS_SHOWN = 20


@app.command("show")
def show_order(
    ctx: typer.Context,
    out_id: Annotated[str, typer.Argument(help="The order's out id.")],
    as_json: JsonFlag = False,
) -> None:
    """An order with its receipts and outbox events (exit 3 when there is no such order)."""
    from shared.services.operations import order_details

    details = order_details(ledger(ctx), out_id)
    if details is None:
        fail(f"no order with out_id {out_id!r} in the ledger", ExitCode.NOT_FOUND)
    if as_json:
        output.print_json(details)
        return
    order = output.as_mapping(details.order)
    output.render(output.fields_table({name: order[name] for name in ORDER_FIELDS}, title=f"order {out_id}"))
    output.show(details.receipts, False, RECEIPT_COLUMNS, title="receipts", empty="no receipts")
    output.show(details.events, False, EVENT_COLUMNS, title="outbox events", empty="no outbox events")


@app.command("pending")
def pending(
    ctx: typer.Context,
    older_than: Annotated[
        timedelta,
        typer.Option(
            "--older-than",
            parser=parse_duration,
            metavar="DURATION",
            help="Only orders submitted at least this long ago: 30m, 2h, 1d, 1h30m.",
        ),
    ] = timedelta(0),
    limit: Limit = 100,
    as_json: JsonFlag = False,
) -> None:
    """PENDING orders, oldest first."""
    from shared.services.operations import pending_orders

    rows = pending_orders(ledger(ctx), older_than=older_than, limit=limit)
    records = [{**output.as_mapping(row.order), "age": row.age} for row in rows]
    output.show(records, as_json, PENDING_COLUMNS, empty="no pending orders", limit=limit)


@app.command("register")
def register(
    ctx: typer.Context,
    out_id: Annotated[str, typer.Option("--out-id", help="Your top-up serial number (at most 128 characters).")],
    phone: Annotated[str, typer.Option("--phone", help="A mainland China mobile number (+86 allowed).")],
    grade: Grade = None,
    offer_id: OfferId = None,
    flow_api: FlowApiOption = FlowApiChoice.charge,
    as_json: JsonFlag = False,
) -> None:
    """Register one order (PENDING). Idempotent: an order registered before is left as it is."""
    from shared.services.intake import register as register_order

    product = product_option(grade, offer_id, flow_api.value)
    done = register_order(ledger(ctx), out_id, phone, product, flow_api=flow_api.value)
    if as_json:
        output.print_json({"out_id": done.order.out_id, "state": done.state})
        return
    said = {"registered": "registered", "claimed": "registered (a receipt for it came first)", "existing": ""}
    output.line(f"{said[done.state] or 'already registered, left as it was'}: {done.order.out_id}")


@app.command("import")
def import_file(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A CSV file: header out_id,phone and optionally grade or offer_id.")],
    flow_api: FlowApiOption = FlowApiChoice.charge,
    as_json: JsonFlag = False,
) -> None:
    """Register every order of a CSV file: bad rows are listed with their line and reason, good rows are kept.

    Importing a file again registers only what is new. Exit 4 when some rows were bad."""
    from shared.services.intake import RunStopped, count_rows, import_csv

    orders_ledger = ledger(ctx)
    total = count_rows(file)
    with output.progress_bar("importing", total) as bar:
        try:
            summary = import_csv(orders_ledger, file, flow_api=flow_api.value, progress=lambda s: bar.update(s.rows))
        except RunStopped as stopped:
            print_import(stopped.summary, as_json)
            raise stopped.cause from None
    print_import(summary, as_json)
    if summary.bad:
        raise typer.Exit(ExitCode.INCOMPLETE)


def print_import(summary: object, as_json: bool) -> None:
    if as_json:
        output.print_json(summary)
        return
    counts = output.as_mapping(summary)
    labels = {
        "rows": "rows read",
        "registered": "registered",
        "claimed": "registered, first seen in a receipt",
        "existing": "already registered",
        "bad": "bad rows",
    }
    output.render(output.fields_table({label: counts[name] for name, label in labels.items()}, title="import"))
    print_bad_rows(counts["bad_rows"], counts["bad"])


def print_bad_rows(bad_rows: list, bad: int) -> None:
    if not bad:
        return
    shown = sorted(bad_rows, key=lambda row: row.line)[:BAD_ROWS_SHOWN]
    output.show(shown, False, ("line", "out_id", "reason"), title="bad rows")
    if bad > BAD_ROWS_SHOWN:
        output.line(f"… and {bad - BAD_ROWS_SHOWN} more bad rows (--json lists up to 1000)")

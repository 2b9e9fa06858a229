"""flow-receipts outbox list"""

from __future__ import annotations

from typing import Annotated

import typer

from cli import output
from cli.common import ledger
from cli.params import JsonFlag, Limit

app = typer.Typer(help="The outbox: one event per order transition, delivered to your webhook or hook.")

LIST_COLUMNS = ("event_id", "out_id", "kind", "created_at", "delivered_at", "attempts", "last_error")


@app.command("list")
def list_events(
    ctx: typer.Context,
    undelivered: Annotated[bool, typer.Option("--undelivered", help="Only events not delivered yet.")] = False,
    limit: Limit = 100,
    as_json: JsonFlag = False,
) -> None:
    """Outbox events."""
    rows = ledger(ctx).list_events(undelivered=undelivered, limit=limit)
    output.show(rows, as_json, LIST_COLUMNS, empty="no outbox events", limit=limit)

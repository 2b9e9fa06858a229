"""flow-receipts outbox list | redeliver"""

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


@app.command("redeliver")
def redeliver(
    ctx: typer.Context,
    rejected: Annotated[
        bool,
        typer.Option("--rejected", help="First make the events the webhook rejected (4xx) due again, after a fix."),
    ] = False,
    max_seconds: Annotated[float, typer.Option("--max-seconds", min=1, help="Stop after this long.")] = 600.0,
    as_json: JsonFlag = False,
) -> None:
    """Deliver the undelivered events that are due to WEBHOOK_URL / NOTIFY_HOOK (the same settings as the
    functions), recording attempts and errors; exit 4 when some are still undelivered."""
    import time

    from cli.common import ExitCode, fail, state

    runtime = state(ctx).runtime()
    notifications = runtime.notifications
    if notifications is None:
        fail("no sink is configured: set WEBHOOK_URL and WEBHOOK_SECRET, or NOTIFY_HOOK")
    made_due = runtime.ledger.retry_rejected_events() if rejected else 0
    counts = {"made_due": made_due, **notifications.redeliver(time.monotonic() + max_seconds)}
    left = runtime.ledger.reconciliation()
    counts.update(undelivered_left=left.undelivered_events, rejected_left=left.rejected_events)
    if as_json:
        output.print_json(counts)
    else:
        output.render(output.fields_table(counts, title="redelivery"))
    if counts["undelivered_left"] or counts["rejected_left"]:
        raise typer.Exit(int(ExitCode.INCOMPLETE))

"""flow-receipts migrate | summary"""

from __future__ import annotations

import typer

from cli import output
from cli.common import ledger
from cli.params import JsonFlag


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
    app.command("summary")(summary)


def migrate(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Create or upgrade the ledger schema (safe to run again)."""
    from shared.adapters.ledger.engine import display_url

    orders_ledger = ledger(ctx, migrated=False)
    result = orders_ledger.migrate()
    if as_json:
        output.print_json({**output.as_mapping(result), "changed": result.changed})
        return
    where = display_url(orders_ledger.url)
    if result.changed:
        output.line(f"ledger schema migrated from version {result.from_version} to {result.to_version}: {where}")
    else:
        output.line(f"ledger schema already at version {result.to_version}: {where}")


def summary(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Orders by status, receipts by outcome, dead letters and undelivered events."""
    counts = ledger(ctx).summary().as_dict()
    if as_json:
        output.print_json(counts)
        return
    output.render(output.fields_table(counts["orders"], title="orders"))
    output.render(output.fields_table(counts["receipts"], title="receipts"))
    output.render(
        output.fields_table(
            {"dead letters": counts["dead_letters"], "undelivered events": counts["undelivered_events"]}, title="other"
        )
    )

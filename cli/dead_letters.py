"""flow-receipts dead-letters list | show | replay"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli import output
from cli.common import ExitCode, fail, ledger
from cli.params import JsonFlag, Limit

app = typer.Typer(help="Dead letters: messages that could not be applied, kept with their raw body.")

LIST_COLUMNS = ("message_id", "message_type", "reason", "dequeue_count", "first_seen_at", "replayed_at")
REPLAY_SAID = {
    "replayed": "replayed",
    "still_poison": "still poison, kept",
    "already_replayed": "replayed before, skipped",
    "not_found": "no such dead letter",
}


@app.command("list")
def list_dead_letters(
    ctx: typer.Context,
    include_replayed: Annotated[bool, typer.Option("--all", help="Include the ones replayed already.")] = False,
    limit: Limit = 100,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters, newest first (not yet replayed, unless --all)."""
    rows = ledger(ctx).dead_letters(include_replayed=include_replayed, limit=limit)
    output.show(rows, as_json, LIST_COLUMNS, empty="no dead letters", limit=limit)


@app.command("show")
def show_dead_letter(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(help="The message id.")],
    as_json: JsonFlag = False,
) -> None:
    """One dead letter with its raw body, and the body decoded when it is base64 text (exit 3 when unknown)."""
    from shared.domain.models import decode_body
    from shared.errors import PoisonMessage
    from shared.logs import redactor

    record = ledger(ctx).get_dead_letter(message_id)
    if record is None:
        fail(f"no dead letter with message id {message_id!r}", ExitCode.NOT_FOUND)
    try:
        decoded: str | None = decode_body(record.raw_body)
    except PoisonMessage:
        decoded = None
    if as_json:
        output.print_json({**output.as_mapping(record), "decoded_body": decoded})
        return
    values = dict(output.as_mapping(record))
    body = values.pop("raw_body")
    output.render(output.fields_table(values, title=f"dead letter {message_id}"))
    # Phone numbers in the body are masked here as in the logs; --json shows the body as stored.
    output.line("body (decoded from base64):" if decoded is not None else "raw body:", style="bold")
    output.line(redactor.redact(decoded if decoded is not None else body))


@app.command("replay")
def replay(
    ctx: typer.Context,
    message_ids: Annotated[
        list[str] | None, typer.Argument(help="Dead letters to replay (default: every one not replayed yet).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run dead letters through the processor again, after a fix.

    One that applies is marked replayed and never replayed again; one still poison stays, with its reason (exit 4).
    Exit 3 when an id is unknown."""
    from shared.services.replay import replay_dead_letters

    def said(result: Any) -> None:
        if not as_json:
            detail = ", ".join(result.outcomes) if result.outcomes else result.reason
            output.line(f"{result.message_id}: {REPLAY_SAID[result.state]}" + (f" ({detail})" if detail else ""))

    results = replay_dead_letters(ledger(ctx), message_ids or None, on_result=said)
    states = [result.state for result in results]
    if as_json:
        output.print_json(results)
    elif not results:
        output.line("no dead letters to replay")
    else:
        counts = {name: states.count(name) for name in REPLAY_SAID if states.count(name)}
        output.line(", ".join(f"{REPLAY_SAID[name]}: {count}" for name, count in counts.items()))
    if "not_found" in states:
        raise typer.Exit(ExitCode.NOT_FOUND)
    if "still_poison" in states:
        raise typer.Exit(ExitCode.INCOMPLETE)

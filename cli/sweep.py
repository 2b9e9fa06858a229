"""flow-receipts sweep [--dry-run]: the daily sweep, run by hand (the same code the sweep function runs)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated

import typer

from cli import output
from cli.common import ExitCode, fail, state
from cli.params import JsonFlag

SHOWN = ("queried", "resolved_succeeded", "resolved_failed", "still_pending", "query_errors", "expired")
STOPPED = {
    "finished": "finished: every step of the cycle is done",
    "deadline": "stopped at --max-seconds: its cursor is saved, the next run resumes",
    "lease_held": "another sweep is running (it holds the lease): nothing done",
    "lease_lost": "another sweep took the lease over: this one stopped",
}


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)


def sweep(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Ask the status query and say what would change; change nothing.")
    ] = False,
    max_seconds: Annotated[
        float, typer.Option("--max-seconds", min=1, help="Stop starting new work after this long (it resumes).")
    ] = 3600.0,
    as_json: JsonFlag = False,
) -> None:
    """Close PENDING orders: ask the status query about those older than SWEEP_GRACE_SECONDS, expire those past 30
    days, re-drive DLQ_QUEUE_NAME, redeliver undelivered events, write the report into REPORT_DIR. Reads the same
    settings as the functions (FLOW_API, FLOW_API_ENDPOINT, the AccessKey, SWEEP_*, WEBHOOK_* ...)."""
    from shared.adapters.fc import credentials_from

    cli = state(ctx)
    runtime = cli.runtime()
    sweeper = runtime.sweeper(credentials_from(None))
    with output.status("sweeping ...") as shown:
        sweeper.progress = lambda phase, counts: shown.update(_progress_line(phase, counts))
        result = sweeper.run(time.monotonic() + max_seconds, dry_run=dry_run)
    if as_json:
        output.print_json(result.as_dict())
    else:
        title = "sweep (dry run: nothing changed)" if dry_run else f"sweep {result.cycle_id or ''}".strip()
        output.render(output.fields_table(dict(sorted(result.counts.items())), title=title))
        output.line(STOPPED.get(result.stopped_by, f"stopped: {result.stopped_by}"))
        for path in result.reports:
            output.line(f"report: {path}")
    if result.stopped_by in ("config_error", "ledger_unavailable"):
        code = ExitCode.USAGE if result.stopped_by == "config_error" else ExitCode.UNAVAILABLE
        fail(result.error or result.stopped_by, code)
    if result.stopped_by != "finished":
        raise typer.Exit(int(ExitCode.INCOMPLETE))


def _progress_line(phase: str, counts: Counter[str]) -> str:
    shown = ", ".join(f"{name.replace('_', ' ')} {counts[name]}" for name in SHOWN if counts[name])
    return f"sweeping: {phase}" + (f" ({shown})" if shown else "")

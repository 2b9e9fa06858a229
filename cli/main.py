"""The flow-receipts command line (``flow-receipts --help``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli import admin, charge, dead_letters, orders, outbox, output, report, sweep
from cli.common import CliGroup, CliState
from cli.params import LogLevel

app = typer.Typer(
    name="flow-receipts",
    cls=CliGroup,
    help="Operate flow-receipts: orders, top-ups, dead letters, the outbox and the ledger. The ledger is "
    "--ledger-url, else LEDGER_URL, else sqlite:///.local/ledger.sqlite3. Exit codes: 0 done, 1 the ledger or the "
    "flow API unavailable, 2 bad usage, input or configuration, 3 not found, 4 done with bad rows, failures or "
    "unanswered top-ups, 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold credentials
)

# One module per command group; top-level commands register themselves.
app.add_typer(orders.app, name="orders", no_args_is_help=True)
app.add_typer(dead_letters.app, name="dead-letters", no_args_is_help=True)
app.add_typer(outbox.app, name="outbox", no_args_is_help=True)
charge.register(app)
admin.register(app)
report.register(app)
sweep.register(app)


@app.callback()
def options(
    ctx: typer.Context,
    ledger_url: Annotated[
        str | None,
        typer.Option(
            "--ledger-url",
            envvar="LEDGER_URL",
            show_envvar=True,
            metavar="URL",
            help="The ledger database URL.",
        ),
    ] = None,
    log_level: Annotated[
        LogLevel, typer.Option("--log-level", case_sensitive=False, help="JSON log lines at this level and above.")
    ] = LogLevel.WARNING,
    log_file: Annotated[
        Path | None, typer.Option("--log-file", metavar="FILE", help="Append the log lines here instead of stderr.")
    ] = None,
) -> None:
    from cli.logs import route_logs

    cli = CliState(ledger_url=ledger_url, log_level=log_level.value, log_file=log_file)
    ctx.obj = cli
    output.reset_consoles()
    ctx.call_on_close(route_logs(cli.log_level, log_file))
    ctx.call_on_close(cli.close)


def main() -> None:
    app(prog_name="flow-receipts")


if __name__ == "__main__":
    main()

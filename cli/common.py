"""Exit codes, the errors that map onto them, and what a command opens: the ledger, the settings, the flow API."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer.core import TyperGroup

from shared.domain.intake import BadHeader, CsvUnreadable, InvalidOrder
from shared.errors import ConfigError, TransientError

if TYPE_CHECKING:
    from shared.adapters.flow import FlowApi
    from shared.adapters.ledger import Ledger
    from shared.runtime import Runtime
    from shared.settings import Settings

PROG = "flow-receipts"


class ExitCode(IntEnum):
    OK = 0
    UNAVAILABLE = 1  # the ledger database or the flow API could not be reached (running again is safe)
    USAGE = 2  # bad usage, bad input (a wrong header, an invalid order) or configuration
    NOT_FOUND = 3  # the order or dead letter asked for does not exist
    INCOMPLETE = 4  # done, but not all of it: bad rows, rejected or unanswered top-ups, dead letters still poison
    INTERRUPTED = 130  # Ctrl-C


class Failure(Exception):
    """Stops a command with a message (on stderr) and an exit code."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> NoReturn:
    raise Failure(message, code)


def exit_code_for(error: BaseException) -> ExitCode | None:
    """The exit code of an error a command may end with; None: a bug (the traceback is shown)."""
    if isinstance(error, Failure):
        return error.code
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(error, TransientError):
        return ExitCode.UNAVAILABLE
    if isinstance(error, (ConfigError, InvalidOrder, BadHeader, CsvUnreadable, OSError)):
        return ExitCode.USAGE
    return None


def error_line(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, ConfigError):
        return f"configuration error: {error}"
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return str(error) or type(error).__name__


def say_error(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")


class CliGroup(TyperGroup):
    """The root command group: every command's expected errors become one line on stderr and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (Exception, KeyboardInterrupt) as error:
            code = exit_code_for(error)
            if code is None:
                raise
            say_error(error_line(error))
            raise typer.Exit(int(code)) from None


@dataclass
class CliState:
    """What the global options chose, and what the commands opened (closed when the command ends)."""

    ledger_url: str | None = None
    log_level: str = "WARNING"
    log_file: Path | None = None
    _ledger: Ledger | None = field(default=None, repr=False)
    _settings: Settings | None = field(default=None, repr=False)
    _runtime: Runtime | None = field(default=None, repr=False)
    _schema_checked: bool = field(default=False, repr=False)

    def ledger(self, *, migrated: bool = True) -> Ledger:
        """The ledger at --ledger-url, else LEDGER_URL, else the local SQLite file; its schema must be current
        unless ``migrated`` is False (``flow-receipts migrate``)."""
        from shared.adapters.ledger import DEFAULT_URL, Ledger
        from shared.adapters.ledger.engine import display_url
        from shared.adapters.ledger.migrate import LATEST_VERSION

        if self._ledger is None:
            self._ledger = Ledger(self.ledger_url or DEFAULT_URL)
        if migrated and not self._schema_checked:
            version = self._ledger.schema_version()
            if version < LATEST_VERSION:
                state = "has no schema yet" if version == 0 else f"has schema version {version}"
                fail(
                    f"the ledger at {display_url(self._ledger.url)} {state} (this code needs {LATEST_VERSION}): "
                    f"run `{PROG} migrate`"
                )
            self._schema_checked = True
        return self._ledger

    def settings(self) -> Settings:
        """All the settings from the environment (the flow API needs them; ALICOM_QUEUE_NAME is required)."""
        from shared.settings import load_settings

        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    def flow_api(self) -> FlowApi:
        """FLOW_API at FLOW_API_ENDPOINT, with the AccessKey from ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET."""
        from shared.adapters.fc import credentials_from

        return self.runtime().flow_api(credentials_from(None))

    def runtime(self) -> Runtime:
        """What a function instance would build, from the environment's settings, on this command's ledger."""
        from shared.logs import logger
        from shared.runtime import Runtime

        if self._runtime is None:
            settings = self.settings()
            if self.ledger_url:
                settings = settings.model_copy(update={"ledger_url": self.ledger_url})
            self._runtime = Runtime(lambda: settings)
            self._runtime.settings  # noqa: B018 - the runtime sets LOG_LEVEL, the functions' level ...
            logger.setLevel(self.log_level)  # ... which the command's --log-level overrides
        return self._runtime

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        if self._runtime is not None and self._runtime.has_ledger:
            self._runtime.ledger.close()
        self._runtime = None


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def ledger(ctx: typer.Context, *, migrated: bool = True) -> Ledger:
    return state(ctx).ledger(migrated=migrated)

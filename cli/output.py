"""Printing: rich tables for people on stdout, JSON for scripts on stdout, progress and errors on stderr.

Phone numbers are masked in tables (``138****8000``) and given whole in JSON (scripts need them). Every value
goes into a table as plain text: an out id like ``[red]x`` is shown as written, never read as markup.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from enum import Enum
from functools import cache
from typing import TYPE_CHECKING, Any

from cli.params import format_duration

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

PHONE_FIELDS = frozenset({"phone"})
MAX_CELL = 160  # longer values are shortened in tables (JSON has them whole)
PIPED_WIDTH = 160


@cache
def stdout() -> Console:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH  # a file or a pipe: no screen to fit, so do not fold every column
    return console


@cache
def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def reset_consoles() -> None:
    """Forget the consoles (each CLI run in one process, e.g. tests, binds the streams of its own)."""
    stdout.cache_clear()
    stderr.cache_clear()


# ---- JSON ---------------------------------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """Dataclasses, datetimes (ISO 8601, UTC), durations (seconds), enums and tuples as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value.tzinfo else value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_json(value), ensure_ascii=False, indent=2) + "\n")


# ---- tables -------------------------------------------------------------------------------------------------


def cell(value: Any, name: str = "") -> str:
    """One value as a person reads it in a table."""
    from shared.logs import mask_phone

    if value is None:
        return ""
    if name in PHONE_FIELDS:
        return mask_phone(value)
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], title: str | None = None) -> Table:
    from rich.table import Table
    from rich.text import Text

    shown = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        shown.add_column(column.replace("_", " "), overflow="fold")
    for row in rows:
        shown.add_row(*(Text(cell(row.get(column), column)) for column in columns))
    return shown


def fields_table(values: Mapping[str, Any], title: str | None = None) -> Table:
    """One record as a two-column table (name, value)."""
    from rich.table import Table
    from rich.text import Text

    shown = Table(title=title, title_justify="left", show_header=False)
    shown.add_column("field", style="bold")
    shown.add_column("value", overflow="fold")
    for name, value in values.items():
        shown.add_row(Text(name), Text(cell(value, name)))
    return shown


def show(
    rows: Sequence[Any],
    as_json: bool,
    columns: Sequence[str],
    *,
    title: str | None = None,
    empty: str = "nothing to show",
    limit: int | None = None,
) -> None:
    """Records (dataclasses or mappings) as a table, or as a JSON array."""
    if as_json:
        print_json(list(rows))
        return
    if not rows:
        line(empty)
        return
    stdout().print(table([as_mapping(row) for row in rows], columns, title))
    if limit is not None and len(rows) >= limit:
        line(f"showing the first {limit}; --limit shows more")


def as_mapping(record: Any) -> Mapping[str, Any]:
    if isinstance(record, Mapping):
        return record
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def line(text: str, style: str | None = None) -> None:
    """A sentence on stdout (plain text: never read as markup)."""
    stdout().print(text, style=style, markup=False, highlight=False)


def render(renderable: Any) -> None:
    stdout().print(renderable)


# ---- progress -----------------------------------------------------------------------------------------------


class Bar:
    def __init__(self, progress: Any, task: Any) -> None:
        self._progress, self._task = progress, task

    def update(self, completed: int, description: str | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, description=description)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Bar]:
    """A progress bar on stderr while the work runs (only on a terminal; nothing otherwise)."""
    console = stderr()
    if not console.is_terminal:
        yield Bar(None, None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield Bar(progress, task)


class Status:
    def __init__(self, status: Any) -> None:
        self._status = status

    def update(self, text: str) -> None:
        if self._status is not None:
            self._status.update(text)


@contextmanager
def status(text: str) -> Iterator[Status]:
    """A spinner with a line of text on stderr while the work runs (only on a terminal; nothing otherwise)."""
    console = stderr()
    if not console.is_terminal:
        yield Status(None)
        return
    with console.status(text) as shown:
        yield Status(shown)

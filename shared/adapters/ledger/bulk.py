"""The batch path's statements straight through the DB-API cursor of the transaction's connection.

SQLAlchemy compiles each statement once per dialect (``Bulk.for_dialect``); the rows' values are converted here as
the schema's types would (aware datetimes to naive UTC, and to SQLAlchemy's SQLite text format on SQLite), so the
many parameters of a batch skip SQLAlchemy's per-value processing: that processing was most of the batch path's CPU.
What is written is exactly what the per-report path writes through SQLAlchemy (the backend tests read both back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, Table, exc, insert

from shared.adapters.ledger.schema import UtcDateTime
from shared.domain.orders import Status

_T = TypeVar("_T")
_UTC = timezone.utc
_RESOLVED = ("status", "err_code", "err_msg", "resolved_by", "resolved_message_id")  # set per order by RESOLVE


@dataclass(frozen=True)
class _Insert:
    sql: str
    columns: tuple[str, ...] | None  # positional (SQLite's qmark): the order of the values


@dataclass(frozen=True)
class Bulk:
    dialect: Dialect
    qmark: bool  # SQLite: ? placeholders; MySQL / PostgreSQL: %s / %(name)s

    @staticmethod
    @cache
    def for_dialect(dialect: Dialect) -> Bulk:
        return Bulk(dialect, dialect.paramstyle == "qmark")

    # ---- reads -------------------------------------------------------------------------------------------

    def recorded_message_ids(self, conn: Connection, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        sql = f"SELECT message_id FROM receipts WHERE message_id IN ({self._marks(len(ids))})"
        return {row[0] for row in self._cursor(conn, sql, ids)}

    def order_states(self, conn: Connection, out_ids: Sequence[str]) -> list[tuple[str, str, Any]]:
        if not out_ids:
            return []
        sql = f"SELECT out_id, status, registered FROM orders WHERE out_id IN ({self._marks(len(out_ids))})"
        return list(self._cursor(conn, sql, out_ids))

    def known_dead_letters(self, conn: Connection, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        sql = f"SELECT message_id FROM dead_letters WHERE message_id IN ({self._marks(len(ids))})"
        return {row[0] for row in self._cursor(conn, sql, ids)}

    # ---- writes ------------------------------------------------------------------------------------------

    def insert(self, conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """The rows (all with the same keys: the columns they set) in one executemany on SQLite, in ONE multi-row
        INSERT on MySQL / PostgreSQL (one statement for the server to run, not one per row)."""
        if not rows:
            return
        columns = tuple(rows[0])
        shape = _row_shape(table, columns if not self.qmark else _compiled(table, self.dialect, columns).columns)
        params = self._rows(shape, rows)
        if self.qmark:
            sql = _compiled(table, self.dialect, columns).sql
            self._run(conn, sql, params, lambda cursor: cursor.executemany(sql, params))
            return
        one = f"({', '.join('%s' for _ in columns)})"
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES {', '.join(one for _ in rows)}"
        flat = [item for row in params for item in row]
        self._run(conn, sql, flat, lambda cursor: cursor.execute(sql, flat))

    def resolve_pending(self, conn: Connection, resolutions: Sequence[Mapping[str, Any]], now: datetime) -> int:
        """Moves these PENDING orders (RESOLVE_PENDING's parameters, one dict per order, in out_id order); returns
        how many moved. SQLite: one executemany; MySQL / PostgreSQL: ONE statement (a CASE per column), one
        round trip."""
        if not resolutions:
            return 0
        resolved_at = self._value(now)
        if self.qmark:
            sql = (
                "UPDATE orders SET status = ?, err_code = ?, err_msg = ?, resolved_by = ?, "
                "resolved_message_id = ?, resolved_at = ? WHERE out_id = ? AND status = ?"
            )
            rows = [
                (*(r[f"p_{name}"] for name in _RESOLVED_PARAMS), resolved_at, r["p_out_id"], PENDING)
                for r in resolutions
            ]
            return self._run(conn, sql, rows, lambda cursor: (cursor.executemany(sql, rows), cursor.rowcount)[1])
        case_sql, params = self._case_update(resolutions, resolved_at)
        return self._run(conn, case_sql, params, lambda cursor: (cursor.execute(case_sql, params), cursor.rowcount)[1])

    def _case_update(self, resolutions: Sequence[Mapping[str, Any]], resolved_at: Any) -> tuple[str, list[Any]]:
        params: list[Any] = []
        sets = []
        for column, name in zip(_RESOLVED, _RESOLVED_PARAMS, strict=True):
            whens = " ".join("WHEN %s THEN %s" for _ in resolutions)
            sets.append(f"{column} = CASE out_id {whens} END")
            for r in resolutions:
                params += (r["p_out_id"], r[f"p_{name}"])
        out_ids = [r["p_out_id"] for r in resolutions]
        sql = (
            f"UPDATE orders SET {', '.join(sets)}, resolved_at = %s "
            f"WHERE out_id IN ({', '.join('%s' for _ in out_ids)}) AND status = %s"
        )
        return sql, [*params, resolved_at, *out_ids, PENDING]

    # ---- plumbing ----------------------------------------------------------------------------------------

    def _marks(self, count: int) -> str:
        return ", ".join(("?" if self.qmark else "%s") for _ in range(count))

    def _cursor(self, conn: Connection, sql: str, params: Sequence[Any]) -> Iterable[tuple[Any, ...]]:
        values = tuple(params)
        return self._run(conn, sql, values, lambda cursor: (cursor.execute(sql, values), cursor.fetchall())[1])

    def _run(self, conn: Connection, sql: str, params: Any, work: Callable[[Any], _T]) -> _T:
        """``work(cursor)`` on the transaction's DB-API connection; its errors become SQLAlchemy's, as if
        SQLAlchemy had run the statement (IntegrityError, OperationalError, ...; a lost connection invalidated)."""
        dbapi = self.dialect.loaded_dbapi
        raw = conn.connection.dbapi_connection
        cursor = raw.cursor()  # type: ignore[union-attr]
        try:
            return work(cursor)
        except dbapi.Error as error:
            lost = self.dialect.is_disconnect(error, raw, cursor)
            if lost:
                conn.invalidate(error)
            raise exc.DBAPIError.instance(
                sql, params, error, dbapi.Error, connection_invalidated=lost, dialect=self.dialect
            ) from error
        finally:
            cursor.close()

    def _value(self, value: Any) -> Any:
        if isinstance(value, datetime):
            naive = value.astimezone(_UTC).replace(tzinfo=None)
            return _sqlite_text(naive) if self.qmark else naive
        return value

    def _rows(self, shape: _RowShape, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Each row's values in the statement's order, its datetimes converted as ``_value`` does: a batch holds
        few distinct datetimes (mostly its one ``now``), so each is converted once."""
        values = [shape.pick(row) for row in rows]
        if not shape.datetimes:
            return values
        converted: dict[Any, Any] = {}
        for index, row in enumerate(values):
            row = list(row)
            for position in shape.datetimes:
                item = row[position]
                if item is not None:
                    found = converted.get(item)
                    if found is None:
                        found = converted[item] = self._value(item)
                    row[position] = found
            values[index] = row
        return values


PENDING = Status.PENDING.value
_RESOLVED_PARAMS = ("status", "err_code", "err_msg", "resolved_by", "message_id")


def _sqlite_text(value: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME storage format (always with microseconds)."""
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    )


@dataclass(frozen=True)
class _RowShape:
    pick: Callable[[Mapping[str, Any]], tuple[Any, ...]]  # the values of the statement's columns, in order
    datetimes: tuple[int, ...]  # positions of DateTime columns (converted by Bulk._rows)


@cache
def _row_shape(table: Table, columns: tuple[str, ...] | None) -> _RowShape:
    names = columns or ()
    getter = itemgetter(*names)
    pick = getter if len(names) > 1 else (lambda row: (getter(row),))
    datetimes = tuple(i for i, name in enumerate(names) if isinstance(table.c[name].type, UtcDateTime))
    return _RowShape(pick, datetimes)


@cache
def _compiled(table: Table, dialect: Dialect, columns: tuple[str, ...]) -> _Insert:
    compiled = insert(table).compile(dialect=dialect, column_keys=list(columns))
    positions = getattr(compiled, "positiontup", None)
    return _Insert(str(compiled), tuple(positions) if dialect.paramstyle == "qmark" and positions else None)

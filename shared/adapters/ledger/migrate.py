"""Create or upgrade the ledger schema, idempotently, under a lock so concurrent runs wait for each other.

A fresh database gets the current tables and is stamped with the latest version. A database at an older
version runs the steps above its version, in order, each recorded in schema_version. To change the schema:
edit schema.py (what a fresh database gets) AND append a step here that brings an existing one to the same
shape (e.g. `conn.execute(text("ALTER TABLE outbox ADD COLUMN next_attempt_at ..."))`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import CheckConstraint, Connection, Table, func, insert, inspect, select, text
from sqlalchemy.schema import AddConstraint, CreateColumn, CreateTable, DropConstraint

from shared.adapters.ledger.records import MigrationResult, utc_now
from shared.adapters.ledger.schema import metadata, orders, outbox, receipts, schema_version, sweep_state
from shared.errors import TransientError


@dataclass(frozen=True)
class Step:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn)


def _v2_intake_sweep_and_delivery(conn: Connection) -> None:
    """orders: product, flow API, charge id and attempts, last status query; outbox: backoff and rejection;
    sweep_state; the resolver / source 'charge'. Idempotent: MySQL commits each DDL statement by itself, so a step
    interrupted there must be able to run again."""
    added = {
        orders: ("product", "flow_api", "charge_id", "charge_attempts", "last_charge_at", "last_query_at",
                 "last_query_answer", "last_query_note"),
        outbox: ("next_attempt_at", "rejected_at"),
    }  # fmt: skip
    for table, names in added.items():
        present = {column["name"] for column in inspect(conn).get_columns(table.name)}
        for name in names:
            if name not in present:
                column = CreateColumn(table.c[name]).compile(dialect=conn.dialect)
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column}"))
    sweep_state.create(conn, checkfirst=True)
    _replace_check(conn, orders, "ck_orders_resolved_by")
    _replace_check(conn, receipts, "ck_receipts_source")


def _replace_check(conn: Connection, table: Table, name: str) -> None:
    """Brings a CHECK constraint to its definition in schema.py."""
    if conn.dialect.name == "sqlite":  # SQLite cannot alter a constraint: the table is rebuilt
        _rebuild_sqlite_table(conn, table)
        return
    constraint = next(c for c in table.constraints if isinstance(c, CheckConstraint) and c.name == name)
    if any(found["name"] == name for found in inspect(conn).get_check_constraints(table.name)):
        conn.execute(DropConstraint(constraint))
    conn.execute(AddConstraint(constraint))


def _rebuild_sqlite_table(conn: Connection, table: Table) -> None:
    """SQLite's documented way to change a table's definition (lang_altertable.html, "other kinds of table schema
    changes"): create the new shape, copy the rows, drop the old table, rename. Needs foreign keys off (the Ledger
    migrates SQLite so) and checks them afterwards."""
    new_name = f"{table.name}__new"
    ddl = str(CreateTable(table).compile(dialect=conn.dialect)).strip()
    prefix = f"CREATE TABLE {table.name} ("
    if not ddl.startswith(prefix):
        raise RuntimeError(f"unexpected DDL for {table.name}: {ddl[:60]!r}")
    conn.execute(text(f"DROP TABLE IF EXISTS {new_name}"))
    conn.execute(text(f"CREATE TABLE {new_name} (" + ddl[len(prefix) :]))
    present = {column["name"] for column in inspect(conn).get_columns(table.name)}
    columns = ", ".join(column.name for column in table.columns if column.name in present)
    conn.execute(text(f"INSERT INTO {new_name} ({columns}) SELECT {columns} FROM {table.name}"))
    conn.execute(text(f"DROP TABLE {table.name}"))
    conn.execute(text(f"ALTER TABLE {new_name} RENAME TO {table.name}"))
    for index in table.indexes:
        index.create(conn)
    broken = conn.execute(text("PRAGMA foreign_key_check")).fetchall()
    if broken:
        raise RuntimeError(f"rebuilding {table.name} broke {len(broken)} foreign key reference(s)")


STEPS: tuple[Step, ...] = (
    Step(1, "orders, receipts, dead_letters, outbox", _create_tables),
    Step(
        2, "order intake and sweep columns, outbox backoff, sweep_state, resolver charge", _v2_intake_sweep_and_delivery
    ),
)
LATEST_VERSION = STEPS[-1].version
_LOCK_NAME = "flow_receipts_migrate"
_PG_LOCK_KEY = 0x666C6F77  # "flow"
_LOCK_WAIT_S = 30


def migrate(conn: Connection) -> MigrationResult:
    """Run inside a transaction (SQLite: BEGIN IMMEDIATE already serialises; DDL is transactional there and on
    PostgreSQL, while MySQL commits each DDL statement itself)."""
    _lock(conn)
    try:
        current = current_version(conn)
        if current == 0:
            metadata.create_all(conn)
            _stamp(conn, LATEST_VERSION, "created at the latest version")
            return MigrationResult(0, LATEST_VERSION, ["created at the latest version"])
        applied = []
        for step in STEPS:
            if step.version > current:
                step.apply(conn)
                _stamp(conn, step.version, step.description)
                applied.append(step.description)
        return MigrationResult(current, max(current, LATEST_VERSION), applied)
    finally:
        _unlock(conn)


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table(schema_version.name):
        return 0
    return conn.execute(select(func.coalesce(func.max(schema_version.c.version), 0))).scalar_one()


def _stamp(conn: Connection, version: int, description: str) -> None:
    conn.execute(insert(schema_version).values(version=version, description=description, applied_at=utc_now()))


def _lock(conn: Connection) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    elif dialect in ("mysql", "mariadb"):
        got = conn.execute(text("SELECT GET_LOCK(:name, :wait)"), {"name": _LOCK_NAME, "wait": _LOCK_WAIT_S}).scalar()
        if got != 1:
            raise TransientError(f"another ledger migration has held the lock for {_LOCK_WAIT_S} s")


def _unlock(conn: Connection) -> None:
    if conn.dialect.name in ("mysql", "mariadb"):
        conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _LOCK_NAME})

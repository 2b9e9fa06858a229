"""Create or upgrade the ledger schema, idempotently, under a lock so concurrent runs wait for each other.

A fresh database gets the current tables and is stamped with the latest version. A database at an older
version runs the steps above its version, in order, each recorded in schema_version. To change the schema:
edit schema.py (what a fresh database gets) AND append a step here that brings an existing one to the same
shape (e.g. `conn.execute(text("ALTER TABLE outbox ADD COLUMN next_attempt_at ..."))`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, inspect, select, text

from shared.adapters.ledger.records import MigrationResult, utc_now
from shared.adapters.ledger.schema import metadata, schema_version
from shared.errors import TransientError


@dataclass(frozen=True)
class Step:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn)


STEPS: tuple[Step, ...] = (Step(1, "orders, receipts, dead_letters, outbox", _create_tables),)
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

"""Throw-away namespaces on a shared database server, for tests and benchmarks: a database of its own on
MySQL/MariaDB, a schema of its own on PostgreSQL. Sessions running at the same time never see each other's
tables; the namespace is dropped on exit."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from shared.adapters.ledger.engine import CONNECT_TIMEOUT_S, parse_url, transient_errors


@contextmanager
def scratch_namespace(url: str | URL, prefix: str) -> Iterator[URL]:
    """Yields a URL pointing at a fresh namespace on the server of `url`; raises TransientError when the
    server cannot be reached."""
    base = parse_url(url)
    name = f"{prefix}_{secrets.token_hex(4)}"
    backend = base.get_backend_name()
    if backend in ("mysql", "mariadb"):
        create, drop = f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4", f"DROP DATABASE IF EXISTS `{name}`"
        scoped = base.set(database=name)
    elif backend == "postgresql":
        create, drop = f'CREATE SCHEMA "{name}"', f'DROP SCHEMA IF EXISTS "{name}" CASCADE'
        scoped = base.update_query_dict({"options": f"-csearch_path={name}"})
    else:
        raise ValueError(f"scratch namespaces need a database server, not {backend!r}")
    admin = create_engine(base, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}, isolation_level="AUTOCOMMIT")
    try:
        with transient_errors(base, "creating a scratch namespace"), admin.connect() as conn:
            conn.execute(text(create))
        try:
            yield scoped
        finally:
            with transient_errors(base, "dropping a scratch namespace"), admin.connect() as conn:
                conn.execute(text(drop))
    finally:
        admin.dispose()

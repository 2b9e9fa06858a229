"""A `ledger` fixture over SQLite, MariaDB and PostgreSQL, each test on an empty, freshly migrated schema.

The servers come from TEST_MARIADB_URL / TEST_POSTGRES_URL (defaults below). Each test session works in a
throw-away database (MariaDB) or schema (PostgreSQL) of its own there, so sessions running at the same time
never see each other's tables. A server that cannot be reached skips its cases with the reason, except in
CI (CI=true), where it fails them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from shared.adapters.ledger import Ledger
from shared.adapters.ledger.engine import transient_errors
from shared.adapters.ledger.schema import metadata
from shared.adapters.ledger.scratch import scratch_namespace
from shared.errors import TransientError


@dataclass(frozen=True)
class Server:
    env_var: str
    default_url: str
    create_database: str

    @property
    def url(self) -> str:
        return os.environ.get(self.env_var) or self.default_url


SERVERS = {
    "mariadb": Server(
        "TEST_MARIADB_URL",
        "mysql+pymysql://root@127.0.0.1:3306/flow_receipts_test",
        "mariadb -h127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS flow_receipts_test'",
    ),
    "postgresql": Server(
        "TEST_POSTGRES_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/flow_receipts_test",
        "psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE flow_receipts_test'",
    ),
}
BACKENDS = ["sqlite", *SERVERS]


def _give_up(backend: str, reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{backend} is required in CI (CI=true): {reason}", pytrace=False)
    pytest.skip(f"{backend} not reachable: {reason}")


class ServerNamespaces:
    """One scratch namespace per server for the session, opened on first use; failures remembered."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._urls: dict[str, str] = {}
        self._unavailable: dict[str, str] = {}

    def url(self, backend: str) -> str:
        if backend not in self._urls and backend not in self._unavailable:
            server = SERVERS[backend]
            try:
                scoped = self._stack.enter_context(scratch_namespace(server.url, "flow_receipts_test"))
                self._urls[backend] = scoped.render_as_string(hide_password=False)
            except TransientError as error:
                self._unavailable[backend] = (
                    f"{error} (set {server.env_var}, or create the database: {server.create_database})"
                )
        if backend in self._unavailable:
            _give_up(backend, self._unavailable[backend])
        return self._urls[backend]

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="session")
def server_namespaces() -> Iterator[ServerNamespaces]:
    namespaces = ServerNamespaces()
    yield namespaces
    namespaces.close()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def ledger(backend: str, server_namespaces: ServerNamespaces, tmp_path) -> Iterator[Ledger]:
    ledger = Ledger(
        f"sqlite:///{tmp_path / 'ledger.sqlite3'}" if backend == "sqlite" else server_namespaces.url(backend)
    )
    try:
        with transient_errors(ledger.url, "resetting the test schema"), ledger.engine.begin() as conn:
            metadata.drop_all(conn)
        ledger.migrate()
    except TransientError as error:
        ledger.close()
        _give_up(backend, str(error))
    yield ledger
    ledger.close()

"""tests/security: the ``ledger`` fixture of tests/backends (SQLite, MariaDB, PostgreSQL; in CI=true a server that
cannot be reached fails the test instead of skipping it), reused as it is."""

from __future__ import annotations

from backends.conftest import backend, ledger, server_namespaces

__all__ = ["backend", "ledger", "server_namespaces"]

"""One engine per ledger URL, with settings per dialect, and database errors turned into ours."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

from shared.errors import ConfigError, TransientError

SQLITE_BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 5
SERVER_POOL = {"pool_size": 5, "max_overflow": 10, "pool_timeout": 10, "pool_pre_ping": True}
# Below common idle cut-offs (RDS proxies, NAT) so FC instances thawed after minutes do not reuse dead sockets.
MYSQL_POOL_RECYCLE_S = 280
POSTGRES_POOL_RECYCLE_S = 1800


def parse_url(url: str | URL) -> URL:
    try:
        return make_url(url)
    except sa_exc.ArgumentError:
        raise ConfigError(
            "ledger URL is not a database URL (expected e.g. sqlite:///.local/ledger.sqlite3, "
            "mysql+pymysql://user:password@host:3306/db or postgresql+psycopg://user:password@host:5432/db)"
        ) from None


def display_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def build_engine(url: URL) -> Engine:
    backend = url.get_backend_name()
    if backend == "sqlite":
        engine = _create(url, **_sqlite_options(url))
        _install_sqlite_hooks(engine)
        return engine
    if backend in ("mysql", "mariadb"):
        connect_args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "read_timeout": 30, "write_timeout": 30}
        if "charset" not in url.query:
            connect_args["charset"] = "utf8mb4"
        return _create(
            url,
            isolation_level="READ COMMITTED",
            pool_recycle=MYSQL_POOL_RECYCLE_S,
            connect_args=connect_args,
            **SERVER_POOL,
        )
    if backend == "postgresql":
        return _create(
            url,
            isolation_level="READ COMMITTED",
            pool_recycle=POSTGRES_POOL_RECYCLE_S,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "flow-receipts"},
            **SERVER_POOL,
        )
    raise ConfigError(f"ledger URL: unsupported database {backend!r} (use sqlite, mysql+pymysql or postgresql+psycopg)")


def _create(url: URL, **options: Any) -> Engine:
    try:
        # hide_parameters: phone numbers and bodies never end up in exception text or logs.
        return create_engine(url, hide_parameters=True, **options)
    except (sa_exc.NoSuchModuleError, ImportError) as exc:
        raise ConfigError(f"ledger URL: no driver for {url.drivername!r} ({exc})") from None


def _sqlite_options(url: URL) -> dict[str, Any]:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        # One shared connection: an in-memory ledger is for single-threaded tools and tests only.
        return {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return {"connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver stops issuing its own BEGIN; "begin" below does
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")  # a committed receipt survives power loss: MNS deletes after it
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: a deferred transaction upgrading to a writer fails at once with
        # "database is locked" instead of waiting for busy_timeout.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class TransactionAborted(TransientError):
    """The database rolled the transaction back to break a deadlock: running it again is safe."""


# PostgreSQL deadlock_detected / serialization_failure; MySQL ER_LOCK_DEADLOCK.
_ABORTED_SQLSTATES = frozenset({"40P01", "40001"})
_MYSQL_DEADLOCK = 1213
_MYSQL_DUPLICATE_KEY = 1062

UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError)


@contextmanager
def transient_errors(url: URL, doing: str) -> Iterator[None]:
    """Database unavailable, timed out, locked or deadlocked: TransientError, without the URL's password."""
    try:
        yield
    except UNAVAILABLE as exc:
        where, reason = display_url(url), _reason(exc, url)
        if _is_deadlock(exc):
            raise TransactionAborted(f"ledger transaction aborted while {doing} ({where}): {reason}") from None
        raise TransientError(f"ledger database unavailable while {doing} ({where}): {reason}") from None


def _is_deadlock(exc: Exception) -> bool:
    original = getattr(exc, "orig", None)
    args = getattr(original, "args", ())
    if args and isinstance(args[0], int):  # PyMySQL: (errno, message)
        return args[0] == _MYSQL_DEADLOCK
    return getattr(original, "sqlstate", None) in _ABORTED_SQLSTATES  # psycopg


def _reason(exc: Exception, url: URL) -> str:
    original = getattr(exc, "orig", None) or exc
    text = " ".join(str(original).split())
    if url.password:
        text = text.replace(str(url.password), "***")
    return text[:300]


def is_duplicate_key(error: sa_exc.IntegrityError) -> bool:
    """A unique or primary key violation, told apart from NOT NULL, CHECK and foreign key violations."""
    original = error.orig
    args = getattr(original, "args", ())
    if args and isinstance(args[0], int):  # PyMySQL: (errno, message), its sqlstate is the generic 23000
        return args[0] == _MYSQL_DUPLICATE_KEY
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str):  # psycopg
        return sqlstate == "23505"
    return str(original).startswith("UNIQUE constraint failed")  # sqlite3

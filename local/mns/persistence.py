"""Optional durability: with a data directory, queues and messages live in a SQLite file and survive
a restart of the emulator. Without one, nothing touches the disk."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from local.mns.queues import Message

QueueRow = tuple[str, dict, float, float]


class NullJournal:
    """In-memory mode: every write is a no-op."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def secret(self) -> bytes:
        return self._secret

    def queues(self) -> Iterator[QueueRow]:
        return iter(())

    def messages(self) -> Iterator[tuple[str, Message]]:
        return iter(())

    def save_queue(self, name: str, attributes: dict, created: float, modified: float) -> None:
        pass

    def delete_queue(self, name: str) -> None:
        pass

    def save_message(self, queue: str, message: Message) -> None:
        pass

    def delete_message(self, queue: str, message_id: str) -> None:
        pass

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


Journal = NullJournal

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY, attributes TEXT NOT NULL, created REAL NOT NULL, modified REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    queue TEXT NOT NULL, message_id TEXT NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (queue, message_id));
"""


class SqliteJournal(NullJournal):
    """Write-through store; the caller holds the emulator's lock around every call."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        path = Path(data_dir)
        path.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path / "mns.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'handle_secret'").fetchone()
        if row is None:
            self._secret = secrets.token_bytes(32)
            self._db.execute("INSERT INTO meta VALUES ('handle_secret', ?)", (self._secret,))
        else:
            self._secret = bytes(row[0])
        self._in_transaction = False

    def _write(self, sql: str, params: tuple) -> None:
        if not self._in_transaction:
            self._db.execute("BEGIN")
            self._in_transaction = True
        self._db.execute(sql, params)

    def queues(self) -> Iterator[QueueRow]:
        for name, attributes, created, modified in self._db.execute("SELECT * FROM queues"):
            yield name, json.loads(attributes), created, modified

    def messages(self) -> Iterator[tuple[str, Message]]:
        from local.mns.queues import Message

        for queue, state in self._db.execute("SELECT queue, state FROM messages ORDER BY seq"):
            fields = json.loads(state)
            fields["user_properties"] = [tuple(p) for p in fields["user_properties"]]
            fields["system_properties"] = [tuple(p) for p in fields["system_properties"]]
            yield queue, Message(**fields)

    def save_queue(self, name: str, attributes: dict, created: float, modified: float) -> None:
        self._write(
            "INSERT OR REPLACE INTO queues VALUES (?, ?, ?, ?)", (name, json.dumps(attributes), created, modified)
        )

    def delete_queue(self, name: str) -> None:
        self._write("DELETE FROM queues WHERE name = ?", (name,))
        self._write("DELETE FROM messages WHERE queue = ?", (name,))

    def save_message(self, queue: str, message: Message) -> None:
        state = json.dumps(message.__dict__)
        self._write(
            "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?)", (queue, message.message_id, message.seq, state)
        )

    def delete_message(self, queue: str, message_id: str) -> None:
        self._write("DELETE FROM messages WHERE queue = ? AND message_id = ?", (queue, message_id))

    def commit(self) -> None:
        if self._in_transaction:
            self._db.execute("COMMIT")
            self._in_transaction = False

    def close(self) -> None:
        self.commit()
        self._db.close()

"""Persistence of the local MNS emulator across restarts (data_dir), and the CLI entry point.

References: mns-emulator-contract.md (MnsEmulator(data_dir=...), CLI), mns-wire.md §6.1 (queue attributes),
§6.3 (message lifecycle: DequeueCount, visibility, delays), §4.5 (GetQueueAttributes).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from emulator_credentials import OWNER_ID, OWNER_SECRET, PUBLISHER_ID, PUBLISHER_SECRET
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message, QueueMeta
from mns_support import sdk_error

from local.mns import MnsEmulator

# QueueMeta's deprecated message-count properties warn on every get_attributes(); not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated function:DeprecationWarning")

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def unique(suffix: str) -> str:
    return f"Alicom-Queue-{uuid.uuid4().int % 10**16:016d}-{suffix}"


@contextmanager
def running(data_dir: Path | None) -> Iterator[tuple[MnsEmulator, Account]]:
    emulator = MnsEmulator(
        owner=(OWNER_ID, OWNER_SECRET), publisher=(PUBLISHER_ID, PUBLISHER_SECRET), data_dir=data_dir
    )
    emulator.start()
    try:
        yield emulator, Account(emulator.endpoint, OWNER_ID, OWNER_SECRET)
    finally:
        emulator.stop()


def peek_all(account: Account, queue: str) -> dict[str, object]:
    """message_id -> Message for every currently visible message, without changing any state."""
    try:
        return {m.message_id: m for m in account.get_queue(queue).batch_peek_message(16)}
    except MNSServerException as err:
        assert err.type == "MessageNotExist"
        return {}


ATTRS = {
    "visibility_timeout": 120,
    "maximum_message_size": 4096,
    "message_retention_period": 7200,
    "delay_seconds": 5,
    "polling_wait_seconds": 3,
    "logging_enabled": True,
}


def test_queue_attributes_survive_restart(tmp_path) -> None:
    name, plain = unique("Attrs"), unique("Plain")
    with running(tmp_path) as (_, account):
        account.get_queue(name).create(
            QueueMeta(
                vis_timeout=ATTRS["visibility_timeout"],
                max_msg_size=ATTRS["maximum_message_size"],
                msg_ttl=ATTRS["message_retention_period"],
                delay_sec=ATTRS["delay_seconds"],
                polling_wait_sec=ATTRS["polling_wait_seconds"],
                logging_enabled=ATTRS["logging_enabled"],
            )
        )
        account.get_queue(plain).create(QueueMeta())
        before = account.get_queue(name).get_attributes()

    with running(tmp_path) as (_, account):
        after = account.get_queue(name).get_attributes()
        defaults = account.get_queue(plain).get_attributes()

    for attr, value in ATTRS.items():
        assert getattr(after, attr) == value, attr
    assert after.queue_name == name
    assert after.create_time == before.create_time
    assert after.last_modify_time == before.last_modify_time
    assert defaults.visibility_timeout == 30
    assert defaults.maximum_message_size == 65536
    assert defaults.delay_seconds == 0


def test_set_queue_attributes_survive_restart(tmp_path) -> None:
    name = unique("Changed")
    with running(tmp_path) as (_, account):
        queue = account.get_queue(name)
        queue.create(QueueMeta())
        queue.set_attributes(QueueMeta(vis_timeout=45, polling_wait_sec=2))

    with running(tmp_path) as (_, account):
        after = account.get_queue(name).get_attributes()

    assert after.visibility_timeout == 45
    assert after.polling_wait_seconds == 2


@pytest.mark.slow
def test_messages_survive_restart_with_bodies_dequeue_count_and_visibility(tmp_path) -> None:
    name = unique("Msgs")
    visibility = 4
    with running(tmp_path) as (emulator, account):
        queue = account.get_queue(name)
        queue.create(QueueMeta(vis_timeout=visibility))
        queue.batch_send_message([Message(f"body-{i}") for i in range(5)])
        queue.send_message(Message("delayed-body", delay_seconds=600))
        queue.send_message(Message("双字节 body"))
        sent_before = peek_all(account, name)  # 6 visible, none dequeued yet
        assert len(sent_before) == 6

        in_flight = queue.batch_receive_message(2)  # -> inactive, DequeueCount 1
        deleted = queue.receive_message()
        queue.delete_message(deleted.receipt_handle)
        assert emulator.stats()["queues"][name] == {"active": 3, "inactive": 2, "delayed": 1}
        visible_before = peek_all(account, name)

    with running(tmp_path) as (emulator, account):
        # still in flight right after the restart: neither visible nor lost
        assert emulator.stats()["queues"][name] == {"active": 3, "inactive": 2, "delayed": 1}
        visible_after = peek_all(account, name)
        assert set(visible_after) == set(visible_before)
        for message_id, msg in visible_after.items():
            old = visible_before[message_id]
            assert msg.message_body == old.message_body
            assert msg.enqueue_time == old.enqueue_time
            assert msg.dequeue_count == 0

        # the in-flight messages come back once their NextVisibleTime (kept across the restart) passes
        wake_at = max(m.next_visible_time for m in in_flight) / 1000.0
        time.sleep(max(0.0, wake_at - time.time()) + 0.3)
        visible = peek_all(account, name)
        assert emulator.stats()["queues"][name] == {"active": 5, "inactive": 0, "delayed": 1}

    expected_ids = set(sent_before) - {deleted.message_id}
    assert set(visible) == expected_ids
    for msg in in_flight:
        again = visible[msg.message_id]
        assert again.message_body == msg.message_body
        assert again.dequeue_count == 1
        assert again.first_dequeue_time == msg.first_dequeue_time
        assert again.enqueue_time == msg.enqueue_time
    for message_id in expected_ids - {m.message_id for m in in_flight}:
        assert visible[message_id].dequeue_count == 0
        assert visible[message_id].message_body == sent_before[message_id].message_body
    assert b"delayed-body" not in {m.message_body for m in visible.values()}


def test_received_message_keeps_its_dequeue_count_after_restart(tmp_path) -> None:
    name = unique("Count")
    with running(tmp_path) as (_, account):
        queue = account.get_queue(name)
        queue.create(QueueMeta())
        queue.send_message(Message("counted"))
        first = queue.receive_message()
        queue.change_message_visibility(first.receipt_handle, 0)  # visible again, DequeueCount stays 1

    with running(tmp_path) as (_, account):
        queue = account.get_queue(name)
        assert queue.peek_message().dequeue_count == 1
        again = queue.receive_message()

    assert again.message_id == first.message_id
    assert again.message_body == b"counted"
    assert again.dequeue_count == 2
    assert again.first_dequeue_time == first.first_dequeue_time


def test_deletes_before_restart_stay_deleted(tmp_path) -> None:
    kept, dropped = unique("Kept"), unique("Dropped")
    with running(tmp_path) as (_, account):
        for name in (kept, dropped):
            account.get_queue(name).create(QueueMeta())
        queue = account.get_queue(kept)
        queue.batch_send_message([Message(f"m{i}") for i in range(4)])
        for msg in queue.batch_receive_message(2):
            queue.delete_message(msg.receipt_handle)
        one = queue.receive_message()
        queue.batch_delete_message([one.receipt_handle])
        account.get_queue(dropped).send_message(Message("gone with the queue"))
        account.get_queue(dropped).delete()

    with running(tmp_path) as (emulator, account):
        assert emulator.stats()["queues"].get(kept) == {"active": 1, "inactive": 0, "delayed": 0}
        assert dropped not in emulator.stats()["queues"]
        assert sdk_error(account.get_queue(dropped).get_attributes).type == "QueueNotExist"
        remaining = account.get_queue(kept).batch_receive_message(16)

    assert len(remaining) == 1


def test_emulator_without_data_dir_starts_empty(tmp_path) -> None:
    name = unique("Memory")
    with running(None) as (_, account):
        account.get_queue(name).create(QueueMeta())
        account.get_queue(name).send_message(Message("volatile"))
    with running(tmp_path) as (_, account):  # a persistent one elsewhere does not leak in either
        account.get_queue(unique("Elsewhere")).create(QueueMeta())

    with running(None) as (emulator, account):
        assert emulator.stats()["queues"] == {}
        assert sdk_error(account.get_queue(name).get_attributes).type == "QueueNotExist"


# --------------------------------------------------------------------------------------------------
# CLI: python -m local mns --port 0 --data-dir DIR
# --------------------------------------------------------------------------------------------------


@contextmanager
def cli_emulator(data_dir: Path, log: Path) -> Iterator[dict]:
    log_file = log.open("a")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local",
            "mns",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--owner-id",
            OWNER_ID,
            "--owner-secret",
            OWNER_SECRET,
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "the CLI printed nothing within 20 s"
        line = proc.stdout.readline()
        assert line, f"the CLI exited early: rc={proc.poll()} stderr={log.read_text()}"
        info = json.loads(line)
        assert info["endpoint"].startswith("http://127.0.0.1:")
        assert info["admin_url"] == info["endpoint"] + "/_admin"
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        log_file.close()
    assert proc.returncode is not None


def test_cli_keeps_messages_across_restart(tmp_path) -> None:
    name = unique("Cli")
    data_dir = tmp_path / "cli-data"
    with cli_emulator(data_dir, tmp_path / "cli.log") as info:
        queue = Account(info["endpoint"], OWNER_ID, OWNER_SECRET).get_queue(name)
        queue.create(QueueMeta(vis_timeout=90))
        queue.batch_send_message([Message("first"), Message("second"), Message("third")])
        taken = queue.receive_message()
        queue.delete_message(taken.receipt_handle)
        first_endpoint = info["endpoint"]

    with cli_emulator(data_dir, tmp_path / "cli.log") as info:
        queue = Account(info["endpoint"], OWNER_ID, OWNER_SECRET).get_queue(name)
        assert queue.get_attributes().visibility_timeout == 90
        bodies = sorted(m.message_body for m in queue.batch_receive_message(16))

    assert bodies == sorted({b"first", b"second", b"third"} - {taken.message_body})
    assert first_endpoint.startswith("http://127.0.0.1:")

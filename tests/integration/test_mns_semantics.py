"""MNS queue semantics through the real aliyun-mns-sdk 1.3.0: visibility, delays, priority, limits, long
polling and concurrent clients (mns-wire.md §6; the emulator contract settles its open questions).

Timing tests use the smallest values the protocol allows (VisibilityTimeout 1-3 s, waits of 1 s) and are
marked slow. Message retention is not exercised end to end: the minimum MessageRetentionPeriod is 60 s,
too slow for this suite, so only its bounds are checked (test_message_retention_period_bounds).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import Counter

import pytest
from emulator_credentials import OWNER_ID, OWNER_SECRET
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message, QueueMeta
from mns_support import make_queue, now_ms, queue_stats, server_error

SLACK_MS = 250  # client and emulator share a clock; this only absorbs request latency and rounding


def own_queue(emulator, name: str):
    """A queue handle on a fresh Account: the SDK client is not thread-safe, one per thread."""
    return Account(emulator.endpoint, OWNER_ID, OWNER_SECRET).get_queue(name)


def counts(queue) -> tuple[int, int, int]:
    """(ActiveMessages, InactiveMessages, DelayMessages) from GetQueueAttributes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        meta = queue.get_attributes()
        return meta.active_messages, meta.inactive_messages, meta.delay_messages


# ------------------------------------------------------------------------------------------ visibility


@pytest.mark.slow
def test_visibility_timeout_expiry_redelivers_the_message(owner_account, queue_name):
    """§6.3: after VisibilityTimeout the message is Active again; the next receive gets the same MessageId
    with DequeueCount+1 and a new handle. The first handle is dead (contract: expired or superseded is
    MessageNotExist); the new one deletes."""
    queue = make_queue(owner_account, queue_name, vis_timeout=1)
    sent = queue.send_message(Message("redeliver me"))
    first = queue.receive_message(0)
    server_error("MessageNotExist", queue.receive_message, 0)  # invisible while Inactive

    time.sleep(1.3)
    server_error("MessageNotExist", queue.delete_message, first.receipt_handle)  # expired with the timeout
    second = queue.receive_message(0)

    assert second.message_id == first.message_id == sent.message_id
    assert second.message_body == b"redeliver me"
    assert (first.dequeue_count, second.dequeue_count) == (1, 2)
    assert second.receipt_handle != first.receipt_handle
    server_error("MessageNotExist", queue.delete_message, first.receipt_handle)  # superseded
    queue.delete_message(second.receipt_handle)
    server_error("MessageNotExist", queue.peek_message)
    assert counts(queue) == (0, 0, 0)


@pytest.mark.slow
def test_message_times_and_dequeue_count(owner_account, queue_name):
    """§6.3, §6.7: EnqueueTime at send, FirstDequeueTime at the first receive and never again,
    NextVisibleTime = receive time + VisibilityTimeout; all epoch milliseconds."""
    queue = make_queue(owner_account, queue_name, vis_timeout=2)
    before_send = now_ms()
    queue.send_message(Message("timed"))
    after_send = now_ms()

    peeked = queue.peek_message()
    before_first = now_ms()
    first = queue.receive_message(0)
    after_first = now_ms()
    time.sleep(2.2)
    before_second = now_ms()
    second = queue.receive_message(0)
    after_second = now_ms()

    assert before_send - SLACK_MS <= peeked.enqueue_time <= after_send + SLACK_MS
    assert (peeked.dequeue_count, peeked.first_dequeue_time) == (0, 0)
    assert first.enqueue_time == second.enqueue_time == peeked.enqueue_time
    assert before_first - SLACK_MS <= first.first_dequeue_time <= after_first + SLACK_MS
    assert before_first + 2000 - SLACK_MS <= first.next_visible_time <= after_first + 2000 + SLACK_MS
    assert second.first_dequeue_time == first.first_dequeue_time
    assert before_second + 2000 - SLACK_MS <= second.next_visible_time <= after_second + 2000 + SLACK_MS
    assert (first.dequeue_count, second.dequeue_count) == (1, 2)


def test_change_visibility_zero_makes_the_message_visible_at_once(owner_account, queue_name):
    """Contract: ChangeMessageVisibility 0 means visible now; the next receive redelivers it."""
    queue = make_queue(owner_account, queue_name, vis_timeout=30)
    queue.send_message(Message("again"))
    first = queue.receive_message(0)

    changed = queue.change_message_visibility(first.receipt_handle, 0)
    second = queue.receive_message(0)

    assert int(changed.next_visible_time) <= now_ms() + SLACK_MS
    assert second.message_id == first.message_id
    assert second.dequeue_count == 2
    assert second.first_dequeue_time == first.first_dequeue_time
    server_error("MessageNotExist", queue.delete_message, first.receipt_handle)
    server_error("MessageNotExist", queue.delete_message, changed.receipt_handle)
    queue.delete_message(second.receipt_handle)


@pytest.mark.slow
def test_change_visibility_extends_past_the_queue_timeout(owner_account, queue_name):
    """§6.3: NextVisibleTime = now + N, whatever the queue's VisibilityTimeout; the new handle stays valid."""
    queue = make_queue(owner_account, queue_name, vis_timeout=1)
    queue.send_message(Message("need more time"))
    received = queue.receive_message(0)

    before = now_ms()
    changed = queue.change_message_visibility(received.receipt_handle, 3)
    after = now_ms()
    time.sleep(1.3)

    assert before + 3000 - SLACK_MS <= int(changed.next_visible_time) <= after + 3000 + SLACK_MS
    server_error("MessageNotExist", queue.receive_message, 0)  # the queue's 1 s would have expired by now
    queue.delete_message(changed.receipt_handle)
    assert counts(queue) == (0, 0, 0)


# --------------------------------------------------------------------------------------------- delays


@pytest.mark.slow
def test_delay_seconds_keep_a_message_invisible_until_due(mns_emulator, owner_account, queue_name):
    """§6.2: the queue's DelaySeconds applies unless the message sets its own (0 here); a delayed message
    is counted as delayed and invisible to receive and peek until the delay passes."""
    queue = make_queue(owner_account, queue_name, delay_sec=1)
    delayed = queue.send_message(Message("queue default delay"))
    immediate = queue.send_message(Message("no delay", delay_seconds=0))

    assert queue_stats(mns_emulator, queue_name) == {"active": 1, "inactive": 0, "delayed": 1}
    assert counts(queue) == (1, 0, 1)
    assert queue.receive_message(0).message_id == immediate.message_id
    server_error("MessageNotExist", queue.peek_message)
    server_error("MessageNotExist", queue.receive_message, 0)

    time.sleep(1.3)

    assert queue.peek_message().message_id == delayed.message_id
    assert queue.receive_message(0).message_id == delayed.message_id
    assert queue_stats(mns_emulator, queue_name) == {"active": 0, "inactive": 2, "delayed": 0}


# ------------------------------------------------------------------------------------------- priority


@pytest.mark.parametrize("batch", [False, True], ids=["ReceiveMessage", "BatchReceiveMessage"])
def test_lower_priority_number_is_delivered_first(owner_account, queue_name, batch):
    """§6.2: Priority 1 is highest; higher-priority messages are consumed earlier even if sent later."""
    queue = make_queue(owner_account, queue_name)
    plan = [("p8-a", None), ("p3-a", 3), ("p16", 16), ("p1", 1), ("p8-b", 8), ("p3-b", 3)]
    for body, priority in plan:
        queue.send_message(Message(body, priority=priority))

    received = queue.batch_receive_message(16, 0) if batch else [queue.receive_message(0) for _ in plan]

    priorities = [m.priority for m in received]
    assert priorities == [1, 3, 3, 8, 8, 16]
    assert {m.message_body.decode() for m in received} == {body for body, _ in plan}


# -------------------------------------------------------------------------------------- size, retention


def test_queue_maximum_message_size_limits_the_body_text(owner_account, queue_name):
    """§6.1, §6.2: MaximumMessageSize applies to the MessageBody text as sent (base64 in the default mode)."""
    queue = make_queue(owner_account, queue_name, max_msg_size=1024)

    queue.send_message(Message("a" * 768))  # 1024 base64 characters
    server_error("InvalidArgument", queue.send_message, Message("a" * 769))  # 1028 characters
    queue.set_encoding(False)
    queue.send_message(Message("b" * 1024))
    server_error("InvalidArgument", queue.send_message, Message("b" * 1025))
    queue.set_attributes(QueueMeta(max_msg_size=2048))
    queue.send_message(Message("c" * 1025))

    assert counts(queue) == (3, 0, 0)


def test_message_retention_period_bounds(owner_account, queue_name):
    """§6.1: MessageRetentionPeriod is 60..604800 s. Expiry itself is not exercised (60 s minimum)."""
    queue = owner_account.get_queue(queue_name)

    server_error("InvalidArgument", queue.create, QueueMeta(msg_ttl=59))
    server_error("InvalidArgument", queue.create, QueueMeta(msg_ttl=604801))
    queue.create(QueueMeta(msg_ttl=60))
    server_error("InvalidArgument", queue.set_attributes, QueueMeta(msg_ttl=59))
    server_error("InvalidArgument", queue.set_attributes, QueueMeta(msg_ttl=604801))
    queue.set_attributes(QueueMeta(msg_ttl=604800))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's deprecated message counts
        assert queue.get_attributes().message_retention_period == 604800


# ------------------------------------------------------------------------------------------- batching


def test_batch_operations_accept_every_size_from_1_to_16(owner_account, queue_name):
    """§6.5: up to 16 messages per batch send, receive, peek and delete."""
    queue = make_queue(owner_account, queue_name)

    for n in range(1, 17):
        sent = queue.batch_send_message([Message(f"n{n}-{i}") for i in range(n)])
        peeked = queue.batch_peek_message(n)
        received = queue.batch_receive_message(n, 0)
        queue.batch_delete_message([m.receipt_handle for m in received])

        assert len(sent) == n
        assert len(peeked) == n
        assert sorted(m.message_id for m in received) == sorted(m.message_id for m in sent)
        server_error("MessageNotExist", queue.peek_message)


# ---------------------------------------------------------------------------------------- long polling


@pytest.mark.slow
@pytest.mark.parametrize("batch", [True, False], ids=["BatchReceiveMessage", "ReceiveMessage"])
def test_long_poll_returns_promptly_after_a_send(mns_emulator, owner_account, queue_name, batch):
    """§6.4: the server holds a long poll until a message arrives, then answers at once."""
    make_queue(owner_account, queue_name)
    outcome: dict = {}

    def poll() -> None:
        queue = own_queue(mns_emulator, queue_name)
        try:
            outcome["messages"] = queue.batch_receive_message(16, 10) if batch else [queue.receive_message(10)]
        except Exception as error:  # reported by the main thread
            outcome["error"] = error
        outcome["returned_at"] = time.monotonic()

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(1.0)
    assert poller.is_alive(), outcome  # nothing to receive yet: still waiting
    sent_at = time.monotonic()
    sent = owner_account.get_queue(queue_name).send_message(Message("wake up"))
    poller.join(timeout=12)

    assert not poller.is_alive()
    assert "error" not in outcome, outcome["error"]
    assert [m.message_id for m in outcome["messages"]] == [sent.message_id]
    assert outcome["returned_at"] - sent_at < 1.0


@pytest.mark.slow
def test_long_poll_on_an_empty_queue_ends_with_message_not_exist(owner_account, queue_name):
    """§6.4: nothing arrives before the wait ends -> 404 MessageNotExist after about `waitseconds`."""
    queue = make_queue(owner_account, queue_name)

    started = time.monotonic()
    server_error("MessageNotExist", queue.batch_receive_message, 16, 1)
    elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 2.0


@pytest.mark.slow
def test_queue_polling_wait_seconds_applies_when_no_wait_is_given(owner_account, queue_name):
    """§4.9, §6.4: without waitseconds in the query the queue's PollingWaitSeconds applies; an explicit
    waitseconds=0 does not wait."""
    queue = make_queue(owner_account, queue_name, polling_wait_sec=1)

    started = time.monotonic()
    server_error("MessageNotExist", queue.receive_message)  # wait_seconds=-1: no query parameter
    waited = time.monotonic() - started
    started = time.monotonic()
    server_error("MessageNotExist", queue.receive_message, 0)
    not_waited = time.monotonic() - started

    assert 0.9 <= waited < 2.0
    assert not_waited < 0.5


@pytest.mark.slow
def test_long_polls_never_block_other_clients(mns_emulator, owner_account, queue_name):
    """While several clients long-poll an empty queue, another client's calls complete at once."""
    idle = make_queue(owner_account, f"{queue_name}-idle")
    busy = make_queue(owner_account, f"{queue_name}-busy")
    results: list = []

    def poll() -> None:
        try:
            results.append(own_queue(mns_emulator, idle.queue_name).receive_message(10).message_id)
        except Exception as error:  # reported by the main thread
            results.append(error)

    pollers = [threading.Thread(target=poll) for _ in range(4)]
    for poller in pollers:
        poller.start()
    time.sleep(0.5)
    assert all(poller.is_alive() for poller in pollers), results

    started = time.monotonic()
    sent = busy.send_message(Message("not stuck behind the long polls"))
    received = busy.receive_message(0)
    busy.delete_message(received.receipt_handle)
    server_error("MessageNotExist", idle.peek_message)
    elapsed = time.monotonic() - started

    assert received.message_id == sent.message_id
    assert elapsed < 0.5
    assert all(poller.is_alive() for poller in pollers), results

    wake = idle.batch_send_message([Message(f"wake-{i}") for i in range(4)])
    deadline = time.monotonic() + 2  # well before the pollers' own 10 s wait would end
    for poller in pollers:
        poller.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(poller.is_alive() for poller in pollers)
    assert sorted(results) == sorted(m.message_id for m in wake)


# ------------------------------------------------------------------------------------------ concurrency


@pytest.mark.slow
def test_concurrent_clients_receive_every_message_exactly_once(mns_emulator, owner_account, queue_name):
    """8 threads, each with its own Account, send 200 messages in all (single and batch sends) and
    consume them (single and batch receives and deletes): none lost, none delivered twice."""
    queue = make_queue(owner_account, queue_name, vis_timeout=30)
    workers, per_worker = 8, 25
    total = workers * per_worker
    lock = threading.Lock()
    received: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(workers)

    def work(index: int) -> None:
        try:
            client = own_queue(mns_emulator, queue_name)
            bodies = [f"w{index}-m{j}" for j in range(per_worker)]
            start.wait()
            if index % 2:
                for body in bodies:
                    client.send_message(Message(body))
            else:
                for chunk in range(0, per_worker, 8):
                    client.batch_send_message([Message(b) for b in bodies[chunk : chunk + 8]])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with lock:
                    if len(received) >= total:
                        return
                try:
                    messages = [client.receive_message(1)] if index % 2 else client.batch_receive_message(16, 1)
                except MNSServerException as error:
                    if error.type == "MessageNotExist":
                        continue
                    raise
                with lock:
                    received.extend(m.message_body.decode() for m in messages)
                if len(messages) == 1:
                    client.delete_message(messages[0].receipt_handle)
                else:
                    client.batch_delete_message([m.receipt_handle for m in messages])
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    duplicates = [body for body, n in Counter(received).items() if n > 1]
    assert duplicates == []
    assert sorted(received) == sorted(f"w{i}-m{j}" for i in range(workers) for j in range(per_worker))
    assert counts(queue) == (0, 0, 0)
    assert queue_stats(mns_emulator, queue_name) == {"active": 0, "inactive": 0, "delayed": 0}

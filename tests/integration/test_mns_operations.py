"""Every MNS queue operation, driven through the real aliyun-mns-sdk 1.3.0 against the local emulator.

The assertions are what an application written for real MNS would notice: return values, message fields,
`MNSServerException.type`, `sub_errors`. Section numbers refer to the wire reference
(shared/reference/mns-wire.md); the emulator's choices on its open questions come from the emulator
contract (notes/mns-emulator-contract.md). The emulator's admin API is used only to set up or inspect.

A few tests send hand-signed requests with http.client (`mns_support.raw_request`, signed with the owner's
credentials) to check what the SDK hides: header spelling, the raw error body, case-insensitive query
parameter names.
"""

from __future__ import annotations

import base64
import hashlib
import time
import warnings
import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest
from mns.message_property import MessagePropertyValue, MessageSystemPropertyValue, SystemPropertyName
from mns.mns_exception import MNSServerException
from mns.queue import Message, QueueMeta
from mns_support import make_queue, now_ms, queue_stats, raw_request, server_error, xml_children

XMLNS = "http://mns.aliyuncs.com/doc/v1/"
SLACK_MS = 250  # client and emulator share a clock; this only absorbs request latency and rounding


# --------------------------------------------------------------------------------------------- helpers


def md5_upper(text: str) -> str:
    """MessageBodyMD5 as the contract defines it: upper-case hex MD5 of the MessageBody text as sent."""
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def b64(text: str) -> str:
    """What the SDK puts in <MessageBody> in its default base64 mode."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def attributes(queue) -> dict:
    """GetQueueAttributes as a plain dict (the message counts are deprecated SDK properties)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        meta = queue.get_attributes()
        return {
            "QueueName": meta.queue_name,
            "CreateTime": meta.create_time,
            "LastModifyTime": meta.last_modify_time,
            "VisibilityTimeout": meta.visibility_timeout,
            "MaximumMessageSize": meta.maximum_message_size,
            "MessageRetentionPeriod": meta.message_retention_period,
            "DelaySeconds": meta.delay_seconds,
            "PollingWaitSeconds": meta.polling_wait_seconds,
            "LoggingEnabled": meta.logging_enabled,
            "ActiveMessages": meta.active_messages,
            "InactiveMessages": meta.inactive_messages,
            "DelayMessages": meta.delay_messages,
        }


def eventually(probe, timeout: float = 1.0):
    """The probe's first truthy value within `timeout` (the emulator counts a response after sending it)."""
    deadline = time.monotonic() + timeout
    while not (value := probe()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def queue_xml(meta: QueueMeta) -> bytes:
    """A <Queue> body as the SDK writes it for CreateQueue / SetQueueAttributes (§4.3)."""
    fields = {
        "VisibilityTimeout": meta.visibility_timeout,
        "MaximumMessageSize": meta.maximum_message_size,
        "MessageRetentionPeriod": meta.message_retention_period,
        "DelaySeconds": meta.delay_seconds,
        "PollingWaitSeconds": meta.polling_wait_seconds,
        "LoggingEnabled": meta.logging_enabled,
    }
    children = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items() if v not in (-1, None))
    return f'<?xml version="1.0" encoding="utf-8"?><Queue xmlns="{XMLNS}">{children}</Queue>'.encode()


@pytest.fixture
def queue(owner_account, queue_name):
    """A queue with default attributes."""
    return make_queue(owner_account, queue_name)


# ----------------------------------------------------------------------------------------- CreateQueue


def test_create_queue_returns_location(owner_account, queue_name):
    """§4.3, §1 item 2: create() returns the Location header, the queue's URL."""
    location = owner_account.get_queue(queue_name).create(QueueMeta())

    assert location.startswith("http")
    assert location.endswith(f"/queues/{queue_name}")


def test_create_queue_identical_again_answers_204_with_location(mns_emulator, owner_account, queue_name):
    """§4.3: re-creating with identical attributes is 204 No Content, and still carries Location."""
    queue = owner_account.get_queue(queue_name)
    meta = QueueMeta(
        vis_timeout=45, max_msg_size=2048, msg_ttl=3600, delay_sec=0, polling_wait_sec=0, logging_enabled=False
    )

    first = queue.create(meta)
    second = queue.create(meta)
    third = raw_request(mns_emulator, "PUT", f"/queues/{queue_name}", queue_xml(meta))

    assert second == first
    assert third.status == 204, third.body
    assert third.header("location") == first


def test_create_queue_with_different_attributes_is_queue_already_exist(owner_account, queue_name):
    """§4.3: 409 QueueAlreadyExist; the existing queue keeps its attributes."""
    queue = make_queue(owner_account, queue_name, vis_timeout=45)

    server_error("QueueAlreadyExist", queue.create, QueueMeta(vis_timeout=46))

    assert attributes(queue)["VisibilityTimeout"] == 45


OUT_OF_RANGE_ATTRIBUTES = [
    pytest.param({"vis_timeout": 43201}, id="VisibilityTimeout-43201"),
    pytest.param({"max_msg_size": 1023}, id="MaximumMessageSize-1023"),
    pytest.param({"max_msg_size": 65537}, id="MaximumMessageSize-65537"),
    pytest.param({"msg_ttl": 59}, id="MessageRetentionPeriod-59"),
    pytest.param({"msg_ttl": 604801}, id="MessageRetentionPeriod-604801"),
    pytest.param({"delay_sec": 604801}, id="DelaySeconds-604801"),
    pytest.param({"polling_wait_sec": 31}, id="PollingWaitSeconds-31"),
]


@pytest.mark.parametrize("meta", OUT_OF_RANGE_ATTRIBUTES)
def test_create_queue_with_out_of_range_attribute_is_invalid_argument(owner_account, queue_name, meta):
    """§6.1: the SDK checks no upper bounds, the server answers 400 InvalidArgument and creates nothing."""
    queue = owner_account.get_queue(queue_name)

    server_error("InvalidArgument", queue.create, QueueMeta(**meta))

    server_error("QueueNotExist", queue.get_attributes)


def test_create_queue_accepts_the_range_bounds(owner_account, queue_name):
    """§6.1: both ends of every documented range are valid."""
    bounds = {
        "low": dict(vis_timeout=1, max_msg_size=1024, msg_ttl=60, delay_sec=0, polling_wait_sec=0),
        "high": dict(vis_timeout=43200, max_msg_size=65536, msg_ttl=604800, delay_sec=604800, polling_wait_sec=30),
    }

    for label, meta in bounds.items():
        got = attributes(make_queue(owner_account, f"{queue_name}-{label}", **meta))

        assert (
            got["VisibilityTimeout"],
            got["MaximumMessageSize"],
            got["MessageRetentionPeriod"],
            got["DelaySeconds"],
            got["PollingWaitSeconds"],
        ) == tuple(meta.values())


@pytest.mark.parametrize("name", ["bad_name", "-starts-with-dash", "has.dots", "at@sign"])
def test_create_queue_with_bad_name_is_invalid_queue_name(owner_account, name):
    """§6.1 / contract: names match ^[A-Za-z0-9][A-Za-z0-9-]*$."""
    server_error("InvalidQueueName", owner_account.get_queue(name).create, QueueMeta())


def test_create_queue_name_longer_than_120_is_queue_name_length_error(owner_account):
    """§6.1 / contract: at most 120 characters; 120 itself is fine."""
    server_error("QueueNameLengthError", owner_account.get_queue("Q" * 121).create, QueueMeta())

    assert owner_account.get_queue("Q" * 120).create(QueueMeta()).endswith("/queues/" + "Q" * 120)


# ----------------------------------------------------------------------------------- GetQueueAttributes


def test_get_queue_attributes_of_a_default_queue(owner_account, queue_name):
    """§4.5, §6.1: every field present, documented defaults, CreateTime in epoch seconds."""
    before = int(time.time())
    queue = make_queue(owner_account, queue_name)
    after = int(time.time())

    got = attributes(queue)

    assert before - 1 <= got["CreateTime"] <= after + 1
    assert got["CreateTime"] <= got["LastModifyTime"] <= after + 1
    assert {k: v for k, v in got.items() if k not in ("CreateTime", "LastModifyTime")} == {
        "QueueName": queue_name,
        "VisibilityTimeout": 30,
        "MaximumMessageSize": 65536,
        "MessageRetentionPeriod": 345600,
        "DelaySeconds": 0,
        "PollingWaitSeconds": 0,
        "LoggingEnabled": False,
        "ActiveMessages": 0,
        "InactiveMessages": 0,
        "DelayMessages": 0,
    }


def test_get_queue_attributes_returns_the_created_values(owner_account, queue_name):
    queue = make_queue(
        owner_account,
        queue_name,
        vis_timeout=45,
        max_msg_size=2048,
        msg_ttl=3600,
        delay_sec=5,
        polling_wait_sec=3,
        logging_enabled=True,
    )

    got = attributes(queue)

    assert (got["VisibilityTimeout"], got["MaximumMessageSize"], got["MessageRetentionPeriod"]) == (45, 2048, 3600)
    assert (got["DelaySeconds"], got["PollingWaitSeconds"], got["LoggingEnabled"]) == (5, 3, True)


def test_get_queue_attributes_counts_active_inactive_and_delayed(mns_emulator, queue):
    """§4.5: ActiveMessages / InactiveMessages / DelayMessages follow the message states (§6.3)."""
    for i in range(3):
        queue.send_message(Message(f"visible-{i}"))
    queue.send_message(Message("later", delay_seconds=60))
    queue.receive_message(0)

    got = attributes(queue)

    assert (got["ActiveMessages"], got["InactiveMessages"], got["DelayMessages"]) == (2, 1, 1)
    assert queue_stats(mns_emulator, queue.queue_name) == {"active": 2, "inactive": 1, "delayed": 1}


# ----------------------------------------------------------------------------------- SetQueueAttributes


@pytest.mark.slow
def test_set_queue_attributes_updates_only_what_was_sent(owner_account, queue_name):
    """§4.6: a partial <Queue> changes only those fields and moves LastModifyTime (epoch seconds)."""
    queue = make_queue(
        owner_account,
        queue_name,
        vis_timeout=45,
        max_msg_size=2048,
        msg_ttl=3600,
        delay_sec=0,
        polling_wait_sec=1,
    )
    before = attributes(queue)
    time.sleep(1.1)  # LastModifyTime has one-second resolution

    queue.set_attributes(QueueMeta(vis_timeout=60))
    after = attributes(queue)

    assert after["VisibilityTimeout"] == 60
    assert after["LastModifyTime"] > before["LastModifyTime"]
    assert after["LastModifyTime"] <= int(time.time()) + 1
    unchanged = ("QueueName", "CreateTime", "MaximumMessageSize", "MessageRetentionPeriod", "DelaySeconds")
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert (after["PollingWaitSeconds"], after["LoggingEnabled"]) == (1, False)

    queue.set_attributes(QueueMeta(polling_wait_sec=2, logging_enabled=True))
    again = attributes(queue)

    assert (again["VisibilityTimeout"], again["PollingWaitSeconds"], again["LoggingEnabled"]) == (60, 2, True)


@pytest.mark.parametrize("meta", OUT_OF_RANGE_ATTRIBUTES)
def test_set_queue_attributes_out_of_range_is_invalid_argument(owner_account, queue_name, meta):
    """§4.6: 400 InvalidArgument, and nothing changes."""
    queue = make_queue(owner_account, queue_name)
    before = attributes(queue)

    server_error("InvalidArgument", queue.set_attributes, QueueMeta(**meta))

    assert attributes(queue) == before


# ---------------------------------------------------------------------------------------- DeleteQueue


def test_delete_queue_then_every_use_is_queue_not_exist(queue):
    queue.send_message(Message("left behind"))

    queue.delete()

    server_error("QueueNotExist", queue.get_attributes)
    server_error("QueueNotExist", queue.send_message, Message("too late"))
    server_error("QueueNotExist", queue.receive_message, 0)


def test_delete_queue_that_does_not_exist_is_fine(owner_account, queue_name):
    """§4.4 / contract: DeleteQueue on a missing queue answers 204."""
    missing = owner_account.get_queue(queue_name)

    missing.delete()
    missing.delete()

    server_error("QueueNotExist", missing.get_attributes)


# ---------------------------------------------------------------------------------------- SendMessage


def test_send_message_returns_message_id_and_upper_hex_md5_of_the_text_sent(queue):
    """§4.7: MessageId, and MessageBodyMD5 = upper-hex MD5 of the base64 text the SDK put on the wire."""
    body = "hello 世界"

    sent = queue.send_message(Message(body))
    other = queue.send_message(Message(body))

    assert sent.message_id
    assert other.message_id != sent.message_id
    assert sent.message_body_md5 == md5_upper(b64(body))
    received = queue.receive_message(0)
    assert (received.message_id, received.message_body_md5) == (sent.message_id, sent.message_body_md5)


def test_send_message_md5_in_raw_mode_is_over_the_plain_text(queue):
    """§4.7: with base64 off the body travels XML-escaped; the MD5 is over the text, not the escaping."""
    queue.set_encoding(False)
    body = "<a>&b</a> 世界"

    sent = queue.send_message(Message(body))

    assert sent.message_body_md5 == md5_upper(body)
    received = queue.receive_message(0)
    assert received.message_body == body
    assert received.message_body_md5 == md5_upper(body)


def test_send_message_with_delay_is_not_visible_yet(mns_emulator, queue):
    """§6.2: a delayed message starts Delayed, invisible to receive and peek."""
    queue.send_message(Message("later", delay_seconds=60))

    server_error("MessageNotExist", queue.receive_message, 0)
    server_error("MessageNotExist", queue.peek_message)
    assert queue_stats(mns_emulator, queue.queue_name) == {"active": 0, "inactive": 0, "delayed": 1}


def test_send_message_priority_is_kept_and_defaults_to_8(queue):
    """§6.2: Priority 1..16, default 8."""
    queue.send_message(Message("urgent", priority=3))
    queue.send_message(Message("normal"))

    first = queue.receive_message(0)
    second = queue.receive_message(0)

    assert (first.message_body, first.priority) == (b"urgent", 3)
    assert (second.message_body, second.priority) == (b"normal", 8)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(Message("x", priority=0), id="priority-0"),
        pytest.param(Message("x", priority=17), id="priority-17"),
        pytest.param(Message("x", delay_seconds=604801), id="delay-604801"),
    ],
)
def test_send_message_with_out_of_range_parameter_is_invalid_argument(queue, message):
    """§4.7, §6.2: DelaySeconds 0..604800 and Priority 1..16 are enforced by the server."""
    server_error("InvalidArgument", queue.send_message, message)

    got = attributes(queue)
    assert (got["ActiveMessages"], got["DelayMessages"]) == (0, 0)


def test_send_message_body_larger_than_64k_is_invalid_argument(queue):
    """§6.2: the limit is on the MessageBody text: 49152 bytes encode to exactly 65536 base64 chars."""
    assert len(b64("a" * 49152)) == 65536

    queue.send_message(Message("a" * 49152))
    server_error("InvalidArgument", queue.send_message, Message("a" * 49153))

    assert attributes(queue)["ActiveMessages"] == 1


# ----------------------------------------------------------------------------------- BatchSendMessage


def test_batch_send_message_returns_one_result_per_message_in_order(queue):
    bodies = ["first", "second 二", "third"]

    sent = queue.batch_send_message([Message(b, priority=8) for b in bodies])

    assert [m.message_body_md5 for m in sent] == [md5_upper(b64(b)) for b in bodies]
    assert len({m.message_id for m in sent}) == 3
    received = queue.batch_receive_message(16, 0)
    assert {m.message_id: m.message_body.decode() for m in received} == {
        m.message_id: b for m, b in zip(sent, bodies, strict=True)
    }


def test_batch_send_more_than_16_messages_is_invalid_argument(queue):
    """§4.8 / contract: at most 16 entries; nothing is enqueued."""
    server_error("InvalidArgument", queue.batch_send_message, [Message(f"m{i}") for i in range(17)])

    server_error("MessageNotExist", queue.peek_message)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(Message("x" * 800), id="oversized"),  # 1068 base64 chars > MaximumMessageSize 1024
        pytest.param(Message("bad priority", priority=17), id="priority-17"),
    ],
)
def test_batch_send_partial_failure_lists_every_entry_in_request_order(owner_account, queue_name, bad):
    """§4.8: the SDK raises MNSServerException(type=first ErrorCode) with one sub_error per entry, in
    request order; the good entries are enqueued."""
    queue = make_queue(owner_account, queue_name, max_msg_size=1024)

    error = server_error("InvalidArgument", queue.batch_send_message, [Message("good-0"), bad, Message("good-2")])

    assert error.request_id  # taken from the lowercase x-mns-request-id header (§1 item 1)
    first, failed, last = error.sub_errors
    assert set(first) == {"MessageId", "MessageBodyMD5"}
    assert first["MessageBodyMD5"] == md5_upper(b64("good-0"))
    assert set(failed) == {"ErrorCode", "ErrorMessage"}
    assert failed["ErrorCode"] == "InvalidArgument"
    assert error.message == failed["ErrorMessage"]
    assert set(last) == {"MessageId", "MessageBodyMD5"}
    assert last["MessageBodyMD5"] == md5_upper(b64("good-2"))
    received = queue.batch_receive_message(16, 0)
    assert {m.message_id: m.message_body for m in received} == {
        first["MessageId"]: b"good-0",
        last["MessageId"]: b"good-2",
    }


# ------------------------------------------------------------------------------------- ReceiveMessage


def test_receive_message_fields(queue):
    """§4.9, §5.2, §6.3: every field, times in epoch milliseconds."""
    sent_before = now_ms()
    sent = queue.send_message(Message("payload"))
    sent_after = now_ms()

    received_before = now_ms()
    got = queue.receive_message(0)
    received_after = now_ms()

    assert got.message_id == sent.message_id
    assert got.message_body_md5 == md5_upper(b64("payload"))
    assert got.message_body == b"payload"
    assert got.receipt_handle
    assert got.dequeue_count == 1
    assert got.priority == 8
    assert sent_before - SLACK_MS <= got.enqueue_time <= sent_after + SLACK_MS
    assert received_before - SLACK_MS <= got.first_dequeue_time <= received_after + SLACK_MS
    assert received_before + 30_000 - SLACK_MS <= got.next_visible_time <= received_after + 30_000 + SLACK_MS


BODIES = [
    pytest.param("plain ascii", id="ascii"),
    pytest.param("流量充值回执 — Grüße, ñandú", id="non-ascii"),
    pytest.param("emoji 🎉🚀", id="emoji"),
    pytest.param('<xml attr="1">&amp; & <![CDATA[x]]></xml>', id="xml-specials"),
    pytest.param('{"out_id": "A-1",\n\t"status": "SUCCEEDED"}', id="json-with-whitespace"),
]


@pytest.mark.parametrize("body", BODIES)
def test_receive_message_body_round_trips_as_bytes(queue, body):
    """§1 item 9: base64 mode — receive gives the original UTF-8 bytes, *_with_str_body the str."""
    queue.send_message(Message(body))
    queue.send_message(Message(body))

    assert queue.receive_message(0).message_body == body.encode("utf-8")
    assert queue.receive_message_with_str_body(0).message_body == body


@pytest.mark.parametrize("body", BODIES)
def test_receive_message_body_round_trips_in_raw_mode(queue, body):
    """§4.7: with base64 off the body is XML-escaped text; the server must re-escape it on the way out."""
    queue.set_encoding(False)

    queue.send_message(Message(body))

    assert queue.receive_message(0).message_body == body


# -------------------------------------------------------------------------------- BatchReceiveMessage


def test_batch_receive_message_returns_up_to_n_messages(queue):
    sent = queue.batch_send_message([Message(f"m{i}") for i in range(5)])

    first = queue.batch_receive_message(3, 0)
    rest = queue.batch_receive_message(16, 0)

    assert len(first) == 3
    assert len(rest) == 2
    got = first + rest
    assert sorted(m.message_id for m in got) == sorted(m.message_id for m in sent)
    for m in got:
        assert m.receipt_handle
        assert m.dequeue_count == 1
        assert m.message_body_md5 == md5_upper(b64(m.message_body.decode()))
        assert m.next_visible_time > m.first_dequeue_time >= m.enqueue_time > 0
    assert len({m.receipt_handle for m in got}) == 5
    server_error("MessageNotExist", queue.batch_receive_message, 16, 0)


# ------------------------------------------------------------------------- PeekMessage / BatchPeekMessage


def test_peek_message_changes_nothing(mns_emulator, queue):
    """§4.11: no state change, no DequeueCount, no handle; FirstDequeueTime 0 before the first receive."""
    sent = queue.send_message(Message("look, don't touch"))

    peeks = [queue.peek_message(), queue.peek_message()]

    for peeked in peeks:
        assert peeked.message_id == sent.message_id
        assert peeked.message_body == b"look, don't touch"
        assert peeked.message_body_md5 == sent.message_body_md5
        assert (peeked.dequeue_count, peeked.first_dequeue_time, peeked.priority) == (0, 0, 8)
        assert peeked.enqueue_time > 0
        assert peeked.receipt_handle == ""
    assert queue_stats(mns_emulator, queue.queue_name) == {"active": 1, "inactive": 0, "delayed": 0}
    received = queue.receive_message(0)
    assert received.dequeue_count == 1
    assert received.enqueue_time == peeks[0].enqueue_time
    server_error("MessageNotExist", queue.peek_message)  # Inactive messages are not peekable


def test_batch_peek_message_changes_nothing(queue):
    sent = queue.batch_send_message([Message(f"m{i}") for i in range(3)])
    ids = sorted(m.message_id for m in sent)

    all_three = queue.batch_peek_message(16)
    two = queue.batch_peek_message(2)

    assert sorted(m.message_id for m in all_three) == ids
    assert len(two) == 2
    for peeked in all_three + two:
        assert (peeked.dequeue_count, peeked.first_dequeue_time) == (0, 0)
        assert peeked.receipt_handle == ""
    received = queue.batch_receive_message(16, 0)
    assert sorted(m.message_id for m in received) == ids
    assert {m.dequeue_count for m in received} == {1}


# -------------------------------------------------------------------------------------- DeleteMessage


def test_delete_message_removes_it(queue):
    queue.send_message(Message("done"))
    received = queue.receive_message(0)

    queue.delete_message(received.receipt_handle)

    server_error("MessageNotExist", queue.peek_message)
    got = attributes(queue)
    assert (got["ActiveMessages"], got["InactiveMessages"]) == (0, 0)
    with pytest.raises(MNSServerException) as again:
        queue.delete_message(received.receipt_handle)
    assert again.value.type in ("MessageNotExist", "ReceiptHandleError")


# --------------------------------------------------------------------------------- BatchDeleteMessage


def test_batch_delete_message_deletes_all(queue):
    queue.batch_send_message([Message(f"m{i}") for i in range(3)])
    received = queue.batch_receive_message(16, 0)

    assert queue.batch_delete_message([m.receipt_handle for m in received]) is None

    server_error("MessageNotExist", queue.peek_message)
    got = attributes(queue)
    assert (got["ActiveMessages"], got["InactiveMessages"]) == (0, 0)


def test_batch_delete_partial_failure_reports_only_the_failed_handles(mns_emulator, queue):
    """§4.13: type is the first failure's ErrorCode; sub_errors list exactly the failed handles with
    {ErrorCode, ErrorMessage, ReceiptHandle}; the good handles are really deleted."""
    queue.batch_send_message([Message("a"), Message("b"), Message("c")])
    a, b, c = sorted(queue.batch_receive_message(16, 0), key=lambda m: m.message_body)
    c_now = queue.change_message_visibility(c.receipt_handle, 30)  # c's first handle is now stale
    garbage = "garbage-handle"

    error = server_error(
        "ReceiptHandleError",
        queue.batch_delete_message,
        [a.receipt_handle, garbage, b.receipt_handle, c.receipt_handle],
    )

    assert error.request_id
    assert [set(entry) for entry in error.sub_errors] == [{"ErrorCode", "ErrorMessage", "ReceiptHandle"}] * 2
    assert [(e["ErrorCode"], e["ReceiptHandle"]) for e in error.sub_errors] == [
        ("ReceiptHandleError", garbage),
        ("MessageNotExist", c.receipt_handle),
    ]
    assert error.sub_errors[0]["ErrorMessage"] == "The receipt handle you provide is not valid."
    assert error.sub_errors[1]["ErrorMessage"]
    assert queue_stats(mns_emulator, queue.queue_name) == {"active": 0, "inactive": 1, "delayed": 0}
    queue.change_message_visibility(c_now.receipt_handle, 0)
    left = queue.batch_receive_message(16, 0)
    assert [m.message_id for m in left] == [c.message_id]


def test_batch_delete_more_than_16_handles_is_invalid_argument(mns_emulator, queue):
    """Contract: more than 16 entries in a batch is 400 InvalidArgument; nothing is deleted."""
    queue.batch_send_message([Message(f"m{i}") for i in range(16)])
    queue.send_message(Message("m16"))
    handles = [m.receipt_handle for m in queue.batch_receive_message(16, 0)]
    handles.append(queue.receive_message(0).receipt_handle)

    server_error("InvalidArgument", queue.batch_delete_message, handles)

    assert queue_stats(mns_emulator, queue.queue_name) == {"active": 0, "inactive": 17, "delayed": 0}


# ---------------------------------------------------------------------------- ChangeMessageVisibility


def test_change_message_visibility_returns_a_new_handle_and_invalidates_the_old(queue):
    """§4.14: new handle, NextVisibleTime = now + N as a *string* (ms); the old handle stops working."""
    queue.send_message(Message("hold on"))
    received = queue.receive_message(0)

    before = now_ms()
    changed = queue.change_message_visibility(received.receipt_handle, 60)
    after = now_ms()

    assert changed.receipt_handle
    assert changed.receipt_handle != received.receipt_handle
    assert isinstance(changed.next_visible_time, str)
    assert before + 60_000 - SLACK_MS <= int(changed.next_visible_time) <= after + 60_000 + SLACK_MS
    server_error("MessageNotExist", queue.receive_message, 0)  # still invisible
    server_error("MessageNotExist", queue.change_message_visibility, received.receipt_handle, 10)
    server_error("MessageNotExist", queue.delete_message, received.receipt_handle)
    queue.delete_message(changed.receipt_handle)
    server_error("MessageNotExist", queue.peek_message)


def test_change_message_visibility_out_of_range_is_invalid_argument(emulator_queue_with_message):
    """§4.14: 0..43200 (the SDK checks this client-side, so the request is sent by hand)."""
    emulator, queue, handle = emulator_queue_with_message

    response = raw_request(
        emulator, "PUT", f"/queues/{queue.queue_name}/messages?ReceiptHandle={handle}&VisibilityTimeout=43201"
    )

    assert response.status == 400
    assert xml_children(response.body)[1]["Code"] == "InvalidArgument"
    queue.delete_message(handle)  # the failed call did not invalidate the handle


# ------------------------------------------------------------------------------------ user properties


def test_user_properties_are_echoed_on_receive_peek_and_batch(queue):
    """§4.7: UserProperties are stored and returned; the SDK rebuilds MessagePropertyValue objects."""
    message = Message("with properties")
    message.add_user_property("k_str", MessagePropertyValue.create_string("v 值"))
    message.add_user_property("k_num", MessagePropertyValue.create_number(42))
    message.add_user_property("k_bool", MessagePropertyValue.create_boolean(True))
    message.add_user_property("k_bin", MessagePropertyValue.create_binary(b"\x00\x01\xff"))
    queue.send_message(message)
    queue.batch_send_message([message])

    for got in [queue.peek_message(), *queue.batch_peek_message(16), queue.receive_message(0)]:
        props = got.user_properties
        assert set(props) == {"k_str", "k_num", "k_bool", "k_bin"}
        assert (props["k_str"].get_data_type(), props["k_str"].get_raw_value()) == ("STRING", "v 值")
        assert (props["k_num"].get_data_type(), props["k_num"].get_raw_value()) == ("NUMBER", "42")
        assert (props["k_bool"].get_data_type(), props["k_bool"].get_raw_value()) == ("BOOLEAN", "true")
        assert (props["k_bin"].get_data_type(), props["k_bin"].get_binary_value()) == ("BINARY", b"\x00\x01\xff")
    [batch_received] = queue.batch_receive_message(16, 0)
    assert batch_received.user_properties["k_num"].get_raw_value() == "42"


def test_messages_without_properties_have_none(queue):
    queue.send_message(Message("bare"))

    got = queue.receive_message(0)

    assert (got.user_properties, got.system_properties) == ({}, {})


def test_system_properties_are_echoed(queue):
    """§4.7: SystemProperties (e.g. traceparent) are stored and returned like user properties."""
    message = Message("traced")
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    message.add_system_property(SystemPropertyName.TRACEPARENT, MessageSystemPropertyValue.create_string(traceparent))
    queue.send_message(message)

    got = queue.receive_message(0)

    assert got.system_properties[SystemPropertyName.TRACEPARENT].get_raw_value() == traceparent


# ------------------------------------------------------------------------------------ error behaviour

QUEUE_SCOPED_OPERATIONS = {
    "GetQueueAttributes": lambda q, rh: q.get_attributes(),
    "SetQueueAttributes": lambda q, rh: q.set_attributes(QueueMeta(vis_timeout=60)),
    "SendMessage": lambda q, rh: q.send_message(Message("x")),
    "BatchSendMessage": lambda q, rh: q.batch_send_message([Message("x"), Message("y")]),
    "ReceiveMessage": lambda q, rh: q.receive_message(0),
    "BatchReceiveMessage": lambda q, rh: q.batch_receive_message(16, 0),
    "PeekMessage": lambda q, rh: q.peek_message(),
    "BatchPeekMessage": lambda q, rh: q.batch_peek_message(16),
    "DeleteMessage": lambda q, rh: q.delete_message(rh),
    "BatchDeleteMessage": lambda q, rh: q.batch_delete_message([rh]),
    "ChangeMessageVisibility": lambda q, rh: q.change_message_visibility(rh, 10),
}


@pytest.mark.parametrize("operation", list(QUEUE_SCOPED_OPERATIONS))
def test_operation_on_missing_queue_is_queue_not_exist(mns_emulator, queue, operation):
    """§4.1: every queue-scoped operation answers 404 QueueNotExist once the queue is gone."""
    queue.send_message(Message("x"))
    handle = queue.receive_message(0).receipt_handle
    queue.delete()

    server_error("QueueNotExist", QUEUE_SCOPED_OPERATIONS[operation], queue, handle)

    assert eventually(lambda: mns_emulator.stats()["operations"][operation]["errors"].get("QueueNotExist")) == 1


EMPTY_QUEUE_READS = {
    "ReceiveMessage": lambda q: q.receive_message(0),
    "ReceiveMessage-no-wait-param": lambda q: q.receive_message(),
    "BatchReceiveMessage": lambda q: q.batch_receive_message(16, 0),
    "PeekMessage": lambda q: q.peek_message(),
    "BatchPeekMessage": lambda q: q.batch_peek_message(16),
}


@pytest.mark.parametrize("operation", list(EMPTY_QUEUE_READS))
def test_read_from_empty_queue_is_message_not_exist(queue, operation):
    """§1 item 4: 404 MessageNotExist, never 200 with an empty list."""
    error = server_error("MessageNotExist", EMPTY_QUEUE_READS[operation], queue)

    assert error.message == "Message not exist."


@pytest.mark.parametrize("count", [0, 17, -1])
@pytest.mark.parametrize("peek", [False, True], ids=["BatchReceiveMessage", "BatchPeekMessage"])
def test_num_of_messages_outside_1_to_16_is_invalid_argument(queue, peek, count):
    """§4.10, §4.11 / contract: numOfMessages outside 1..16 is 400 InvalidArgument (the SDK sends 0, 17
    and -1 as they are). A message is waiting, so clamping instead of refusing would be visible."""
    queue.send_message(Message("waiting"))

    if peek:
        server_error("InvalidArgument", queue.batch_peek_message, count)
    else:
        server_error("InvalidArgument", queue.batch_receive_message, count, 0)

    assert queue.peek_message().dequeue_count == 0


@pytest.mark.parametrize("batch", [False, True], ids=["ReceiveMessage", "BatchReceiveMessage"])
def test_wait_seconds_above_30_is_invalid_argument(queue, batch):
    """§6.4 / contract: waitseconds outside 0..30 is 400 InvalidArgument (a message is waiting, so a
    server that ignored the limit would hand it out instead)."""
    queue.send_message(Message("waiting"))

    if batch:
        server_error("InvalidArgument", queue.batch_receive_message, 16, 31)
    else:
        server_error("InvalidArgument", queue.receive_message, 31)

    assert queue.peek_message().dequeue_count == 0


@pytest.fixture
def emulator_queue_with_message(mns_emulator, queue):
    """(emulator, queue, receipt handle of one received message)."""
    queue.send_message(Message("in flight"))
    return mns_emulator, queue, queue.receive_message(0).receipt_handle


@pytest.mark.parametrize("handle", ["garbage", "garbage-handle==", "8-bm90LWEtaGFuZGxl"])
def test_garbage_receipt_handle_is_receipt_handle_error(emulator_queue_with_message, handle):
    """§4.12, §4.14 / contract: a malformed or unknown handle is 400 ReceiptHandleError."""
    _, queue, real = emulator_queue_with_message

    server_error("ReceiptHandleError", queue.delete_message, handle)
    server_error("ReceiptHandleError", queue.change_message_visibility, handle, 10)

    queue.delete_message(real)


def test_receipt_handle_of_another_queue_is_receipt_handle_error(owner_account, queue_name):
    """Contract: a foreign handle (valid on another queue) is 400 ReceiptHandleError."""
    first = make_queue(owner_account, f"{queue_name}-a")
    second = make_queue(owner_account, f"{queue_name}-b")
    first.send_message(Message("a"))
    second.send_message(Message("b"))
    handle = first.receive_message(0).receipt_handle

    server_error("ReceiptHandleError", second.delete_message, handle)
    server_error("ReceiptHandleError", second.change_message_visibility, handle, 10)

    first.delete_message(handle)


def padded_handle(queue, handle: str) -> str:
    """Walk a held message through ChangeMessageVisibility until its handle carries '=' padding (base64
    handles do, depending on their length); skip if the emulator never mints one."""
    for _ in range(40):
        if "=" in handle:
            return handle
        handle = queue.change_message_visibility(handle, 30).receipt_handle
    pytest.skip("the emulator minted no receipt handle containing '='; nothing to check")


def test_receipt_handles_with_padding_work_verbatim_in_the_query_string(emulator_queue_with_message):
    """§1 item 6: the SDK puts handles in the query unencoded, so a handle ending in '==' arrives as
    `?ReceiptHandle=...==`; the server splits on the first '=' only. Both handle-taking operations work."""
    _, queue, handle = emulator_queue_with_message
    padded = padded_handle(queue, handle)

    changed = queue.change_message_visibility(padded, 30)
    padded_again = padded_handle(queue, changed.receipt_handle)
    queue.delete_message(padded_again)

    assert padded.endswith("=")
    server_error("MessageNotExist", queue.peek_message)
    assert attributes(queue)["InactiveMessages"] == 0


def test_every_minted_handle_survives_the_query_string(queue):
    """§1 item 6: 16 fresh handles (different messages) each work for change visibility and delete."""
    queue.batch_send_message([Message(f"m{i}") for i in range(16)])
    received = queue.batch_receive_message(16, 0)
    assert len(received) == 16

    for m in received:
        changed = queue.change_message_visibility(m.receipt_handle, 5)
        queue.delete_message(changed.receipt_handle)

    server_error("MessageNotExist", queue.peek_message)
    got = attributes(queue)
    assert (got["ActiveMessages"], got["InactiveMessages"]) == (0, 0)


def test_percent_encoded_receipt_handle_is_accepted(emulator_queue_with_message):
    """§1 item 6: the Go SDK URL-encodes handles ('=' becomes %3D); percent-decoding the value (without
    plus-to-space) keeps both SDKs working."""
    emulator, queue, handle = emulator_queue_with_message
    encoded = quote(padded_handle(queue, handle), safe="")
    assert "%3D" in encoded

    response = raw_request(emulator, "DELETE", f"/queues/{queue.queue_name}/messages?ReceiptHandle={encoded}")

    assert response.status == 204, response.body
    server_error("MessageNotExist", queue.peek_message)


@pytest.mark.parametrize("parameter", ["metaOverride", "MetaOverride", "METAOVERRIDE"])
def test_set_queue_attributes_query_name_is_case_insensitive(mns_emulator, queue, parameter):
    """§4.6: the SDK sends metaoverride=true, the docs metaOverride=true; both mean SetQueueAttributes
    (not a conflicting CreateQueue)."""
    body = queue_xml(QueueMeta(vis_timeout=45))

    response = raw_request(mns_emulator, "PUT", f"/queues/{queue.queue_name}?{parameter}=true", body)

    assert response.status == 204, response.body
    assert attributes(queue)["VisibilityTimeout"] == 45


def test_delete_message_query_name_is_case_insensitive(emulator_queue_with_message):
    """§4.14: the docs spell it receiptHandle; match parameter names case-insensitively."""
    emulator, queue, handle = emulator_queue_with_message

    response = raw_request(emulator, "DELETE", f"/queues/{queue.queue_name}/messages?receiptHandle={handle}")

    assert response.status == 204, response.body
    server_error("MessageNotExist", queue.peek_message)
    assert attributes(queue)["InactiveMessages"] == 0


def test_change_visibility_query_names_are_case_insensitive(emulator_queue_with_message):
    """§4.14: receiptHandle / visibilityTimeout as the docs write them; answer root is ChangeVisibility."""
    emulator, queue, handle = emulator_queue_with_message

    response = raw_request(
        emulator, "PUT", f"/queues/{queue.queue_name}/messages?receiptHandle={handle}&visibilityTimeout=0"
    )

    assert response.status == 200, response.body
    root, children = xml_children(response.body)
    assert root == "ChangeVisibility"
    assert children["ReceiptHandle"] and children["ReceiptHandle"] != handle
    assert int(children["NextVisibleTime"]) <= now_ms() + SLACK_MS
    assert queue.receive_message(0).dequeue_count == 2


def test_batch_peek_parameters_in_any_order(mns_emulator, queue):
    """§4.11: the Go SDK puts numOfMessages first; parameters are parsed independently of order."""
    queue.batch_send_message([Message("a"), Message("b"), Message("c")])

    response = raw_request(mns_emulator, "GET", f"/queues/{queue.queue_name}/messages?numOfMessages=2&peekonly=true")

    assert response.status == 200, response.body
    root = ET.fromstring(response.body)
    assert root.tag.rsplit("}", 1)[-1] == "Messages"
    assert len(root) == 2


def test_request_id_header_is_lowercase_on_success_and_error(mns_emulator, queue):
    """§1 item 1: the header must be spelled exactly `x-mns-request-id`, on every response."""
    ok = raw_request(mns_emulator, "GET", f"/queues/{queue.queue_name}")
    missing = raw_request(mns_emulator, "GET", f"/queues/{queue.queue_name}-missing")
    empty = raw_request(mns_emulator, "GET", f"/queues/{queue.queue_name}/messages?waitseconds=0")

    assert (ok.status, missing.status, empty.status) == (200, 404, 404)
    ids = []
    for response in (ok, missing, empty):
        names = [name for name, _ in response.headers if name.lower() == "x-mns-request-id"]
        assert names == ["x-mns-request-id"]
        ids.append(response.header("x-mns-request-id"))
    assert all(ids) and len(set(ids)) == 3
    assert xml_children(missing.body)[1]["RequestId"] == ids[1]
    assert xml_children(empty.body)[1]["RequestId"] == ids[2]


ERROR_CASES = {
    "QueueNotExist": lambda q: q.get_attributes(),
    "MessageNotExist": lambda q: q.receive_message(0),
    "InvalidArgument": lambda q: q.batch_receive_message(17, 0),
    "ReceiptHandleError": lambda q: q.delete_message("garbage"),
    "QueueAlreadyExist": lambda q: q.create(QueueMeta(vis_timeout=99)),
}


@pytest.mark.parametrize("code", list(ERROR_CASES))
def test_error_carries_code_message_request_id_and_host_id(owner_account, queue_name, code):
    """§1 item 3, §4.15: a complete <Error> body becomes MNSServerException with all four fields."""
    queue = owner_account.get_queue(queue_name)
    if code != "QueueNotExist":
        queue.create(QueueMeta())

    error = server_error(code, ERROR_CASES[code], queue)

    assert error.message
    assert error.request_id
    assert error.host_id
    assert error.sub_errors is None


def test_raw_error_body_is_a_complete_error_document(mns_emulator, queue_name):
    """§4.15: <Error> with Code, Message, RequestId, HostId, all non-empty, as XML."""
    response = raw_request(mns_emulator, "GET", f"/queues/{queue_name}")

    assert response.status == 404
    assert (response.header("content-type") or "").startswith("text/xml")
    root, children = xml_children(response.body)
    assert root == "Error"
    assert set(children) == {"Code", "Message", "RequestId", "HostId"}
    assert children["Code"] == "QueueNotExist"
    assert children["Message"] == "The queue name you provided is not exist."
    assert all(children.values())

"""Fault injection of the local MNS emulator, observed through the real SDK as the real service would surface it.

References: mns-emulator-contract.md "Fault config" and admin API; mns-wire.md §2.2 (SDK retries once after
BadStatusLine, wraps socket errors as NetWorkException), §5.1, §6.6 (no retries for 5xx/throttling), §7.
"""

from __future__ import annotations

import time
import uuid

import pytest
from emulator_credentials import OWNER_ID, OWNER_SECRET, PUBLISHER_ID, PUBLISHER_SECRET
from mns.account import Account
from mns.mns_exception import MNSClientNetworkException, MNSServerException
from mns.queue import Message, Queue, QueueMeta
from mns_support import admin, make_queue, raw_request, sdk_error, xml_children

from local.mns import MnsEmulator

# QueueMeta's deprecated message-count properties warn on every get_attributes(); not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated function:DeprecationWarning")

RATE_KINDS = ("internal_error", "throttle", "drop_connection", "token_expired")


def op_stats(emulator: MnsEmulator, operation: str) -> dict:
    return emulator.stats()["operations"].get(operation, {})


def admin_op_stats(emulator: MnsEmulator, operation: str) -> dict:
    status, body = admin(emulator, "GET", "/stats")
    assert status == 200
    return body["operations"].get(operation, {})


def nonzero_faults(config: dict) -> dict[str, float]:
    """Every non-zero rate / latency of a fault config, flattened to 'op.key' (or 'latency_ms')."""
    found: dict[str, float] = {}
    if config.get("latency_ms"):
        found["latency_ms"] = config["latency_ms"]
    for op, entry in (config.get("operations") or {}).items():
        for key, value in entry.items():
            if value:
                found[f"{op}.{key}"] = value
    return found


@pytest.fixture
def queue(owner_account: Account, queue_name: str) -> Queue:
    return make_queue(owner_account, queue_name)


# --------------------------------------------------------------------------------------------------
# each fault kind
# --------------------------------------------------------------------------------------------------


def test_internal_error_on_batch_receive_only(mns_emulator, queue) -> None:
    queue.batch_send_message([Message("a"), Message("b")])
    mns_emulator.set_faults({"operations": {"BatchReceiveMessage": {"internal_error": 1.0}}})

    err = sdk_error(lambda: queue.batch_receive_message(16))

    assert err.type == "InternalError"
    stats = op_stats(mns_emulator, "BatchReceiveMessage")
    assert stats["responses"] == {"500": 1}
    assert stats["errors"] == {"InternalError": 1}
    assert stats["faults"].get("internal_error") == 1
    # every other operation still works, and the failed call changed nothing
    assert len(queue.batch_peek_message(16)) == 2
    assert queue.receive_message().message_body in (b"a", b"b")
    queue.send_message(Message("c"))
    assert mns_emulator.stats()["queues"][queue.queue_name] == {"active": 2, "inactive": 1, "delayed": 0}


def test_throttle_is_qps_limit_exceeded(mns_emulator, queue) -> None:
    mns_emulator.set_faults({"operations": {"*": {"throttle": 1.0}}})

    assert sdk_error(queue.get_attributes).type == "QpsLimitExceeded"
    assert sdk_error(lambda: queue.send_message(Message("x"))).type == "QpsLimitExceeded"

    stats = op_stats(mns_emulator, "SendMessage")
    assert stats["responses"] == {"400": 1}
    assert stats["errors"] == {"QpsLimitExceeded": 1}
    mns_emulator.set_faults({})
    assert mns_emulator.stats()["queues"][queue.queue_name]["active"] == 0


def test_drop_connection_is_network_exception_and_recovers(mns_emulator, queue) -> None:
    queue.send_message(Message("survivor"))
    status, _ = admin(mns_emulator, "PUT", "/faults", {"operations": {"ReceiveMessage": {"drop_connection": 1.0}}})
    assert status in (200, 204)

    with pytest.raises(MNSClientNetworkException) as info:
        queue.receive_message()

    assert info.value.type == "NetWorkException"
    # the SDK resends once after BadStatusLine (§2.2): two dropped connections for one call
    assert admin_op_stats(mns_emulator, "ReceiveMessage")["faults"].get("drop_connection") == 2
    # other operations on the same client are not dropped
    assert queue.peek_message().message_body == b"survivor"

    admin(mns_emulator, "PUT", "/faults", {"operations": {"ReceiveMessage": {"drop_connection": 0.0}}})

    msg = queue.receive_message()  # the very same Queue / Account object works again
    assert msg.message_body == b"survivor"
    assert msg.dequeue_count == 1
    queue.delete_message(msg.receipt_handle)


def test_token_expired_fault_hits_only_sts_credentials(mns_emulator, queue) -> None:
    queue.send_message(Message("for sts"))
    cred = mns_emulator.issue_sts(queue.queue_name)
    sts_queue = Account(
        mns_emulator.endpoint, cred.access_key_id, cred.access_key_secret, cred.security_token
    ).get_queue(queue.queue_name)
    publisher_queue = Account(mns_emulator.endpoint, PUBLISHER_ID, PUBLISHER_SECRET).get_queue(queue.queue_name)
    mns_emulator.set_faults({"operations": {"*": {"token_expired": 1.0}}})

    assert sdk_error(sts_queue.receive_message).type == "SecurityTokenExpired"
    assert sdk_error(lambda: sts_queue.batch_receive_message(16)).type == "SecurityTokenExpired"

    publisher_queue.send_message(Message("publisher unaffected"))
    assert queue.get_attributes().queue_name == queue.queue_name
    assert len(queue.batch_peek_message(16)) == 2
    assert op_stats(mns_emulator, "ReceiveMessage")["errors"] == {"SecurityTokenExpired": 1}

    mns_emulator.set_faults({})
    assert sts_queue.receive_message().message_body in (b"for sts", b"publisher unaffected")


def test_global_latency_delays_every_call(mns_emulator, queue) -> None:
    mns_emulator.set_faults({"latency_ms": 300})

    started = time.monotonic()
    queue.get_attributes()
    assert time.monotonic() - started >= 0.3


def test_per_operation_latency_delays_that_operation(mns_emulator, queue) -> None:
    mns_emulator.set_faults({"operations": {"SendMessage": {"latency_ms": 300}}})

    started = time.monotonic()
    queue.send_message(Message("slow"))
    assert time.monotonic() - started >= 0.3


def test_global_and_per_operation_latency_add_up(mns_emulator, queue) -> None:
    mns_emulator.set_faults({"latency_ms": 200, "operations": {"GetQueueAttributes": {"latency_ms": 200}}})

    started = time.monotonic()
    queue.get_attributes()
    assert time.monotonic() - started >= 0.4


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("internal_error", 500, "InternalError"), ("throttle", 400, "QpsLimitExceeded")],
)
def test_injected_errors_are_well_formed_mns_errors_on_the_wire(mns_emulator, queue, kind, status, code) -> None:
    """Fault answers carry the real status, a lowercase x-mns-request-id and a full <Error> (§1 items 1, 3)."""
    mns_emulator.set_faults({"operations": {"GetQueueAttributes": {kind: 1.0}}})

    resp = raw_request(mns_emulator, "GET", f"/queues/{queue.queue_name}")

    assert resp.status == status
    assert "x-mns-request-id" in resp.header_names()
    _, fields = xml_children(resp.body)
    assert fields.get("Code") == code
    assert all(fields.get(name) for name in ("Message", "RequestId", "HostId")), fields


def test_injected_token_expiry_is_403_on_the_wire(mns_emulator, queue) -> None:
    cred = mns_emulator.issue_sts(queue.queue_name)
    mns_emulator.set_faults({"operations": {"ReceiveMessage": {"token_expired": 1.0}}})

    resp = raw_request(
        mns_emulator,
        "GET",
        f"/queues/{queue.queue_name}/messages",
        key_id=cred.access_key_id,
        secret=cred.access_key_secret,
        security_token=cred.security_token,
    )

    assert resp.status == 403
    assert "x-mns-request-id" in resp.header_names()
    _, fields = xml_children(resp.body)
    assert fields.get("Code") == "SecurityTokenExpired"
    assert all(fields.get(name) for name in ("Message", "RequestId", "HostId")), fields


# --------------------------------------------------------------------------------------------------
# configuration: precedence, start-up, run-time changes, validation
# --------------------------------------------------------------------------------------------------


def test_per_operation_override_beats_star(mns_emulator, queue) -> None:
    mns_emulator.set_faults({"operations": {"*": {"internal_error": 1.0}, "SendMessage": {"internal_error": 0.0}}})

    assert queue.send_message(Message("allowed")).message_id
    assert sdk_error(queue.get_attributes).type == "InternalError"
    assert sdk_error(queue.peek_message).type == "InternalError"


def test_per_operation_entry_overrides_key_by_key(mns_emulator, queue) -> None:
    """An operation entry that does not mention internal_error keeps the '*' value for it."""
    mns_emulator.set_faults({"operations": {"*": {"internal_error": 1.0}, "PeekMessage": {"latency_ms": 0}}})

    assert sdk_error(queue.peek_message).type == "InternalError"


def test_faults_given_at_start_then_changed_and_cleared_at_run_time(queue_name) -> None:
    start_faults = {"operations": {"GetQueueAttributes": {"throttle": 1.0}}}
    with MnsEmulator(
        owner=(OWNER_ID, OWNER_SECRET), publisher=(PUBLISHER_ID, PUBLISHER_SECRET), faults=start_faults
    ) as emulator:
        queue = Account(emulator.endpoint, OWNER_ID, OWNER_SECRET).get_queue(queue_name)
        queue.create(QueueMeta())

        assert nonzero_faults(emulator.faults()) == {"GetQueueAttributes.throttle": 1.0}
        status, current = admin(emulator, "GET", "/faults")
        assert status == 200
        assert nonzero_faults(current) == {"GetQueueAttributes.throttle": 1.0}
        assert sdk_error(queue.get_attributes).type == "QpsLimitExceeded"

        new_config = {"seed": 7, "operations": {"GetQueueAttributes": {"internal_error": 1.0}}}
        status, _ = admin(emulator, "PUT", "/faults", new_config)
        assert status in (200, 204)
        _, current = admin(emulator, "GET", "/faults")
        assert nonzero_faults(current) == {"GetQueueAttributes.internal_error": 1.0}
        assert sdk_error(queue.get_attributes).type == "InternalError"

        status, _ = admin(emulator, "DELETE", "/faults")
        assert status in (200, 204)
        _, current = admin(emulator, "GET", "/faults")
        assert nonzero_faults(current) == {}
        assert nonzero_faults(emulator.faults()) == {}
        assert queue.get_attributes().queue_name == queue_name


BAD_CONFIGS = {
    "rate-above-one": {"operations": {"*": {"internal_error": 1.5}}},
    "negative-rate": {"operations": {"SendMessage": {"throttle": -0.1}}},
    "unknown-operation": {"operations": {"SendMessages": {"throttle": 1.0}}},
    "unknown-key": {"operations": {"*": {"explode": 1.0}}},
    "unknown-top-level-key": {"latency_ms": 0, "chaos": True},
    "negative-latency": {"latency_ms": -5},
}


@pytest.mark.parametrize("config", list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS))
def test_bad_fault_config_is_rejected_with_400_json(mns_emulator, queue, config) -> None:
    good = {"operations": {"GetQueueAttributes": {"throttle": 1.0}}}
    assert admin(mns_emulator, "PUT", "/faults", good)[0] in (200, 204)

    status, body = admin(mns_emulator, "PUT", "/faults", config)

    assert status == 400
    assert isinstance(body, dict)
    assert isinstance(body.get("error"), str) and body["error"]
    # the previous configuration stays in force
    assert nonzero_faults(admin(mns_emulator, "GET", "/faults")[1]) == {"GetQueueAttributes.throttle": 1.0}
    assert sdk_error(queue.get_attributes).type == "QpsLimitExceeded"


def test_partial_rate_with_seed_fails_some_calls(mns_emulator, queue) -> None:
    mns_emulator.set_faults({"seed": 1234, "operations": {"GetQueueAttributes": {"throttle": 0.5}}})

    failures: list[str] = []
    for _ in range(40):
        try:
            queue.get_attributes()
        except MNSServerException as err:
            failures.append(err.type)

    assert 0 < len(failures) < 40
    assert set(failures) == {"QpsLimitExceeded"}
    stats = op_stats(mns_emulator, "GetQueueAttributes")
    assert stats["requests"] == 40
    assert stats["faults"].get("throttle") == len(failures)
    assert stats["responses"].get("200") == 40 - len(failures)


# --------------------------------------------------------------------------------------------------
# admin stats
# --------------------------------------------------------------------------------------------------


def test_stats_count_requests_per_operation_and_queue_depths(mns_emulator, owner_account, queue) -> None:
    empty = owner_account.get_queue(f"Alicom-Queue-{uuid.uuid4().int % 10**16:016d}-Empty")
    empty.create(QueueMeta())
    for i in range(3):
        queue.send_message(Message(f"single-{i}"))
    queue.send_message(Message("later", delay_seconds=600))
    queue.batch_send_message([Message(f"batch-{i}") for i in range(3)])
    first = queue.receive_message()
    second = queue.receive_message()
    received = queue.batch_receive_message(2)
    queue.delete_message(first.receipt_handle)
    assert sdk_error(empty.peek_message).type == "MessageNotExist"

    # 7 sent, 1 delayed, 4 received (3 still in flight), 1 deleted
    status, stats = admin(mns_emulator, "GET", "/stats")
    assert status == 200
    assert stats["queues"][queue.queue_name] == {"active": 2, "inactive": 3, "delayed": 1}
    assert stats["queues"][empty.queue_name] == {"active": 0, "inactive": 0, "delayed": 0}
    ops = stats["operations"]
    assert ops["CreateQueue"]["requests"] == 2
    assert ops["SendMessage"]["requests"] == 4
    assert ops["SendMessage"]["responses"] == {"201": 4}
    assert ops["BatchSendMessage"]["requests"] == 1
    assert ops["ReceiveMessage"]["requests"] == 2
    assert ops["BatchReceiveMessage"]["requests"] == 1
    assert ops["DeleteMessage"]["requests"] == 1
    assert ops["DeleteMessage"]["responses"] == {"204": 1}
    assert ops["PeekMessage"]["requests"] == 1
    assert ops["PeekMessage"]["responses"] == {"404": 1}
    assert ops["PeekMessage"]["errors"] == {"MessageNotExist": 1}
    assert "BatchDeleteMessage" not in ops or ops["BatchDeleteMessage"]["requests"] == 0
    assert len(received) == 2 and second.receipt_handle

    queue.batch_delete_message([second.receipt_handle] + [m.receipt_handle for m in received])
    after = mns_emulator.stats()
    assert after["queues"][queue.queue_name] == {"active": 2, "inactive": 0, "delayed": 1}
    assert after["operations"]["BatchDeleteMessage"]["requests"] == 1

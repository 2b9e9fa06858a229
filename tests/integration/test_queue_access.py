"""shared.adapters.queue.AlicomQueue through the real aliyun-mns-sdk against the MNS emulator: receive in raw mode,
per-handle delete, change visibility, token refresh on an auth error, and the error classes the drainer relies on."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import pytest
from mns.account import Account
from mns.queue import Message, QueueMeta
from test_alicom_support import AK, SK, UID, running_emulators

from local.mns import MnsEmulator
from shared.adapters.alicom import TokenProvider, acs_client
from shared.adapters.queue import (
    AccessDenied,
    AlicomQueue,
    QueueUnavailable,
    StaleHandle,
    Throttled,
    TokenRejected,
)
from shared.domain.models import decode_body
from shared.errors import ConfigError, PoisonMessage, TransientError
from shared.retry import retrying

MESSAGE_TYPE = "FlowReport"


@dataclass(frozen=True)
class Token:
    """The shape of shared.adapters.alicom.QueueToken."""

    access_key_id: str
    access_key_secret: str
    security_token: str
    expires_at: datetime


class StsTokens:
    """A minimal token provider: STS credentials minted by the MNS emulator for one queue."""

    def __init__(self, emulator: MnsEmulator, queue: str, on_invalidate=None) -> None:
        self.emulator = emulator
        self.queue = queue
        self.on_invalidate = on_invalidate
        self.current: Token | None = None
        self.issued: list[Token] = []
        self.invalidated = 0

    def token(self) -> Token:
        if self.current is None:
            sts = self.emulator.issue_sts(self.queue, 3600)
            self.current = Token(sts.access_key_id, sts.access_key_secret, sts.security_token, sts.expires_at)
            self.issued.append(self.current)
        return self.current

    def invalidate(self, token: Token | None = None) -> None:
        self.invalidated += 1
        if token is None or token == self.current:
            self.current = None
        if self.on_invalidate is not None:
            self.on_invalidate()


def report(out_id: str, result: str = "3") -> str:
    return json.dumps({"phone": "13800138000", "out_id": out_id, "result": result, "err_code": "", "err_msg": ""})


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def requests_of(emulator: MnsEmulator, operation: str) -> int:
    return emulator.stats()["operations"].get(operation, {}).get("requests", 0)


@pytest.fixture
def owner_queue(owner_account: Account, queue_name: str):
    """The queue, created by its owner; sends in base64 mode like Alicom does."""
    queue = owner_account.get_queue(queue_name)
    queue.create(QueueMeta(vis_timeout=30))
    return queue


@pytest.fixture
def tokens(mns_emulator: MnsEmulator, queue_name: str, owner_queue) -> StsTokens:
    return StsTokens(mns_emulator, queue_name)


@pytest.fixture
def queue(mns_emulator: MnsEmulator, queue_name: str, tokens: StsTokens) -> AlicomQueue:
    return AlicomQueue(mns_emulator.endpoint, queue_name, MESSAGE_TYPE, tokens)


def send(owner_queue, *texts: str) -> list[str]:
    return [owner_queue.send_message(Message(text)).message_id for text in texts]


# --- receive --------------------------------------------------------------------------------------------------


def test_receive_returns_envelopes_with_the_body_exactly_as_stored(queue, owner_queue):
    before = int(time.time() * 1000)
    ids = send(owner_queue, report("o-1"), report("o-2", "4"))

    received = queue.receive(16, 0)

    assert sorted(r.envelope.message_id for r in received) == sorted(ids)
    by_id = {r.envelope.message_id: r for r in received}
    first = by_id[ids[0]]
    assert first.envelope.body == b64(report("o-1"))  # the base64 text as stored, not decoded
    assert decode_body(first.envelope.body) == report("o-1")
    assert first.envelope.message_type == MESSAGE_TYPE
    assert first.envelope.dequeue_count == 1
    assert before - 1000 <= first.envelope.enqueue_time <= int(time.time() * 1000) + 1000
    assert first.receipt_handle and by_id[ids[1]].receipt_handle != first.receipt_handle


def test_an_empty_queue_gives_an_empty_list(queue):
    assert queue.receive(16, 0) == []


def test_a_long_poll_returns_as_soon_as_a_message_arrives(queue, owner_queue):
    timer = threading.Timer(0.3, send, args=(owner_queue, report("late")))
    started = time.monotonic()
    timer.start()
    try:
        received = queue.receive(16, 10)
    finally:
        timer.join()
    assert [decode_body(r.envelope.body) for r in received] == [report("late")]
    assert time.monotonic() - started < 3


def test_the_wait_is_bounded_by_the_time_left(queue, mns_emulator):
    started = time.monotonic()
    assert queue.receive(16, 10, deadline=started + 1.5) == []  # waits floor(1.5) - 1 = 0 s
    assert time.monotonic() - started < 1
    calls = requests_of(mns_emulator, "BatchReceiveMessage")
    assert queue.receive(16, 10, deadline=time.monotonic() - 0.1) == []  # no time left: no request at all
    assert requests_of(mns_emulator, "BatchReceiveMessage") == calls


def test_a_body_that_is_not_base64_does_not_break_the_batch(queue, owner_queue, owner_account, queue_name):
    raw = owner_account.get_queue(queue_name)
    raw.set_encoding(False)
    raw.send_message(Message("this is {not} base64 at all!"))
    send(owner_queue, report("good"))

    bodies = sorted(r.envelope.body for r in queue.receive(16, 0))

    assert bodies == sorted(["this is {not} base64 at all!", b64(report("good"))])
    with pytest.raises(PoisonMessage):
        decode_body("this is {not} base64 at all!")


def test_a_redelivered_message_counts_its_dequeues(queue, owner_queue):
    send(owner_queue, report("again"))
    (first,) = queue.receive(16, 0)
    queue.change_visibility(first.receipt_handle, 0)  # visible again at once
    (second,) = queue.receive(16, 0)
    assert second.envelope.message_id == first.envelope.message_id
    assert second.envelope.dequeue_count == 2


# --- delete and change visibility -----------------------------------------------------------------------------


def test_delete_reports_each_handle(queue, owner_queue, mns_emulator, queue_name):
    send(owner_queue, report("a"), report("b"), report("c"))
    stale_one, good_one, good_two = (r.receipt_handle for r in queue.receive(16, 0))
    queue.change_visibility(stale_one, 30)  # a new handle replaces stale_one
    garbage = "8-bm90LWEtaGFuZGxl=="

    result = queue.delete([stale_one, good_one, good_two, garbage])

    assert result.deleted == [good_one, good_two]
    assert result.failed == {stale_one: "MessageNotExist", garbage: "ReceiptHandleError"}
    assert result.retryable == []
    assert mns_emulator.stats()["queues"][queue_name]["inactive"] == 1  # only the re-hidden message is left


def test_delete_sends_batches_of_at_most_16(queue, owner_queue, mns_emulator):
    owner_queue.batch_send_message([Message(report(f"o-{i}")) for i in range(16)])
    owner_queue.batch_send_message([Message(report(f"p-{i}")) for i in range(4)])
    handles = [r.receipt_handle for r in queue.receive(16, 0)] + [r.receipt_handle for r in queue.receive(16, 0)]
    assert len(handles) == 20

    result = queue.delete(handles + handles[:2])  # duplicates are deleted once

    assert result.deleted == handles and result.failed == {}
    assert requests_of(mns_emulator, "BatchDeleteMessage") == 2
    assert queue.receive(16, 0) == []


def test_delete_of_nothing_sends_nothing(queue, mns_emulator):
    result = queue.delete([])
    assert (result.deleted, result.failed) == ([], {})
    assert requests_of(mns_emulator, "BatchDeleteMessage") == 0


def test_change_visibility_gives_a_new_handle_and_retires_the_old_one(queue, owner_queue):
    send(owner_queue, report("v"))
    (received,) = queue.receive(16, 0)

    new_handle = queue.change_visibility(received.receipt_handle, 60)

    assert new_handle and new_handle != received.receipt_handle
    with pytest.raises(StaleHandle) as info:
        queue.change_visibility(received.receipt_handle, 60)
    assert info.value.code == "MessageNotExist"
    assert isinstance(info.value, TransientError)
    assert queue.delete([new_handle]).deleted == [new_handle]


def test_change_visibility_checks_its_arguments(queue):
    with pytest.raises(ValueError):
        queue.change_visibility("8-abc==", 43201)
    with pytest.raises(StaleHandle):
        queue.change_visibility("", 10)


# --- the token ------------------------------------------------------------------------------------------------


def test_an_expired_token_is_replaced_and_the_call_succeeds(queue, tokens, owner_queue, mns_emulator):
    send(owner_queue, report("before"))
    (first,) = queue.receive(16, 0)
    assert len(tokens.issued) == 1

    mns_emulator.expire_sts(tokens.issued[0].access_key_id)  # the token ends in the middle of the run
    assert queue.delete([first.receipt_handle]).deleted == [first.receipt_handle]
    send(owner_queue, report("after"))
    assert [decode_body(r.envelope.body) for r in queue.receive(16, 0)] == [report("after")]

    assert (tokens.invalidated, len(tokens.issued)) == (1, 2)
    errors = mns_emulator.stats()["operations"]["BatchDeleteMessage"]["errors"]
    assert errors == {"SecurityTokenExpired": 1}


def test_a_token_expired_fault_refreshes_once_per_call(mns_emulator, queue_name, owner_queue):
    # The fault strikes every STS request until the provider fetches a new token (then it is lifted).
    tokens = StsTokens(mns_emulator, queue_name, on_invalidate=lambda: mns_emulator.set_faults({}))
    queue = AlicomQueue(mns_emulator.endpoint, queue_name, MESSAGE_TYPE, tokens)
    send(owner_queue, report("x"))
    mns_emulator.set_faults({"operations": {"*": {"token_expired": 1.0}}})

    (received,) = queue.receive(16, 0)

    assert decode_body(received.envelope.body) == report("x")
    assert (tokens.invalidated, len(tokens.issued)) == (1, 2)


def test_a_fresh_token_rejected_again_is_token_rejected(mns_emulator, queue_name, owner_queue):
    tokens = StsTokens(mns_emulator, queue_name)
    queue = AlicomQueue(mns_emulator.endpoint, queue_name, MESSAGE_TYPE, tokens)
    mns_emulator.set_faults({"operations": {"*": {"token_expired": 1.0}}})

    with pytest.raises(TokenRejected) as info:
        queue.receive(16, 0)

    assert isinstance(info.value, TransientError)
    assert info.value.code == "SecurityTokenExpired"
    assert (tokens.invalidated, len(tokens.issued)) == (1, 2)  # one refresh, one retry, no loop
    assert requests_of(mns_emulator, "BatchReceiveMessage") == 2


def test_a_token_refreshed_by_the_provider_is_picked_up(queue, tokens, owner_queue):
    send(owner_queue, report("one"), report("two"))
    queue.receive(1, 0)
    tokens.current = None  # the provider refreshed ahead of expiry: the next token() is a new one
    assert len(queue.receive(1, 0)) == 1
    assert (len(tokens.issued), tokens.invalidated) == (2, 0)


def test_the_real_token_provider_end_to_end_with_expiry_mid_run():
    # QueryTokenForMnsQueue on the Alicom emulator -> STS token -> the queue on the MNS emulator.
    with running_emulators() as (mns, alicom):
        name = alicom.queue_name(UID)
        provider = TokenProvider(acs_client(AK, SK, None, "cn-hangzhou"), alicom.endpoint, MESSAGE_TYPE, name)
        pollers = [AlicomQueue(mns.endpoint, name, MESSAGE_TYPE, provider) for _ in range(2)]
        alicom.publish_report(out_id="e2e-1", phone="13800138000", result="3")
        alicom.publish_report(out_id="e2e-2", phone="13800138000", result="4")
        first = pollers[0].receive(1, 1)
        second = pollers[1].receive(1, 1)
        assert len(first) == len(second) == 1
        fetched = provider.token()

        mns.expire_sts()  # every token ends; the second poller picks up the token the first one refreshed
        handles = [first[0].receipt_handle, second[0].receipt_handle]
        assert pollers[0].delete(handles[:1]).deleted == handles[:1]
        assert pollers[1].delete(handles[1:]).deleted == handles[1:]

        refreshed = provider.token()
        assert refreshed.access_key_id != fetched.access_key_id
        assert alicom.stats()["actions"]["QueryTokenForMnsQueue"]["requests"] == 2  # one refresh, not one each
        bodies = sorted(json.loads(decode_body(r.envelope.body))["out_id"] for r in first + second)
        assert bodies == ["e2e-1", "e2e-2"]


# --- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token_queue", ["Alicom-Queue-1111111111111111-FlowReport", None])
def test_a_token_for_another_queue_is_access_denied_in_one_line(mns_emulator, owner_queue, queue_name, token_queue):
    # Either the token covers a different queue, or the configured queue name is wrong (alicom.md pitfall 8).
    tokens = StsTokens(mns_emulator, token_queue or queue_name)
    configured = queue_name if token_queue else "Alicom-Queue-2222222222222222-FlowReport"
    queue = AlicomQueue(mns_emulator.endpoint, configured, MESSAGE_TYPE, tokens)

    with pytest.raises(AccessDenied) as info:
        queue.receive(16, 0)

    text = str(info.value)
    assert "\n" not in text
    assert configured in text and MESSAGE_TYPE in text
    assert info.value.code == "AccessDenied"
    assert isinstance(info.value, ConfigError) and not isinstance(info.value, TransientError)
    token = tokens.issued[0]
    assert token.access_key_secret not in text and token.security_token not in text
    assert tokens.invalidated == 0  # not a token problem: no refresh loop


def test_access_denied_on_delete_raises(mns_emulator, owner_queue, queue_name):
    tokens = StsTokens(mns_emulator, "Alicom-Queue-1111111111111111-FlowReport")
    queue = AlicomQueue(mns_emulator.endpoint, queue_name, MESSAGE_TYPE, tokens)
    with pytest.raises(AccessDenied):
        queue.delete(["8-AAAA=="])


def test_a_missing_queue_is_a_config_error(mns_emulator):
    name = "Alicom-Queue-3333333333333333-FlowReport"
    queue = AlicomQueue(mns_emulator.endpoint, name, MESSAGE_TYPE, StsTokens(mns_emulator, name))
    with pytest.raises(ConfigError, match=name) as info:
        queue.receive(16, 0)
    assert "\n" not in str(info.value)


def test_a_bad_endpoint_is_a_config_error(tokens, queue_name):
    queue = AlicomQueue("127.0.0.1:1", queue_name, MESSAGE_TYPE, tokens)
    with pytest.raises(ConfigError, match="ALICOM_MNS_ENDPOINT"):
        queue.receive(16, 0)


def test_throttling_is_throttled(queue, mns_emulator):
    mns_emulator.set_faults({"operations": {"BatchReceiveMessage": {"throttle": 1.0}}})
    with pytest.raises(Throttled) as info:
        queue.receive(16, 0)
    assert info.value.code == "QpsLimitExceeded" and isinstance(info.value, TransientError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("kind", "code"), [("internal_error", "InternalError"), ("drop_connection", "NetWorkException")]
)
def test_server_and_network_errors_are_queue_unavailable(queue, mns_emulator, kind, code):
    mns_emulator.set_faults({"operations": {"*": {kind: 1.0}}})
    with pytest.raises(QueueUnavailable) as info:
        queue.receive(16, 0)
    assert info.value.code == code and isinstance(info.value, TransientError)
    mns_emulator.set_faults({})
    assert queue.receive(16, 0) == []  # the next call reconnects


def test_a_hung_server_does_not_outlive_the_request_timeout(mns_emulator, queue_name, tokens):
    queue = AlicomQueue(mns_emulator.endpoint, queue_name, MESSAGE_TYPE, tokens, request_timeout=0.3)
    mns_emulator.set_faults({"latency_ms": 800})
    started = time.monotonic()
    with pytest.raises(QueueUnavailable, match="timed out"):
        queue.receive(16, 0)
    assert time.monotonic() - started < 0.75


def test_a_failed_delete_batch_is_reported_per_handle(queue, owner_queue, mns_emulator):
    send(owner_queue, report("a"), report("b"))
    handles = [r.receipt_handle for r in queue.receive(16, 0)]
    mns_emulator.set_faults({"operations": {"BatchDeleteMessage": {"throttle": 1.0}}})

    result = queue.delete(handles)

    assert result.deleted == [] and result.failed == dict.fromkeys(handles, "QpsLimitExceeded")
    assert result.retryable == handles
    mns_emulator.set_faults({})
    assert queue.delete(result.retryable).deleted == handles


# --- bounded retry --------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_retrying_backs_off_until_the_call_succeeds(queue, mns_emulator, owner_queue):
    send(owner_queue, report("r"))
    clock = FakeClock()
    mns_emulator.set_faults({"operations": {"BatchReceiveMessage": {"internal_error": 1.0}}})

    def receive():
        if len(clock.pauses) == 2:
            mns_emulator.set_faults({})  # the outage ends after the second pause
        return queue.receive(16, 0)

    received = retrying(receive, clock.now + 10, clock=clock, sleep=clock.sleep, jitter=lambda: 1.0)

    assert len(received) == 1
    assert clock.pauses == [0.2, 0.4]


def test_retrying_waits_longer_after_throttling_and_stops_at_the_deadline(queue, mns_emulator):
    clock = FakeClock()
    mns_emulator.set_faults({"operations": {"BatchReceiveMessage": {"throttle": 1.0}}})

    with pytest.raises(Throttled):
        retrying(lambda: queue.receive(16, 0), clock.now + 4, clock=clock, sleep=clock.sleep, jitter=lambda: 1.0)

    assert clock.pauses == [1.0, 2.0]  # a third pause (4 s) would end after the deadline
    assert clock.now <= 100.0 + 4


def test_retrying_does_not_retry_what_cannot_succeed(mns_emulator, owner_queue, queue_name):
    tokens = StsTokens(mns_emulator, "Alicom-Queue-1111111111111111-FlowReport")
    queue = AlicomQueue(mns_emulator.endpoint, queue_name, MESSAGE_TYPE, tokens)
    clock = FakeClock()
    with pytest.raises(AccessDenied):
        retrying(lambda: queue.receive(16, 0), clock.now + 60, clock=clock, sleep=clock.sleep)
    with pytest.raises(StaleHandle):
        retrying(lambda: queue.change_visibility("", 1), clock.now + 60, clock=clock, sleep=clock.sleep)
    assert clock.pauses == []

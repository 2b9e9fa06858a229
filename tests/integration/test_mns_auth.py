"""Authentication and authorisation of the local MNS emulator, as the SDK and a raw HTTP client see them.

References: mns-wire.md §1 (items 1, 3, 5), §2.3, §3 (signature, server-side rules, STS), §5.1, §7;
mns-emulator-contract.md "Credentials" and the admin STS endpoints.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import formatdate

import pytest
from emulator_credentials import OWNER_ID, OWNER_SECRET, PUBLISHER_ID, PUBLISHER_SECRET
from mns.account import Account
from mns.queue import Message, Queue, QueueMeta
from mns_support import (
    admin,
    assert_mns_error,
    make_queue,
    mns_signature,
    queue_stats,
    raw_request,
    sdk_content_md5,
    sdk_error,
    xml_children,
)

from local.mns import MnsEmulator

# QueueMeta's deprecated message-count properties warn on every get_attributes(); not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated function:DeprecationWarning")

# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------

SEND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><Message xmlns="http://mns.aliyuncs.com/doc/v1/">'
    b"<MessageBody>aGVsbG8=</MessageBody><DelaySeconds>0</DelaySeconds><Priority>8</Priority></Message>"
)


def account_for(emulator: MnsEmulator, cred) -> Account:
    return Account(emulator.endpoint, cred.access_key_id, cred.access_key_secret, cred.security_token)


def new_queue(account: Account, name: str | None = None) -> Queue:
    return make_queue(account, name or f"Alicom-Queue-{uuid.uuid4().int % 10**16:016d}-Other")


@pytest.fixture
def own_queue(owner_account: Account, queue_name: str) -> Queue:
    return make_queue(owner_account, queue_name)


@pytest.fixture
def publisher_account(mns_emulator: MnsEmulator) -> Account:
    return Account(mns_emulator.endpoint, PUBLISHER_ID, PUBLISHER_SECRET)


@pytest.fixture
def sts_account(mns_emulator: MnsEmulator, own_queue: Queue) -> Account:
    return account_for(mns_emulator, mns_emulator.issue_sts(own_queue.queue_name))


# --------------------------------------------------------------------------------------------------
# signature errors through the SDK (§3.3)
# --------------------------------------------------------------------------------------------------


def test_owner_with_wrong_secret_gets_signature_does_not_match(mns_emulator, own_queue) -> None:
    bad = Account(mns_emulator.endpoint, OWNER_ID, OWNER_SECRET + "-wrong").get_queue(own_queue.queue_name)

    assert sdk_error(bad.get_attributes).type == "SignatureDoesNotMatch"
    assert sdk_error(lambda: bad.send_message(Message("x"))).type == "SignatureDoesNotMatch"


def test_publisher_with_wrong_secret_gets_signature_does_not_match(mns_emulator, own_queue) -> None:
    bad = Account(mns_emulator.endpoint, PUBLISHER_ID, "nope").get_queue(own_queue.queue_name)

    assert sdk_error(lambda: bad.send_message(Message("x"))).type == "SignatureDoesNotMatch"


def test_sts_with_wrong_secret_gets_signature_does_not_match(mns_emulator, own_queue) -> None:
    cred = mns_emulator.issue_sts(own_queue.queue_name)
    bad = Account(mns_emulator.endpoint, cred.access_key_id, "nope", cred.security_token)

    err = sdk_error(lambda: bad.get_queue(own_queue.queue_name).receive_message())
    assert err.type == "SignatureDoesNotMatch"


def test_unknown_access_key_id_gets_invalid_access_key_id(mns_emulator, own_queue) -> None:
    stranger = Account(mns_emulator.endpoint, "who-is-this", OWNER_SECRET).get_queue(own_queue.queue_name)

    err = sdk_error(stranger.get_attributes)
    assert err.type == "InvalidAccessKeyId"
    assert err.request_id


def test_error_exception_carries_request_and_host_id(mns_emulator, own_queue) -> None:
    bad = Account(mns_emulator.endpoint, OWNER_ID, "wrong").get_queue(own_queue.queue_name)

    err = sdk_error(bad.get_attributes)
    assert err.request_id
    assert err.host_id


# --------------------------------------------------------------------------------------------------
# raw HTTP: request-level errors (§3.3, §7) with status, header and <Error> body
# --------------------------------------------------------------------------------------------------


def test_raw_signed_request_is_accepted(mns_emulator, own_queue) -> None:
    """Control: the hand-built request of these tests is a valid one."""
    resp = raw_request(mns_emulator, "GET", f"/queues/{own_queue.queue_name}")

    assert resp.status == 200, resp.body
    assert "x-mns-request-id" in resp.header_names()
    assert xml_children(resp.body)[0] == "Queue"


def test_raw_signed_send_with_sdk_content_md5_is_accepted(mns_emulator, own_queue) -> None:
    """Control: Content-MD5 computed as base64(hex(md5(body))) is accepted (§1 item 5)."""
    resp = raw_request(mns_emulator, "POST", f"/queues/{own_queue.queue_name}/messages", SEND_BODY)

    assert resp.status == 201, resp.body
    assert own_queue.peek_message().message_body == b"hello"


def test_raw_missing_authorization_header(mns_emulator, own_queue) -> None:
    resp = raw_request(mns_emulator, "GET", f"/queues/{own_queue.queue_name}", authorization=None)

    assert_mns_error(resp, 400, "MissingAuthorizationHeader")


@pytest.mark.parametrize("value", ["Basic xyz", "MNS nocolon"], ids=["basic-scheme", "mns-without-colon"])
def test_raw_malformed_authorization_header(mns_emulator, own_queue, value: str) -> None:
    resp = raw_request(mns_emulator, "GET", f"/queues/{own_queue.queue_name}", authorization=value)

    assert_mns_error(resp, 400, "InvalidAuthorizationHeader")


def test_raw_missing_date_header(mns_emulator, own_queue) -> None:
    resp = raw_request(mns_emulator, "GET", f"/queues/{own_queue.queue_name}", date=None)

    assert_mns_error(resp, 400, "MissingDateHeader")


def test_raw_date_twenty_minutes_old_is_time_expired(mns_emulator, own_queue) -> None:
    old = formatdate(time.time() - 20 * 60, usegmt=True)

    resp = raw_request(mns_emulator, "GET", f"/queues/{own_queue.queue_name}", date=old)

    assert_mns_error(resp, 408, "TimeExpired")


def test_raw_date_twenty_minutes_ahead_is_time_expired(mns_emulator, own_queue) -> None:
    ahead = formatdate(time.time() + 20 * 60, usegmt=True)

    resp = raw_request(mns_emulator, "GET", f"/queues/{own_queue.queue_name}", date=ahead)

    assert_mns_error(resp, 408, "TimeExpired")


def test_clock_skew_check_can_be_disabled(queue_name) -> None:
    """Contract: max_clock_skew=None disables the TimeExpired check."""
    with MnsEmulator(
        owner=(OWNER_ID, OWNER_SECRET), publisher=(PUBLISHER_ID, PUBLISHER_SECRET), max_clock_skew=None
    ) as emulator:
        Account(emulator.endpoint, OWNER_ID, OWNER_SECRET).get_queue(queue_name).create(QueueMeta())
        old = formatdate(time.time() - 20 * 60, usegmt=True)

        resp = raw_request(emulator, "GET", f"/queues/{queue_name}", date=old)

        assert resp.status == 200, resp.body


def test_raw_wrong_content_md5_is_invalid_digest(mns_emulator, own_queue) -> None:
    wrong = sdk_content_md5(b"some other body")

    resp = raw_request(mns_emulator, "POST", f"/queues/{own_queue.queue_name}/messages", SEND_BODY, content_md5=wrong)

    assert_mns_error(resp, 400, "InvalidDegist")
    assert queue_stats(mns_emulator, own_queue.queue_name)["active"] == 0


def test_raw_standard_rfc1864_content_md5_is_invalid_digest(mns_emulator, own_queue) -> None:
    """§1 item 5: base64 of the raw 16 bytes is NOT what MNS expects."""
    standard = base64.b64encode(hashlib.md5(SEND_BODY).digest()).decode()

    resp = raw_request(
        mns_emulator, "POST", f"/queues/{own_queue.queue_name}/messages", SEND_BODY, content_md5=standard
    )

    assert_mns_error(resp, 400, "InvalidDegist")


def test_raw_wrong_secret_is_403_signature_does_not_match(mns_emulator, own_queue) -> None:
    resp = raw_request(mns_emulator, "GET", f"/queues/{own_queue.queue_name}", secret="wrong")

    assert_mns_error(resp, 403, "SignatureDoesNotMatch")


def test_raw_tampered_target_is_signature_does_not_match(mns_emulator, own_queue) -> None:
    """The signature covers the request target (§3.1)."""
    target = f"/queues/{own_queue.queue_name}"
    date = formatdate(usegmt=True)
    sig = mns_signature(OWNER_SECRET, "GET", {"date": date, "x-mns-version": "2015-06-06"}, target + "-other")

    resp = raw_request(mns_emulator, "GET", target, date=date, authorization=f"MNS {OWNER_ID}:{sig}")

    assert_mns_error(resp, 403, "SignatureDoesNotMatch")


def test_raw_unknown_access_key_id_is_403(mns_emulator, own_queue) -> None:
    resp = raw_request(mns_emulator, "GET", f"/queues/{own_queue.queue_name}", key_id="nobody")

    assert_mns_error(resp, 403, "InvalidAccessKeyId")


def test_raw_sts_missing_token_is_403_invalid_security_token(mns_emulator, own_queue) -> None:
    cred = mns_emulator.issue_sts(own_queue.queue_name)

    resp = raw_request(
        mns_emulator,
        "GET",
        f"/queues/{own_queue.queue_name}/messages",
        key_id=cred.access_key_id,
        secret=cred.access_key_secret,
    )

    assert_mns_error(resp, 403, "InvalidSecurityToken")


def test_raw_sts_token_is_not_signed(mns_emulator, own_queue) -> None:
    """§3.4: the token travels in `security-token`, outside the signature; an empty queue answers 404."""
    cred = mns_emulator.issue_sts(own_queue.queue_name)

    resp = raw_request(
        mns_emulator,
        "GET",
        f"/queues/{own_queue.queue_name}/messages",
        key_id=cred.access_key_id,
        secret=cred.access_key_secret,
        security_token=cred.security_token,
    )

    assert_mns_error(resp, 404, "MessageNotExist")


def test_raw_access_denied_is_403(mns_emulator, own_queue) -> None:
    resp = raw_request(
        mns_emulator,
        "GET",
        f"/queues/{own_queue.queue_name}/messages",
        key_id=PUBLISHER_ID,
        secret=PUBLISHER_SECRET,
    )

    assert_mns_error(resp, 403, "AccessDenied")


# --------------------------------------------------------------------------------------------------
# STS credentials (contract "Credentials", §3.4)
# --------------------------------------------------------------------------------------------------


def test_issue_sts_returns_a_credential_bound_to_the_queue(mns_emulator, own_queue) -> None:
    first = mns_emulator.issue_sts(own_queue.queue_name)
    second = mns_emulator.issue_sts(own_queue.queue_name, ttl_seconds=600)

    assert first.queue == own_queue.queue_name
    assert first.access_key_id and first.access_key_secret and first.security_token
    assert first.access_key_id != second.access_key_id
    assert first.security_token != second.security_token
    assert first.expires_at.tzinfo is not None
    now = datetime.now(timezone.utc)
    assert timedelta(minutes=59) < first.expires_at - now <= timedelta(hours=1, seconds=5)
    assert timedelta(minutes=9) < second.expires_at - now <= timedelta(minutes=10, seconds=5)


def test_sts_receives_and_deletes_a_message_sent_by_the_owner(mns_emulator, own_queue, sts_account) -> None:
    own_queue.send_message(Message("from owner"))
    queue = sts_account.get_queue(own_queue.queue_name)

    msg = queue.receive_message()
    assert msg.message_body == b"from owner"
    queue.delete_message(msg.receipt_handle)

    assert queue_stats(mns_emulator, own_queue.queue_name) == {"active": 0, "inactive": 0, "delayed": 0}


def test_sts_batch_receives_and_batch_deletes_messages_sent_by_the_publisher(
    mns_emulator, own_queue, sts_account, publisher_account
) -> None:
    publisher_queue = publisher_account.get_queue(own_queue.queue_name)
    publisher_queue.batch_send_message([Message(f"receipt-{i}") for i in range(3)])
    queue = sts_account.get_queue(own_queue.queue_name)

    messages = queue.batch_receive_message(16)
    assert sorted(m.message_body for m in messages) == [b"receipt-0", b"receipt-1", b"receipt-2"]
    queue.batch_delete_message([m.receipt_handle for m in messages])

    assert queue_stats(mns_emulator, own_queue.queue_name) == {"active": 0, "inactive": 0, "delayed": 0}


def test_sts_changes_message_visibility(mns_emulator, own_queue, sts_account, publisher_account) -> None:
    publisher_account.get_queue(own_queue.queue_name).send_message(Message("again"))
    queue = sts_account.get_queue(own_queue.queue_name)

    first = queue.receive_message()
    changed = queue.change_message_visibility(first.receipt_handle, 0)
    assert changed.receipt_handle
    second = queue.receive_message()

    assert second.message_id == first.message_id
    assert second.dequeue_count == 2
    queue.delete_message(second.receipt_handle)


def test_sts_on_another_existing_queue_is_access_denied(mns_emulator, owner_account, own_queue, sts_account) -> None:
    other = new_queue(owner_account)
    other.send_message(Message("not yours"))
    foreign = sts_account.get_queue(other.queue_name)

    assert sdk_error(foreign.receive_message).type == "AccessDenied"
    assert sdk_error(lambda: foreign.batch_receive_message(16)).type == "AccessDenied"
    handle = other.receive_message().receipt_handle
    assert sdk_error(lambda: foreign.delete_message(handle)).type == "AccessDenied"
    assert sdk_error(lambda: foreign.batch_delete_message([handle])).type == "AccessDenied"
    assert sdk_error(lambda: foreign.change_message_visibility(handle, 0)).type == "AccessDenied"
    assert queue_stats(mns_emulator, other.queue_name)["inactive"] == 1


STS_FORBIDDEN: dict[str, Callable[[Queue], object]] = {
    "SendMessage": lambda q: q.send_message(Message("nope")),
    "BatchSendMessage": lambda q: q.batch_send_message([Message("nope")]),
    "PeekMessage": lambda q: q.peek_message(),
    "BatchPeekMessage": lambda q: q.batch_peek_message(4),
    "GetQueueAttributes": lambda q: q.get_attributes(),
    "SetQueueAttributes": lambda q: q.set_attributes(QueueMeta(vis_timeout=45)),
    "CreateQueue": lambda q: q.create(QueueMeta()),
    "DeleteQueue": lambda q: q.delete(),
}


@pytest.mark.parametrize("operation", list(STS_FORBIDDEN))
def test_sts_is_denied_operations_outside_its_policy(mns_emulator, own_queue, sts_account, operation: str) -> None:
    own_queue.send_message(Message("present"))

    err = sdk_error(lambda: STS_FORBIDDEN[operation](sts_account.get_queue(own_queue.queue_name)))

    assert err.type == "AccessDenied"
    # nothing happened: the queue, its attributes and its one message are untouched
    assert own_queue.get_attributes().visibility_timeout == 30
    assert queue_stats(mns_emulator, own_queue.queue_name) == {"active": 1, "inactive": 0, "delayed": 0}


def test_sts_cannot_create_a_new_queue(mns_emulator, owner_account, sts_account) -> None:
    name = f"Alicom-Queue-{uuid.uuid4().int % 10**16:016d}-New"

    assert sdk_error(lambda: sts_account.get_queue(name).create(QueueMeta())).type == "AccessDenied"
    assert name not in mns_emulator.stats()["queues"]


def test_sts_without_security_token_is_invalid_security_token(mns_emulator, own_queue) -> None:
    cred = mns_emulator.issue_sts(own_queue.queue_name)
    no_token = Account(mns_emulator.endpoint, cred.access_key_id, cred.access_key_secret, "")

    err = sdk_error(lambda: no_token.get_queue(own_queue.queue_name).receive_message())
    assert err.type == "InvalidSecurityToken"


def test_sts_with_another_credentials_token_is_invalid_security_token(mns_emulator, own_queue) -> None:
    cred = mns_emulator.issue_sts(own_queue.queue_name)
    other = mns_emulator.issue_sts(own_queue.queue_name)
    swapped = Account(mns_emulator.endpoint, cred.access_key_id, cred.access_key_secret, other.security_token)

    err = sdk_error(lambda: swapped.get_queue(own_queue.queue_name).receive_message())
    assert err.type == "InvalidSecurityToken"


def test_sts_with_made_up_token_is_invalid_security_token(mns_emulator, own_queue) -> None:
    cred = mns_emulator.issue_sts(own_queue.queue_name)
    bogus = Account(mns_emulator.endpoint, cred.access_key_id, cred.access_key_secret, "made-up-token")

    err = sdk_error(lambda: bogus.get_queue(own_queue.queue_name).batch_receive_message(4))
    assert err.type == "InvalidSecurityToken"


@pytest.mark.slow
def test_sts_token_expires_after_its_ttl(mns_emulator, own_queue) -> None:
    own_queue.send_message(Message("m"))
    cred = mns_emulator.issue_sts(own_queue.queue_name, ttl_seconds=1)
    queue = account_for(mns_emulator, cred).get_queue(own_queue.queue_name)
    msg = queue.receive_message()  # still valid

    time.sleep(max(0.0, (cred.expires_at - datetime.now(timezone.utc)).total_seconds()) + 0.3)

    assert sdk_error(lambda: queue.delete_message(msg.receipt_handle)).type == "SecurityTokenExpired"
    assert sdk_error(queue.receive_message).type == "SecurityTokenExpired"


def test_expire_sts_expires_only_the_named_token(mns_emulator, own_queue) -> None:
    own_queue.batch_send_message([Message("a"), Message("b")])
    doomed = mns_emulator.issue_sts(own_queue.queue_name)
    kept = mns_emulator.issue_sts(own_queue.queue_name)

    mns_emulator.expire_sts(doomed.access_key_id)

    doomed_queue = account_for(mns_emulator, doomed).get_queue(own_queue.queue_name)
    assert sdk_error(doomed_queue.receive_message).type == "SecurityTokenExpired"
    assert account_for(mns_emulator, kept).get_queue(own_queue.queue_name).receive_message().message_body


def test_expire_sts_without_id_expires_every_token(mns_emulator, owner_account, own_queue) -> None:
    other = new_queue(owner_account)
    creds = [mns_emulator.issue_sts(own_queue.queue_name), mns_emulator.issue_sts(other.queue_name)]

    mns_emulator.expire_sts()

    for cred in creds:
        queue = account_for(mns_emulator, cred).get_queue(cred.queue)
        assert sdk_error(lambda q=queue: q.batch_receive_message(4)).type == "SecurityTokenExpired"
    own_queue.send_message(Message("owner unaffected"))
    assert own_queue.receive_message().message_body == b"owner unaffected"


def test_admin_expire_endpoint_expires_one_token(mns_emulator, own_queue) -> None:
    own_queue.send_message(Message("m"))
    doomed = mns_emulator.issue_sts(own_queue.queue_name)
    kept = mns_emulator.issue_sts(own_queue.queue_name)

    status, _ = admin(mns_emulator, "POST", "/sts/expire", {"access_key_id": doomed.access_key_id})

    assert status in (200, 204)
    doomed_queue = account_for(mns_emulator, doomed).get_queue(own_queue.queue_name)
    assert sdk_error(doomed_queue.receive_message).type == "SecurityTokenExpired"
    assert account_for(mns_emulator, kept).get_queue(own_queue.queue_name).receive_message().message_body


def test_admin_expire_endpoint_with_empty_body_expires_all(mns_emulator, own_queue) -> None:
    creds = [mns_emulator.issue_sts(own_queue.queue_name) for _ in range(2)]

    status, _ = admin(mns_emulator, "POST", "/sts/expire", {})

    assert status in (200, 204)
    for cred in creds:
        queue = account_for(mns_emulator, cred).get_queue(own_queue.queue_name)
        assert sdk_error(queue.receive_message).type == "SecurityTokenExpired"


def test_admin_sts_endpoint_mints_a_working_token(mns_emulator, owner_account, own_queue) -> None:
    other = new_queue(owner_account)
    own_queue.send_message(Message("via admin token"))

    status, body = admin(mns_emulator, "POST", "/sts", {"queue": own_queue.queue_name, "ttl_seconds": 600})

    assert status in (200, 201)
    assert isinstance(body, dict)
    assert {"access_key_id", "access_key_secret", "security_token", "queue", "expires_at"} <= set(body)
    assert body["queue"] == own_queue.queue_name
    expires = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert timedelta(minutes=9) < expires - datetime.now(timezone.utc) <= timedelta(minutes=10, seconds=5)

    account = Account(mns_emulator.endpoint, body["access_key_id"], body["access_key_secret"], body["security_token"])
    queue = account.get_queue(own_queue.queue_name)
    msg = queue.receive_message()
    assert msg.message_body == b"via admin token"
    queue.delete_message(msg.receipt_handle)
    assert sdk_error(lambda: account.get_queue(other.queue_name).receive_message()).type == "AccessDenied"


# --------------------------------------------------------------------------------------------------
# publisher credential (what Alicom itself uses)
# --------------------------------------------------------------------------------------------------


def test_publisher_sends_and_batch_sends_to_any_queue(
    mns_emulator, owner_account, own_queue, publisher_account
) -> None:
    other = new_queue(owner_account)

    for queue in (own_queue, other):
        pub = publisher_account.get_queue(queue.queue_name)
        sent = pub.send_message(Message("single"))
        assert sent.message_id
        batch = pub.batch_send_message([Message("b1"), Message("b2")])
        assert len(batch) == 2 and all(m.message_id for m in batch)

    for queue in (own_queue, other):
        assert sorted(m.message_body for m in queue.batch_receive_message(16)) == [b"b1", b"b2", b"single"]


PUBLISHER_FORBIDDEN: dict[str, Callable[[Queue, str], object]] = {
    "ReceiveMessage": lambda q, rh: q.receive_message(),
    "BatchReceiveMessage": lambda q, rh: q.batch_receive_message(16),
    "PeekMessage": lambda q, rh: q.peek_message(),
    "BatchPeekMessage": lambda q, rh: q.batch_peek_message(16),
    "DeleteMessage": lambda q, rh: q.delete_message(rh),
    "BatchDeleteMessage": lambda q, rh: q.batch_delete_message([rh]),
    "ChangeMessageVisibility": lambda q, rh: q.change_message_visibility(rh, 0),
    "GetQueueAttributes": lambda q, rh: q.get_attributes(),
    "SetQueueAttributes": lambda q, rh: q.set_attributes(QueueMeta(vis_timeout=45)),
    "CreateQueue": lambda q, rh: q.create(QueueMeta()),
    "DeleteQueue": lambda q, rh: q.delete(),
}


@pytest.mark.parametrize("operation", list(PUBLISHER_FORBIDDEN))
def test_publisher_is_denied_everything_but_sending(mns_emulator, own_queue, publisher_account, operation: str) -> None:
    own_queue.batch_send_message([Message("inflight"), Message("waiting")])
    handle = own_queue.receive_message().receipt_handle

    err = sdk_error(lambda: PUBLISHER_FORBIDDEN[operation](publisher_account.get_queue(own_queue.queue_name), handle))

    assert err.type == "AccessDenied"
    assert own_queue.get_attributes().visibility_timeout == 30
    assert queue_stats(mns_emulator, own_queue.queue_name) == {"active": 1, "inactive": 1, "delayed": 0}
    own_queue.delete_message(handle)  # the owner's handle is still the valid one


def test_publisher_cannot_create_a_new_queue(mns_emulator, publisher_account) -> None:
    name = f"Alicom-Queue-{uuid.uuid4().int % 10**16:016d}-Pub"

    assert sdk_error(lambda: publisher_account.get_queue(name).create(QueueMeta())).type == "AccessDenied"
    assert name not in mns_emulator.stats()["queues"]


# --------------------------------------------------------------------------------------------------
# owner: everything
# --------------------------------------------------------------------------------------------------


def test_owner_can_use_every_operation(mns_emulator, owner_account, queue_name) -> None:
    queue = owner_account.get_queue(queue_name)

    assert queue.create(QueueMeta(vis_timeout=60))  # CreateQueue returns the Location
    queue.set_attributes(QueueMeta(vis_timeout=45))
    assert queue.get_attributes().visibility_timeout == 45
    assert queue.send_message(Message("one")).message_id
    assert len(queue.batch_send_message([Message(f"m{i}") for i in range(4)])) == 4
    assert queue.peek_message().message_body
    assert len(queue.batch_peek_message(16)) == 5
    single = queue.receive_message()
    changed = queue.change_message_visibility(single.receipt_handle, 120)
    queue.delete_message(changed.receipt_handle)
    batch = queue.batch_receive_message(16)
    assert len(batch) == 4
    queue.batch_delete_message([m.receipt_handle for m in batch])
    assert queue_stats(mns_emulator, queue_name) == {"active": 0, "inactive": 0, "delayed": 0}
    queue.delete()
    assert sdk_error(queue.get_attributes).type == "QueueNotExist"

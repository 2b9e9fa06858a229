"""QueryTokenForMnsQueue through the core SDK and through its V2.0 SDK (alibabacloud_dybaseapi20170525, V3-signed),
and the token it returns used against the MNS emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message, QueueMeta
from test_alicom_support import (
    AK,
    BASEAPI,
    CORE,
    OTHER_AK,
    OTHER_SK,
    OTHER_UID,
    SDKS,
    SK,
    UID,
    owner_queue,
    pop_call,
    pop_failure,
    running_emulators,
)

from local.alicom import AlicomEmulator
from local.mns import MnsEmulator

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def emulators() -> Iterator[tuple[MnsEmulator, AlicomEmulator]]:
    with running_emulators() as pair:
        yield pair


@pytest.fixture(params=SDKS)
def sdk(request) -> str:
    return request.param


def token(alicom: AlicomEmulator, sdk: str = CORE, key: tuple[str, str] = (AK, SK), **params: str) -> dict:
    return pop_call(sdk, alicom, BASEAPI, "QueryTokenForMnsQueue", key, **params)


def sts_queue(mns: MnsEmulator, dto: dict, queue_name: str):
    account = Account(mns.endpoint, dto["AccessKeyId"], dto["AccessKeySecret"], dto["SecurityToken"])
    return account.get_queue(queue_name)


def mns_error(action) -> MNSServerException:
    with pytest.raises(MNSServerException) as info:
        action()
    return info.value


def beijing(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)


def test_token_answer_shape(emulators, sdk: str) -> None:
    _, alicom = emulators

    answer = token(alicom, sdk, MessageType="FlowReport", QueueName=alicom.queue_name())

    assert set(answer) == {"RequestId", "Code", "Message", "MessageTokenDTO"}
    assert (answer["Code"], answer["Message"]) == ("OK", "OK")
    dto = answer["MessageTokenDTO"]
    assert set(dto) == {"AccessKeyId", "AccessKeySecret", "SecurityToken", "CreateTime", "ExpireTime"}
    created, expires = beijing(dto["CreateTime"]), beijing(dto["ExpireTime"])
    assert abs(created.timestamp() - time.time()) < 2
    assert timedelta(seconds=599) <= expires - created <= timedelta(seconds=601)  # default lifetime 600 s


def test_token_works_on_its_queue_and_nowhere_else(emulators, sdk: str) -> None:
    mns, alicom = emulators
    own, foreign = alicom.queue_name(UID), alicom.queue_name(OTHER_UID)
    alicom.publish_report(out_id="o-1", phone="13800138000", result="3")
    alicom.publish_report(out_id="o-2", phone="13800138000", result="3", uid=OTHER_UID)
    dto = token(alicom, sdk, MessageType="FlowReport")["MessageTokenDTO"]

    queue = sts_queue(mns, dto, own)
    message = queue.receive_message(wait_seconds=1)
    assert b'"out_id":"o-1"' in message.message_body
    queue.delete_message(message.receipt_handle)

    assert mns_error(lambda: sts_queue(mns, dto, foreign).receive_message()).type == "AccessDenied"
    assert mns_error(lambda: queue.send_message(Message("forged"))).type == "AccessDenied"
    assert mns_error(queue.get_attributes).type == "AccessDenied"
    # the other account's token reads the other queue
    other_dto = token(alicom, sdk, (OTHER_AK, OTHER_SK), MessageType="FlowReport")["MessageTokenDTO"]
    assert b'"out_id":"o-2"' in sts_queue(mns, other_dto, foreign).receive_message(wait_seconds=1).message_body
    assert mns_error(lambda: sts_queue(mns, other_dto, own).receive_message()).type == "AccessDenied"


@pytest.mark.slow
def test_token_stops_working_after_expire_time(emulators) -> None:
    mns, alicom = emulators
    alicom.set_behaviour(token_ttl_seconds=2)
    asked_at = time.time()
    dto = token(alicom, MessageType="FlowReport")["MessageTokenDTO"]
    expires_at = beijing(dto["ExpireTime"]).timestamp()
    assert abs(expires_at - (asked_at + 2)) <= 1
    queue = sts_queue(mns, dto, alicom.queue_name())
    assert mns_error(queue.receive_message).type == "MessageNotExist"  # authorised, queue empty

    time.sleep(max(0.0, expires_at + 1.05 - time.time()))

    assert mns_error(queue.receive_message).type == "SecurityTokenExpired"
    fresh = token(alicom, MessageType="FlowReport")["MessageTokenDTO"]
    assert fresh["AccessKeyId"] != dto["AccessKeyId"]
    assert mns_error(sts_queue(mns, fresh, alicom.queue_name()).receive_message).type == "MessageNotExist"


def test_expire_time_is_beijing_time_of_the_real_expiry(emulators, sdk: str) -> None:
    _, alicom = emulators
    alicom.set_behaviour(token_ttl_seconds=3600)
    asked_at = time.time()

    expire_text = token(alicom, sdk, MessageType="FlowReport")["MessageTokenDTO"]["ExpireTime"]

    expected = datetime.fromtimestamp(asked_at + 3600, SHANGHAI)
    assert abs(beijing(expire_text).timestamp() - expected.timestamp()) <= 1
    assert "+" not in expire_text and "T" not in expire_text


def test_queue_name_may_be_omitted_or_given(emulators, sdk: str) -> None:
    mns, alicom = emulators
    alicom.publish_report(out_id="q", phone="13800138000", result="4", err_code="UNKNOW", err_msg="x")

    dto = token(alicom, sdk, MessageType="FlowReport", QueueName=alicom.queue_name())["MessageTokenDTO"]

    assert sts_queue(mns, dto, alicom.queue_name()).receive_message().message_body.startswith(b'{"phone"')
    assert token(alicom, sdk, MessageType="FlowReport", QueueName="")["Code"] == "OK"


@pytest.mark.parametrize(
    ("message_type", "queue_name"),
    [
        ("Flow", None),  # unknown message type
        ("flowreport", None),  # message types are case-sensitive
        ("FlowReport", f"Alicom-Queue-{OTHER_UID}-FlowReport"),  # another customer's queue
        ("FlowReport", f"Alicom-Queue-{UID}-SmsReport"),  # own uid, other message type
        ("FlowReport", "my-own-queue"),
    ],
)
def test_wrong_message_type_or_foreign_queue_is_refused(emulators, sdk: str, message_type: str, queue_name) -> None:
    _, alicom = emulators
    params = (
        {"MessageType": message_type} if queue_name is None else {"MessageType": message_type, "QueueName": queue_name}
    )

    answer = token(alicom, sdk, **params)

    # an Alicom business error: HTTP 200, Code other than OK, no token (every official demo checks Code == "OK")
    assert answer["Code"] == "isv.INVALID_PARAMETERS"
    assert set(answer) == {"RequestId", "Code", "Message"}
    assert (queue_name or message_type) in answer["Message"]


def test_other_message_types_get_tokens_for_their_own_queue(emulators, sdk: str) -> None:
    mns, alicom = emulators
    owner_queue(mns, alicom.queue_name(message_type="SmsReport")).create(QueueMeta())

    dto = token(alicom, sdk, MessageType="SmsReport")["MessageTokenDTO"]

    sms_queue = sts_queue(mns, dto, alicom.queue_name(message_type="SmsReport"))
    assert mns_error(sms_queue.receive_message).type == "MessageNotExist"
    assert mns_error(sts_queue(mns, dto, alicom.queue_name()).receive_message).type == "AccessDenied"


def test_missing_message_type_is_a_pop_error(emulators, sdk: str) -> None:
    _, alicom = emulators

    status, code, _ = pop_failure(lambda: token(alicom, sdk, QueueName=alicom.queue_name()))

    assert (status, code) == (400, "MissingMessageType")


def test_token_lifetime_is_configurable_at_construction() -> None:
    with running_emulators(token_ttl_seconds=42) as (_, alicom):
        dto = token(alicom, MessageType="FlowReport")["MessageTokenDTO"]
        assert (beijing(dto["ExpireTime"]) - beijing(dto["CreateTime"])).total_seconds() in (41, 42, 43)
        assert alicom.behaviour()["token_ttl_seconds"] == 42

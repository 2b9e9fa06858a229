"""Every emulator refuses what the real service refuses: a clock (or a replay) outside the 15-minute window, through
every real SDK; a forged, stale or tampered webhook delivery; STS tokens that are not the caller's own.

What this module adds to the per-emulator tests, which already prove (with the same codes):

- wrong signature — MNS (SDK and raw, 403 SignatureDoesNotMatch): integration/test_mns_auth.py; Alicom RPC (core and
  V2.0 SDKs, 400 SignatureDoesNotMatch): test_alicom_pop.py; Alicom V3: test_alicom_v3.py; FC 2.0 / 3.0 (403
  SignatureNotMatch): test_fc_invoke.py, test_fc3_invoke.py;
- a stale Date / Timestamp / x-acs-date in a hand-built request, a replayed nonce: the same files;
- an expired MNS STS token (403 SecurityTokenExpired), a token of another credential (403 InvalidSecurityToken), a
  token on another queue (403 AccessDenied), a token for another Alicom account's queue: test_mns_auth.py,
  test_alicom_token.py; the FC STS token check (403 InvalidSecurityToken): test_fc_invoke.py, test_fc3_invoke.py.

Here: the clock of each real SDK moved 16 minutes either way (as a client with a drifting clock, or a captured request
replayed later, looks to the server) is refused with the service's code, and 14 minutes is not; the webhook
receiver over the wire; an MNS STS token from another account; an STS token on a queue that does not exist (denied,
not "not found": alicom.md §1.5). Codes: mns-wire.md §3.3 and §7 (TimeExpired 408), README "Alicom API emulator"
(InvalidTimeStamp.Expired 400), "FC emulator" (RequestTimeTooSkewed 403).
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import fc2
import pytest
from alibabacloud_dybaseapi20170525 import models as dybaseapi_models
from alibabacloud_dybaseapi20170525.client import Client as DybaseapiClient
from alibabacloud_dycdpapi20180610 import models as dycdpapi_models
from alibabacloud_dycdpapi20180610.client import Client as DycdpapiClient
from alibabacloud_tea_openapi import models as open_api_models
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.credentials import AccessKeyCredential, StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from darabonba.exceptions import ResponseException
from fc3_support import fc3_client, invoke3
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message, QueueMeta
from security_support import SKEW_ALLOWED, SKEW_REFUSED, skewed_clock

from local.alicom import AlicomEmulator
from local.alicom.accounts import AccountBook, check_security_token
from local.alicom.errors import PopError
from local.fc import FcEmulator, FunctionSpec
from local.mns import MnsEmulator
from local.webhook import WebhookReceiver
from shared.adapters.notify import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, webhook_body

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fc"
MNS_OWNER = ("security-mns-owner", "security-mns-owner-secret-2b7e")
MNS_PUBLISHER = ("security-mns-publisher", "security-mns-publisher-secret-c41d")
OTHER_MNS_OWNER = ("security-other-mns-owner", "security-other-mns-owner-secret-9a03")
ALICOM_AK, ALICOM_SK, UID = "security-alicom-ak", "security-alicom-secret-6f2a", "2468024680246802"
STS_AK, STS_SK, STS_TOKEN = "STS.security-caller", "security-caller-sts-secret-4e1a", "security-caller-token-7b2e9d"
FC_AK, FC_SK = "security-fc-ak", "security-fc-secret-0d5e"
WEBHOOK_SECRET = "whsec-security-7c3e91d2"
DENIED = {"AccessDenied", "AccessDeniedByRamPolicy"}  # alicom.md §1.5 and pitfall 8: both mean "not your queue"

# QueueMeta's deprecated message-count properties warn on every get_attributes(); not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated function:DeprecationWarning")


@pytest.fixture(scope="module")
def mns() -> Iterator[MnsEmulator]:
    with MnsEmulator(owner=MNS_OWNER, publisher=MNS_PUBLISHER) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def alicom(mns: MnsEmulator) -> Iterator[AlicomEmulator]:
    with AlicomEmulator(mns, accounts={ALICOM_AK: (ALICOM_SK, UID)}, seed=11) as emulator:  # type: ignore[arg-type]
        yield emulator


@pytest.fixture(scope="module")
def fc() -> Iterator[FcEmulator]:
    spec = FunctionSpec("svc", "echo", "handlers.echo", FIXTURES)
    with FcEmulator([spec], credentials={FC_AK: FC_SK}) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def queue_name(mns: MnsEmulator) -> str:
    name = f"Alicom-Queue-{uuid.uuid4().int % 10**16:016d}-FlowReport"
    Account(mns.endpoint, *MNS_OWNER).get_queue(name).create(QueueMeta())
    return name


# ---- the calls, one per SDK and service ------------------------------------------------------------------------


def tea_config(alicom: AlicomEmulator) -> open_api_models.Config:
    return open_api_models.Config(
        access_key_id=ALICOM_AK,
        access_key_secret=ALICOM_SK,
        endpoint=alicom.domain,
        protocol="http",
        region_id="cn-hangzhou",
    )


def mns_call(mns: MnsEmulator, alicom: AlicomEmulator, fc: FcEmulator, queue: str) -> tuple[int | None, str]:
    try:
        Account(mns.endpoint, *MNS_OWNER).get_queue(queue).get_attributes()
    except MNSServerException as error:
        return None, error.type  # the SDK keeps no status: the raw tests check 408 (test_mns_auth.py)
    return 200, "OK"


def core_rpc_call(
    mns: MnsEmulator, alicom: AlicomEmulator, fc: FcEmulator, queue: str, credential: object | None = None
) -> tuple[int | None, str]:
    request = CommonRequest()
    request.set_domain(alicom.domain)
    request.set_protocol_type("http")
    request.set_version("2017-05-25")
    request.set_action_name("QueryTokenForMnsQueue")
    request.set_method("POST")
    request.add_query_param("MessageType", "FlowReport")
    try:
        credential = credential or AccessKeyCredential(ALICOM_AK, ALICOM_SK)
        body = AcsClient(region_id="cn-hangzhou", credential=credential).do_action_with_exception(request)
    except ServerException as error:
        return error.get_http_status(), error.get_error_code()
    return 200, json.loads(body)["Code"]


def tea_outcome(call: Callable[[], object]) -> tuple[int | None, str]:
    try:
        call()
    except ResponseException as error:
        return int(error.status_code), str(error.code)
    return 200, "OK"


def tea_v3_call(mns: MnsEmulator, alicom: AlicomEmulator, fc: FcEmulator, queue: str) -> tuple[int | None, str]:
    client = DybaseapiClient(tea_config(alicom))
    request = dybaseapi_models.QueryTokenForMnsQueueRequest(message_type="FlowReport")
    return tea_outcome(lambda: client.query_token_for_mns_queue(request))


def tea_rpc_call(mns: MnsEmulator, alicom: AlicomEmulator, fc: FcEmulator, queue: str) -> tuple[int | None, str]:
    client = DycdpapiClient(tea_config(alicom))
    request = dycdpapi_models.QueryCdpOrderRequest(out_order_id="security-skew")
    return tea_outcome(lambda: client.query_cdp_order(request))


def fc2_call(mns: MnsEmulator, alicom: AlicomEmulator, fc: FcEmulator, queue: str) -> tuple[int | None, str]:
    client = fc2.Client(endpoint=fc.endpoint, accessKeyID=FC_AK, accessKeySecret=FC_SK)
    try:
        client.invoke_function("svc", "echo", payload=b"x")
    except fc2.FcError as error:
        return error.status_code, error.err_code
    return 200, "OK"


def fc3_call(mns: MnsEmulator, alicom: AlicomEmulator, fc: FcEmulator, queue: str) -> tuple[int | None, str]:
    return tea_outcome(lambda: invoke3(fc3_client(fc.endpoint, FC_AK, FC_SK), "svc$echo", b"x"))


# (clock to move, the call, what the service answers a request 16 minutes off)
SKEW_CASES = {
    "mns-sdk": ("mns", mns_call, (None, "TimeExpired")),
    "alicom-rpc-core-sdk": ("core", core_rpc_call, (400, "InvalidTimeStamp.Expired")),
    "alicom-v3-tea-sdk": ("tea", tea_v3_call, (400, "InvalidTimeStamp.Expired")),
    "alicom-rpc-tea-sdk": ("tea", tea_rpc_call, (400, "InvalidTimeStamp.Expired")),
    "fc2-sdk": ("fc2", fc2_call, (403, "RequestTimeTooSkewed")),
    "fc3-tea-sdk": ("tea", fc3_call, (403, "RequestTimeTooSkewed")),
}


@pytest.mark.parametrize("direction", [-1, 1], ids=["behind-or-replayed", "ahead"])
@pytest.mark.parametrize("case", list(SKEW_CASES))
def test_a_client_clock_16_minutes_off_is_refused(mns, alicom, fc, queue_name, case: str, direction: int) -> None:
    clock, call, refused = SKEW_CASES[case]

    with skewed_clock(clock, direction * SKEW_REFUSED):
        outcome = call(mns, alicom, fc, queue_name)

    assert outcome == refused


@pytest.mark.parametrize("case", list(SKEW_CASES))
def test_a_client_clock_14_minutes_off_is_accepted(mns, alicom, fc, queue_name, case: str) -> None:
    clock, call, _ = SKEW_CASES[case]

    for direction in (-1, 1):
        with skewed_clock(clock, direction * SKEW_ALLOWED):
            status, _code = call(mns, alicom, fc, queue_name)
        assert status == 200, (case, direction)


# ---- the webhook receiver, over the wire ------------------------------------------------------------------------

EVENT = {
    "event_id": "security-event-1",
    "kind": "order.succeeded",
    "out_id": "security-o-1",
    "phone": "13800138000",
    "status": "SUCCEEDED",
    "err_code": None,
    "err_msg": None,
    "resolved_by": "receipt",
    "occurred_at": "2026-12-01T00:00:00+00:00",
}


def deliver(
    receiver: WebhookReceiver,
    *,
    secret: str = WEBHOOK_SECRET,
    age: int = 0,
    signed_age: int | None = None,
    body: bytes | None = None,
    signature: str | None = None,
    timestamp_text: str | None = None,
) -> int:
    """POSTs one delivery with http.client, stamped ``age`` seconds ago and signed for ``signed_age`` (default: the
    same) over the event's body, sending ``body`` (default: that body), ``signature`` (default: the computed one) and
    ``timestamp_text`` (default: the timestamp) as the timestamp header."""
    now = int(time.time())
    sent_at = now - age
    signed_body = webhook_body(EVENT)
    mac = sign(secret, now - (age if signed_age is None else signed_age), signed_body)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        TIMESTAMP_HEADER: str(sent_at) if timestamp_text is None else timestamp_text,
        SIGNATURE_HEADER: f"v1={mac}" if signature is None else signature,
        EVENT_ID_HEADER: EVENT["event_id"],
    }
    parts = urlsplit(receiver.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("POST", parts.path, body=signed_body if body is None else body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_the_webhook_receiver_accepts_a_well_signed_delivery(webhook) -> None:
    assert deliver(webhook) == 200


@pytest.mark.parametrize(
    "forgery",
    [
        {"secret": "whsec-not-the-right-one"},
        {"body": webhook_body({**EVENT, "status": "FAILED"})},
        {"body": webhook_body(EVENT) + b" "},
        {"age": 301},
        {"age": -301},
        {"signed_age": 60},
        {"signature": ""},
        {"signature": "v1=" + "0" * 64},
        {"signature": "v2=0123abcd"},
        {"timestamp_text": "9" * 5000},  # int() of it raises: the receiver crashed on it before the length bound
        {"timestamp_text": ""},
    ],
    ids=[
        "wrong-secret",
        "tampered-body",
        "one-byte-appended",
        "stale-timestamp",
        "future-timestamp",
        "signed-for-another-timestamp",
        "no-signature",
        "zero-signature",
        "unknown-scheme",
        "5000-digit-timestamp",
        "empty-timestamp",
    ],
)
def test_the_webhook_receiver_refuses_a_forged_stale_or_tampered_delivery(webhook, forgery: dict) -> None:
    before = webhook.accepted()[EVENT["event_id"]]

    assert deliver(webhook, **forgery) == 401
    assert webhook.accepted()[EVENT["event_id"]] == before


# ---- STS tokens that are not the caller's own ----------------------------------------------------------------


def test_an_sts_token_of_another_mns_account_is_an_unknown_key(mns, queue_name) -> None:
    with MnsEmulator(owner=OTHER_MNS_OWNER, publisher=MNS_PUBLISHER) as other:
        Account(other.endpoint, *OTHER_MNS_OWNER).get_queue(queue_name).create(QueueMeta())
        foreign = other.issue_sts(queue_name)  # same queue name, another account

    queue = Account(mns.endpoint, foreign.access_key_id, foreign.access_key_secret, foreign.security_token)
    with pytest.raises(MNSServerException) as info:
        queue.get_queue(queue_name).receive_message()

    assert info.value.type == "InvalidAccessKeyId"


def test_an_alicom_issued_token_works_only_on_its_own_queue_even_one_that_does_not_exist(mns, alicom) -> None:
    own = alicom.queue_name(UID)
    alicom.publish_report(out_id="security-o-2", phone="13800138000", result="3")
    request = dybaseapi_models.QueryTokenForMnsQueueRequest(message_type="FlowReport", queue_name=own)
    dto = DybaseapiClient(tea_config(alicom)).query_token_for_mns_queue(request).body.message_token_dto
    account = Account(mns.endpoint, dto.access_key_id, dto.access_key_secret, dto.security_token)

    message = account.get_queue(own).receive_message(wait_seconds=1)
    account.get_queue(own).delete_message(message.receipt_handle)
    missing = f"Alicom-Queue-{UID}-NoSuchType"
    assert missing not in mns.stats()["queues"]
    for queue in (missing, f"Alicom-Queue-{UID}-SmsReport"):
        with pytest.raises(MNSServerException) as info:
            account.get_queue(queue).receive_message()
        assert info.value.type in DENIED, queue  # never QueueNotExist: a token cannot probe for names
    with pytest.raises(MNSServerException) as info:
        account.get_queue(own).send_message(Message("forged receipt"))
    assert info.value.type in DENIED


# ---- the caller's own STS credentials at the Alicom gateway (FC hands a function temporary credentials) -----------


@pytest.fixture
def alicom_sts(mns: MnsEmulator) -> Iterator[AlicomEmulator]:
    accounts = {ALICOM_AK: (ALICOM_SK, UID), STS_AK: (STS_SK, UID, STS_TOKEN, time.time() + 3600)}
    with AlicomEmulator(mns, accounts=accounts, seed=12) as emulator:  # type: ignore[arg-type]
        yield emulator


def test_the_caller_sts_credentials_with_their_own_token_are_accepted(mns, alicom_sts, fc, queue_name) -> None:
    assert core_rpc_call(mns, alicom_sts, fc, queue_name, StsTokenCredential(STS_AK, STS_SK, STS_TOKEN)) == (200, "OK")


def test_the_account_book_knows_which_token_belongs_to_which_key() -> None:
    accounts = {
        ALICOM_AK: (ALICOM_SK, UID),
        STS_AK: (STS_SK, UID, STS_TOKEN, time.time() + 60),
        "STS.no-expiry": (STS_SK, UID, STS_TOKEN),
    }
    book = AccountBook(accounts)
    sts, permanent = book.lookup(STS_AK), book.lookup(ALICOM_AK)
    assert STS_TOKEN not in repr(sts) and STS_SK not in repr(sts)
    assert book.lookup("STS.no-expiry").expires_at is None
    check_security_token(book.lookup("STS.no-expiry"), STS_TOKEN, now=time.time() + 10**9)

    check_security_token(sts, STS_TOKEN)
    check_security_token(permanent, None)
    check_security_token(permanent, "any token: a permanent key ignores it")
    for presented, code in ((None, "MissingSecurityToken"), ("other", "InvalidSecurityToken.MismatchWithAccessKey")):
        with pytest.raises(PopError) as info:
            check_security_token(sts, presented)
        assert (info.value.status, info.value.code) == (400, code)
    book.expire_token(STS_AK)
    with pytest.raises(PopError) as info:
        check_security_token(book.lookup(STS_AK), STS_TOKEN)
    assert (info.value.status, info.value.code) == (400, "InvalidSecurityToken.Expired")


def test_the_caller_sts_key_with_a_foreign_missing_or_expired_token_is_refused(mns, alicom_sts, fc, queue_name):
    foreign = StsTokenCredential(STS_AK, STS_SK, "a-token-issued-to-someone-else")
    mismatch = (400, "InvalidSecurityToken.MismatchWithAccessKey")
    assert core_rpc_call(mns, alicom_sts, fc, queue_name, foreign) == mismatch
    missing = AccessKeyCredential(STS_AK, STS_SK)
    assert core_rpc_call(mns, alicom_sts, fc, queue_name, missing) == (400, "MissingSecurityToken")
    alicom_sts.accounts.expire_token(STS_AK)
    own = StsTokenCredential(STS_AK, STS_SK, STS_TOKEN)
    assert core_rpc_call(mns, alicom_sts, fc, queue_name, own) == (400, "InvalidSecurityToken.Expired")


def test_the_webhook_receiver_takes_only_v1_entries(webhook) -> None:
    now = int(time.time())
    mac = sign(WEBHOOK_SECRET, now, webhook_body(EVENT))

    stamp = str(now)
    assert deliver(webhook, signature=f"v2={mac}", timestamp_text=stamp) == 401  # the right MAC, an unknown scheme
    assert deliver(webhook, signature=f"v0={mac}, v1={mac}", timestamp_text=stamp) == 200


FC_STS_AK, FC_STS_SK, FC_STS_TOKEN = "security-fc-sts-ak", "security-fc-sts-secret-77a1", "CAIS-fc-role-token-3f9e"


def test_an_expired_or_foreign_fc_sts_token_is_refused_by_both_fc_apis() -> None:
    spec = FunctionSpec("svc", "echo", "handlers.echo", FIXTURES)
    expires = time.time() + 3600
    with FcEmulator([spec], credentials={FC_STS_AK: (FC_STS_SK, FC_STS_TOKEN, expires)}) as emulator:

        def fc2_outcome(token: str) -> tuple[int | None, str]:
            client = fc2.Client(
                endpoint=emulator.endpoint, accessKeyID=FC_STS_AK, accessKeySecret=FC_STS_SK, securityToken=token
            )
            try:
                client.invoke_function("svc", "echo", payload=b"x")
            except fc2.FcError as error:
                return error.status_code, error.err_code
            return 200, "OK"

        def fc3_outcome(token: str) -> tuple[int | None, str]:
            return tea_outcome(
                lambda: invoke3(fc3_client(emulator.endpoint, FC_STS_AK, FC_STS_SK, token), "svc$echo", b"x")
            )

        for outcome in (fc2_outcome, fc3_outcome):
            assert outcome(FC_STS_TOKEN) == (200, "OK"), outcome
            assert outcome("CAIS-a-token-of-another-role") == (403, "InvalidSecurityToken"), outcome
        emulator.expire_token(FC_STS_AK)
        for outcome in (fc2_outcome, fc3_outcome):
            assert outcome(FC_STS_TOKEN) == (403, "InvalidSecurityToken.Expired"), outcome

"""TokenProvider through the real aliyun-python-sdk-core against the Alicom emulator, and its token used on the
MNS emulator through the real aliyun-mns-sdk."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from mns.account import Account
from mns.mns_exception import MNSServerException
from test_alicom_support import AK, OTHER_UID, SK, UID, admin, running_emulators

from local.alicom import AlicomEmulator
from local.mns import MnsEmulator
from shared.adapters.alicom import QueueToken, TokenProvider, acs_client, parse_alicom_time
from shared.domain.models import Envelope, reports_from
from shared.errors import ConfigError, TransientError
from shared.logs import logger

REGION = "cn-hangzhou"


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def emulators() -> Iterator[tuple[MnsEmulator, AlicomEmulator]]:
    with running_emulators() as pair:
        yield pair


def provider(alicom: AlicomEmulator, clock: Callable[[], float] = time.time, **options: object) -> TokenProvider:
    settings: dict = {"message_type": "FlowReport", "queue_name": alicom.queue_name(), **options}
    client = acs_client(settings.pop("key", AK), settings.pop("secret", SK), None, REGION)
    return TokenProvider(client, alicom.endpoint, clock=clock, **settings)


def token_calls(alicom: AlicomEmulator) -> int:
    status, stats = admin(alicom, "GET", "/stats")
    assert status == 200
    return stats["actions"].get("QueryTokenForMnsQueue", {}).get("requests", 0)  # type: ignore[index]


def issued_expiry(mns: MnsEmulator, token: QueueToken) -> float:
    """When the MNS emulator really ends this token (epoch seconds)."""
    return mns.credentials.lookup(token.access_key_id).expires_at


def sts_queue(mns: MnsEmulator, token: QueueToken, queue_name: str):
    account = Account(mns.endpoint, token.access_key_id, token.access_key_secret, token.security_token)
    queue = account.get_queue(queue_name)
    queue.set_encoding(False)  # the body as stored: base64 text, decoded by shared.domain.models
    return queue


def mns_error(action: Callable[[], object]) -> str:
    with pytest.raises(MNSServerException) as info:
        action()
    return info.value.type


@pytest.fixture
def local_time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


# --- fetched once, cached, refreshed -------------------------------------------------------------------------


def test_token_is_fetched_once_and_cached(emulators) -> None:
    _, alicom = emulators
    tokens = provider(alicom)

    first = tokens.token()

    assert [tokens.token() for _ in range(5)] == [first] * 5
    assert token_calls(alicom) == 1
    assert first.access_key_id.startswith("STS.")
    assert first.access_key_secret not in repr(first) and first.security_token not in repr(first)


def test_expires_at_is_the_expiry_the_emulator_issued(emulators) -> None:
    mns, alicom = emulators

    token = provider(alicom).token()

    assert token.expires_at.tzinfo is timezone.utc
    # ExpireTime has whole seconds: the parsed time is the real expiry truncated, never later.
    assert 0 <= issued_expiry(mns, token) - token.expires_at.timestamp() < 1
    assert 598 <= token.seconds_left() <= 600


def test_refreshed_when_less_than_the_margin_remains(emulators) -> None:
    _, alicom = emulators
    clock = FakeClock(time.time())
    tokens = provider(alicom, clock, refresh_margin_seconds=120)
    first = tokens.token()
    expires = first.expires_at.timestamp()

    clock.now = expires - 121
    assert tokens.token() is first
    assert token_calls(alicom) == 1

    clock.now = expires - 119
    second = tokens.token()
    assert second.access_key_id != first.access_key_id
    assert token_calls(alicom) == 2

    clock.now = second.expires_at.timestamp() - 121  # the second is reused until its own margin
    assert tokens.token() is second


def test_an_expired_token_is_never_returned(emulators) -> None:
    _, alicom = emulators
    clock = FakeClock(time.time())
    tokens = provider(alicom, clock)
    first = tokens.token()

    clock.now = first.expires_at.timestamp() + 86400  # pitfall 2: a negative remainder must refresh too

    assert tokens.token().access_key_id != first.access_key_id


def test_margin_is_capped_at_half_a_short_lifetime() -> None:
    with running_emulators(token_ttl_seconds=10) as (_, alicom):
        clock = FakeClock(time.time())
        tokens = provider(alicom, clock, refresh_margin_seconds=120)
        first = tokens.token()
        expires = first.expires_at.timestamp()

        clock.now = expires - 6  # the lifetime is 10 s (± 1 s of ExpireTime / CreateTime rounding): margin ≈ 5 s
        assert tokens.token() is first
        clock.now = expires - 4
        assert tokens.token() is not first
        assert token_calls(alicom) == 2


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/Los_Angeles"])
def test_expire_time_is_read_as_beijing_time_whatever_the_host_zone(emulators, local_time_zone, zone: str) -> None:
    mns, alicom = emulators
    local_time_zone(zone)
    clock = FakeClock(time.time())
    tokens = provider(alicom, clock)

    first = tokens.token()

    assert 0 <= issued_expiry(mns, first) - first.expires_at.timestamp() < 1
    assert parse_alicom_time("2024-05-01 08:00:00") == datetime(2024, 5, 1, 0, 0, tzinfo=timezone.utc)
    # A naive parse on a UTC host would see 8 h more: one minute before the real end it must refresh.
    clock.now = issued_expiry(mns, first) - 200
    assert tokens.token() is first
    clock.now = issued_expiry(mns, first) - 60
    assert tokens.token() is not first


def test_invalidate_forces_a_new_token(emulators) -> None:
    _, alicom = emulators
    tokens = provider(alicom)
    first = tokens.token()

    tokens.invalidate()
    second = tokens.token()

    assert second.access_key_id != first.access_key_id
    assert token_calls(alicom) == 2
    tokens.invalidate(first)  # a poller still holding the old token: already replaced, nothing to do
    assert tokens.token() is second
    tokens.invalidate(second)
    assert tokens.token() is not second
    assert token_calls(alicom) == 3


def test_pollers_asking_at_once_cause_one_fetch(emulators) -> None:
    _, alicom = emulators
    tokens = provider(alicom)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: tokens.token(), range(32)))

    assert len({token.access_key_id for token in got}) == 1
    assert token_calls(alicom) == 1


# --- the token on MNS ----------------------------------------------------------------------------------------


def test_the_token_reads_its_queue_through_the_mns_sdk(emulators) -> None:
    mns, alicom = emulators
    alicom.publish_report(out_id="order-7", phone="13800138000", result="4", err_code="UNKNOW", err_msg="未知错误")
    token = provider(alicom).token()
    queue = sts_queue(mns, token, alicom.queue_name())

    (message,) = queue.batch_receive_message(16, wait_seconds=1)
    envelope = Envelope(message_id=message.message_id, body=message.message_body, dequeue_count=message.dequeue_count)
    (report,) = reports_from(envelope)
    queue.batch_delete_message([message.receipt_handle])

    assert (report.out_id, report.result, report.err_msg) == ("order-7", "4", "未知错误")
    assert mns_error(lambda: sts_queue(mns, token, alicom.queue_name(OTHER_UID)).receive_message()) == "AccessDenied"


def test_after_an_mns_auth_error_invalidate_gets_a_working_token(emulators) -> None:
    mns, alicom = emulators
    tokens = provider(alicom)
    old = tokens.token()
    queue = sts_queue(mns, old, alicom.queue_name())
    mns.expire_sts(old.access_key_id)  # ended early on the MNS side, as after a revocation or clock error

    assert mns_error(queue.receive_message) == "SecurityTokenExpired"
    tokens.invalidate(old)
    fresh = tokens.token()

    assert fresh.access_key_id != old.access_key_id
    assert mns_error(sts_queue(mns, fresh, alicom.queue_name()).receive_message) == "MessageNotExist"


# --- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["internal_error", "unavailable", "throttle", "drop_connection"])
def test_api_faults_are_transient(emulators, fault: str) -> None:
    _, alicom = emulators
    tokens = provider(alicom)
    alicom.set_faults({"operations": {"QueryTokenForMnsQueue": {fault: 1.0}}})

    with pytest.raises(TransientError) as info:
        tokens.token()

    assert "QueryTokenForMnsQueue" in str(info.value) and "\n" not in str(info.value)
    alicom.set_faults({})
    assert tokens.token().access_key_id.startswith("STS.")


def test_unreachable_endpoint_is_transient_and_leaks_no_signature() -> None:
    tokens = TokenProvider(acs_client(AK, SK, None, REGION, connect_timeout=1), "http://127.0.0.1:9", "FlowReport", "")

    with pytest.raises(TransientError) as info:
        tokens.token()

    message = str(info.value)
    assert "got no answer from http://127.0.0.1:9" in message
    assert "Signature=" not in message and "AccessKeyId=" not in message


def test_a_failed_refresh_keeps_the_still_valid_token(emulators) -> None:
    _, alicom = emulators
    clock = FakeClock(time.time())
    tokens = provider(alicom, clock)
    first = tokens.token()
    clock.now = first.expires_at.timestamp() - 60  # inside the margin, still valid
    alicom.set_faults({"operations": {"QueryTokenForMnsQueue": {"unavailable": 1.0}}})

    assert tokens.token() is first
    assert tokens.token() is first  # not asked again at once
    assert token_calls(alicom) == 2

    clock.now += 6  # retried a few seconds later
    assert tokens.token() is first
    assert token_calls(alicom) == 3
    tokens.invalidate()  # after an auth error the old token is useless: the failure shows
    with pytest.raises(TransientError):
        tokens.token()


@pytest.mark.parametrize(
    ("message_type", "queue_name"),
    [
        ("Flow", ""),  # not an Alicom message type
        ("FlowReport", f"Alicom-Queue-{OTHER_UID}-FlowReport"),  # someone else's queue
        ("FlowReport", f"Alicom-Queue-{UID}-SmsReport"),  # own account, other message type
    ],
)
def test_wrong_message_type_or_foreign_queue_is_one_clear_config_error(emulators, message_type, queue_name) -> None:
    _, alicom = emulators
    tokens = provider(alicom, message_type=message_type, queue_name=queue_name)

    with pytest.raises(ConfigError) as info:
        tokens.token()

    message = str(info.value)
    assert message.startswith("ALICOM_MESSAGE_TYPE / ALICOM_QUEUE_NAME: Alicom refused a queue token for ")
    assert f"MessageType={message_type} QueueName={queue_name or '<not sent>'}" in message
    assert "isv.INVALID_PARAMETERS" in message and "\n" not in message


@pytest.mark.parametrize(
    ("key", "secret", "code"),
    [(AK, "not-the-secret", "SignatureDoesNotMatch"), ("nobody", "whatever", "InvalidAccessKeyId.NotFound")],
)
def test_bad_credentials_are_a_config_error(emulators, key: str, secret: str, code: str) -> None:
    _, alicom = emulators

    with pytest.raises(ConfigError) as info:
        provider(alicom, key=key, secret=secret).token()

    message = str(info.value)
    assert message.startswith("ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET: ")
    assert code in message and secret not in message and "\n" not in message


def test_sts_caller_credentials_sign_with_their_security_token() -> None:
    # FC python3.10 hands the function STS credentials; the emulator checks the signature over every parameter,
    # SecurityToken included.
    accounts = {"STS.caller-key": ("caller-sts-secret", UID)}
    with running_emulators(accounts=accounts) as (_, alicom):
        client = acs_client("STS.caller-key", "caller-sts-secret", "caller-security-token", REGION)
        tokens = TokenProvider(client, alicom.endpoint, "FlowReport", alicom.queue_name(UID))

        assert tokens.token().access_key_id.startswith("STS.")


@pytest.mark.parametrize("endpoint", ["ftp://dybaseapi.aliyuncs.com", "https://dybaseapi.aliyuncs.com/path", ""])
def test_a_bad_endpoint_is_a_config_error(endpoint: str) -> None:
    with pytest.raises(ConfigError, match=r"^ALICOM_API_ENDPOINT: must be a URL"):
        TokenProvider(acs_client(AK, SK, None, REGION), endpoint, "FlowReport", "")


def test_no_secret_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    accounts = {"STS.caller-key": ("caller-sts-secret", UID)}
    buffer = io.StringIO()
    previous = logger.registered_handler.setStream(buffer)  # type: ignore[attr-defined]
    caplog.set_level(logging.DEBUG)  # the core SDK logs request parameters at DEBUG
    try:
        with running_emulators(accounts=accounts) as (_, alicom):
            client = acs_client("STS.caller-key", "caller-sts-secret", "caller-security-token", REGION)
            tokens = TokenProvider(client, alicom.endpoint, "FlowReport", alicom.queue_name(UID))
            token = tokens.token()
            tokens.invalidate()
            tokens.token()
            alicom.set_faults({"operations": {"QueryTokenForMnsQueue": {"internal_error": 1.0}}})
            tokens.invalidate()
            with pytest.raises(TransientError):
                tokens.token()
    finally:
        logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]

    output = "\n".join([buffer.getvalue(), caplog.text, *(record.getMessage() for record in caplog.records)])
    assert "queue token fetched" in output and "ServerException occurred" in output
    for secret in (token.access_key_secret, token.security_token, "caller-sts-secret", "caller-security-token"):
        assert secret not in output

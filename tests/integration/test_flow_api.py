"""FlowApi, both generations (Dycdpapi 2017-05-25 Charge / QueryChargeDetail and 2018-06-10 CreateCdpOrder /
QueryCdpOrder), through the real aliyun-python-sdk-core against the Alicom emulator: idempotent placing, every
status-query state with the raw answer kept, unrecognised and unreadable answers kept PENDING, and the error
mapping for throttling, 5xx, timeouts and dropped connections."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from test_alicom_support import AK, SK, UID, drain, running_emulators

from local.alicom import AlicomEmulator
from local.mns import MnsEmulator
from shared.adapters.alicom import AlicomRefused, acs_client
from shared.adapters.flow import ChargeRejected, FlowApi
from shared.domain.models import Envelope, reports_from
from shared.domain.sweep import Answer, StatusAnswer
from shared.errors import ConfigError, Throttled, TransientError

PHONE = "13800138000"
REGION = "cn-hangzhou"
PRODUCT = {"charge": "100M", "cdp": "1001"}
QUERY = {"charge": "QueryChargeDetail", "cdp": "QueryCdpOrder"}
PLACE = {"charge": "Charge", "cdp": "CreateCdpOrder"}
DETAIL = {"charge": "ChargeDetail", "cdp": "Data"}


@pytest.fixture
def emulators() -> Iterator[tuple[MnsEmulator, AlicomEmulator]]:
    with running_emulators(success_rate=1.0) as pair:
        yield pair


@pytest.fixture(params=["charge", "cdp"])
def api(request) -> str:
    return request.param


def flow_api(alicom: AlicomEmulator, api: str = "charge", key: str = AK, secret: str = SK, **timeouts) -> FlowApi:
    return FlowApi(acs_client(key, secret, None, REGION, **timeouts), alicom.endpoint, api)  # type: ignore[arg-type]


def charges_made(alicom: AlicomEmulator) -> int:
    return sum(alicom.stats()["charges"].values())  # type: ignore[union-attr]


# --- placing --------------------------------------------------------------------------------------------------


def test_a_placed_top_up_reports_with_its_out_id(emulators, api: str) -> None:
    mns, alicom = emulators

    placed = flow_api(alicom, api).place("order-1", PHONE, PRODUCT[api])

    assert placed.charge_id and not placed.duplicate and placed.raw["Code"] == "OK"
    assert alicom.wait_idle(5)
    (body,) = drain(mns, alicom.queue_name(), raw=True)
    (report,) = reports_from(Envelope(message_id="m", body=body.decode()))
    assert (report.out_id, report.phone, report.result) == ("order-1", PHONE, "3")


def test_placing_is_idempotent_per_out_id(emulators, api: str) -> None:
    _, alicom = emulators
    flow = flow_api(alicom, api)

    first = flow.place("same", PHONE, PRODUCT[api])
    again = flow.place("same", PHONE, PRODUCT[api])
    other = flow.place("other", PHONE, PRODUCT[api])

    assert first.charge_id == again.charge_id != other.charge_id
    assert again.duplicate is (api == "cdp")  # CreateCdpOrder says so (ResultCode 10004); Charge answers alike
    assert charges_made(alicom) == 2


def test_a_refused_top_up_is_charge_rejected_with_the_raw_answer(emulators, api: str) -> None:
    _, alicom = emulators

    with pytest.raises(ChargeRejected) as info:
        flow_api(alicom, api).place("order-bad", "12345", PRODUCT[api])

    refused = info.value
    assert isinstance(refused, AlicomRefused) and refused.code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert refused.raw["Code"] == "isv.MOBILE_NUMBER_ILLEGAL" and refused.raw["RequestId"]
    assert charges_made(alicom) == 0


@pytest.mark.parametrize("fault", ["internal_error", "unavailable", "throttle", "drop_connection", "garbled"])
def test_placing_faults_are_transient_and_a_retry_places_once(emulators, api: str, fault: str) -> None:
    _, alicom = emulators
    flow = flow_api(alicom, api)
    alicom.set_faults({"operations": {PLACE[api]: {fault: 1.0}}})

    with pytest.raises(TransientError, match=rf"^{PLACE[api]} "):
        flow.place("retried", PHONE, PRODUCT[api])

    alicom.set_faults({})
    first = flow.place("retried", PHONE, PRODUCT[api])
    assert flow.place("retried", PHONE, PRODUCT[api]).charge_id == first.charge_id
    assert charges_made(alicom) == 1  # a garbled answer came after the top-up was placed: the retry is a repeat


def test_placing_arguments_must_be_given(emulators) -> None:
    _, alicom = emulators

    with pytest.raises(ValueError, match="out_id"):
        flow_api(alicom).place("", PHONE, "100M")
    with pytest.raises(ValueError, match="api must be one of charge, cdp"):
        FlowApi(acs_client(AK, SK, None, REGION), alicom.endpoint, "flow")  # type: ignore[arg-type]


def test_a_few_hundred_top_ups_are_quick(emulators) -> None:
    _, alicom = emulators
    flow = flow_api(alicom)
    started = time.monotonic()

    charge_ids = {flow.place(f"bulk-{n}", PHONE, "100M").charge_id for n in range(200)}

    assert len(charge_ids) == 200
    assert time.monotonic() - started < 10  # a sanity bound for the demo, not a benchmark


# --- asking ---------------------------------------------------------------------------------------------------


def test_query_success(emulators, api: str) -> None:
    _, alicom = emulators
    flow = flow_api(alicom, api)
    flow.place("ok-1", PHONE, PRODUCT[api])
    assert alicom.wait_idle(5)

    answer = flow.query("ok-1")

    assert (answer.state, answer.err_code, answer.err_msg, answer.result) == (Answer.SUCCEEDED, "", "", "3")
    assert answer.raw["Code"] == "OK" and answer.raw[DETAIL[api]]["Status"] == "SUCCESS"


def test_query_failure_with_code_and_non_ascii_message(emulators, api: str) -> None:
    _, alicom = emulators
    alicom.set_behaviour(success_rate=0.0, failure_codes=[["E_QUOTA", "余额不足"]])
    flow = flow_api(alicom, api)
    flow.place("bad-1", PHONE, PRODUCT[api])
    assert alicom.wait_idle(5)

    answer = flow.query("bad-1")

    assert (answer.state, answer.err_code, answer.err_msg, answer.result) == (Answer.FAILED, "E_QUOTA", "余额不足", "4")


def test_query_processing(emulators, api: str) -> None:
    _, alicom = emulators
    alicom.set_behaviour(charge_delay_seconds=60)
    flow = flow_api(alicom, api)
    flow.place("slow-1", PHONE, PRODUCT[api])

    answer = flow.query("slow-1")

    assert (answer.state, answer.result, answer.note) == (Answer.STILL_PENDING, None, "")


def test_query_not_found_for_an_unknown_out_id_or_one_older_than_30_days(emulators, api: str) -> None:
    _, alicom = emulators
    alicom.seed_charge("old-1", days_ago=31, status="SUCCESS")
    alicom.seed_charge("recent-1", days_ago=29, status="FAILED", err_code="UNKNOW", err_msg="未知错误")
    flow = flow_api(alicom, api)

    unknown, old, recent = flow.query("never-charged"), flow.query("old-1"), flow.query("recent-1")

    assert unknown.state is Answer.NOT_FOUND and unknown.raw["Code"] == "isv.RECORD_NOT_FOUND"
    assert old.state is Answer.NOT_FOUND
    assert (recent.state, recent.err_code, recent.err_msg) == (Answer.FAILED, "UNKNOW", "未知错误")


def test_query_of_another_accounts_top_up_is_not_found() -> None:
    other = {"other-ak": ("other-sk-77", "6543210987654321")}
    with running_emulators(accounts={AK: (SK, UID), **other}) as (_, alicom):
        flow_api(alicom, key="other-ak", secret="other-sk-77").place("theirs", PHONE, "100M")

        assert flow_api(alicom).query("theirs").state is Answer.NOT_FOUND


@pytest.mark.parametrize("fault", ["unknown_status", "garbled"])
def test_an_answer_that_is_not_understood_stays_pending_and_is_logged_raw(emulators, api: str, fault: str, caplog):
    _, alicom = emulators
    alicom.seed_charge("done-1", status="SUCCESS", phone=PHONE)
    alicom.set_faults({"operations": {QUERY[api]: {fault: 1.0}}})

    answer = flow_api(alicom, api).query("done-1")

    assert answer.state is Answer.STILL_PENDING and answer.result is None
    assert answer.note.startswith("unrecognised answer (")
    expected = "REFUND_PENDING" if fault == "unknown_status" else "502 Bad Gateway"
    assert expected in answer.note + str(answer.raw)
    logged = [r for r in caplog.records if "status query answer not recognised" in r.getMessage()]
    assert len(logged) == 1 and expected in str(logged[0].__dict__["raw_answer"])


@pytest.mark.parametrize("fault", ["internal_error", "unavailable", "throttle", "drop_connection"])
def test_query_faults_are_transient(emulators, api: str, fault: str) -> None:
    _, alicom = emulators
    alicom.set_faults({"operations": {QUERY[api]: {fault: 1.0}}})

    with pytest.raises(TransientError, match=rf"^{QUERY[api]} ") as raised:
        flow_api(alicom, api).query("any")
    assert isinstance(raised.value, Throttled) is (fault == "throttle")


def test_a_query_slower_than_the_timeout_is_transient(emulators) -> None:
    _, alicom = emulators
    alicom.set_faults({"operations": {"QueryChargeDetail": {"latency_ms": 1500}}})

    started = time.monotonic()
    with pytest.raises(TransientError, match="got no answer"):
        flow_api(alicom, read_timeout=0.5).query("any")
    assert time.monotonic() - started < 1.4


def test_bad_credentials_are_a_config_error(emulators) -> None:
    _, alicom = emulators

    with pytest.raises(ConfigError, match=r"^ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET: "):
        flow_api(alicom, secret="wrong-secret").query("any")
    with pytest.raises(ConfigError, match="rejected the AccessKey"):
        flow_api(alicom, key="nobody").place("x", PHONE, "100M")


def test_a_status_answer_repr_keeps_the_phone_out(emulators) -> None:
    _, alicom = emulators
    alicom.seed_charge("seeded", status="SUCCESS", phone=PHONE)

    answer = flow_api(alicom).query("seeded")

    assert answer.raw["ChargeDetail"]["PhoneNumber"] == PHONE
    assert PHONE not in repr(answer)
    assert answer == StatusAnswer(Answer.SUCCEEDED)

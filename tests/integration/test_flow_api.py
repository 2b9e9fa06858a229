"""FlowApi (Dycdpapi 2017-05-25 Charge / QueryChargeDetail) through the real aliyun-python-sdk-core against the
Alicom emulator: idempotent charges, every status-query state with the raw answer kept, and the error mapping."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from test_alicom_support import AK, SK, UID, drain, running_emulators

from local.alicom import AlicomEmulator
from local.mns import MnsEmulator
from shared.adapters.alicom import AlicomRefused, ChargeRejected, ChargeStatus, FlowApi, acs_client
from shared.domain.models import Envelope, reports_from
from shared.errors import ConfigError, TransientError

PHONE = "13800138000"
REGION = "cn-hangzhou"


@pytest.fixture
def emulators() -> Iterator[tuple[MnsEmulator, AlicomEmulator]]:
    with running_emulators(success_rate=1.0) as pair:
        yield pair


def flow_api(alicom: AlicomEmulator, key: str = AK, secret: str = SK) -> FlowApi:
    return FlowApi(acs_client(key, secret, None, REGION), alicom.endpoint)


def charges_made(alicom: AlicomEmulator) -> int:
    return sum(alicom.stats()["charges"].values())  # type: ignore[union-attr]


# --- Charge ---------------------------------------------------------------------------------------------------


def test_charge_returns_the_raw_answer_and_its_report_arrives(emulators) -> None:
    mns, alicom = emulators

    answer = flow_api(alicom).charge("order-1", PHONE, "100M")

    assert answer["Code"] == "OK" and answer["ChargeId"]
    assert set(answer) == {"RequestId", "Code", "Message", "ChargeId"}
    assert alicom.wait_idle(5)
    (body,) = drain(mns, alicom.queue_name(), raw=True)
    (report,) = reports_from(Envelope(message_id="m", body=body.decode()))
    assert (report.out_id, report.phone, report.result) == ("order-1", PHONE, "3")


def test_charge_is_idempotent_per_out_id(emulators) -> None:
    mns, alicom = emulators
    api = flow_api(alicom)

    first = api.charge("same", PHONE, "100M")
    again = api.charge("same", PHONE, "100M")
    other = api.charge("other", PHONE, "100M")

    assert first["ChargeId"] == again["ChargeId"] != other["ChargeId"]
    assert first["RequestId"] != again["RequestId"]
    assert charges_made(alicom) == 2
    assert alicom.wait_idle(5)
    bodies = drain(mns, alicom.queue_name(), raw=True)
    envelopes = [Envelope(message_id=f"m-{n}", body=body.decode()) for n, body in enumerate(bodies)]
    out_ids = [report.out_id for envelope in envelopes for report in reports_from(envelope)]
    assert sorted(out_ids) == ["other", "same"]


def test_a_refused_charge_raises_charge_rejected_with_the_raw_answer(emulators) -> None:
    _, alicom = emulators

    with pytest.raises(ChargeRejected) as info:
        flow_api(alicom).charge("order-bad", "12345", "100M")

    refused = info.value
    assert isinstance(refused, AlicomRefused)
    assert refused.code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert refused.raw["Code"] == "isv.MOBILE_NUMBER_ILLEGAL" and refused.raw["RequestId"]
    assert charges_made(alicom) == 0


@pytest.mark.parametrize("fault", ["internal_error", "unavailable", "throttle", "drop_connection"])
def test_charge_faults_are_transient_and_a_retry_charges_once(emulators, fault: str) -> None:
    _, alicom = emulators
    api = flow_api(alicom)
    alicom.set_faults({"operations": {"Charge": {fault: 1.0}}})

    with pytest.raises(TransientError, match=r"^Charge "):
        api.charge("retried", PHONE, "100M")

    alicom.set_faults({})
    first = api.charge("retried", PHONE, "100M")
    assert api.charge("retried", PHONE, "100M")["ChargeId"] == first["ChargeId"]
    assert charges_made(alicom) == 1


def test_charge_arguments_must_be_given(emulators) -> None:
    _, alicom = emulators

    with pytest.raises(ValueError, match="out_id"):
        flow_api(alicom).charge("", PHONE, "100M")


def test_a_few_hundred_charges_are_quick(emulators) -> None:
    _, alicom = emulators
    api = flow_api(alicom)
    started = time.monotonic()

    charge_ids = {api.charge(f"bulk-{n}", PHONE, "100M")["ChargeId"] for n in range(200)}

    assert len(charge_ids) == 200
    assert time.monotonic() - started < 10  # a sanity bound for the demo, not a benchmark


# --- QueryChargeDetail ---------------------------------------------------------------------------------------


def test_query_success(emulators) -> None:
    _, alicom = emulators
    api = flow_api(alicom)
    api.charge("ok-1", PHONE, "100M")
    assert alicom.wait_idle(5)

    status = api.query_charge("ok-1")

    assert (status.state, status.err_code, status.err_msg, status.result) == ("success", "", "", "3")
    assert status.raw["Code"] == "OK"
    assert status.raw["ChargeDetail"]["OutId"] == "ok-1" and status.raw["ChargeDetail"]["Status"] == "SUCCESS"


def test_query_failure_with_code_and_non_ascii_message(emulators) -> None:
    _, alicom = emulators
    alicom.set_behaviour(success_rate=0.0, failure_codes=[["E_QUOTA", "余额不足"]])
    api = flow_api(alicom)
    api.charge("bad-1", PHONE, "100M")
    assert alicom.wait_idle(5)

    status = api.query_charge("bad-1")

    assert (status.state, status.err_code, status.err_msg, status.result) == ("failure", "E_QUOTA", "余额不足", "4")
    assert status.raw["ChargeDetail"]["Status"] == "FAILED"


def test_query_processing(emulators) -> None:
    _, alicom = emulators
    alicom.set_behaviour(charge_delay_seconds=60)
    api = flow_api(alicom)
    api.charge("slow-1", PHONE, "100M")

    status = api.query_charge("slow-1")

    assert (status.state, status.result) == ("processing", None)
    assert status.raw["ChargeDetail"]["FinishTime"] == ""


def test_query_not_found_for_an_unknown_out_id(emulators) -> None:
    _, alicom = emulators

    status = flow_api(alicom).query_charge("never-charged")

    assert (status.state, status.result) == ("not_found", None)
    assert status.raw["Code"] == "isv.RECORD_NOT_FOUND" and "never-charged" in status.raw["Message"]


def test_query_answers_only_for_the_last_30_days(emulators) -> None:
    _, alicom = emulators
    alicom.seed_charge("old-1", days_ago=31, status="SUCCESS")
    alicom.seed_charge("recent-1", days_ago=29, status="FAILED", err_code="UNKNOW", err_msg="未知错误")
    api = flow_api(alicom)

    old, recent = api.query_charge("old-1"), api.query_charge("recent-1")

    assert old.state == "not_found" and old.raw["Code"] == "isv.RECORD_NOT_FOUND"
    assert (recent.state, recent.err_code, recent.err_msg) == ("failure", "UNKNOW", "未知错误")


def test_query_of_another_accounts_charge_is_not_found() -> None:
    other = {"other-ak": ("other-sk-77", "6543210987654321")}
    with running_emulators(accounts={AK: (SK, UID), **other}) as (_, alicom):
        flow_api(alicom, "other-ak", "other-sk-77").charge("theirs", PHONE, "100M")

        assert flow_api(alicom).query_charge("theirs").state == "not_found"


@pytest.mark.parametrize("fault", ["internal_error", "unavailable", "throttle", "drop_connection"])
def test_query_faults_are_transient(emulators, fault: str) -> None:
    _, alicom = emulators
    alicom.set_faults({"operations": {"QueryChargeDetail": {fault: 1.0}}})

    with pytest.raises(TransientError, match=r"^QueryChargeDetail "):
        flow_api(alicom).query_charge("any")


def test_bad_credentials_are_a_config_error(emulators) -> None:
    _, alicom = emulators

    with pytest.raises(ConfigError, match=r"^ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET: "):
        flow_api(alicom, secret="wrong-secret").query_charge("any")
    with pytest.raises(ConfigError, match="rejected the AccessKey"):
        flow_api(alicom, key="nobody").charge("x", PHONE, "100M")


def test_charge_status_repr_keeps_the_phone_out(emulators) -> None:
    _, alicom = emulators
    alicom.seed_charge("seeded", status="SUCCESS", phone=PHONE)

    status = flow_api(alicom).query_charge("seeded")

    assert status.raw["ChargeDetail"]["PhoneNumber"] == PHONE
    assert PHONE not in repr(status)
    assert status == ChargeStatus("success")

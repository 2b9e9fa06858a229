"""The POP layer of the Alicom emulator, seen through the real core SDK and, for the actions Alibaba ships one for,
through the V2.0 SDKs (alibabacloud_dybaseapi20170525 signs V3, alibabacloud_dycdpapi20180610 RPC): authentication,
error shapes, parameter checks and injected faults. V3's own checks: test_alicom_v3.py."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from aliyunsdkcore.request import RpcRequest
from darabonba.exceptions import UnretryableException
from test_alicom_support import (
    AK,
    BASEAPI,
    CDP_2017,
    CDP_2018,
    PHONE,
    UID,
    admin,
    base_params,
    call,
    client_error,
    common_request,
    pop_failure,
    raw_call,
    running_emulators,
    sdk_client,
    server_error,
    signed_params,
    tea_call,
)

from local.alicom import AlicomEmulator

# The actions a V2.0 SDK exists for, with parameters that make them succeed.
V2_ACTIONS = [
    pytest.param(BASEAPI, "QueryTokenForMnsQueue", {"MessageType": "FlowReport"}, id="dybaseapi-v3"),
    pytest.param(CDP_2018, "QueryCdpOrder", {"OutOrderId": "x"}, id="dycdpapi-rpc"),
]


@pytest.fixture
def alicom() -> Iterator[AlicomEmulator]:
    with running_emulators() as (_, emulator):
        yield emulator


def action_stats(alicom: AlicomEmulator, action: str) -> dict:
    return alicom.stats()["actions"].get(action, {})


# ---- authentication -----------------------------------------------------------------------------------


def test_wrong_secret_with_common_request_is_signature_does_not_match(alicom) -> None:
    request = common_request(alicom, BASEAPI, "QueryTokenForMnsQueue", MessageType="FlowReport")

    error = server_error(lambda: sdk_client(AK, "not-the-secret").do_action_with_exception(request))

    assert (error.get_http_status(), error.get_error_code()) == (400, "SignatureDoesNotMatch")
    prefix = "Specified signature is not matched with our calculation. server string to sign is:"
    assert error.get_error_msg().startswith(prefix)
    # the server's string to sign is the SDK's own (CommonRequest keeps it on its inner request)
    assert error.get_error_msg()[len(prefix) :] == request.request.string_to_sign
    assert error.get_request_id()


def test_wrong_secret_with_a_typed_request_is_reported_as_invalid_access_key_secret(alicom) -> None:
    """Typed requests keep their string to sign where the SDK compares it with the server's: when the two are
    equal (same request, other secret) the SDK reports InvalidAccessKeySecret."""
    request = RpcRequest("Dybaseapi", BASEAPI, "QueryTokenForMnsQueue")
    request.endpoint = alicom.domain
    request.set_protocol_type("http")
    request.set_method("POST")
    request.add_query_param("MessageType", "FlowReport")

    error = server_error(lambda: sdk_client(AK, "not-the-secret").do_action_with_exception(request))

    assert (error.get_http_status(), error.get_error_code()) == (400, "InvalidAccessKeySecret")
    assert call(alicom, BASEAPI, "QueryTokenForMnsQueue", MessageType="FlowReport")["Code"] == "OK"


@pytest.mark.parametrize(("version", "action", "params"), V2_ACTIONS)
def test_wrong_secret_through_the_v2_sdks_is_signature_does_not_match(alicom, version, action, params) -> None:
    status, code, message = pop_failure(lambda: tea_call(alicom, version, action, (AK, "not-the-secret"), **params))

    assert (status, code) == (400, "SignatureDoesNotMatch")
    assert message.startswith("Specified signature is not matched with our calculation.")


@pytest.mark.parametrize(("version", "action", "params"), V2_ACTIONS)
def test_unknown_access_key_through_the_v2_sdks_is_404(alicom, version, action, params) -> None:
    failure = pop_failure(lambda: tea_call(alicom, version, action, ("nobody", "x"), **params))

    assert failure == (404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")


def test_unknown_access_key_is_404_not_found(alicom) -> None:
    error = server_error(lambda: call(alicom, CDP_2017, "QueryChargeDetail", sdk_client("nobody", "x"), OutId="o"))

    assert (error.get_http_status(), error.get_error_code()) == (404, "InvalidAccessKeyId.NotFound")
    assert error.get_error_msg() == "Specified access key is not found."


def test_error_body_has_the_pop_fields(alicom) -> None:
    status, body = raw_call(alicom, signed_params(base_params("QueryChargeDetail", CDP_2017, OutId="x"), "bad"))

    assert status == 400
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert body["Code"] == "SignatureDoesNotMatch"
    assert body["HostId"] == alicom.domain


def test_tampered_parameter_does_not_match(alicom) -> None:
    params = signed_params(base_params("Charge", CDP_2017, PhoneNumber=PHONE, Grade="100M", OutId="a"))

    status, body = raw_call(alicom, {**params, "OutId": "b"})

    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert "OutId%3Db" in body["Message"]
    assert alicom.charge("b") is None and alicom.charge("a") is None


def test_get_and_post_with_form_body_are_both_accepted(alicom) -> None:
    query = base_params("Charge", CDP_2017, PhoneNumber=PHONE)
    form = {"Grade": "100M", "OutId": "form-1"}
    to_sign = signed_params({**query, **form}, method="POST")
    status, body = raw_call(alicom, {k: v for k, v in to_sign.items() if k not in form}, "POST", form)
    assert (status, body["Code"]) == (200, "OK")

    status, body = raw_call(alicom, signed_params(base_params("QueryChargeDetail", CDP_2017, OutId="form-1")))
    assert (status, body["ChargeDetail"]["Grade"]) == (200, "100M")


def test_method_is_part_of_the_signature(alicom) -> None:
    params = signed_params(base_params("QueryChargeDetail", CDP_2017, OutId="x"), method="GET")

    status, body = raw_call(alicom, params, "POST", {"Unused": "1"})

    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert body["Message"].partition("is:")[2].startswith("POST&%2F&")


def test_reused_nonce_is_refused(alicom) -> None:
    params = signed_params(base_params("QueryChargeDetail", CDP_2017, OutId="x"))

    first, _ = raw_call(alicom, params)
    status, body = raw_call(alicom, params)

    assert first == 200
    assert (status, body["Code"]) == (400, "SignatureNonceUsed")


def test_timestamp_outside_fifteen_minutes_is_expired(alicom) -> None:
    stale = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 16 * 60))
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 16 * 60))
    nearly = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 14 * 60))

    for timestamp, expected in ((stale, "InvalidTimeStamp.Expired"), (future, "InvalidTimeStamp.Expired")):
        params = signed_params({**base_params("QueryChargeDetail", CDP_2017, OutId="x"), "Timestamp": timestamp})
        status, body = raw_call(alicom, params)
        assert (status, body["Code"]) == (400, expected)
    params = signed_params({**base_params("QueryChargeDetail", CDP_2017, OutId="x"), "Timestamp": nearly})
    assert raw_call(alicom, params)[0] == 200


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"Timestamp": "2024-01-01 00:00:00"}, 400, "InvalidTimeStamp.Format"),
        ({"SignatureMethod": "HMAC-SHA256"}, 400, "InvalidSignatureMethod"),
        ({"SignatureVersion": "2.0"}, 400, "InvalidSignatureVersion"),
        ({"Timestamp": None}, 400, "MissingTimestamp"),
        ({"SignatureNonce": None}, 400, "MissingSignatureNonce"),
        ({"AccessKeyId": None}, 400, "MissingAccessKeyId"),
        ({"Version": None}, 400, "MissingVersion"),
        ({"Action": None}, 400, "MissingAction"),
        ({"Version": "2099-01-01"}, 400, "InvalidVersion"),
        ({"Action": "DeleteEverything"}, 404, "InvalidAction.NotFound"),
        ({"Action": "CreateCdpOrder"}, 404, "InvalidAction.NotFound"),  # a 2018-06-10 action asked as 2017-05-25
    ],
)
def test_malformed_common_parameters(alicom, change: dict, status: int, code: str) -> None:
    params = {**base_params("QueryChargeDetail", CDP_2017, OutId="x"), **change}

    answer_status, body = raw_call(alicom, signed_params({k: v for k, v in params.items() if v is not None}))

    assert (answer_status, body["Code"]) == (status, code)


def test_missing_signature_is_refused(alicom) -> None:
    status, body = raw_call(alicom, base_params("QueryChargeDetail", CDP_2017, OutId="x"))

    assert (status, body["Code"]) == (400, "MissingSignature")


def test_missing_action_parameters(alicom) -> None:
    for version, action, params, missing in (
        (BASEAPI, "QueryTokenForMnsQueue", {}, "MessageType"),
        (CDP_2017, "Charge", {"PhoneNumber": PHONE, "Grade": "100M"}, "OutId"),
        (CDP_2017, "Charge", {"OutId": "o", "Grade": "100M"}, "PhoneNumber"),
        (CDP_2017, "QueryChargeDetail", {}, "OutId"),
        (CDP_2018, "CreateCdpOrder", {"PhoneNumber": PHONE, "OutOrderId": "o"}, "OfferId"),
        (CDP_2018, "QueryCdpOrder", {"OutOrderId": ""}, "OutOrderId"),
    ):
        error = server_error(lambda: call(alicom, version, action, **params))  # noqa: B023
        assert (error.get_http_status(), error.get_error_code()) == (400, f"Missing{missing}")
        assert error.get_error_msg() == f"{missing} is mandatory for this action."
    assert alicom.stats()["charges"] == {"PROCESSING": 0, "SUCCESS": 0, "FAILED": 0}


def test_missing_action_parameters_through_the_v2_sdks(alicom) -> None:
    for version, action, params, missing in (
        (BASEAPI, "QueryTokenForMnsQueue", {}, "MessageType"),
        (CDP_2018, "QueryCdpOrder", {"OutOrderId": ""}, "OutOrderId"),
    ):
        failure = pop_failure(lambda: tea_call(alicom, version, action, **params))  # noqa: B023
        assert failure == (400, f"Missing{missing}", f"{missing} is mandatory for this action.")


def test_bad_parameter_values(alicom) -> None:
    error = server_error(
        lambda: call(alicom, CDP_2018, "CreateCdpOrder", OfferId="ten", PhoneNumber=PHONE, OutOrderId="o")
    )
    assert (error.get_http_status(), error.get_error_code()) == (400, "InvalidOfferId")

    answer = call(alicom, CDP_2017, "Charge", PhoneNumber="12345", Grade="100M", OutId="o")
    assert answer["Code"] == "isv.MOBILE_NUMBER_ILLEGAL" and "ChargeId" not in answer
    answer = call(alicom, CDP_2018, "CreateCdpOrder", OfferId="1", PhoneNumber="+86 138", OutOrderId="o")
    assert answer["Code"] == "isv.MOBILE_NUMBER_ILLEGAL"
    assert alicom.charge("o") is None


# ---- faults ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("internal_error", 500, "InternalError"),
        ("unavailable", 503, "ServiceUnavailable"),
        ("throttle", 400, "Throttling.User"),
    ],
)
def test_injected_errors_reach_the_caller_without_sdk_retries(alicom, kind: str, status: int, code: str) -> None:
    alicom.set_faults({"operations": {"Charge": {kind: 1.0}}})

    error = server_error(lambda: call(alicom, CDP_2017, "Charge", PhoneNumber=PHONE, Grade="100M", OutId="f"))

    assert (error.get_http_status(), error.get_error_code()) == (status, code)
    stats = action_stats(alicom, "Charge")
    # the core SDK's retry policy covers only the products in its retry_config.json (ECS): one request, no retry
    assert stats["requests"] == 1
    assert stats["faults"] == {kind: 1}
    assert stats["errors"] == {code: 1}
    assert alicom.charge("f") is None  # a refused call charges nothing
    assert call(alicom, CDP_2017, "QueryChargeDetail", OutId="f")["Code"] == "isv.RECORD_NOT_FOUND"


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("internal_error", 500, "InternalError"),
        ("unavailable", 503, "ServiceUnavailable"),
        ("throttle", 400, "Throttling.User"),
    ],
)
@pytest.mark.parametrize(("version", "action", "params"), V2_ACTIONS)
def test_injected_errors_reach_the_v2_sdks_without_retries(alicom, version, action, params, kind, status, code):
    alicom.set_faults({"operations": {action: {kind: 1.0}}})

    assert pop_failure(lambda: tea_call(alicom, version, action, **params))[:2] == (status, code)

    stats = action_stats(alicom, action)
    assert (stats["requests"], stats["faults"], stats["errors"]) == (1, {kind: 1}, {code: 1})  # no retry


@pytest.mark.parametrize(("version", "action", "params"), V2_ACTIONS)
def test_dropped_connection_through_the_v2_sdks_without_retry(alicom, version, action, params) -> None:
    alicom.set_faults({"operations": {action: {"drop_connection": 1.0}}})

    with pytest.raises(UnretryableException):
        tea_call(alicom, version, action, **params)

    assert action_stats(alicom, action)["requests"] == 1
    alicom.set_faults({})
    assert tea_call(alicom, version, action, **params)["Code"] in ("OK", "isv.RECORD_NOT_FOUND")


def test_dropped_connection_is_an_sdk_http_error_without_retry(alicom) -> None:
    alicom.set_faults({"operations": {"QueryTokenForMnsQueue": {"drop_connection": 1.0}}})

    error = client_error(lambda: call(alicom, BASEAPI, "QueryTokenForMnsQueue", MessageType="FlowReport"))

    assert error.get_error_code() == "SDK.HttpError"
    assert action_stats(alicom, "QueryTokenForMnsQueue")["faults"] == {"drop_connection": 1}
    alicom.set_faults({})
    assert call(alicom, BASEAPI, "QueryTokenForMnsQueue", MessageType="FlowReport")["Code"] == "OK"


def test_latency_and_fault_rates_per_action(alicom) -> None:
    alicom.set_faults({"seed": 3, "latency_ms": 0, "operations": {"QueryChargeDetail": {"latency_ms": 250}}})

    started = time.monotonic()
    call(alicom, CDP_2017, "QueryChargeDetail", OutId="x")
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    call(alicom, CDP_2018, "QueryCdpOrder", OutOrderId="x")
    assert time.monotonic() - started < 0.25

    alicom.set_faults({"seed": 3, "operations": {"*": {"internal_error": 0.5}}})
    outcomes = []
    for _ in range(40):
        try:
            call(alicom, CDP_2018, "QueryCdpOrder", OutOrderId="x")
            outcomes.append("ok")
        except Exception:
            outcomes.append("error")
    assert 8 <= outcomes.count("error") <= 32
    assert action_stats(alicom, "QueryCdpOrder")["faults"]["internal_error"] == outcomes.count("error")


def test_fault_configuration_over_the_admin_api(alicom) -> None:
    status, body = admin(alicom, "PUT", "/faults", {"operations": {"Charge": {"throttle": 1.0}}})
    assert (status, body) == (200, {"operations": {"Charge": {"throttle": 1.0}}})
    assert admin(alicom, "GET", "/faults") == (200, body)
    assert admin(alicom, "PUT", "/faults", {"operations": {"Nope": {"throttle": 1.0}}})[0] == 400
    assert admin(alicom, "PUT", "/faults", {"operations": {"Charge": {"token_expired": 1.0}}})[0] == 400
    assert admin(alicom, "PUT", "/faults", {"operations": {"Charge": {"throttle": 2}}})[0] == 400

    error = server_error(lambda: call(alicom, CDP_2017, "Charge", PhoneNumber=PHONE, Grade="1", OutId="t"))
    assert error.get_error_code() == "Throttling.User"

    assert admin(alicom, "DELETE", "/faults") == (200, {})
    assert call(alicom, CDP_2017, "Charge", PhoneNumber=PHONE, Grade="1", OutId="t")["Code"] == "OK"


def test_stats_count_requests_per_action(alicom) -> None:
    call(alicom, BASEAPI, "QueryTokenForMnsQueue", MessageType="FlowReport")
    call(alicom, BASEAPI, "QueryTokenForMnsQueue", MessageType="Nope")
    server_error(lambda: call(alicom, CDP_2017, "Charge", PhoneNumber=PHONE))

    status, stats = admin(alicom, "GET", "/stats")

    assert status == 200
    token = stats["actions"]["QueryTokenForMnsQueue"]
    assert token["requests"] == 2
    assert token["responses"] == {"200": 2}
    assert token["errors"] == {"isv.INVALID_PARAMETERS": 1}
    assert stats["actions"]["Charge"]["errors"] == {"MissingGrade": 1}
    assert admin(alicom, "GET", "/accounts")[1][0] == {
        "access_key_id": AK,
        "uid": UID,
        "queue": f"Alicom-Queue-{UID}-FlowReport",
    }
    assert admin(alicom, "GET", "/nothing")[0] == 404

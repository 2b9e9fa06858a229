"""Helpers shared by the test_alicom_* modules (kept here rather than in the shared conftest.py).

Requests go through the real aliyun-python-sdk-core: CommonRequest with its domain set to the emulator, and, for the
actions Alibaba ships a V2.0 (Tea) SDK for, through that SDK too: alibabacloud_dybaseapi20170525
(QueryTokenForMnsQueue, V3-signed ACS3-HMAC-SHA256) and alibabacloud_dycdpapi20180610 (QueryCdpOrder, RPC-signed;
it has no CreateCdpOrder, and there is none for Dycdpapi 2017-05-25). ``SDKS`` names both kinds for parametrized
tests; ``pop_call`` / ``pop_failure`` call either and give its answer or failure in one shape.
Raw requests (to forge timestamps, nonces or tampered parameters) are signed with the SDKs' own signing
functions (RPC here, V3 in tests/acs3_support.py), never with the emulator's.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from alibabacloud_dybaseapi20170525 import models as dybaseapi_models
from alibabacloud_dybaseapi20170525.client import Client as DybaseapiClient
from alibabacloud_dycdpapi20180610 import models as dycdpapi_models
from alibabacloud_dycdpapi20180610.client import Client as DycdpapiClient
from alibabacloud_tea_openapi import models as open_api_models
from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.auth.algorithm import sha_hmac1
from aliyunsdkcore.auth.composer import rpc_signature_composer
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from aliyunsdkcore.utils.parameter_helper import get_iso_8061_date
from darabonba.exceptions import ResponseException
from mns.account import Account
from mns.mns_exception import MNSServerException

from local.alicom import AlicomEmulator
from local.mns import MnsEmulator

# Own credentials rather than conftest's: `from conftest import` is ambiguous once tests/ holds several conftests.
OWNER_ID, OWNER_SECRET = "alicom-test-owner", "alicom-test-owner-secret-5d1e"
PUBLISHER_ID, PUBLISHER_SECRET = "alicom-test-publisher", "alicom-test-publisher-secret-0b7c"
AK, SK, UID = "local-ak", "local-sk", "1234567890123456"
OTHER_AK, OTHER_SK, OTHER_UID = "other-ak", "other-sk-77", "6543210987654321"
ACCOUNTS = {AK: (SK, UID), OTHER_AK: (OTHER_SK, OTHER_UID)}
BASEAPI, CDP_2017, CDP_2018 = "2017-05-25", "2017-05-25", "2018-06-10"
PHONE = "13800138000"
CORE, V2 = "core", "v2"  # aliyun-python-sdk-core, the V2.0 (Tea) SDKs
SDKS = (CORE, V2)


@contextmanager
def running_emulators(**alicom_options: object) -> Iterator[tuple[MnsEmulator, AlicomEmulator]]:
    with MnsEmulator(owner=(OWNER_ID, OWNER_SECRET), publisher=(PUBLISHER_ID, PUBLISHER_SECRET)) as mns:
        options = {"accounts": ACCOUNTS, "charge_delay_seconds": 0.02, "seed": 7, **alicom_options}
        with AlicomEmulator(mns, **options) as alicom:  # type: ignore[arg-type]
            yield mns, alicom


def sdk_client(access_key_id: str = AK, secret: str = SK) -> AcsClient:
    return AcsClient(access_key_id, secret, "cn-hangzhou")


def common_request(alicom: AlicomEmulator, version: str, action: str, method: str = "POST", **params: str):
    request = CommonRequest()
    request.set_domain(alicom.domain)
    request.set_protocol_type("http")
    request.set_version(version)
    request.set_action_name(action)
    request.set_method(method)
    for name, value in params.items():
        request.add_query_param(name, value)
    return request


def call(alicom: AlicomEmulator, version: str, action: str, client: AcsClient | None = None, **params: str) -> dict:
    body = (client or sdk_client()).do_action_with_exception(common_request(alicom, version, action, **params))
    return json.loads(body)


def server_error(action: Callable[[], object]) -> ServerException:
    with pytest.raises(ServerException) as info:
        action()
    return info.value


def client_error(action: Callable[[], object]) -> ClientException:
    with pytest.raises(ClientException) as info:
        action()
    return info.value


def sdk_string_to_sign(method: str, params: dict[str, str]) -> str:
    compose = getattr(rpc_signature_composer, "__compose_string_to_sign")
    return compose(method, params)


def signed_params(params: dict[str, str], secret: str = SK, method: str = "GET") -> dict[str, str]:
    """Signs exactly `params` (no fields added) with the SDK's RPC signing functions."""
    signature = sha_hmac1.get_sign_string(sdk_string_to_sign(method, params), secret + "&")
    return {**params, "Signature": signature}


def base_params(action: str, version: str, **extra: str) -> dict[str, str]:
    return {
        "Action": action,
        "Version": version,
        "AccessKeyId": AK,
        "Format": "JSON",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "Timestamp": get_iso_8061_date(),
        **extra,
    }


def raw_call(
    alicom: AlicomEmulator, params: dict[str, str], method: str = "GET", form: dict[str, str] | None = None
) -> tuple[int, dict]:
    url = alicom.endpoint + "/?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    data = urllib.parse.urlencode(form).encode() if form else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def admin(alicom: AlicomEmulator, method: str, path: str, body: object = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(alicom.admin_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def owner_queue(mns: MnsEmulator, name: str):
    return Account(mns.endpoint, OWNER_ID, OWNER_SECRET).get_queue(name)


def drain(mns: MnsEmulator, queue_name: str, *, raw: bool = False) -> list[bytes]:
    """Receives and deletes every visible message; bodies base64-decoded by the SDK unless raw."""
    queue = owner_queue(mns, queue_name)
    queue.set_encoding(not raw)
    bodies: list[bytes] = []
    while True:
        try:
            messages = queue.batch_receive_message(16, wait_seconds=0)
        except MNSServerException as error:
            if error.type == "MessageNotExist":
                return bodies
            raise
        bodies.extend(_as_bytes(m.message_body) for m in messages)
        queue.batch_delete_message([m.receipt_handle for m in messages])


def _as_bytes(body: bytes | str) -> bytes:
    return body if isinstance(body, bytes) else body.encode()


# ---- the V2.0 (Tea) SDKs -------------------------------------------------------------------------------------


def tea_config(alicom: AlicomEmulator, access_key_id: str = AK, secret: str = SK, **options: object):
    return open_api_models.Config(
        access_key_id=access_key_id,
        access_key_secret=secret,
        endpoint=alicom.domain,
        protocol="http",
        region_id="cn-hangzhou",
        **options,
    )


def tea_dybaseapi(alicom: AlicomEmulator, access_key_id: str = AK, secret: str = SK, **options) -> DybaseapiClient:
    return DybaseapiClient(tea_config(alicom, access_key_id, secret, **options))


def tea_dycdpapi(alicom: AlicomEmulator, access_key_id: str = AK, secret: str = SK, **options) -> DycdpapiClient:
    return DycdpapiClient(tea_config(alicom, access_key_id, secret, **options))


TEA_ACTIONS = {  # (version, action) -> (client factory, method, request model, {POP parameter: model field})
    (BASEAPI, "QueryTokenForMnsQueue"): (
        tea_dybaseapi,
        "query_token_for_mns_queue",
        dybaseapi_models.QueryTokenForMnsQueueRequest,
        {"MessageType": "message_type", "QueueName": "queue_name"},
    ),
    (CDP_2018, "QueryCdpOrder"): (
        tea_dycdpapi,
        "query_cdp_order",
        dycdpapi_models.QueryCdpOrderRequest,
        {"OutOrderId": "out_order_id"},
    ),
}


def tea_call(alicom: AlicomEmulator, version: str, action: str, key: tuple[str, str] = (AK, SK), **params: str) -> dict:
    """The answer body as the V2.0 SDK maps it (fields its model does not know are dropped)."""
    factory, method, model, fields = TEA_ACTIONS[(version, action)]
    request = model(**{fields[name]: value for name, value in params.items()})
    response = getattr(factory(alicom, *key), method)(request)
    return response.body.to_map()


def pop_call(sdk: str, alicom: AlicomEmulator, version: str, action: str, key=(AK, SK), **params: str) -> dict:
    if sdk == V2:
        return tea_call(alicom, version, action, key, **params)
    return call(alicom, version, action, sdk_client(*key), **params)


def pop_failure(action: Callable[[], object]) -> tuple[int, str, str]:
    """(HTTP status, code, the gateway's message) of a call that the gateway refuses, whichever SDK made it."""
    with pytest.raises((ServerException, ResponseException)) as info:
        action()
    error = info.value
    if isinstance(error, ServerException):
        return error.get_http_status(), error.get_error_code(), error.get_error_msg()
    data = error.data if isinstance(error.data, dict) else {}
    return int(error.status_code), str(error.code), str(data.get("Message", ""))

"""Synchronous InvokeFunction through the FC 3.0 SDK alibabacloud_fc20230330 (API 2023-03-30) against the FC
emulator: the twins of test_fc_invoke.py (results, the context, function errors, credentials, lookups, limits,
faults), the FC 3.0 name mapping (``<service>$<function>`` and a plain name), and the V3 signature's rejections
(wrong, stale, replayed, another body) on hand-built requests signed by the SDK's own function (acs3_support)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import fc2
import pytest
from acs3_support import acs_date, send, sha256_hex, signed_headers
from darabonba.exceptions import UnretryableException
from fc3_support import fc3_client, fc3_failure, invoke3
from test_fc_invoke import ACCOUNT, AK, FIXTURES, FUNCTIONS, SK, STS_AK, STS_SK, STS_TOKEN, admin

from local.fc import FcEmulator, FunctionSpec

PATH = "/2023-03-30/functions/{}/invocations"


@pytest.fixture
def emulator() -> Iterator[FcEmulator]:
    functions = [*FUNCTIONS, FunctionSpec("other", "echo", "handlers.echo", FIXTURES)]  # a second echo: ambiguous
    with FcEmulator(functions, credentials={AK: SK, STS_AK: (STS_SK, STS_TOKEN)}, account_id=ACCOUNT) as emulator:
        yield emulator


@pytest.fixture
def client(emulator: FcEmulator):
    return fc3_client(emulator.endpoint, AK, SK)


def raw(emulator: FcEmulator, name: str, body: bytes = b"", *, sent_body: bytes | None = None, **signing):
    """A hand-built V3 InvokeFunction; ``signing`` goes to signed_headers (date, nonce, content_sha256 ...)."""
    path = PATH.format(name.replace("$", "%24"))
    headers = {
        "host": emulator.endpoint.removeprefix("http://"),
        "x-acs-action": "InvokeFunction",
        "x-acs-version": "2023-03-30",
        "content-type": "application/octet-stream",
    }
    extra = signing.pop("extra_headers", {})
    key = signing.pop("key", (AK, SK))
    headers = {**signed_headers("POST", path, {}, headers, body, *key, **signing), **extra}
    return send(emulator.endpoint, "POST", path, headers, body if sent_body is None else sent_body)


# ---------------------------------------------------------------------------------------------- results


@pytest.mark.parametrize("name", ["svc$echo", "svc$text"])
def test_sync_invocation_returns_the_handler_bytes(client, name: str):
    status, headers, body = invoke3(client, name, "héllo".encode())
    assert status == 200 and headers["x-fc-request-id"]
    assert body == ("héllo".encode() if name == "svc$echo" else "echo: héllo".encode())


def test_a_plain_name_reaches_the_one_function_of_that_name(client):
    assert invoke3(client, "text", b"x")[2] == b"echo: x"
    assert invoke3(client, "text", b"x", qualifier="LATEST")[2] == b"echo: x"


def test_the_function_gets_the_same_context_and_instance_as_through_the_fc2_api(client, emulator):
    first = json.loads(invoke3(client, "svc$ctx", b"{}")[2])
    second = json.loads(
        fc2.Client(endpoint=emulator.endpoint, accessKeyID=AK, accessKeySecret=SK).invoke_function("svc", "ctx").data
    )
    assert first["event_type"] == "bytes"
    assert first["function"] == {"name": "ctx", "handler": "handlers.context_info", "memory": 256, "timeout": 7}
    assert first["credentials"]["access_key_id"] == AK and first["account_id"] == ACCOUNT
    assert second["pid"] == first["pid"] and len(second["initialized"]) == 1  # one warm instance for both APIs


def test_log_tail_on_request(client):
    _, headers, body = invoke3(client, "svc$printing", log_type="Tail")
    assert body == b"printed"
    assert "hello from the function" in base64.b64decode(headers["x-fc-log-result"]).decode()


def test_a_handler_exception_is_an_unhandled_invocation_error(client):
    status, headers, body = invoke3(client, "svc$fails", b"boom")
    assert (status, headers["x-fc-error-type"]) == (200, "UnhandledInvocationError")
    error = json.loads(body)
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "always fails: boom")


def test_the_invocation_is_recorded_with_its_api(client, emulator):
    request_id = invoke3(client, "svc$echo", b"a")[1]["x-fc-request-id"]
    (record,) = admin(emulator, f"/invocations?request_id={request_id}")
    assert (record["function"], record["api"], record["type"]) == ("svc/echo", "2023-03-30", "Sync")


# ------------------------------------------------------------------------------------ lookups and limits


@pytest.mark.parametrize(
    ("name", "qualifier", "code", "message"),
    [
        ("nope", None, "FunctionNotFound", "function 'nope' does not exist"),
        ("svc$nope", None, "FunctionNotFound", "function 'svc$nope' does not exist"),
        ("nope$echo", None, "FunctionNotFound", "function 'nope$echo' does not exist"),
        ("echo", None, "FunctionNotFound", "function 'echo' is ambiguous here: name one of other$echo, svc$echo"),
        ("svc$echo", "prod", "AliasNotFound", "alias 'prod' of function 'svc$echo' does not exist"),
        ("svc$echo", "3", "VersionNotFound", "version '3' of function 'svc$echo' does not exist"),
    ],
)
def test_unknown_names_are_404_with_the_fc3_error_body(client, name, qualifier, code, message):
    status, error_code, error_message, request_id = fc3_failure(lambda: invoke3(client, name, qualifier=qualifier))
    assert (status, error_code, error_message) == (404, code, message)
    assert request_id


def test_async_payload_over_128_kb_is_refused(client):
    big = b"x" * (128 * 1024 + 1)
    assert fc3_failure(lambda: invoke3(client, "svc$echo", big, invocation_type="Async"))[:2] == (400, "EntityTooLarge")
    assert invoke3(client, "svc$echo", big)[2] == big  # sync allows more


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"invocation_type": "Later"}, "InvalidArgument"),
        ({"invocation_type": "Async", "task_id": "9-bad"}, "InvalidArgument"),
    ],
)
def test_bad_invocation_headers_are_invalid_argument(client, options, code):
    assert fc3_failure(lambda: invoke3(client, "svc$echo", **options))[:2] == (400, code)


# ------------------------------------------------------------------------------------ auth (SDK and raw)


def test_wrong_secret_is_signature_not_match(emulator):
    failure = fc3_failure(lambda: invoke3(fc3_client(emulator.endpoint, AK, "wrong"), "svc$echo", b"x"))
    assert failure[:2] == (403, "SignatureNotMatch")
    assert emulator.stats()["functions"]["svc/echo"]["sync_invocations"] == 0


def test_unknown_access_key(emulator):
    failure = fc3_failure(lambda: invoke3(fc3_client(emulator.endpoint, "nobody", SK), "svc$echo"))
    assert failure[:3] == (403, "InvalidAccessKeyID", "invalid access key ID 'nobody'")


def test_security_token_is_checked(emulator):
    assert invoke3(fc3_client(emulator.endpoint, STS_AK, STS_SK, STS_TOKEN), "svc$echo", b"sts")[2] == b"sts"
    bad = fc3_client(emulator.endpoint, STS_AK, STS_SK, "other")
    assert fc3_failure(lambda: invoke3(bad, "svc$echo"))[:2] == (403, "InvalidSecurityToken")
    missing = fc3_client(emulator.endpoint, STS_AK, STS_SK)
    assert fc3_failure(lambda: invoke3(missing, "svc$echo"))[:2] == (403, "InvalidSecurityToken")


def test_a_stale_date_is_refused_through_the_sdk(client):
    failure = fc3_failure(lambda: invoke3(client, "svc$echo", headers={"x-acs-date": acs_date(-3600)}))
    assert failure[:2] == (403, "RequestTimeTooSkewed")


def test_a_raw_v3_request_is_accepted(emulator):
    answer = raw(emulator, "svc$echo", b"raw")
    assert (answer.status, answer.body) == (200, b"raw")


def test_a_replayed_nonce_is_refused(emulator):
    nonce = uuid.uuid4().hex
    assert raw(emulator, "svc$echo", b"once", nonce=nonce).status == 200
    again = raw(emulator, "svc$echo", b"once", nonce=nonce)
    assert (again.status, again.json["Code"]) == (403, "SignatureNonceUsed")
    assert emulator.stats()["functions"]["svc/echo"]["sync_invocations"] == 1


@pytest.mark.parametrize(
    "change",
    [
        {"sent_body": b"another body"},
        {"content_sha256": sha256_hex(b"claimed")},
        {"key": (AK, "wrong")},
        {"extra_headers": {"x-acs-version": "2016-08-15"}},
    ],
    ids=["other-body", "claimed-hash", "wrong-secret", "changed-header"],
)
def test_what_was_not_signed_is_signature_not_match(emulator, change):
    answer = raw(emulator, "svc$echo", b"signed body", **change)
    assert (answer.status, answer.json["Code"]) == (403, "SignatureNotMatch")
    assert set(answer.json) == {"Code", "Message", "RequestId"}
    assert answer.json["RequestId"] == answer.headers["x-fc-request-id"]


@pytest.mark.parametrize(("offset", "status"), [(-16 * 60, 403), (16 * 60, 403), (-14 * 60, 200)])
def test_x_acs_date_must_be_within_fifteen_minutes(emulator, offset, status):
    assert raw(emulator, "svc$echo", date=acs_date(offset)).status == status


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"extra_headers": {"x-acs-extra": "unsigned"}}, 400, "InvalidArgument"),
        ({"extra_headers": {"Authorization": "ACS3-HMAC-SHA256 Credential=" + AK}}, 400, "InvalidArgument"),
        ({"date": "Wed, 01 Jan 2025 00:00:00 GMT"}, 400, "InvalidArgument"),
        ({"extra_headers": {"Authorization": ""}}, 400, "MissingRequiredHeader"),
    ],
)
def test_malformed_v3_requests(emulator, change, status, code):
    answer = raw(emulator, "svc$echo", **change)
    assert (answer.status, answer.json["Code"]) == (status, code)


def test_only_post_invokes(emulator):
    path = PATH.format("svc%24echo")
    headers = {"host": emulator.endpoint.removeprefix("http://"), "x-acs-action": "X", "x-acs-version": "2023-03-30"}
    answer = send(emulator.endpoint, "GET", path, signed_headers("GET", path, {}, headers, b"", AK, SK))
    assert (answer.status, answer.json["Code"]) == (400, "PathNotSupported")


# ------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("throttle", 429, "ResourceThrottled"),
        ("internal_error", 500, "InternalServerError"),
        ("resource_exhausted", 503, "ResourceExhausted"),
    ],
)
def test_injected_faults_reach_the_sdk_once(client, emulator, kind, status, code):
    emulator.set_faults({"operations": {"InvokeFunction": {kind: 1.0}}})
    assert fc3_failure(lambda: invoke3(client, "svc$echo"))[:2] == (status, code)
    assert emulator.stats()["operations"]["InvokeFunction"]["requests"] == 1  # the SDK did not retry


def test_dropped_connection(client, emulator):
    emulator.set_faults({"operations": {"*": {"drop_connection": 1.0}}})
    with pytest.raises(UnretryableException):
        invoke3(client, "svc$echo")
    assert emulator.stats()["operations"]["InvokeFunction"]["requests"] == 1

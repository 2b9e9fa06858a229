"""Synchronous InvokeFunction through the real fc2 2.5.2 client against the FC emulator: results, the
context the function gets, function errors, signatures and credentials, lookups, limits, faults, admin."""

from __future__ import annotations

import base64
import email.utils
import http.client
import io
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import fc2
import pytest

from local.fc import Credentials, FcEmulator, FunctionSpec, signing

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fc"
AK, SK = "test-fc-ak", "test-fc-secret-7d1e"
STS_AK, STS_SK, STS_TOKEN = "STS.test-fc", "sts-secret-3f0a", "sts-token-9b2c"
ACCOUNT = "1999999999999999"


def fn(name: str, handler: str, **kwargs) -> FunctionSpec:
    return FunctionSpec("svc", name, handler, FIXTURES, **kwargs)


FUNCTIONS = [
    fn("echo", "handlers.echo"),
    fn("text", "handlers.echo_text"),
    fn(
        "ctx",
        "handlers.context_info",
        initializer="handlers.initialize",
        memory=256,
        timeout=7,
        environment={"TEST_FC_SETTING": "from-spec", "ALIBABA_CLOUD_ACCESS_KEY_ID": "not-allowed"},
        log_project="logs",
        log_store="store",
    ),
    fn("fails", "handlers.always_fails"),
    fn("slow", "handlers.slow", timeout=0.5),
    fn("crash", "handlers.crash"),
    fn("printing", "handlers.printing"),
    fn("broken-init", "broken_init.handler", initializer="broken_init.initialize"),
    fn("missing", "handlers.no_such_function"),
]


@pytest.fixture
def emulator() -> Iterator[FcEmulator]:
    emulator = FcEmulator(
        FUNCTIONS,
        credentials={AK: SK, STS_AK: (STS_SK, STS_TOKEN)},
        account_id=ACCOUNT,
        environment={"TEST_FC_STACK": "from-emulator"},
    )
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def client(emulator: FcEmulator) -> fc2.Client:
    return fc2.Client(endpoint=emulator.endpoint, accessKeyID=AK, accessKeySecret=SK)


def fc_error(call, *args, **kwargs) -> fc2.FcError:
    with pytest.raises(fc2.FcError) as info:
        call(*args, **kwargs)
    return info.value


def error_body(error: fc2.FcError) -> dict:
    return json.loads(error.message)


def admin(emulator: FcEmulator, path: str, method: str = "GET", body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(emulator.admin_url + path, data=data, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


# ---------------------------------------------------------------------------------------------- results


def test_sync_invocation_returns_the_handler_bytes(client):
    response = client.invoke_function("svc", "echo", payload=b'{"n": 1}\x00\xff')
    assert response.data == b'{"n": 1}\x00\xff'
    assert response.headers["x-fc-request-id"]
    assert client.invoke_function("svc", "text", payload="héllo".encode()).data == "echo: héllo".encode()


def test_a_file_like_payload(client):
    assert client.invoke_function("svc", "echo", payload=io.BytesIO(b"from a file")).data == b"from a file"


def test_a_chunked_body_is_read_and_a_malformed_one_refused(emulator):
    def post(body: bytes) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(emulator.endpoint.removeprefix("http://"), timeout=5)
        headers = {"Transfer-Encoding": "chunked", "Date": email.utils.formatdate(usegmt=True)}
        path = "/2016-08-15/services/svc/functions/echo/invocations"
        text = signing.string_to_sign("POST", headers.items(), path)
        headers["Authorization"] = f"FC {AK}:{signing.signature(SK, text)}"
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()

    assert post(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n") == (200, b"hello world")
    status, body = post(b"not a chunk\r\n")  # fc2 sends a generator payload unframed despite TE: chunked
    assert (status, json.loads(body)["ErrorCode"]) == (400, "InvalidArgument")


def test_the_function_gets_an_fc_shaped_context_and_environment(client, emulator):
    first = json.loads(client.invoke_function("svc", "ctx", payload=b"{}").data)
    second = json.loads(client.invoke_function("svc", "ctx", payload=b"{}", qualifier="LATEST").data)
    assert first["event_type"] == "bytes"
    assert first["credentials"] == {"access_key_id": AK, "access_key_secret": SK, "security_token": ""}
    assert first["function"] == {"name": "ctx", "handler": "handlers.context_info", "memory": 256, "timeout": 7}
    assert first["service"] == {
        "name": "svc",
        "log_project": "logs",
        "log_store": "store",
        "qualifier": "LATEST",
        "version_id": "",
    }
    assert (first["region"], first["account_id"], first["tracing"]) == ("cn-hangzhou", ACCOUNT, None)
    assert first["request_id"] != second["request_id"]
    env = first["env"]
    assert env["FC_FUNCTION_NAME"] == "ctx" and env["FC_SERVICE_NAME"] == "svc"
    assert env["FC_ACCOUNT_ID"] == ACCOUNT and env["FC_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["FC_FUNC_CODE_PATH"] == str(FIXTURES) and first["cwd"] == str(FIXTURES)
    assert env["ALIBABA_CLOUD_ACCESS_KEY_ID"] == AK  # reserved variables win over the spec's
    assert env["TEST_FC_SETTING"] == "from-spec" and env["TEST_FC_STACK"] == "from-emulator"
    # one warm instance: the initializer ran once, before the first call
    assert second["pid"] == first["pid"]
    assert len(second["initialized"]) == 1 and second["initialized"][0] not in (first["request_id"],)


def test_function_credentials_are_configurable():
    creds = Credentials("fn-ak", "fn-sk", "fn-token")
    with FcEmulator(FUNCTIONS, credentials={AK: SK}, function_credentials=creds) as emulator:
        client = fc2.Client(endpoint=emulator.endpoint, accessKeyID=AK, accessKeySecret=SK)
        info = json.loads(client.invoke_function("svc", "ctx", payload=b"").data)
    assert info["credentials"] == {"access_key_id": "fn-ak", "access_key_secret": "fn-sk", "security_token": "fn-token"}
    assert info["env"]["ALIBABA_CLOUD_SECURITY_TOKEN"] == "fn-token"


def test_log_tail_on_request(client):
    response = client.invoke_function("svc", "printing", headers={"x-fc-log-type": "Tail"})
    assert response.data == b"printed"
    assert "hello from the function" in base64.b64decode(response.headers["x-fc-log-result"]).decode()


# ---------------------------------------------------------------------------------------- function errors


def test_a_handler_exception_is_an_unhandled_invocation_error(client):
    error = fc_error(client.invoke_function, "svc", "fails", payload=b"boom")
    assert error.status_code == 200 and error.err_code == ""
    body = error_body(error)
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "always fails: boom"
    assert body["stackTrace"][-1][0].endswith('handlers.py"')
    assert all("local/fc" not in row[0] for row in body["stackTrace"])
    assert error.request_id


def test_a_timeout_kills_the_instance_and_the_next_call_gets_a_new_one(client, emulator):
    error = fc_error(client.invoke_function, "svc", "slow", payload=b'{"seconds": 5}')
    assert error.status_code == 200
    assert error_body(error)["errorMessage"] == "Function timed out after 0.5 seconds"
    assert client.invoke_function("svc", "slow", payload=b'{"seconds": 0}').data == b"finished"
    records = emulator.invocations(function="svc/slow")
    assert [r["status"] for r in records] == ["failed", "succeeded"]
    assert records[0]["instance_id"] != records[1]["instance_id"]


def test_a_crashing_function_does_not_take_the_emulator_down(client):
    error = fc_error(client.invoke_function, "svc", "crash")
    assert error_body(error)["errorMessage"].startswith("Process exited unexpectedly before completing request")
    assert client.invoke_function("svc", "echo", payload=b"still here").data == b"still here"


def test_a_failing_initializer_fails_the_call_and_is_retried_on_a_new_instance(client, emulator):
    for _ in range(2):
        error = fc_error(client.invoke_function, "svc", "broken-init")
        assert error_body(error)["errorMessage"] == "initializer failed on purpose"
    assert emulator.stats()["functions"]["svc/broken-init"]["instances"] == 0


def test_a_missing_handler_is_reported(client):
    error = fc_error(client.invoke_function, "svc", "missing")
    assert error_body(error)["errorMessage"] == "Handler 'no_such_function' missing on module 'handlers'"


# ------------------------------------------------------------------------------------ auth and lookups


def test_wrong_secret_is_signature_not_match(emulator):
    client = fc2.Client(endpoint=emulator.endpoint, accessKeyID=AK, accessKeySecret="wrong")
    error = fc_error(client.invoke_function, "svc", "echo", payload=b"x")
    assert (error.status_code, error.err_code) == (403, "SignatureNotMatch")
    assert emulator.stats()["functions"]["svc/echo"]["sync_invocations"] == 0


def test_unknown_access_key(emulator):
    client = fc2.Client(endpoint=emulator.endpoint, accessKeyID="nobody", accessKeySecret=SK)
    error = fc_error(client.invoke_function, "svc", "echo")
    assert (error.status_code, error.err_code) == (403, "InvalidAccessKeyID")
    assert error_body(error)["ErrorMessage"] == "invalid access key ID 'nobody'"


def test_security_token_is_checked(emulator):
    good = fc2.Client(endpoint=emulator.endpoint, accessKeyID=STS_AK, accessKeySecret=STS_SK, securityToken=STS_TOKEN)
    assert good.invoke_function("svc", "echo", payload=b"sts").data == b"sts"
    bad = fc2.Client(endpoint=emulator.endpoint, accessKeyID=STS_AK, accessKeySecret=STS_SK, securityToken="other")
    assert fc_error(bad.invoke_function, "svc", "echo").status_code == 403
    missing = fc2.Client(endpoint=emulator.endpoint, accessKeyID=STS_AK, accessKeySecret=STS_SK)
    assert fc_error(missing.invoke_function, "svc", "echo").err_code == "InvalidSecurityToken"


def test_a_stale_date_is_refused(client):
    stale = email.utils.formatdate(time.time() - 3600, usegmt=True)
    error = fc_error(client.invoke_function, "svc", "echo", headers={"date": stale})
    assert (error.status_code, error.err_code) == (403, "RequestTimeTooSkewed")


@pytest.mark.parametrize(
    ("service", "function", "qualifier", "code"),
    [
        ("svc", "nope", None, "FunctionNotFound"),
        ("nope", "echo", None, "ServiceNotFound"),
        ("svc", "echo", "prod", "AliasNotFound"),
        ("svc", "echo", "3", "VersionNotFound"),
    ],
)
def test_unknown_names_are_404(client, service, function, qualifier, code):
    error = fc_error(client.invoke_function, service, function, qualifier=qualifier)
    assert (error.status_code, error.err_code) == (404, code)


def test_async_payload_over_128_kb_is_refused(client):
    error = fc_error(
        client.invoke_function,
        "svc",
        "echo",
        payload=b"x" * (128 * 1024 + 1),
        headers={"x-fc-invocation-type": "Async"},
    )
    assert (error.status_code, error.err_code) == (400, "EntityTooLarge")
    big = b"x" * (128 * 1024 + 1)
    assert client.invoke_function("svc", "echo", payload=big).data == big  # sync allows more


def test_bad_async_delay_is_invalid_argument(client):
    headers = {"x-fc-invocation-type": "Async", "x-fc-async-delay": "3600"}
    error = fc_error(client.invoke_function, "svc", "echo", headers=headers)
    assert (error.status_code, error.err_code) == (400, "InvalidArgument")


# ------------------------------------------------------------------------------------ faults and admin


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("throttle", 429, "ResourceThrottled"),
        ("internal_error", 500, "InternalServerError"),
        ("resource_exhausted", 503, "ResourceExhausted"),
    ],
)
def test_injected_faults(client, emulator, kind, status, code):
    emulator.set_faults({"operations": {"InvokeFunction": {kind: 1.0}}})
    error = fc_error(client.invoke_function, "svc", "echo")
    assert (error.status_code, error.err_code) == (status, code)
    assert emulator.stats()["operations"]["InvokeFunction"]["faults"] == {kind: 1}


def test_dropped_connection(emulator, client):
    import requests

    emulator.set_faults({"operations": {"*": {"drop_connection": 1.0}}})
    with pytest.raises(requests.exceptions.ConnectionError):
        client.invoke_function("svc", "echo")


def test_admin_api(client, emulator):
    assert admin(emulator, "/faults", "PUT", {"operations": {"*": {"throttle": 0.5}}, "seed": 1}) == {
        "operations": {"*": {"throttle": 0.5}},
        "seed": 1,
    }
    assert admin(emulator, "/faults")["operations"]["*"]["throttle"] == 0.5
    assert admin(emulator, "/faults", "DELETE") == {}
    with pytest.raises(urllib.error.HTTPError) as info:
        admin(emulator, "/faults", "PUT", {"operations": {"Nope": {}}})
    assert info.value.code == 400
    rid = client.invoke_function("svc", "echo", payload=b"a").headers["x-fc-request-id"]
    stats = admin(emulator, "/stats")
    assert stats["functions"]["svc/echo"]["sync_invocations"] == 1
    assert stats["functions"]["svc/echo"]["instances"] == 1
    assert stats["operations"]["InvokeFunction"]["responses"] == {"200": 1}
    (record,) = admin(emulator, f"/invocations?request_id={rid}")
    assert record["function"] == "svc/echo" and record["type"] == "Sync" and record["status"] == "succeeded"

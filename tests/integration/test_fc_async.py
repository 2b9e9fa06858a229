"""Asynchronous InvokeFunction through the real fc2 client (API 2016-08-15) and through the FC 3.0 SDK
alibabacloud_fc20230330 (API 2023-03-30, the function named `<service>$<function>`): 202 and background runs, retries
per the function's async settings, event age expiry, x-fc-async-delay, and the on-failure destination message
received from the MNS emulator with aliyun-mns-sdk. Both APIs share the functions, the queue and the destination."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from emulator_credentials import OWNER_ID, OWNER_SECRET
from fc3_support import FC2, FC3, fc_client, invoke3
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import QueueMeta

from local.fc import FcEmulator, FunctionSpec
from local.mns import MnsEmulator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fc"
AK, SK = "test-fc-ak", "test-fc-secret-7d1e"
ACCOUNT, REGION = "1888888888888888", "cn-shanghai"
DLQ = "fc-test-dlq"
ASYNC = {"x-fc-invocation-type": "Async"}


def fn(name: str, handler: str, **kwargs) -> FunctionSpec:
    return FunctionSpec("svc", name, handler, FIXTURES, on_failure=f"acs:mns:::/queues/{DLQ}/messages", **kwargs)


FUNCTIONS = [
    fn("echo", "handlers.echo"),
    fn("fan-out", "handlers.fan_out"),
    fn("flaky", "handlers.flaky", max_async_retry_attempts=3),
    fn("fails", "handlers.always_fails", max_async_retry_attempts=2),
    fn("no-retry", "handlers.always_fails", max_async_retry_attempts=0),
    fn("short-lived", "handlers.always_fails", max_async_retry_attempts=8, max_async_event_age_seconds=0.5),
    FunctionSpec("svc", "no-destination", "handlers.always_fails", FIXTURES, max_async_retry_attempts=0),
]


@pytest.fixture
def dlq(mns_emulator: MnsEmulator):
    queue = Account(mns_emulator.endpoint, OWNER_ID, OWNER_SECRET).get_queue(DLQ)
    queue.create(QueueMeta())
    queue.set_encoding(False)  # FC writes the JSON text itself
    return queue


@pytest.fixture
def emulator(mns_emulator: MnsEmulator, dlq) -> Iterator[FcEmulator]:
    emulator = FcEmulator(
        FUNCTIONS,
        credentials={AK: SK},
        account_id=ACCOUNT,
        region=REGION,
        mns_endpoint=mns_emulator.endpoint,
        mns_credentials=mns_emulator.owner,
        retry_backoff_seconds=0.05,
        retry_backoff_max_seconds=0.2,
    )
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(params=[FC2, FC3])
def kind(request) -> str:
    return request.param


@pytest.fixture
def client(emulator: FcEmulator, kind: str):
    return fc_client(kind, emulator.endpoint, AK, SK)


def expected_arn(kind: str, name: str) -> str:
    if kind == FC3:  # FC 3.0's form, with the name as it was invoked
        return f"acs:fc:{REGION}:{ACCOUNT}:functions/svc${name}"
    return f"acs:fc:{REGION}:{ACCOUNT}:services/svc.LATEST/functions/{name}"


def destination_messages(queue) -> list[dict]:
    messages = []
    while True:
        try:
            message = queue.receive_message(wait_seconds=0)
        except MNSServerException as exc:
            assert exc.type == "MessageNotExist"
            return messages
        messages.append(json.loads(message.message_body))
        queue.delete_message(message.receipt_handle)


def counters(emulator: FcEmulator, name: str) -> dict:
    return emulator.stats()["functions"][f"svc/{name}"]


def test_async_invocation_is_accepted_with_202_and_runs_in_the_background(client, emulator, dlq, kind):
    response = client.invoke_function("svc", "echo", payload=b'{"id": 1}', headers=ASYNC)
    assert response.data == b""
    request_id = response.headers["x-fc-request-id"]
    assert emulator.wait_idle(5)
    (record,) = emulator.invocations(request_id=request_id)
    assert (record["type"], record["status"], record["attempt"]) == ("Async", "succeeded", 1)
    assert record["api"] == ("2023-03-30" if kind == FC3 else "2016-08-15")
    stats = counters(emulator, "echo")
    assert (stats["async_accepted"], stats["attempts"], stats["succeeded"], stats["retries"]) == (1, 1, 1, 0)
    assert (stats["queue_depth"], stats["in_flight"]) == (0, 0)
    assert destination_messages(dlq) == []


def test_failed_attempts_are_retried_until_one_succeeds(client, emulator, dlq, tmp_path):
    event = json.dumps({"state": str(tmp_path / "flaky.count"), "failures": 2}).encode()
    request_id = client.invoke_function("svc", "flaky", payload=event, headers=ASYNC).headers["x-fc-request-id"]
    assert emulator.wait_idle(10)
    records = emulator.invocations(request_id=request_id)
    assert [(r["attempt"], r["status"]) for r in records] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert records[0]["error"]["errorMessage"] == "attempt 1 fails on purpose"
    stats = counters(emulator, "flaky")
    assert (stats["attempts"], stats["failed_attempts"], stats["retries"], stats["succeeded"]) == (3, 2, 2, 1)
    assert stats["destination_messages"] == 0
    assert destination_messages(dlq) == []


def test_final_failure_sends_the_destination_message_to_mns(client, emulator, dlq, kind):
    response = client.invoke_function("svc", "fails", payload=b'{"order": "A1"}', headers=ASYNC)
    request_id = response.headers["x-fc-request-id"]
    assert emulator.wait_idle(10)
    (message,) = destination_messages(dlq)
    assert set(message) == {"timestamp", "requestContext", "requestPayload", "responseContext", "responsePayload"}
    assert isinstance(message["timestamp"], int) and abs(message["timestamp"] / 1000 - time.time()) < 30
    assert message["requestContext"] == {
        "requestId": request_id,
        "functionArn": expected_arn(kind, "fails"),
        "condition": "UnhandledInvocationError",
        "approximateInvokeCount": 3,  # the first attempt and max_async_retry_attempts=2 retries
    }
    assert message["requestPayload"] == '{"order": "A1"}'
    assert message["responseContext"] == {"statusCode": 200, "functionError": "UnhandledInvocationError"}
    response_payload = json.loads(message["responsePayload"])
    assert response_payload["errorMessage"] == 'always fails: {"order": "A1"}'
    assert response_payload["errorType"] == "ValueError"
    stats = counters(emulator, "fails")
    assert (stats["attempts"], stats["retries"], stats["destination_messages"]) == (3, 2, 1)


def test_zero_retries_means_one_attempt(client, emulator, dlq):
    client.invoke_function("svc", "no-retry", payload=b"once", headers=ASYNC)
    assert emulator.wait_idle(5)
    (message,) = destination_messages(dlq)
    assert message["requestContext"]["approximateInvokeCount"] == 1
    assert counters(emulator, "no-retry")["retries"] == 0


def test_retries_stop_when_the_event_is_too_old(client, emulator, dlq):
    client.invoke_function("svc", "short-lived", payload=b"old", headers=ASYNC)
    assert emulator.wait_idle(5)
    (message,) = destination_messages(dlq)
    assert message["requestContext"]["condition"] == "MaxAsyncEventAgeExceeded"
    attempts = message["requestContext"]["approximateInvokeCount"]
    assert 1 <= attempts < 9  # fewer than the 1 + 8 that max_async_retry_attempts would allow
    stats = counters(emulator, "short-lived")
    assert (stats["expired"], stats["attempts"], stats["destination_messages"]) == (1, attempts, 1)


def test_a_delay_longer_than_the_event_age_expires_it_unrun(client, emulator, dlq):
    headers = {**ASYNC, "x-fc-async-delay": "0.8"}
    client.invoke_function("svc", "short-lived", payload=b"late", headers=headers)
    assert emulator.stats()["functions"]["svc/short-lived"]["queue_depth"] == 1
    assert emulator.wait_idle(5)
    (message,) = destination_messages(dlq)
    assert message["requestContext"]["condition"] == "MaxAsyncEventAgeExceeded"
    assert message["requestContext"]["approximateInvokeCount"] == 0
    assert message["responseContext"] == {"statusCode": 0, "functionError": ""}
    assert counters(emulator, "short-lived")["attempts"] == 0


def test_async_delay_postpones_the_run(client, emulator):
    accepted = time.time()
    headers = {**ASYNC, "x-fc-async-delay": "0.4"}
    request_id = client.invoke_function("svc", "echo", payload=b"later", headers=headers).headers["x-fc-request-id"]
    assert emulator.wait_idle(5)
    (record,) = emulator.invocations(request_id=request_id)
    assert record["started_at"] - accepted >= 0.35


def test_without_an_mns_endpoint_the_destination_is_counted_as_an_error(kind):
    with FcEmulator(FUNCTIONS, credentials={AK: SK}) as emulator:
        client = fc_client(kind, emulator.endpoint, AK, SK)
        client.invoke_function("svc", "no-retry", payload=b"x", headers=ASYNC)
        client.invoke_function("svc", "no-destination", payload=b"x", headers=ASYNC)
        assert emulator.wait_idle(5)
        assert counters(emulator, "no-retry")["destination_errors"] == 1
        assert counters(emulator, "no-destination")["destination_errors"] == 0


def test_many_async_invocations_all_complete(client, emulator):
    ids = {
        client.invoke_function("svc", "echo", payload=str(i).encode(), headers=ASYNC).headers["x-fc-request-id"]
        for i in range(20)
    }
    assert len(ids) == 20
    assert emulator.wait_idle(10)
    assert counters(emulator, "echo")["succeeded"] == 20


def test_a_function_fans_out_with_the_context_credentials(client, emulator):
    emulator.environment["FC_ENDPOINT"] = emulator.endpoint  # what the local stack hands its functions
    response = client.invoke_function("svc", "fan-out", payload=json.dumps({"items": [1, 2, 3]}).encode())
    request_ids = json.loads(response.data)["request_ids"]
    assert emulator.wait_idle(5)
    for request_id in request_ids:
        (record,) = emulator.invocations(request_id=request_id)
        assert (record["function"], record["status"]) == ("svc/echo", "succeeded")


def test_both_apis_share_the_queue_and_the_instances(emulator, dlq):
    fc2_client, fc3_client = fc_client(FC2, emulator.endpoint, AK, SK), fc_client(FC3, emulator.endpoint, AK, SK)

    fc2_client.invoke_function("svc", "echo", payload=b"two", headers=ASYNC)
    assert emulator.wait_idle(5)
    fc3_client.invoke_function("svc", "echo", payload=b"three", headers=ASYNC)
    assert emulator.wait_idle(5)
    status, _, _ = invoke3(fc3_client.client, "echo", b"plain name", invocation_type="Async")

    assert status == 202
    assert emulator.wait_idle(5)
    records = emulator.invocations(function="svc/echo")
    assert sorted(r["api"] for r in records) == ["2016-08-15", "2023-03-30", "2023-03-30"]
    assert len({r["instance_id"] for r in records}) == 1  # one warm instance served all three
    assert counters(emulator, "echo")["succeeded"] == 3


def test_an_fc3_async_task_id_is_accepted_once(emulator, dlq):
    client = fc_client(FC3, emulator.endpoint, AK, SK).client

    assert invoke3(client, "svc$echo", b"task", invocation_type="Async", task_id="order-A1")[0] == 202
    with pytest.raises(Exception) as info:
        invoke3(client, "svc$echo", b"task again", invocation_type="Async", task_id="order-A1")
    assert (info.value.status_code, info.value.code) == (409, "AsyncTaskAlreadyExists")
    assert (
        invoke3(client, "svc$fails", b"same id, other function", invocation_type="Async", task_id="order-A1")[0] == 202
    )
    assert emulator.wait_idle(10)
    assert counters(emulator, "echo")["async_accepted"] == 1

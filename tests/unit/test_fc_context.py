"""The FC-shaped context, the timer event, and how return values and exceptions become response bodies."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from local.fc import Credentials, FcContext, FunctionSpec, build_context
from local.fc.loader import encode_result, error_payload
from local.fc.runner import timer_event


def spec() -> FunctionSpec:
    return FunctionSpec(
        "svc", "fn", "index.handler", Path("."), memory=1024, timeout=30, log_project="p", log_store="s"
    )


def test_context_has_the_python310_runtime_shape():
    context = build_context(spec(), Credentials("ak", "sk", "tok"), request_id="r-1", account_id="42")
    assert context.request_id == "r-1"
    assert (context.credentials.access_key_id, context.credentials.access_key_secret) == ("ak", "sk")
    assert context.credentials.security_token == "tok"
    assert (context.function.name, context.function.handler) == ("fn", "index.handler")
    assert (context.function.memory, context.function.timeout) == (1024, 30)
    assert (context.service.name, context.service.log_project, context.service.log_store) == ("svc", "p", "s")
    assert (context.service.qualifier, context.service.version_id) == ("LATEST", "")
    assert (context.region, context.account_id, context.tracing) == ("cn-hangzhou", "42", None)


def test_context_round_trips_through_plain_data():
    context = build_context(spec(), Credentials("ak", "sk"), region="cn-shanghai")
    assert FcContext.from_dict(json.loads(json.dumps(context.to_dict()))) == context


def test_secrets_stay_out_of_repr():
    text = repr(build_context(spec(), Credentials("ak", "very-secret", "very-token")))
    assert "very-secret" not in text and "very-token" not in text


def test_timer_event():
    moment = datetime(2023, 12, 26, 7, 49, 0, 123, tzinfo=timezone.utc)
    event = json.loads(timer_event("timer-trigger", '{"job":"drain"}', moment))
    assert event == {
        "triggerTime": "2023-12-26T07:49:00Z",
        "triggerName": "timer-trigger",
        "payload": '{"job":"drain"}',
    }


def test_results_become_bytes():
    assert encode_result(b"\x00raw") == b"\x00raw"
    assert encode_result("héllo") == "héllo".encode()
    assert encode_result(None) == b""
    assert json.loads(encode_result({"a": [1, 2]})) == {"a": [1, 2]}


def test_error_payload_has_the_runtime_fields():
    def fail():
        raise KeyError("missing")

    try:
        fail()
    except KeyError as exc:
        payload = error_payload(exc)
    assert payload["errorType"] == "KeyError"
    assert payload["errorMessage"] == "'missing'"
    assert payload["stackTrace"][-1][2:] == ["in fail", 'raise KeyError("missing")']

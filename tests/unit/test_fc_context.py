"""The FC-shaped context, the timer event, and how return values and exceptions become response bodies; and that
the product's adapter (shared/adapters/fc.py) reads what each generation hands a function of our templates: the
emulator's FC 2.0 context, FC 3.0's python3.10 context (no service) for the functions of template.fc3.yml, and the
timer events of both templates' triggers."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from local.build import render_fc3_template
from local.fc import Credentials, FcContext, FunctionSpec, build_context
from local.fc.functions import load_template
from local.fc.loader import encode_result, error_payload
from local.fc.runner import timer_event
from shared.adapters.fc import decode_event, fc_context

REPO = Path(__file__).resolve().parents[2]


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


# ---- what the product's adapter reads from each generation


def test_the_emulators_fc2_context_is_what_the_product_adapter_reads():
    context = build_context(spec(), Credentials("ak", "sk", "tok"), request_id="r-1", account_id="42")
    ctx = fc_context(context, environ={})
    assert (ctx.service_name, ctx.function_name, ctx.memory_limit_in_mb, ctx.timeout_seconds) == ("svc", "fn", 1024, 30)
    assert ctx.invoked_function_arn == "acs:fc:cn-hangzhou:42:services/svc/functions/fn"
    assert (ctx.log_project, ctx.log_store, ctx.qualifier) == ("p", "s", "LATEST")
    assert ctx.credentials == ("ak", "sk", "tok")


def fc3_functions() -> dict[str, dict]:
    document = render_fc3_template(REPO / "template.fc3.yml", {"FC_ACCOUNT_ID": "1234567890123456"})
    return {entry["props"]["functionName"]: entry["props"] for entry in document["resources"].values()}


@pytest.mark.parametrize("name", ["flow-receipts-drainer", "flow-receipts-processor", "flow-receipts-sweep"])
def test_an_fc3_python310_context_for_each_function_of_template_fc3(name):
    """FC 3.0, python3.10: credentials and the function, no service (role, logs and VPC are the function's own);
    FC sets FC_FUNCTION_NAME and no FC_SERVICE_NAME. The sweep invokes itself by this name."""
    props = fc3_functions()[name]
    context = SimpleNamespace(
        request_id="r-3",
        credentials=SimpleNamespace(access_key_id="STS.id", access_key_secret="secret", security_token="tok"),
        function=SimpleNamespace(
            name=name, handler=props["handler"], memory=props["memorySize"], timeout=props["timeout"]
        ),
        region="cn-hangzhou",
        account_id="1234567890123456",
    )
    environ = {"FC_FUNCTION_NAME": name, "FC_REGION": "cn-hangzhou", "FC_ACCOUNT_ID": "1234567890123456"}
    ctx = fc_context(context, started=100.0, environ=environ)
    assert ctx.service_name is None and ctx.function_name == name
    assert ctx.invoked_function_arn == f"acs:fc:cn-hangzhou:1234567890123456:functions/{name}"
    assert (ctx.memory_limit_in_mb, ctx.deadline) == (props["memorySize"], 100.0 + props["timeout"])
    assert ctx.credentials == ("STS.id", "secret", "tok")


def timer_triggers() -> list[tuple[str, str, str]]:
    """(template, trigger name, payload) of every timer trigger of both templates."""
    found = [
        ("template.yml", trigger.name, trigger.payload)
        for function in load_template(REPO / "template.yml", environ={})
        for trigger in function.triggers
    ]
    for props in fc3_functions().values():
        for trigger in props.get("triggers") or []:
            if trigger["triggerType"] == "timer":
                found.append(("template.fc3.yml", trigger["triggerName"], trigger["triggerConfig"]["payload"]))
    return found


@pytest.mark.parametrize(("template", "name", "payload"), timer_triggers())
def test_the_timer_events_of_both_templates_decode_to_their_job(template, name, payload):
    """The event of each timer (the payload a string, as FC 2.0 and FC 3.0 deliver it; and as an object, as a tool
    may build it) decodes to the job the handler reads."""
    job = json.loads(payload)["job"]
    assert job in ("drain", "sweep"), template
    moment = datetime(2023, 12, 26, 7, 49, tzinfo=timezone.utc)
    for event in (
        timer_event(name, payload, moment),
        json.dumps({"triggerTime": "2023-12-26T07:49:00Z", "triggerName": name, "payload": {"job": job}}).encode(),
    ):
        decoded = decode_event(event)
        assert (decoded["triggerName"], decoded["payload"]) == (name, {"job": job})
    assert len({t[2] for t in timer_triggers()}) == 2  # the two templates' timers carry the same two payloads

"""FC glue: the context adapter (FC 2.0 python3.10; FC 3.0 python3.10 and python3.12), credentials, and event
decoding (the timer event as FC 2.0 and FC 3.0 document it)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model

from shared.adapters.fc import Credentials, FcInvocation, InvalidEvent, credentials_from, decode_event, fc_context
from shared.errors import ConfigError, PoisonMessage

ENV_CREDENTIALS = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-env-id",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret-value",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "CAIS-env-token",
}


RECEIPT = b'{"out_id": "o-1", "result": "3"}'


def context_310(timeout: int = 60) -> SimpleNamespace:
    """What the python3.10 runtime passes (reference/fc.md §4.2)."""
    return SimpleNamespace(
        request_id="req-310",
        credentials=SimpleNamespace(
            access_key_id="STS.ctx-id", access_key_secret="ctx-secret-value", security_token="CAIS-ctx-token"
        ),
        function=SimpleNamespace(name="drainer", handler="index.handler", memory=512, timeout=timeout),
        service=SimpleNamespace(
            name="flow-receipts", log_project="p", log_store="s", qualifier="LATEST", version_id=""
        ),
        region="cn-hangzhou",
        account_id="1234567890123456",
        tracing=SimpleNamespace(span_context=None, jaeger_endpoint=None, span_baggages={}),
    )


def context_312() -> SimpleNamespace:
    """python3.12: no credentials, no service; log_project / log_store at the top level."""
    return SimpleNamespace(
        request_id="req-312",
        function=SimpleNamespace(
            name="processor", handler="index.handler", memory=256, timeout=30, version_id="", qualifier="LATEST"
        ),
        region="cn-shanghai",
        account_id="6543210987654321",
        log_project="p",
        log_store="s",
        logger=None,
    )


def context_fc3_310(service: object = None) -> SimpleNamespace:
    """FC 3.0, python3.10: credentials, no service (role, log config and VPC are the function's)."""
    context = context_310()
    context.function = SimpleNamespace(name="flow-receipts-drainer", handler="index.handler", memory=512, timeout=60)
    if service is None:
        del context.service
    else:
        context.service = service
    return context


FC3_ENVIRON = {  # what FC 3.0 sets in an instance (reference/fc.md §4.3): no FC_SERVICE_NAME
    "FC_FUNCTION_NAME": "flow-receipts-drainer",
    "FC_FUNCTION_HANDLER": "index.handler",
    "FC_FUNCTION_MEMORY_SIZE": "512",
    "FC_REGION": "cn-hangzhou",
    "FC_ACCOUNT_ID": "1234567890123456",
}


@pytest.mark.parametrize(
    "service",
    [None, SimpleNamespace(name="", log_project="fn-logs", log_store="fn-store", qualifier="LATEST", version_id="")],
    ids=["no-service", "empty-service"],
)
def test_fc3_python310_context_has_no_service_and_an_fc3_arn(service):
    ctx = fc_context(context_fc3_310(service), environ=FC3_ENVIRON)
    assert ctx.service_name is None
    assert ctx.function_name == "flow-receipts-drainer"
    assert ctx.invoked_function_arn == "acs:fc:cn-hangzhou:1234567890123456:functions/flow-receipts-drainer"
    assert ctx.credentials == ("STS.ctx-id", "ctx-secret-value", "CAIS-ctx-token")  # the function's role
    assert build_lambda_context_model(ctx).function_arn == ctx.invoked_function_arn
    if service is not None:
        assert (ctx.log_project, ctx.log_store, ctx.qualifier) == ("fn-logs", "fn-store", "LATEST")


def test_fc3_python312_context_reads_its_top_level_log_config_and_qualifier():
    ctx = fc_context(context_312(), environ={})
    assert (ctx.log_project, ctx.log_store, ctx.qualifier) == ("p", "s", "LATEST")
    assert ctx.invoked_function_arn == "acs:fc:cn-shanghai:6543210987654321:functions/processor"


def test_a_function_attribute_the_context_lacks_comes_from_fc_variables():
    context = context_312()
    context.function = SimpleNamespace(name="", handler="", memory=0, timeout=None)
    ctx = fc_context(context, environ={**FC3_ENVIRON, "FC_TIMEOUT": "45"})
    assert (ctx.function_name, ctx.handler, ctx.memory_limit_in_mb, ctx.timeout_seconds) == (
        "flow-receipts-drainer",
        "index.handler",
        512,
        45.0,
    )


def test_a_migrated_function_keeps_its_fc3_name():
    context = context_fc3_310()
    context.function.name = "flow-receipts$processor"
    ctx = fc_context(context, environ={})
    assert ctx.invoked_function_arn == "acs:fc:cn-hangzhou:1234567890123456:functions/flow-receipts$processor"


def test_python310_context_gives_the_attributes_powertools_reads():
    ctx = fc_context(context_310(), environ={})
    assert ctx.function_name == "drainer"
    assert ctx.memory_limit_in_mb == 512
    assert ctx.aws_request_id == ctx.request_id == "req-310"
    assert ctx.invoked_function_arn == "acs:fc:cn-hangzhou:1234567890123456:services/flow-receipts/functions/drainer"
    assert (ctx.region, ctx.account_id, ctx.service_name, ctx.handler) == (
        "cn-hangzhou",
        "1234567890123456",
        "flow-receipts",
        "index.handler",
    )
    model = build_lambda_context_model(ctx)
    assert model.function_arn == ctx.invoked_function_arn and model.function_memory_size == 512


def test_python312_context_has_no_service_and_no_credentials():
    ctx = fc_context(context_312(), environ={})
    assert ctx.function_name == "processor"
    assert ctx.invoked_function_arn == "acs:fc:cn-shanghai:6543210987654321:functions/processor"
    assert ctx.credentials is None and ctx.service_name is None


def test_python312_takes_the_service_from_the_environment():
    ctx = fc_context(context_312(), environ={"FC_SERVICE_NAME": "flow-receipts"})
    assert ctx.invoked_function_arn == "acs:fc:cn-shanghai:6543210987654321:services/flow-receipts/functions/processor"


def test_deadline_is_the_start_plus_the_function_timeout():
    started = time.monotonic()
    ctx = fc_context(context_310(timeout=45), started=started)
    assert ctx.deadline == started + 45
    assert 44_000 < ctx.get_remaining_time_in_millis() <= 45_000


def test_remaining_time_decreases_and_never_goes_negative():
    ctx = fc_context(context_310(timeout=2))
    first = ctx.get_remaining_time_in_millis()
    time.sleep(0.05)
    second = ctx.get_remaining_time_in_millis()
    assert 0 < second < first <= 2000
    assert ctx.remaining_seconds(margin=1) < ctx.remaining_seconds()
    late = fc_context(context_310(timeout=2), started=time.monotonic() - 10)
    assert late.get_remaining_time_in_millis() == 0 and late.remaining_seconds() == 0.0


def test_something_else_than_an_fc_context_is_a_clear_error():
    with pytest.raises(TypeError, match=r"not an FC context \(needs function.name and function.timeout\)"):
        fc_context(SimpleNamespace(request_id="r"))


def test_repr_shows_no_credentials():
    ctx = fc_context(context_310())
    assert "ctx-secret-value" not in repr(ctx) and "CAIS-ctx-token" not in repr(ctx)
    assert "req-310" in repr(ctx)


def test_credentials_come_from_the_python310_context_first():
    creds = credentials_from(context_310(), ENV_CREDENTIALS)
    assert creds == ("STS.ctx-id", "ctx-secret-value", "CAIS-ctx-token")
    assert fc_context(context_310()).credentials == creds


def test_credentials_come_from_the_environment_on_python312():
    creds = credentials_from(context_312(), ENV_CREDENTIALS)
    assert creds == Credentials("LTAI-env-id", "env-secret-value", "CAIS-env-token")
    access_key_id, access_key_secret, security_token = creds
    assert (access_key_id, access_key_secret, security_token) == ("LTAI-env-id", "env-secret-value", "CAIS-env-token")


def test_long_term_keys_have_no_token():
    env = {**ENV_CREDENTIALS, "ALIBABA_CLOUD_SECURITY_TOKEN": ""}
    assert credentials_from(None, env).security_token is None


def test_credentials_default_to_the_process_environment(monkeypatch: pytest.MonkeyPatch):
    for name, value in ENV_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    assert credentials_from(context_312()).access_key_id == "LTAI-env-id"


def test_no_credentials_anywhere_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^ALIBABA_CLOUD_ACCESS_KEY_ID: no credentials"):
        credentials_from(context_312(), {})


def test_credentials_repr_hides_the_secret_and_token():
    creds = credentials_from(context_310(), {})
    assert "ctx-secret-value" not in repr(creds) and "CAIS-ctx-token" not in str(creds)
    assert "STS.ctx-id" in repr(creds)


@pytest.mark.parametrize(
    "event",
    [
        b'{"out_id": "o-1", "result": "3"}',
        bytearray(b'{"out_id": "o-1", "result": "3"}'),
        '{"out_id": "o-1", "result": "3"}',
    ],
)
def test_json_events_decode_to_a_dict(event: bytes | bytearray | str):
    assert decode_event(event) == {"out_id": "o-1", "result": "3"}


def test_a_dict_event_is_returned_as_is():
    assert decode_event({"a": 1}) == {"a": 1}


@pytest.mark.parametrize("event", [b"", b"  \n", "", None])
def test_an_empty_event_is_an_empty_dict(event: bytes | str | None):
    assert decode_event(event) == {}


def test_timer_event_payload_is_decoded():
    event = b'{"triggerTime":"2023-12-26T07:49:00Z","triggerName":"every-minute","payload":"{\\"max_seconds\\": 50}"}'
    assert decode_event(event) == {
        "triggerTime": "2023-12-26T07:49:00Z",
        "triggerName": "every-minute",
        "payload": {"max_seconds": 50},
    }


@pytest.mark.parametrize(
    "event",
    [
        # FC 2.0 (fc.md §5, help.aliyun.com/document_detail/2513615) and FC 3.0 ("Formats of event for different
        # triggers", 2023-12-26 example): the same fields, the payload the configured string
        b'{"triggerTime":"2018-02-09T05:49:00Z","triggerName":"timer-trigger","payload":"{\\"job\\": \\"drain\\"}"}',
        b'{"triggerTime":"2023-12-26T07:49:00Z","triggerName":"timer-trigger","payload":"{\\"job\\":\\"drain\\"}"}',
        # a payload already decoded (an event built by a tool, not by the timer) is kept
        b'{"triggerTime":"2023-12-26T07:49:00Z","triggerName":"timer-trigger","payload":{"job":"drain"}}',
    ],
    ids=["fc2-doc", "fc3-doc", "payload-object"],
)
def test_both_timer_event_shapes_decode_alike(event: bytes):
    decoded = decode_event(event)
    assert decoded["triggerName"] == "timer-trigger" and decoded["payload"] == {"job": "drain"}


def test_timer_event_with_an_empty_payload():
    assert decode_event(b'{"triggerTime":"t","triggerName":"n","payload":""}')["payload"] == {}


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (
            b"{not json",
            r"^event is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2$",
        ),
        (b"\xff\xfe{}", r"^event is not UTF-8 text: invalid start byte at byte 0$"),
        (b"[1, 2]", r"^event must be a JSON object, got a JSON array$"),
        (b'"text"', r"^event must be a JSON object, got a JSON string$"),
        (b"null", r"^event must be a JSON object, got a JSON null$"),
        (b'{"triggerTime":"t","triggerName":"tick","payload":"awesome-fc"}', r"^timer payload of trigger 'tick'"),
    ],
)
def test_invalid_events_are_poison_with_a_clear_reason(event: bytes, reason: str):
    with pytest.raises(InvalidEvent, match=reason) as caught:
        decode_event(event)
    assert isinstance(caught.value, PoisonMessage) and isinstance(caught.value, ValueError)
    assert caught.value.reason == str(caught.value)


def test_adapter_can_be_built_directly():
    ctx = FcInvocation(request_id="r", function_name="sweep", memory_limit_in_mb=128, timeout_seconds=600)
    assert ctx.invoked_function_arn == "acs:fc:::functions/sweep"
    assert ctx.get_remaining_time_in_millis() > 599_000

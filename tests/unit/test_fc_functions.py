"""FunctionSpec rules and the FC 2.0 template loader (tests/fixtures/fc/template.yml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.fc import FunctionSpec, TemplateError, load_template

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fc"


def test_template_functions_with_vars_resolved():
    specs = {spec.name: spec for spec in load_template(FIXTURES / "template.yml")}
    assert sorted(specs) == ["echo", "minimal"]  # the fc-domain entry is not a function
    echo = specs["echo"]
    assert echo.service == "fixture-svc"
    assert echo.region == "cn-shanghai"
    assert echo.handler == "handlers.context_info"
    assert echo.initializer == "handlers.initialize"
    assert echo.code_uri == FIXTURES
    assert (echo.memory, echo.timeout, echo.init_timeout) == (256, 15.0, 10.0)
    assert echo.environment == {"TEST_FC_GREETING": "hello-cn-shanghai"}
    assert (echo.log_project, echo.log_store) == ("fixture-logs", "fc-logs")
    assert echo.max_async_retry_attempts == 2
    assert echo.max_async_event_age_seconds == 600
    assert echo.on_failure == "acs:mns:::/queues/fixture-dlq/messages"
    assert echo.failure_queue == "fixture-dlq"
    trigger = echo.trigger("every-minute")
    assert trigger is not None and trigger.payload == '{"source":"timer"}' and trigger.cron_expression == "@every 1m"


def test_template_defaults():
    minimal = {spec.name: spec for spec in load_template(FIXTURES / "template.yml")}["minimal"]
    assert minimal.max_async_retry_attempts == 3
    assert minimal.on_failure is None and minimal.failure_queue is None
    assert minimal.timeout == 3.0  # the fc component's default
    assert minimal.initializer is None and minimal.triggers == ()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.yml"
    path.write_text(text)
    return path


FUNCTION = """
services:
  f:
    component: fc
    props:
      service: {name: svc}
      function: {name: f, handler: index.handler, codeUri: ./code, %s}
"""


def test_env_references_and_nested_vars(tmp_path, monkeypatch):
    monkeypatch.setenv("FIXTURE_REGION", "cn-beijing")
    path = write(
        tmp_path,
        "edition: 1.0.0\nvars:\n  region: ${env('FIXTURE_REGION', 'cn-hangzhou')}\n  zone: ${vars.region}-a\n"
        + FUNCTION % "environmentVariables: {ZONE: '${vars.zone}', MISSING: \"${env('FIXTURE_UNSET', 'dflt')}\"}",
    )
    (spec,) = load_template(path)
    assert spec.environment == {"ZONE": "cn-beijing-a", "MISSING": "dflt"}
    assert spec.code_uri == (tmp_path / "code").resolve()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("edition: 3.0.0\nresources: {}\n", "edition 3.0.0"),
        ("edition: 1.0.0\nresources: {}\n", "services"),
        ("edition: 1.0.0\n" + FUNCTION % "memorySize: '${vars.nope}'", "vars.nope"),
        ("edition: 1.0.0\n" + FUNCTION % "asyncConfiguration: {maxAsyncRetryAttempts: 9}", "0..8"),
        (
            "edition: 1.0.0\n" + FUNCTION % "asyncConfiguration: {destination: {onFailure: 'acs:mns:::/topics/t'}}",
            "MNS queue ARN",
        ),
    ],
)
def test_bad_templates_fail_with_a_clear_message(tmp_path, text, message):
    with pytest.raises(TemplateError, match=message):
        load_template(write(tmp_path, text))


def test_function_spec_validation():
    FunctionSpec("svc", "f", "app.handlers.process", Path("."), on_failure="acs:mns:cn-shanghai:123:/queues/q/messages")
    with pytest.raises(ValueError, match=r"module\.function"):
        FunctionSpec("svc", "f", "handler", Path("."))
    with pytest.raises(ValueError, match="positive"):
        FunctionSpec("svc", "f", "index.handler", Path("."), max_async_event_age_seconds=0)


def test_function_arn():
    spec = FunctionSpec("svc", "f", "index.handler", Path("."))
    assert spec.arn("cn-hangzhou", "123") == "acs:fc:cn-hangzhou:123:services/svc.LATEST/functions/f"

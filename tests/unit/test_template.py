"""template.yml keeps honest: it renders, the `fc` component would accept it (local/template_rules.py, derived from
the component's property schema and FC's limits), every variable it sets is a setting and every required setting is
set, its timers and async settings are in range, and its timeouts fit the deadlines the code keeps."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from local.build import SECRET_VARIABLES, built_template
from local.fc.functions import TemplateError, load_template, render_template
from local.template_rules import check_template, timer_expression_error
from shared.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yml"
# What a user sets to deploy (README "Deploying"), with made-up values.
DEPLOY_ENV = {
    "FC_REGION": "cn-shanghai",
    "FC_ACCOUNT_ID": "1234567890123456",
    "ALICOM_QUEUE_NAME": "Alicom-Queue-1234567890123456-FlowReport",
    "SLS_PROJECT": "my-logs",
    "VPC_ID": "vpc-bp1aaaa",
    "VSWITCH_ID": "vsw-bp1bbbb",
    "SECURITY_GROUP_ID": "sg-bp1cccc",
    "LEDGER_URL": "mysql+pymysql://flow:s3cret-password@rm-bp1.mysql.rds.aliyuncs.com:3306/flow_receipts",
    "WEBHOOK_URL": "https://hooks.example.net/flow-receipts/7f3a",
    "WEBHOOK_SECRET": "webhook-s3cret",
}
NOT_SETTINGS = {"PYDANTIC_DISABLE_PLUGINS"}  # pydantic's own variable (no plugin discovery at import)


def functions(document: dict) -> dict[str, dict]:
    return {entry["props"]["function"]["name"]: entry["props"] for entry in document["services"].values()}


@pytest.fixture(scope="module")
def rendered() -> dict:
    return render_template(TEMPLATE, DEPLOY_ENV, strict=True)


def test_the_template_parses_and_the_fc_component_would_accept_it(rendered):
    assert check_template(rendered) == []
    assert set(functions(rendered)) == {"drainer", "processor", "sweep"}
    assert check_template(built_template(DEPLOY_ENV, strict=True)) == []


def test_one_service_holds_role_logs_vpc_and_internet_access(rendered):
    services = [props["service"] for props in functions(rendered).values()]
    assert all(service == services[0] for service in services)
    service = services[0]
    assert service["role"] == "acs:ram::1234567890123456:role/flow-receipts-fc"
    assert service["logConfig"]["project"] == "my-logs" and service["logConfig"]["logstore"]
    assert service["vpcConfig"] == {
        "vpcId": "vpc-bp1aaaa",
        "securityGroupId": "sg-bp1cccc",
        "vswitchIds": ["vsw-bp1bbbb"],
    }
    assert service["internetAccess"] is True
    assert {props["region"] for props in functions(rendered).values()} == {"cn-shanghai"}


def test_every_variable_is_a_setting_and_every_required_setting_is_set(rendered):
    aliases = {field.alias for field in Settings.model_fields.values()}
    required = {field.alias for field in Settings.model_fields.values() if field.is_required()}
    assert required == {"ALICOM_QUEUE_NAME"}
    for name, props in functions(rendered).items():
        environment = props["function"]["environmentVariables"]
        assert set(environment) - aliases - NOT_SETTINGS == set(), name
        assert required <= set(environment), name
        settings = load_settings(environment)  # stub values: every function starts with what the template gives it
        assert settings.ledger_url == DEPLOY_ENV["LEDGER_URL"] and settings.webhook_url == DEPLOY_ENV["WEBHOOK_URL"]


def test_the_functions_get_what_their_jobs_need(rendered):
    env = {name: props["function"]["environmentVariables"] for name, props in functions(rendered).items()}
    sweep = load_settings(env["sweep"])
    assert sweep.sweep_self_invoke and sweep.dlq_queue_name == "flow-receipts-dlq"
    assert sweep.mns_endpoint == "https://1234567890123456.mns.cn-shanghai.aliyuncs.com"
    drainer = load_settings(env["drainer"])
    assert (drainer.processor_service, drainer.processor_function) == ("flow-receipts", "processor")
    destination = functions(rendered)["processor"]["function"]["asyncConfiguration"]["destination"]["onFailure"]
    assert destination == f"acs:mns:cn-shanghai:1234567890123456:/queues/{sweep.dlq_queue_name}/messages"


def test_timers_and_async_settings(rendered):
    drainer, processor, sweep = (functions(rendered)[n]["function"] for n in ("drainer", "processor", "sweep"))
    assert functions(rendered)["drainer"]["triggers"][0]["config"]["cronExpression"] == "@every 1m"
    daily = functions(rendered)["sweep"]["triggers"][0]["config"]["cronExpression"]
    assert daily.startswith("CRON_TZ=Asia/Shanghai ") and timer_expression_error(daily) is None
    assert drainer["asyncConfiguration"]["maxAsyncRetryAttempts"] == 0
    assert processor["asyncConfiguration"]["maxAsyncRetryAttempts"] >= 1
    assert processor["asyncConfiguration"]["destination"]["onFailure"].startswith("acs:mns:")
    assert sweep["timeout"] > drainer["timeout"]


def test_timeouts_fit_the_deadlines_the_code_keeps(rendered):
    drainer, sweep = (functions(rendered)[n]["function"] for n in ("drainer", "sweep"))
    drain = load_settings(drainer["environmentVariables"])
    assert drainer["timeout"] < 60  # under the timer's period: one drain at a time
    # after the deadline the last receive's BatchDelete may take its whole socket timeout (shared/adapters/queue.py)
    from shared.adapters.queue import REQUEST_TIMEOUT_SECONDS

    assert drain.drain_deadline_margin_seconds > REQUEST_TIMEOUT_SECONDS
    assert drainer["timeout"] - drain.drain_deadline_margin_seconds >= 30  # most of the minute spent receiving
    swept = load_settings(sweep["environmentVariables"])
    assert (sweep["timeout"] - swept.sweep_deadline_margin_seconds) * swept.sweep_qps >= 10_000


def test_the_rendered_template_uses_only_what_serverless_devs_resolves():
    """Serverless Devs (edition 1.0.0) resolves ${env(NAME)} only: no quotes, no default, not inside vars."""
    document = built_template(DEPLOY_ENV, strict=True)
    text = repr(document)
    assert "vars" not in document and "${vars." not in text
    references = re.findall(r"\$\{([^}]*)\}", text)
    assert references and all(re.fullmatch(r"env\([A-Z_]+\)", ref) for ref in references), references
    assert {ref[4:-1] for ref in references} == set(SECRET_VARIABLES)  # the secrets, read by `s` at deploy time
    for secret in SECRET_VARIABLES:
        assert DEPLOY_ENV[secret] not in text


def test_deploying_needs_every_variable_without_a_default():
    partial = {k: v for k, v in DEPLOY_ENV.items() if k not in ("VPC_ID", "SLS_PROJECT")}
    with pytest.raises(TemplateError, match="SLS_PROJECT, VPC_ID"):
        render_template(TEMPLATE, partial, strict=True)


def test_the_local_emulator_still_reads_the_template_without_deploy_values():
    specs = {spec.name: spec for spec in load_template(TEMPLATE, environ={})}
    assert set(specs) == {"drainer", "processor", "sweep"}
    assert specs["processor"].failure_queue == "flow-receipts-dlq"
    assert specs["drainer"].code_uri == REPO / "functions" / "drainer"


# ---- the rules themselves: each kind of mistake is caught


def broken(document: dict, change) -> list[str]:
    copied = copy.deepcopy(document)
    change(copied["services"]["drainer"]["props"])
    return check_template(copied)


def _set(path: str, value):
    def change(props):
        *parents, last = path.split(".")
        node = props
        for part in parents:
            node = node[part]
        node[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("function.runtime", "python3.11"), "runtime: 'python3.11' is not one of"),
        (_set("function.memorySize", 500), "memorySize: 500 is not one of"),
        (_set("function.timeout", 0), "timeout: 0 is outside 1..86400"),
        (_set("function.asyncConfiguration.maxAsyncRetryAttempts", 9), "maxAsyncRetryAttempts: 9 is outside 0..8"),
        (_set("function.asyncConfiguration.maxAsyncEventAgeInSeconds", 0), "outside 1..2592000"),
        (_set("function.handler", "index"), "handler: must be <module>.<function>"),
        (_set("function.environmentVariables.FC_ENDPOINT", "http://x"), "FC_* variables are reserved"),
        (_set("function.environmentVariables.DRAIN_POLLERS", 4), "must be a string"),
        (_set("function.environmentVariables.BIG", "x" * 5000), "must fit in 4096"),
        (_set("function.memory", 512), "function.memory: is not a property"),
        (_set("region", "cn-nowhere"), "region: 'cn-nowhere' is not one of"),
        (_set("service.vpcConfig.vswitchIds", []), "vswitchIds: must be a non-empty list"),
        (_set("service.vpcConfig.vpcId", "bp1aaaa"), "does not look like ^vpc-"),
        (_set("service.vpcconfig", {}), "service.vpcconfig: is not a property"),
        (_set("service.logConfig.logBeginRule", "Always"), "logBeginRule"),
        (_set("service.role", "my-role"), "role: 'my-role' does not look like"),
        (
            _set(
                "triggers", [{"name": "t", "type": "cron", "config": {"cronExpression": "@every 1m", "enable": True}}]
            ),
            "type: 'cron' is not one of",
        ),
    ],
)
def test_the_rules_catch_what_the_fc_component_refuses(rendered, change, message):
    problems = broken(rendered, change)
    assert any(message in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("@every 1m", None),
        ("@every 1h30m", None),
        ("0 30 3 * * *", None),
        ("CRON_TZ=Asia/Shanghai 0 30 3 * * *", None),
        ("0 0/15 8-20 ? * MON-FRI", None),
        ("0 0 4 1 JAN,JUL ?", None),
        ("@every 30s", "interval such as 1m"),
        ("@every 0m", "at least 1m"),
        ("30 3 * * *", "6 fields"),
        ("CRON_TZ=Mars/Olympus 0 30 3 * * *", "not a time zone"),
        ("0 60 3 * * *", "minutes '60': 60 is outside 0..59"),
        ("0 30 24 * * *", "outside 0..23"),
        ("0 30 3 0 * *", "outside 1..31"),
        ("0 30 3 * * 7", "outside 0..6"),
        ("0 30 3 * FOO *", "'FOO' is not a number"),
        ("0 30 5-3 * * *", "runs backwards"),
        ("? 30 3 * * *", "'?' is only for day of month or day of week"),
    ],
)
def test_timer_expressions(expression, error):
    found = timer_expression_error(expression)
    assert (found is None) if error is None else (found is not None and error in found), found

"""The two templates keep honest — template.yml (FC 2.0, component `fc`) and template.fc3.yml (FC 3.0, component
`fc3`), each test run against both: they render, the component would accept them (local/template_rules.py, derived
from the components' property schemas and FC's limits), every variable they set is a setting and every required
setting is set, their timers and async settings are in range, their timeouts fit the deadlines the code keeps, and
the two deploy the same three functions with the same settings."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from local.build import SECRET_VARIABLES, built_template, render_fc3_template
from local.fc.functions import TemplateError, load_template, render_template
from local.template_rules import check_template, timer_expression_error
from shared.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yml"
TEMPLATE_FC3 = REPO / "template.fc3.yml"
TEMPLATES = {"2": TEMPLATE, "3": TEMPLATE_FC3}
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
JOBS = ("drainer", "processor", "sweep")


def render(fc: str, environ: dict[str, str], **options: Any) -> dict:
    if fc == "2":
        return render_template(TEMPLATE, environ, **options)
    return render_fc3_template(TEMPLATE_FC3, environ, **options)


# ---- one view of both generations, by job (the entry's key: drainer, processor, sweep)


def entries(document: dict) -> dict[str, dict]:
    return document["resources"] if "resources" in document else document["services"]


def functions(document: dict) -> dict[str, dict]:
    """job -> the function's properties (FC 2.0: props.function; FC 3.0: props)."""
    if "resources" in document:
        return {job: entry["props"] for job, entry in entries(document).items()}
    return {job: entry["props"]["function"] for job, entry in entries(document).items()}


def name_of(document: dict, job: str) -> str:
    function = functions(document)[job]
    return function.get("functionName") or function["name"]


def platform(document: dict, job: str) -> dict:
    """role, logConfig, vpcConfig (vswitchIds spelt as in 2.0) and internetAccess of a job's function."""
    props = entries(document)[job]["props"]
    holder = props.get("service", props)  # FC 2.0: the service's; FC 3.0: the function's own
    vpc = dict(holder["vpcConfig"])
    vpc["vswitchIds"] = vpc.pop("vSwitchIds", vpc.get("vswitchIds"))
    return {"role": holder["role"], "log": holder["logConfig"], "vpc": vpc, "internet": holder["internetAccess"]}


def timers(document: dict, job: str) -> list[dict]:
    """[{name, cron, enable, payload}] of a job's timer triggers."""
    found = []
    for trigger in entries(document)[job]["props"].get("triggers") or []:
        config = trigger.get("triggerConfig", trigger.get("config"))
        found.append(
            {
                "name": trigger.get("triggerName", trigger.get("name")),
                "type": trigger.get("triggerType", trigger.get("type")),
                "cron": config["cronExpression"],
                "enable": config["enable"],
                "payload": config.get("payload"),
            }
        )
    return found


def asynchronous(document: dict, job: str) -> dict:
    """{retries, age, on_failure} of a job's async settings (FC 2.0 asyncConfiguration, FC 3.0 asyncInvokeConfig)."""
    function = functions(document)[job]
    if "asyncInvokeConfig" in function:
        config = function["asyncInvokeConfig"]
        failure = ((config.get("destinationConfig") or {}).get("onFailure") or {}).get("destination")
    else:
        config = function["asyncConfiguration"]
        failure = (config.get("destination") or {}).get("onFailure")
    return {
        "retries": config["maxAsyncRetryAttempts"],
        "age": config["maxAsyncEventAgeInSeconds"],
        "on_failure": failure,
    }


def lifecycle(function: dict) -> tuple[str, str | None, int | None]:
    """(handler, initializer, initializer timeout) of a function."""
    if "instanceLifecycleConfig" in function:
        hook = function["instanceLifecycleConfig"]["initializer"]
        return function["handler"], hook.get("handler"), hook.get("timeout")
    return function["handler"], function.get("initializer"), function.get("initializationTimeout")


def on_fc(fc: str, document: dict, job: str) -> dict[str, str]:
    """The variables a job's function sees on FC: the template's, and what FC itself sets in the instance (FC 2.0
    sets FC_SERVICE_NAME, FC 3.0 has no service; reference/fc.md §4.3)."""
    environment = dict(functions(document)[job]["environmentVariables"])
    environment.update(
        FC_FUNCTION_NAME=name_of(document, job), FC_REGION="cn-shanghai", FC_ACCOUNT_ID="1234567890123456"
    )
    if fc == "2":
        environment["FC_SERVICE_NAME"] = entries(document)[job]["props"]["service"]["name"]
    return environment


@pytest.fixture(scope="module", params=["2", "3"], ids=["fc2", "fc3"])
def fc(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def rendered(fc) -> dict:
    return render(fc, DEPLOY_ENV, strict=True)


def test_the_template_parses_and_its_component_would_accept_it(fc, rendered):
    assert check_template(rendered) == []
    assert set(functions(rendered)) == set(JOBS)
    assert check_template(built_template(DEPLOY_ENV, strict=True, fc=fc)) == []
    if fc == "3":
        assert {entry["component"] for entry in entries(rendered).values()} == {"fc3"}
        assert rendered["edition"] == "3.0.0" and "services" not in rendered


def test_every_function_has_the_role_logs_vpc_and_internet_access(fc, rendered):
    """FC 2.0: one service holds them; FC 3.0 has no service: each function carries the same ones."""
    if fc == "2":
        services = [entry["props"]["service"] for entry in entries(rendered).values()]
        assert all(service == services[0] for service in services)
    else:
        assert not any("service" in entry["props"] for entry in entries(rendered).values())
    views = [platform(rendered, job) for job in JOBS]
    assert all(view == views[0] for view in views)
    view = views[0]
    assert view["role"] == "acs:ram::1234567890123456:role/flow-receipts-fc"
    assert view["log"]["project"] == "my-logs" and view["log"]["logstore"]
    assert view["vpc"] == {"vpcId": "vpc-bp1aaaa", "securityGroupId": "sg-bp1cccc", "vswitchIds": ["vsw-bp1bbbb"]}
    assert view["internet"] is True
    assert {entry["props"]["region"] for entry in entries(rendered).values()} == {"cn-shanghai"}


def test_every_variable_is_a_setting_and_every_required_setting_is_set(rendered):
    aliases = {field.alias for field in Settings.model_fields.values()}
    required = {field.alias for field in Settings.model_fields.values() if field.is_required()}
    assert required == {"ALICOM_QUEUE_NAME"}
    for job, function in functions(rendered).items():
        environment = function["environmentVariables"]
        assert set(environment) - aliases - NOT_SETTINGS == set(), job
        assert required <= set(environment), job
        assert not [name for name in environment if name.startswith("FC_")], job  # FC reserves FC_* names
        settings = load_settings(environment)  # stub values: every function starts with what the template gives it
        assert settings.ledger_url == DEPLOY_ENV["LEDGER_URL"] and settings.webhook_url == DEPLOY_ENV["WEBHOOK_URL"]


def test_the_functions_get_what_their_jobs_need(fc, rendered):
    env = {job: function["environmentVariables"] for job, function in functions(rendered).items()}
    sweep = load_settings(env["sweep"])
    assert sweep.sweep_self_invoke and sweep.dlq_queue_name == "flow-receipts-dlq"
    assert sweep.mns_endpoint == "https://1234567890123456.mns.cn-shanghai.aliyuncs.com"
    drainer = load_settings(env["drainer"])
    if fc == "2":
        assert (drainer.processor_service, drainer.processor_function) == ("flow-receipts", "processor")
        assert name_of(rendered, "processor") == "processor"
    else:  # FC 3.0 names a function by itself: the drainer dispatches to the processor's whole name
        assert "PROCESSOR_SERVICE" not in env["drainer"]
        assert drainer.processor_function == name_of(rendered, "processor") == "flow-receipts-processor"
        assert {name_of(rendered, job) for job in JOBS} == {f"flow-receipts-{job}" for job in JOBS}
    destination = asynchronous(rendered, "processor")["on_failure"]
    assert destination == f"acs:mns:cn-shanghai:1234567890123456:/queues/{sweep.dlq_queue_name}/messages"


@pytest.mark.parametrize("job", ["drainer", "sweep"])
def test_on_fc_the_functions_use_their_generations_api(fc, rendered, job):
    """Async dispatch (drainer) and self-invocation (sweep) go through the FC API the function runs on: the FC 3.0
    template says so with FUNCTION_COMPUTE_API (FC reserves FC_* names, so the setting is not FC_API)."""
    chosen = load_settings(on_fc(fc, rendered, job)).fc_api
    assert chosen == fc


def test_timers_and_async_settings(rendered):
    (drain,) = timers(rendered, "drainer")
    (daily,) = timers(rendered, "sweep")
    assert (drain["type"], drain["cron"], drain["enable"]) == ("timer", "@every 1m", True)
    assert daily["cron"].startswith("CRON_TZ=Asia/Shanghai ") and timer_expression_error(daily["cron"]) is None
    assert timers(rendered, "processor") == []
    assert asynchronous(rendered, "drainer")["retries"] == 0
    assert asynchronous(rendered, "processor")["retries"] >= 1
    assert asynchronous(rendered, "processor")["on_failure"].startswith("acs:mns:")
    assert asynchronous(rendered, "processor")["age"] <= 604800  # FC 3.0's documented maximum (reference §6.5)
    assert functions(rendered)["sweep"]["timeout"] > functions(rendered)["drainer"]["timeout"]


def test_timeouts_fit_the_deadlines_the_code_keeps(rendered):
    drainer, sweep = (functions(rendered)[n] for n in ("drainer", "sweep"))
    drain = load_settings(drainer["environmentVariables"])
    assert drainer["timeout"] < 60  # under the timer's period: one drain at a time
    # after the deadline the last receive's BatchDelete may take its whole socket timeout (shared/adapters/queue.py)
    from shared.adapters.queue import REQUEST_TIMEOUT_SECONDS

    assert drain.drain_deadline_margin_seconds > REQUEST_TIMEOUT_SECONDS
    assert drainer["timeout"] - drain.drain_deadline_margin_seconds >= 30  # most of the minute spent receiving
    swept = load_settings(sweep["environmentVariables"])
    assert (sweep["timeout"] - swept.sweep_deadline_margin_seconds) * swept.sweep_qps >= 10_000


def test_the_two_templates_deploy_the_same_functions():
    """FC 3.0 changes the platform, not the product: the same jobs, sizes, timeouts, triggers, retries, handlers
    and settings (but how the processor is named, the FC 2.0 service, and which FC API the functions call)."""
    two, three = (render(fc, DEPLOY_ENV, strict=True) for fc in ("2", "3"))
    for job in JOBS:
        a, b = functions(two)[job], functions(three)[job]
        for key in ("runtime", "memorySize", "timeout", "description"):
            assert a[key] == b[key], (job, key)
        assert lifecycle(a) == lifecycle(b), job
        assert timers(two, job) == timers(three, job), job
        assert asynchronous(two, job) == asynchronous(three, job), job
        assert platform(two, job) == platform(three, job), job
        differs = {"PROCESSOR_SERVICE", "PROCESSOR_FUNCTION", "FUNCTION_COMPUTE_API"}
        same_a = {k: v for k, v in a["environmentVariables"].items() if k not in differs}
        assert same_a == {k: v for k, v in b["environmentVariables"].items() if k not in differs}, job
        assert Path(a["codeUri"]) == Path(b["code"]) == Path("functions") / job
        assert load_settings(a["environmentVariables"]).fc_api == "2"
        assert b["environmentVariables"]["FUNCTION_COMPUTE_API"] == "3"
    assert functions(three)["processor"]["asyncInvokeConfig"]["asyncTask"] is False  # 2.0's statefulInvocation
    assert not any("instanceConcurrency" in function for function in functions(three).values())


def test_the_rendered_template_uses_only_what_serverless_devs_resolves(fc):
    """Edition 1.0.0 resolves ${env(NAME)} only (no quotes, no default, not inside vars); the built FC 3.0 template
    leaves ${env('NAME')}, as edition 3.0.0 spells it. Either way: only the secrets, read by `s` at deploy time."""
    document = built_template(DEPLOY_ENV, strict=True, fc=fc)
    text = repr(document)
    assert "vars" not in document and "${vars." not in text
    references = re.findall(r"\$\{([^}]*)\}", text)
    shape = r"env\(([A-Z_]+)\)" if fc == "2" else r"env\(\\?'([A-Z_]+)\\?'\)"
    assert references and all(re.fullmatch(shape, ref) for ref in references), references
    assert {re.fullmatch(shape, ref).group(1) for ref in references} == set(SECRET_VARIABLES)
    for secret in SECRET_VARIABLES:
        assert DEPLOY_ENV[secret] not in text


def test_deploying_needs_every_variable_without_a_default(fc):
    partial = {k: v for k, v in DEPLOY_ENV.items() if k not in ("VPC_ID", "SLS_PROJECT")}
    with pytest.raises(TemplateError, match="SLS_PROJECT, VPC_ID"):
        render(fc, partial, strict=True)


def test_the_local_emulator_still_reads_the_fc2_template_without_deploy_values():
    specs = {spec.name: spec for spec in load_template(TEMPLATE, environ={})}
    assert set(specs) == set(JOBS)
    assert specs["processor"].failure_queue == "flow-receipts-dlq"
    assert specs["drainer"].code_uri == REPO / "functions" / "drainer"


def test_the_fc3_template_renders_without_deploy_values():
    document = render("3", {})
    assert functions(document)["drainer"]["role"] == "acs:ram:::role/flow-receipts-fc"  # FC_ACCOUNT_ID unset: ""
    assert set(functions(document)) == set(JOBS)


# ---- the rules themselves: each kind of mistake is caught


def broken(document: dict, change) -> list[str]:
    copied = copy.deepcopy(document)
    change(entries(copied)["drainer"]["props"])
    return check_template(copied)


def _set(path: str, value):
    def change(props):
        *parents, last = path.split(".")
        node = props
        for part in parents:
            node = node[part]
        node[last] = value

    return change


def _rename(path: str, new: str):
    def change(props):
        *parents, last = path.split(".")
        node = props
        for part in parents:
            node = node[part]
        node[new] = node.pop(last)

    return change


@pytest.fixture(scope="module")
def rendered_fc2() -> dict:
    return render("2", DEPLOY_ENV, strict=True)


@pytest.fixture(scope="module")
def rendered_fc3() -> dict:
    return render("3", DEPLOY_ENV, strict=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("function.runtime", "python3.11"), "runtime: 'python3.11' is not one of"),
        (_set("function.runtime", "python3.12"), "runtime: 'python3.12' is not one of"),  # not in the fc component
        (_set("function.memorySize", 500), "memorySize: 500 is not one of"),
        (_set("function.timeout", 0), "timeout: 0 is outside 1..86400"),
        (_set("function.asyncConfiguration.maxAsyncRetryAttempts", 9), "maxAsyncRetryAttempts: 9 is outside 0..8"),
        (_set("function.asyncConfiguration.maxAsyncEventAgeInSeconds", 0), "outside 1..2592000"),
        (_set("function.handler", "index"), "handler: must be <module>.<function>"),
        (_set("function.environmentVariables.FC_ENDPOINT", "http://x"), "FC_* variables are reserved"),
        (_set("function.environmentVariables.FC_API", "3"), "FC_* variables are reserved"),
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
def test_the_rules_catch_what_the_fc_component_refuses(rendered_fc2, change, message):
    problems = broken(rendered_fc2, change)
    assert any(message in problem for problem in problems), problems


TIMER = {"cronExpression": "@every 1m", "enable": True}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("runtime", "python3.11"), "runtime: 'python3.11' is not one of"),
        (_set("memorySize", 500), "memorySize: 500 is not a multiple of 64 in 128..32768"),
        (_set("memorySize", 64), "memorySize: 64 is not a multiple of 64 in 128..32768"),
        (_set("timeout", 0), "timeout: 0 is outside 1..86400"),
        (_set("asyncInvokeConfig.maxAsyncRetryAttempts", 9), "maxAsyncRetryAttempts: 9 is outside 0..8"),
        (_set("asyncInvokeConfig.maxAsyncEventAgeInSeconds", 0), "outside 1..2592000"),
        (_set("asyncInvokeConfig.destinationConfig", {"onFailure": "acs:mns:::/queues/q/messages"}), "plain string"),
        (_set("asyncInvokeConfig.destination", {"onFailure": "x"}), "wants destinationConfig"),
        (_rename("asyncInvokeConfig", "asyncConfiguration"), "asyncConfiguration: is the FC 2.0 spelling"),
        (_set("handler", "index"), "handler: must be <module>.<function>"),
        (_set("instanceLifecycleConfig.initializer.handler", "init"), "initializer.handler: must be <module>"),
        (_set("instanceLifecycleConfig.initializer", {"handler": "drainer.initialize"}), "set it with the hook"),
        (_set("initializer", "drainer.initialize"), "initializer: is the FC 2.0 spelling"),
        (_rename("code", "codeUri"), "codeUri: is the FC 2.0 spelling; the fc3 component wants code"),
        (_set("functionName", "9-drainer"), "does not look like"),
        (_set("service", {"name": "flow-receipts"}), "service: is the FC 2.0 spelling"),
        (_set("instanceConcurrency", 4), "one request per instance"),
        (_set("environmentVariables.FC_API", "3"), "FC_* variables are reserved"),
        (_set("environmentVariables.DRAIN_POLLERS", 4), "must be a string"),
        (_set("memory", 512), "memory: is not a property the fc3 component knows"),
        (_set("region", "cn-nowhere"), "region: 'cn-nowhere' is not one of"),
        (_set("vpcConfig", {"vpcId": "vpc-1", "securityGroupId": "sg-1", "vswitchIds": ["vsw-1"]}), "vSwitchIds"),
        (_set("vpcConfig.vSwitchIds", []), "vSwitchIds: must be a non-empty list"),
        (_set("vpcConfig.vpcId", "bp1aaaa"), "does not look like ^vpc-"),
        (_set("logConfig.logBeginRule", "Always"), "logBeginRule"),
        (_set("logConfig", {"project": "p"}), "logConfig.logstore: is required"),
        (_set("role", "my-role"), "role: 'my-role' does not look like"),
        (_set("triggers", [{"name": "t", "type": "timer", "config": TIMER}]), "name: is the FC 2.0 spelling"),
        (
            _set("triggers", [{"triggerName": "t", "triggerType": "cron", "triggerConfig": TIMER}]),
            "triggerType: 'cron' is not one of",
        ),
        (
            _set("triggers", [{"triggerName": "t", "triggerType": "timer", "triggerConfig": {"enable": True}}]),
            "cronExpression: is required",
        ),
        (
            _set("triggers", [{"triggerName": "t", "triggerType": "timer", "triggerConfig": {**TIMER, "x": 1}}]),
            "triggerConfig.x: is not a property",
        ),
        (_set("functionName", "flow-receipts-sweep"), "'flow-receipts-sweep' is also resources.drainer's"),
    ],
)
def test_the_rules_catch_what_the_fc3_component_refuses(rendered_fc3, change, message):
    problems = broken(rendered_fc3, change)
    assert any(message in problem for problem in problems), problems


def test_an_fc2_template_is_not_an_fc3_one(rendered_fc2):
    mixed = {**copy.deepcopy(rendered_fc2), "edition": "3.0.0"}
    problems = check_template(mixed)
    assert any("services: is the FC 2.0 spelling" in p for p in problems)
    assert any(p.startswith("resources: must be a mapping") for p in problems)


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

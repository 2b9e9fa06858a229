"""What the Serverless Devs `fc` component (FC 2.0, edition 1.0.0) and `fc3` component (FC 3.0, edition 3.0.0)
accept in a template's `props`, as rules.

Derived by hand from the component's property schema (devsapp/fc `publish.yaml`, `Properties:`: the region,
runtime and memory enumerations, the name pattern, the VPC id patterns, the async ranges, the trigger shapes) and
from FC's documented limits (timer expressions, reserved `FC_*` variables, 4 KB of environment variables, timeout
1..86400 s), so the template is checked without the schema file, Serverless Devs or a network:

    problems = check_template(render_template("template.yml", environ))   # [] when the template is fine

Each problem is one line naming the place, e.g. ``services.drainer.props.function.memorySize: 500 is not one of
128, 256, 512, ...``. A value that is still an ``${env(NAME)}`` reference (a secret, or a value `s` reads at deploy
time) is only checked to be a string. Stricter than the schema in one way: an unknown key under `service` is
reported (the schema allows it, and a misspelt `vpcconfig` would silently deploy without a VPC).

FC 3.0 (`check_template` on an edition 3.0.0 document, `resources:` of component `fc3`): the rules of devsapp/fc3
`src/schema.json` (draft-07, one resource's `props`: required region, functionName, runtime, code and handler; the
region, runtime and trigger type enumerations; memorySize a multiple of 64 in 128..32768; the async, log, VPC and
timer shapes), FC's limits as above, and what FC 3.0 changed from 2.0 (reference/fc.md §3.1): an FC 2.0 key in an
fc3 resource (`service`, `function`, `codeUri`, `asyncConfiguration`, `vswitchIds`, a plain-string `onFailure`,
trigger `name`/`type`/`config`) is reported with its FC 3.0 spelling, and so is `instanceConcurrency` on a Python
runtime (FC 3.0's standard runtimes run one request per instance). Unknown keys are reported here too (the schema
does not forbid them), and two resources with one functionName (FC 3.0 names a function by itself).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

REGIONS = frozenset(
    {
        "cn-beijing",
        "cn-hangzhou",
        "cn-shanghai",
        "cn-qingdao",
        "cn-zhangjiakou",
        "cn-huhehaote",
        "cn-shenzhen",
        "cn-chengdu",
        "cn-hongkong",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-5",
        "ap-northeast-1",
        "eu-central-1",
        "eu-west-1",
        "us-west-1",
        "us-east-1",
        "ap-south-1",
    }
)
RUNTIMES = frozenset(
    {
        "nodejs16",
        "nodejs14",
        "nodejs12",
        "nodejs10",
        "nodejs8",
        "python3",
        "python3.10",
        "python3.9",
        "python2.7",
        "java8",
        "java11",
        "php7.2",
        "dotnetcore2.1",
        "custom",
        "custom.debian10",
        "custom-container",
        "nodejs6",
        "nodejs4.4",
    }
)
MEMORY_SIZES = (128, 256, 512, 1024, 2048, 3072, 4096, 8192, 16384, 32768)
TRIGGER_TYPES = frozenset({"http", "timer", "oss", "log", "mns_topic", "cdn_events", "tablestore"})
NAME = re.compile(r"^[a-zA-Z0-9-_]{1,128}$")
ROLE_ARN = re.compile(r"^acs:ram.*:role.*$")
MAX_ASYNC_RETRY_ATTEMPTS = (0, 8)
MAX_ASYNC_EVENT_AGE_SECONDS = (1, 2592000)
TIMEOUT_SECONDS = (1, 86400)  # fc3 schema and FC's limits page; FC 2.0's own maximum is not documented
ENVIRONMENT_BYTES = 4096  # all variables of a function together
PROPS_KEYS = frozenset({"region", "service", "function", "triggers", "customDomains"})
SERVICE_KEYS = frozenset(
    {
        "name",
        "description",
        "internetAccess",
        "role",
        "tracingConfig",
        "vpcBinding",
        "logConfig",
        "vpcConfig",
        "ossMountConfig",
        "nasConfig",
    }
)
FUNCTION_KEYS = frozenset(
    {
        "name",
        "description",
        "codeUri",
        "ossBucket",
        "ossKey",
        "handler",
        "runtime",
        "customRuntimeConfig",
        "customHealthCheckConfig",
        "customContainerConfig",
        "instanceType",
        "memorySize",
        "gpuMemorySize",
        "timeout",
        "instanceConcurrency",
        "instanceSoftConcurrency",
        "caPort",
        "cpu",
        "diskSize",
        "environmentVariables",
        "layers",
        "initializer",
        "initializationTimeout",
        "instanceLifecycleConfig",
        "customDNS",
        "asyncConfiguration",
    }
)
LOG_CONFIG_KEYS = frozenset({"project", "logstore", "logBeginRule", "enableRequestMetrics", "enableInstanceMetrics"})
VPC_CONFIG_KEYS = frozenset({"vpcId", "securityGroupId", "vswitchIds"})
ASYNC_KEYS = frozenset({"destination", "maxAsyncEventAgeInSeconds", "maxAsyncRetryAttempts", "statefulInvocation"})
DESTINATION_KEYS = frozenset({"onSuccess", "onFailure"})
PYTHON_HANDLER = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\.[A-Za-z_]\w*$")
DEPLOY_TIME = re.compile(r"\$\{env\(([A-Za-z_][A-Za-z0-9_]*)\)\}")  # left for `s` to read when it deploys


class _Problems(list):
    def add(self, where: str, message: str) -> None:
        self.append(f"{where}: {message}")


def check_template(document: Mapping[str, Any]) -> list[str]:
    """Every problem of a rendered template (vars resolved), one line each; [] when it is fine. An edition 3.0.0
    document is checked as FC 3.0 (check_fc3_template), anything else as FC 2.0 (edition 1.0.0, component fc)."""
    if str(document.get("edition", "")) == FC3_EDITION:
        return check_fc3_template(document)
    problems = _Problems()
    if str(document.get("edition", "")) != "1.0.0":
        problems.add("edition", f"must be 1.0.0 for the fc component (got {document.get('edition')!r})")
    for where, props in _component_props(document, "services", "fc", problems):
        _check_props(props, where, problems)
    return problems


def _component_props(
    document: Mapping[str, Any], section: str, component: str, problems: _Problems
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, props) of each entry of ``section`` that is a ``component`` with a props mapping; the rest reported."""
    entries = document.get(section)
    if not isinstance(entries, Mapping) or not entries:
        problems.add(section, "must be a mapping of one or more entries")
        return
    for key, entry in entries.items():
        where = f"{section}.{key}"
        if not isinstance(entry, Mapping) or entry.get("component") != component:
            problems.add(where, f"component must be {component}")
            continue
        props = entry.get("props")
        if not isinstance(props, Mapping):
            problems.add(f"{where}.props", "must be a mapping")
            continue
        yield f"{where}.props", props


def _check_props(props: Mapping[str, Any], where: str, problems: _Problems) -> None:
    _unknown(props, PROPS_KEYS, where, problems)
    _enum(props, "region", REGIONS, where, problems, required=True)
    service = props.get("service")
    if not isinstance(service, Mapping):
        problems.add(f"{where}.service", "is required (a mapping with at least a name)")
    else:
        _check_service(service, f"{where}.service", problems)
    function = props.get("function")
    if function is not None:
        if isinstance(function, Mapping):
            _check_function(function, f"{where}.function", problems)
        else:
            problems.add(f"{where}.function", "must be a mapping")
    triggers = props.get("triggers")
    if triggers is not None:
        if isinstance(triggers, list):
            for i, trigger in enumerate(triggers):
                _check_trigger(trigger, f"{where}.triggers[{i}]", problems)
        else:
            problems.add(f"{where}.triggers", "must be a list")


def _check_service(service: Mapping[str, Any], where: str, problems: _Problems) -> None:
    _unknown(service, SERVICE_KEYS, where, problems)
    _pattern(service, "name", NAME, where, problems, required=True)
    _string(service, "description", where, problems, max_length=4096)
    _boolean(service, "internetAccess", where, problems)
    role = service.get("role")
    if isinstance(role, str):
        _pattern(service, "role", ROLE_ARN, where, problems)
    elif role is not None and not isinstance(role, Mapping):
        problems.add(f"{where}.role", "must be a role ARN (acs:ram::<account>:role/<name>) or a role mapping")
    log = service.get("logConfig")
    if isinstance(log, Mapping):
        here = f"{where}.logConfig"
        _unknown(log, LOG_CONFIG_KEYS, here, problems)
        _string(log, "project", here, problems, required=True, min_length=1)
        _string(log, "logstore", here, problems, required=True, min_length=1)
        _enum(log, "logBeginRule", frozenset({"DefaultRegex", "None"}), here, problems)
        _boolean(log, "enableRequestMetrics", here, problems)
        _boolean(log, "enableInstanceMetrics", here, problems)
    elif log is not None and log != "auto":
        problems.add(f"{where}.logConfig", "must be auto or a mapping with project and logstore")
    vpc = service.get("vpcConfig")
    if isinstance(vpc, Mapping):
        here = f"{where}.vpcConfig"
        _unknown(vpc, VPC_CONFIG_KEYS, here, problems)
        _pattern(vpc, "vpcId", re.compile(r"^vpc-.+$"), here, problems, required=True)
        _pattern(vpc, "securityGroupId", re.compile(r"^sg-.+$"), here, problems, required=True)
        switches = vpc.get("vswitchIds")
        if not isinstance(switches, list) or not switches:
            problems.add(f"{here}.vswitchIds", "must be a non-empty list (lower-case 'vswitchIds' in FC 2.0)")
        else:
            if len(set(map(str, switches))) != len(switches):
                problems.add(f"{here}.vswitchIds", "has duplicates")
            for i, switch in enumerate(switches):
                _value(switch, f"{here}.vswitchIds[{i}]", problems, re.compile(r"^vsw-.+$").match, "vsw-...")
    elif vpc is not None and vpc != "auto":
        problems.add(f"{where}.vpcConfig", "must be auto or a mapping with vpcId, securityGroupId and vswitchIds")


def _check_function(function: Mapping[str, Any], where: str, problems: _Problems) -> None:
    _unknown(function, FUNCTION_KEYS, where, problems)
    _pattern(function, "name", NAME, where, problems, required=True)
    _enum(function, "runtime", RUNTIMES, where, problems, required=True)
    has_code = "codeUri" in function
    has_oss = "ossBucket" in function and "ossKey" in function
    if has_code == has_oss:
        problems.add(where, "needs codeUri, or ossBucket and ossKey (exactly one of the two)")
    _string(function, "codeUri", where, problems, min_length=1)
    python = str(function.get("runtime", "")).startswith("python")
    for key in ("handler", "initializer"):
        _string(function, key, where, problems, required=key == "handler")
        if python and isinstance(function.get(key), str) and not PYTHON_HANDLER.match(function[key]):
            problems.add(f"{where}.{key}", f"must be <module>.<function> (got {function[key]!r})")
    memory = function.get("memorySize")
    if memory is not None and (isinstance(memory, bool) or memory not in MEMORY_SIZES):
        problems.add(f"{where}.memorySize", f"{memory!r} is not one of {', '.join(map(str, MEMORY_SIZES))}")
    _integer(function, "timeout", where, problems, TIMEOUT_SECONDS)
    _integer(function, "initializationTimeout", where, problems, TIMEOUT_SECONDS)
    if "initializer" in function and "initializationTimeout" not in function:
        problems.add(f"{where}.initializationTimeout", "set it with the initializer (else FC uses its default)")
    _integer(function, "instanceConcurrency", where, problems, (1, 200))
    layers = function.get("layers")
    if layers is not None and (not isinstance(layers, list) or not all(isinstance(x, str) for x in layers)):
        problems.add(f"{where}.layers", "must be a list of layer ARNs")
    _check_environment(function.get("environmentVariables"), f"{where}.environmentVariables", problems)
    asynchronous = function.get("asyncConfiguration")
    if isinstance(asynchronous, Mapping):
        here = f"{where}.asyncConfiguration"
        _unknown(asynchronous, ASYNC_KEYS, here, problems)
        _integer(asynchronous, "maxAsyncRetryAttempts", here, problems, MAX_ASYNC_RETRY_ATTEMPTS)
        _integer(asynchronous, "maxAsyncEventAgeInSeconds", here, problems, MAX_ASYNC_EVENT_AGE_SECONDS)
        _boolean(asynchronous, "statefulInvocation", here, problems)
        destination = asynchronous.get("destination")
        if isinstance(destination, Mapping):
            _unknown(destination, DESTINATION_KEYS, f"{here}.destination", problems)
            for key in DESTINATION_KEYS:
                _string(destination, key, f"{here}.destination", problems, min_length=1)  # a plain string in 2.0
        elif destination is not None:
            problems.add(f"{here}.destination", "must be a mapping of onSuccess / onFailure ARNs")
    elif asynchronous is not None:
        problems.add(f"{where}.asyncConfiguration", "must be a mapping")


def _check_environment(environment: Any, where: str, problems: _Problems) -> None:
    if environment is None:
        return
    if not isinstance(environment, Mapping):
        problems.add(where, "must be a mapping of names to strings")
        return
    size = 0
    for name, value in environment.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            problems.add(where, f"{name!r} is not a variable name")
        elif name.startswith("FC_"):
            problems.add(f"{where}.{name}", "FC_* variables are reserved: FC sets them in every instance")
        if not isinstance(value, str):
            problems.add(f"{where}.{name}", f"must be a string (quote it: {value!r})")
        size += len(str(name)) + len(str(value))
    if size > ENVIRONMENT_BYTES:
        problems.add(where, f"{size} bytes; all variables of a function must fit in {ENVIRONMENT_BYTES}")


def _check_trigger(trigger: Any, where: str, problems: _Problems) -> None:
    if not isinstance(trigger, Mapping):
        problems.add(where, "must be a mapping with name, type and config")
        return
    _pattern(trigger, "name", NAME, where, problems, required=True)
    _enum(trigger, "type", TRIGGER_TYPES, where, problems, required=True)
    config = trigger.get("config")
    if not isinstance(config, Mapping):
        problems.add(f"{where}.config", "is required (a mapping)")
        return
    if trigger.get("type") == "timer":
        here = f"{where}.config"
        _check_timer_config(config, here, problems)


# ---------------------------------------------------------------------------------------------- FC 3.0

FC3_EDITION = "3.0.0"
FC3_REGIONS = frozenset(
    {
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-south-1",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-5",
        "ap-southeast-7",
        "cn-beijing",
        "cn-chengdu",
        "cn-hangzhou",
        "cn-heyuan-acdr-1",
        "cn-hongkong",
        "cn-huhehaote",
        "cn-qingdao",
        "cn-shanghai",
        "cn-shanghai-cloudspe",
        "cn-shanghai-finance-1",
        "cn-shenzhen",
        "cn-wulanchabu",
        "cn-zhangjiakou",
        "eu-central-1",
        "eu-west-1",
        "me-central-1",
        "us-east-1",
        "us-west-1",
    }
)
FC3_RUNTIMES = frozenset(
    {
        "custom",
        "custom-container",
        "micro-sandbox",
        "custom.debian10",
        "custom.debian11",
        "custom.debian12",
        "dotnetcore2.1",
        "dotnetcore3.1",
        "go1",
        "java11",
        "java8",
        "nodejs10",
        "nodejs12",
        "nodejs14",
        "nodejs16",
        "nodejs18",
        "nodejs20",
        "nodejs8",
        "php7.2",
        "python2.7",
        "python3",
        "python3.10",
        "python3.12",
        "python3.9",
    }
)
FC3_TRIGGER_TYPES = frozenset({"cdn_events", "eventbridge", "http", "log", "mns_topic", "oss", "tablestore", "timer"})
FC3_MEMORY = (128, 32768, 64)  # low, high, multiple of
FC3_PROPS_KEYS = frozenset(
    {
        "annotations",
        "asyncInvokeConfig",
        "code",
        "concurrencyConfig",
        "cpu",
        "customContainerConfig",
        "customDNS",
        "customRuntimeConfig",
        "description",
        "diskSize",
        "enableLongLiving",
        "endpoint",
        "environmentVariables",
        "functionName",
        "gpuConfig",
        "handler",
        "instanceIsolationMode",
        "instanceLifecycleConfig",
        "internetAccess",
        "layers",
        "logConfig",
        "memorySize",
        "nasConfig",
        "ossMountConfig",
        "provisionConfig",
        "region",
        "resourceGroupId",
        "role",
        "runtime",
        "scalingConfig",
        "sessionAffinity",
        "sessionAffinityConfig",
        "supplement",
        "tags",
        "timeout",
        "instanceConcurrency",
        "tracingConfig",
        "triggers",
        "vpcBinding",
        "vpcConfig",
    }
)
FC3_LOG_CONFIG_KEYS = LOG_CONFIG_KEYS | {"enableLlmMetrics"}
FC3_VPC_CONFIG_KEYS = frozenset({"vpcId", "securityGroupId", "vSwitchIds"})
FC3_ASYNC_KEYS = frozenset(
    {"asyncTask", "destinationConfig", "maxAsyncEventAgeInSeconds", "maxAsyncRetryAttempts", "qualifier"}
)
FC3_LIFECYCLE_KEYS = frozenset({"initializer", "preStop"})
FC3_HOOK_KEYS = frozenset({"handler", "timeout", "command"})
FC3_TRIGGER_KEYS = frozenset(
    {"triggerName", "triggerType", "triggerConfig", "qualifier", "description", "invocationRole", "sourceArn"}
)
FC3_TIMER_KEYS = frozenset({"cronExpression", "enable", "payload"})
# FC 2.0 keys that an FC 3.0 resource spells differently (devsapp/fc3 src/subCommands/2to3, reference/fc.md §3.1).
FC2_SPELLINGS = {
    "service": "role, logConfig and vpcConfig on the function itself (FC 3.0 has no services)",
    "function": "the function's properties directly under props (functionName, code, handler, ...)",
    "name": "functionName (or triggerName on a trigger)",
    "codeUri": "code",
    "asyncConfiguration": "asyncInvokeConfig",
    "destination": "destinationConfig: {onFailure: {destination: <arn>}}",
    "statefulInvocation": "asyncTask",
    "initializer": "instanceLifecycleConfig: {initializer: {handler, timeout}}",
    "initializationTimeout": "instanceLifecycleConfig.initializer.timeout",
    "vswitchIds": "vSwitchIds",
    "type": "triggerType",
    "config": "triggerConfig",
    "role": "invocationRole",  # only reported on a trigger: role is a function property in 3.0
}
FC3_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
# A value left for `s` (edition 3.0.0) to read when it deploys: ${env('NAME')}.
DEPLOY_TIME_FC3 = re.compile(r"\$\{env\('([A-Za-z_][A-Za-z0-9_]*)'\)\}")


def check_fc3_template(document: Mapping[str, Any]) -> list[str]:
    """Every problem of a rendered FC 3.0 template (edition 3.0.0, `resources:` of component fc3), one line each."""
    problems = _Problems()
    if str(document.get("edition", "")) != FC3_EDITION:
        problems.add("edition", f"must be 3.0.0 for the fc3 component (got {document.get('edition')!r})")
    if "services" in document:
        problems.add("services", "is the FC 2.0 spelling; an edition 3.0.0 template lists resources:")
    names: dict[str, str] = {}
    for where, props in _component_props(document, "resources", "fc3", problems):
        _check_fc3_props(props, where, problems)
        name = props.get("functionName")
        if isinstance(name, str) and not _deploy_time(name):
            if name in names:
                problems.add(f"{where}.functionName", f"{name!r} is also {names[name]}'s")
            names.setdefault(name, where.removesuffix(".props"))
    return problems


def _check_fc3_props(props: Mapping[str, Any], where: str, problems: _Problems) -> None:
    _unknown(props, FC3_PROPS_KEYS, where, problems, component="fc3")
    _enum(props, "region", FC3_REGIONS, where, problems, required=True)
    _pattern(props, "functionName", FC3_FUNCTION_NAME, where, problems, required=True)
    _enum(props, "runtime", FC3_RUNTIMES, where, problems, required=True)
    _string(props, "description", where, problems, max_length=256)
    runtime = str(props.get("runtime", ""))
    custom = runtime.startswith("custom") or runtime == "micro-sandbox"
    code = props.get("code")
    if code is None:
        if runtime not in ("custom-container", "micro-sandbox"):
            problems.add(f"{where}.code", "is required (a directory, or {src, ossBucketName, ossObjectName})")
    elif isinstance(code, Mapping):
        for key in ("src", "ossBucketName", "ossObjectName"):
            _string(code, key, f"{where}.code", problems, required=True, min_length=1)
    elif not isinstance(code, str) or not code:
        problems.add(f"{where}.code", f"must be a directory or a mapping (got {code!r})")
    python = runtime.startswith("python")
    _string(props, "handler", where, problems, required=not custom)
    if python and isinstance(props.get("handler"), str) and not PYTHON_HANDLER.match(props["handler"]):
        problems.add(f"{where}.handler", f"must be <module>.<function> (got {props['handler']!r})")
    memory = props.get("memorySize")
    low, high, step = FC3_MEMORY
    if memory is not None and (
        isinstance(memory, bool) or not isinstance(memory, int) or not low <= memory <= high or memory % step
    ):
        problems.add(f"{where}.memorySize", f"{memory!r} is not a multiple of {step} in {low}..{high}")
    _integer(props, "timeout", where, problems, TIMEOUT_SECONDS)
    if "instanceConcurrency" in props and python:
        problems.add(
            f"{where}.instanceConcurrency",
            "FC 3.0 runs one request per instance in its standard runtimes (custom runtimes only): omit it",
        )
    else:
        _integer(props, "instanceConcurrency", where, problems, (1, 200))
    _boolean(props, "internetAccess", where, problems)
    _check_fc3_lifecycle(props.get("instanceLifecycleConfig"), f"{where}.instanceLifecycleConfig", python, problems)
    role = props.get("role")
    if role is not None and role != "auto":
        _pattern(props, "role", ROLE_ARN, where, problems)
    _check_fc3_log(props.get("logConfig"), f"{where}.logConfig", problems)
    _check_fc3_vpc(props.get("vpcConfig"), f"{where}.vpcConfig", problems)
    layers = props.get("layers")
    if layers is not None and (not isinstance(layers, list) or not all(isinstance(x, str) for x in layers)):
        problems.add(f"{where}.layers", "must be a list of layer ARNs")
    _check_environment(props.get("environmentVariables"), f"{where}.environmentVariables", problems)
    _check_fc3_async(props.get("asyncInvokeConfig"), f"{where}.asyncInvokeConfig", problems)
    triggers = props.get("triggers")
    if triggers is not None:
        if isinstance(triggers, list):
            for i, trigger in enumerate(triggers):
                _check_fc3_trigger(trigger, f"{where}.triggers[{i}]", problems)
        else:
            problems.add(f"{where}.triggers", "must be a list")


def _check_fc3_lifecycle(lifecycle: Any, where: str, python: bool, problems: _Problems) -> None:
    if lifecycle is None:
        return
    if not isinstance(lifecycle, Mapping):
        problems.add(where, "must be a mapping of initializer / preStop hooks")
        return
    _unknown(lifecycle, FC3_LIFECYCLE_KEYS, where, problems, component="fc3")
    for name in FC3_LIFECYCLE_KEYS:
        hook = lifecycle.get(name)
        if hook is None:
            continue
        here = f"{where}.{name}"
        if not isinstance(hook, Mapping):
            problems.add(here, "must be a mapping with handler and timeout")
            continue
        _unknown(hook, FC3_HOOK_KEYS, here, problems, component="fc3")
        _string(hook, "handler", here, problems, required=python)
        if python and isinstance(hook.get("handler"), str) and not PYTHON_HANDLER.match(hook["handler"]):
            problems.add(f"{here}.handler", f"must be <module>.<function> (got {hook['handler']!r})")
        _integer(hook, "timeout", here, problems, TIMEOUT_SECONDS)
        if "timeout" not in hook:
            problems.add(f"{here}.timeout", "set it with the hook (else FC uses its default)")


def _check_fc3_log(log: Any, where: str, problems: _Problems) -> None:
    if isinstance(log, Mapping):
        _unknown(log, FC3_LOG_CONFIG_KEYS, where, problems, component="fc3")
        _string(log, "project", where, problems, required=True, min_length=1)
        _string(log, "logstore", where, problems, required=True, min_length=1)
        _enum(log, "logBeginRule", frozenset({"DefaultRegex", "None"}), where, problems)
        for key in ("enableRequestMetrics", "enableInstanceMetrics", "enableLlmMetrics"):
            _boolean(log, key, where, problems)
    elif log is not None and log != "auto":
        problems.add(where, "must be auto or a mapping with project and logstore")


def _check_fc3_vpc(vpc: Any, where: str, problems: _Problems) -> None:
    if isinstance(vpc, Mapping):
        _unknown(vpc, FC3_VPC_CONFIG_KEYS, where, problems, component="fc3")
        _pattern(vpc, "vpcId", re.compile(r"^vpc-.+$"), where, problems, required=True)
        _pattern(vpc, "securityGroupId", re.compile(r"^sg-.+$"), where, problems, required=True)
        switches = vpc.get("vSwitchIds")
        if switches == "auto":
            return
        if not isinstance(switches, list) or not switches:
            problems.add(f"{where}.vSwitchIds", "must be a non-empty list (camel-case 'vSwitchIds' in FC 3.0)")
        else:
            if len(set(map(str, switches))) != len(switches):
                problems.add(f"{where}.vSwitchIds", "has duplicates")
            for i, switch in enumerate(switches):
                _value(switch, f"{where}.vSwitchIds[{i}]", problems, re.compile(r"^vsw-.+$").match, "vsw-...")
    elif vpc is not None and vpc != "auto":
        problems.add(where, "must be auto or a mapping with vpcId, securityGroupId and vSwitchIds")


def _check_fc3_async(asynchronous: Any, where: str, problems: _Problems) -> None:
    if asynchronous is None:
        return
    if not isinstance(asynchronous, Mapping):
        problems.add(where, "must be a mapping")
        return
    _unknown(asynchronous, FC3_ASYNC_KEYS, where, problems, component="fc3")
    _integer(asynchronous, "maxAsyncRetryAttempts", where, problems, MAX_ASYNC_RETRY_ATTEMPTS)
    _integer(asynchronous, "maxAsyncEventAgeInSeconds", where, problems, MAX_ASYNC_EVENT_AGE_SECONDS)
    _boolean(asynchronous, "asyncTask", where, problems)
    _string(asynchronous, "qualifier", where, problems, min_length=1)
    destinations = asynchronous.get("destinationConfig")
    if destinations is None:
        return
    here = f"{where}.destinationConfig"
    if not isinstance(destinations, Mapping):
        problems.add(here, "must be a mapping of onSuccess / onFailure")
        return
    _unknown(destinations, DESTINATION_KEYS, here, problems, component="fc3")
    for key in DESTINATION_KEYS:
        target = destinations.get(key)
        if target is None:
            continue
        if isinstance(target, str):
            problems.add(f"{here}.{key}", "must be {destination: <arn>} in FC 3.0 (a plain string is FC 2.0's)")
        elif not isinstance(target, Mapping):
            problems.add(f"{here}.{key}", "must be a mapping {destination: <arn>}")
        else:
            _unknown(target, frozenset({"destination"}), f"{here}.{key}", problems, component="fc3")
            _string(target, "destination", f"{here}.{key}", problems, required=True, min_length=1)


def _check_fc3_trigger(trigger: Any, where: str, problems: _Problems) -> None:
    if not isinstance(trigger, Mapping):
        problems.add(where, "must be a mapping with triggerName, triggerType and triggerConfig")
        return
    _unknown(trigger, FC3_TRIGGER_KEYS, where, problems, component="fc3")
    _pattern(trigger, "triggerName", NAME, where, problems, required=True)
    _enum(trigger, "triggerType", FC3_TRIGGER_TYPES, where, problems, required=True)
    _string(trigger, "qualifier", where, problems, min_length=1)
    config = trigger.get("triggerConfig")
    if not isinstance(config, Mapping):
        problems.add(f"{where}.triggerConfig", "is required (a mapping)")
        return
    if trigger.get("triggerType") == "timer":
        here = f"{where}.triggerConfig"
        _unknown(config, FC3_TIMER_KEYS, here, problems, component="fc3")
        _check_timer_config(config, here, problems)


# ---------------------------------------------------------------------------------------------- timers


def _check_timer_config(config: Mapping[str, Any], here: str, problems: _Problems) -> None:
    """A timer trigger's config, the same in both components: enable, payload, cronExpression."""
    _boolean(config, "enable", here, problems, required=True)
    _string(config, "payload", here, problems)
    expression = config.get("cronExpression")
    if not isinstance(expression, str):
        problems.add(f"{here}.cronExpression", "is required for a timer")
        return
    error = timer_expression_error(expression)
    if error:
        problems.add(f"{here}.cronExpression", error)


_EVERY = re.compile(r"^@every\s+((?:\d+h)?(?:\d+m)?)$")
_CRON_FIELDS = (  # name, low, high, names: FC's 6-field cron (seconds first), UTC unless CRON_TZ=
    ("seconds", 0, 59, ()),
    ("minutes", 0, 59, ()),
    ("hours", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)


def timer_expression_error(expression: str) -> str | None:
    """None when `expression` is a valid FC timer: `@every <n>m` / `<n>h<n>m` (at least a minute), or six cron
    fields `sec min hour day-of-month month day-of-week` with an optional `CRON_TZ=<IANA zone> ` prefix."""
    text = expression.strip()
    every = _EVERY.match(text)
    if text.startswith("@every"):
        if not every or not every.group(1):
            return f"{expression!r}: @every takes an interval such as 1m, 90m or 1h30m"
        hours = re.search(r"(\d+)h", every.group(1))
        minutes = re.search(r"(\d+)m", every.group(1))
        total = (int(hours.group(1)) if hours else 0) * 60 + (int(minutes.group(1)) if minutes else 0)
        return None if total >= 1 else f"{expression!r}: the interval must be at least 1m"
    if text.startswith("CRON_TZ="):
        zone, _, text = text[len("CRON_TZ=") :].partition(" ")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            return f"{expression!r}: CRON_TZ={zone} is not a time zone"
    fields = text.split()
    if len(fields) != 6:
        return f"{expression!r}: FC cron has 6 fields (seconds first), got {len(fields)}"
    for value, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        error = _cron_field_error(value, low, high, names, question=name in ("day of month", "day of week"))
        if error:
            return f"{expression!r}: {name} {value!r}: {error}"
    return None


def _cron_field_error(value: str, low: int, high: int, names: tuple[str, ...], *, question: bool) -> str | None:
    if value == "?":
        return None if question else "'?' is only for day of month or day of week"
    for part in value.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) < 1):
            return f"bad step {step!r}"
        if base == "*":
            continue
        bounds = base.split("-")
        if len(bounds) > 2:
            return f"bad range {base!r}"
        numbers = []
        for bound in bounds:
            number = names.index(bound.upper()) + low if bound.upper() in names else None
            if number is None:
                if not bound.isdigit():
                    return f"{bound!r} is not a number" + (f" or one of {', '.join(names)}" if names else "")
                number = int(bound)
            if not low <= number <= high:
                return f"{number} is outside {low}..{high}"
            numbers.append(number)
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            return f"range {base!r} runs backwards"
    return None


# ---------------------------------------------------------------------------------------------- values


def _deploy_time(value: Any) -> bool:
    return isinstance(value, str) and (DEPLOY_TIME.search(value) or DEPLOY_TIME_FC3.search(value)) is not None


def _unknown(
    mapping: Mapping[str, Any], known: frozenset[str], where: str, problems: _Problems, component: str = "fc"
) -> None:
    for key in mapping:
        if key in known:
            continue
        hint = FC2_SPELLINGS.get(key) if component == "fc3" else None
        if hint:
            problems.add(f"{where}.{key}", f"is the FC 2.0 spelling; the fc3 component wants {hint}")
        else:
            problems.add(f"{where}.{key}", f"is not a property the {component} component knows")


def _value(value: Any, where: str, problems: _Problems, ok: Callable[[str], Any], shape: str) -> None:
    if not isinstance(value, str):
        problems.add(where, f"must be a string like {shape}")
    elif not _deploy_time(value) and not ok(value):
        problems.add(where, f"{value!r} does not look like {shape}")


def _pattern(
    mapping: Mapping[str, Any], key: str, pattern: re.Pattern[str], where: str, problems: _Problems, **kw: bool
) -> None:
    if key not in mapping:
        if kw.get("required"):
            problems.add(f"{where}.{key}", "is required")
        return
    _value(mapping[key], f"{where}.{key}", problems, pattern.match, pattern.pattern)


def _enum(
    mapping: Mapping[str, Any], key: str, allowed: frozenset[str], where: str, problems: _Problems, **kw: bool
) -> None:
    if key not in mapping:
        if kw.get("required"):
            problems.add(f"{where}.{key}", "is required")
        return
    value = mapping[key]
    if not _deploy_time(value) and value not in allowed:
        problems.add(f"{where}.{key}", f"{value!r} is not one of {', '.join(sorted(allowed))}")


def _string(
    mapping: Mapping[str, Any],
    key: str,
    where: str,
    problems: _Problems,
    *,
    required: bool = False,
    min_length: int = 0,
    max_length: int | None = None,
) -> None:
    if key not in mapping:
        if required:
            problems.add(f"{where}.{key}", "is required")
        return
    value = mapping[key]
    if not isinstance(value, str):
        problems.add(f"{where}.{key}", f"must be a string (got {value!r})")
    elif len(value) < min_length:
        problems.add(f"{where}.{key}", "must not be empty")
    elif max_length is not None and len(value) > max_length:
        problems.add(f"{where}.{key}", f"is longer than {max_length} characters")


def _boolean(mapping: Mapping[str, Any], key: str, where: str, problems: _Problems, *, required: bool = False) -> None:
    if key not in mapping:
        if required:
            problems.add(f"{where}.{key}", "is required")
        return
    if not isinstance(mapping[key], bool):
        problems.add(f"{where}.{key}", f"must be true or false (got {mapping[key]!r})")


def _integer(mapping: Mapping[str, Any], key: str, where: str, problems: _Problems, bounds: tuple[int, int]) -> None:
    if key not in mapping:
        return
    value = mapping[key]
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(f"{where}.{key}", f"must be a whole number (got {value!r})")
    elif not low <= value <= high:
        problems.add(f"{where}.{key}", f"{value} is outside {low}..{high}")

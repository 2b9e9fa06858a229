"""What the emulator and the runner know about a function: `FunctionSpec`, and `load_template` that reads
them from a Serverless Devs FC 2.0 template (edition 1.0.0, component `fc`; reference/fc.md §2.2-2.3)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_MAX_ASYNC_RETRY_ATTEMPTS = 3
DEFAULT_MAX_ASYNC_EVENT_AGE_SECONDS = 86400.0
MNS_QUEUE_ARN = re.compile(r"^acs:mns:[^:]*:[^:]*:/queues/([^/]+)/messages$")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class TimerTrigger:
    name: str
    cron_expression: str
    payload: str = ""
    enable: bool = True


@dataclass(frozen=True)
class FunctionSpec:
    service: str
    name: str
    handler: str
    code_uri: Path
    initializer: str | None = None
    initialization_timeout: float | None = None  # None: same as timeout
    memory: int = 512
    timeout: float = 60.0
    environment: Mapping[str, str] = field(default_factory=dict)
    runtime: str = "python3.10"
    region: str | None = None
    log_project: str = ""
    log_store: str = ""
    max_async_retry_attempts: int = DEFAULT_MAX_ASYNC_RETRY_ATTEMPTS
    max_async_event_age_seconds: float = DEFAULT_MAX_ASYNC_EVENT_AGE_SECONDS
    on_failure: str | None = None  # e.g. acs:mns:::/queues/<queue>/messages
    triggers: tuple[TimerTrigger, ...] = ()
    python_path: tuple[Path, ...] = ()  # put on sys.path after code_uri (FC has only the code directory)

    def __post_init__(self) -> None:
        object.__setattr__(self, "code_uri", Path(self.code_uri))
        object.__setattr__(self, "python_path", tuple(Path(p) for p in self.python_path))
        object.__setattr__(self, "environment", {str(k): str(v) for k, v in dict(self.environment).items()})
        where = f"function {self.service}/{self.name}"
        if not self.service or not self.name:
            raise ValueError("a function needs a service and a name")
        for label, value in (("handler", self.handler), ("initializer", self.initializer)):
            if value is not None and not re.fullmatch(r"[\w.]+\.\w+", value):
                raise ValueError(f"{where}: {label} must look like module.function, got {value!r}")
        if not 0 <= self.max_async_retry_attempts <= 8:
            raise ValueError(f"{where}: max_async_retry_attempts must be 0..8, got {self.max_async_retry_attempts}")
        if self.max_async_event_age_seconds <= 0:
            raise ValueError(f"{where}: max_async_event_age_seconds must be positive")
        if self.timeout <= 0 or (self.initialization_timeout is not None and self.initialization_timeout <= 0):
            raise ValueError(f"{where}: timeouts must be positive")
        if self.on_failure is not None and not MNS_QUEUE_ARN.match(self.on_failure):
            raise ValueError(
                f"{where}: on_failure must be an MNS queue ARN like acs:mns:::/queues/<queue>/messages, "
                f"got {self.on_failure!r}"
            )

    @property
    def key(self) -> tuple[str, str]:
        return self.service, self.name

    @property
    def init_timeout(self) -> float:
        return self.initialization_timeout if self.initialization_timeout is not None else self.timeout

    @property
    def failure_queue(self) -> str | None:
        match = MNS_QUEUE_ARN.match(self.on_failure or "")
        return match.group(1) if match else None

    def arn(self, region: str, account_id: str, qualifier: str = "LATEST") -> str:
        return f"acs:fc:{region}:{account_id}:services/{self.service}.{qualifier}/functions/{self.name}"

    def trigger(self, name: str) -> TimerTrigger | None:
        return next((t for t in self.triggers if t.name == name), None)


# ------------------------------------------------------------------------------------------------ template

_REFERENCE = re.compile(r"\$\{\s*([^}]*?)\s*\}")
_ENV_CALL = re.compile(r"""^env\(\s*['"]?([A-Za-z_][A-Za-z0-9_]*)['"]?\s*(?:,\s*['"]?(.*?)['"]?\s*)?\)$""")


def load_template(path: str | Path, *, python_path: Sequence[str | Path] = ()) -> list[FunctionSpec]:
    """Every function under `services:` whose component is `fc`. `${vars.x}` (nested keys too) and
    `${env('NAME', 'default')}` are resolved; codeUri is relative to the template's directory."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"{path}: {exc}") from None
    if not isinstance(document, dict):
        raise TemplateError(f"{path}: not a Serverless Devs template (expected a mapping)")
    edition = str(document.get("edition", ""))
    if edition != "1.0.0":
        raise TemplateError(f"{path}: edition {edition or '(missing)'} is not supported; FC 2.0 needs edition 1.0.0")
    raw_vars = document.get("vars") or {}
    variables = _resolve(raw_vars, raw_vars, f"{path}: vars")
    services = document.get("services")
    if not isinstance(services, dict):
        raise TemplateError(f"{path}: no `services:` mapping (FC 2.0 templates use services, not resources)")
    specs: list[FunctionSpec] = []
    for entry_name, entry in services.items():
        if not isinstance(entry, dict) or entry.get("component") != "fc":
            continue
        props = _resolve(entry.get("props") or {}, variables, f"{path}: services.{entry_name}.props")
        if props.get("function"):
            specs.append(_function_spec(props, path.parent, [Path(p) for p in python_path], f"{path}: {entry_name}"))
    return specs


def _function_spec(props: dict, base: Path, python_path: list[Path], where: str) -> FunctionSpec:
    service = props.get("service") or {}
    function = props["function"]
    if not isinstance(service, dict) or not service.get("name"):
        raise TemplateError(f"{where}: props.service.name is missing")
    for key in ("name", "handler"):
        if not function.get(key):
            raise TemplateError(f"{where}: props.function.{key} is missing")
    code_uri = function.get("codeUri", ".")
    if isinstance(code_uri, dict):
        code_uri = code_uri.get("src", ".")
    log_config = service.get("logConfig") if isinstance(service.get("logConfig"), dict) else {}
    async_config = function.get("asyncConfiguration") or {}
    destination = async_config.get("destination") or {}
    on_failure = destination.get("onFailure") if isinstance(destination, dict) else None
    if isinstance(on_failure, dict):  # tolerate the 3.0 shape {destination: arn}
        on_failure = on_failure.get("destination")
    triggers = tuple(
        TimerTrigger(
            name=str(t.get("name", "")),
            cron_expression=str((t.get("config") or {}).get("cronExpression", "")),
            payload=str((t.get("config") or {}).get("payload", "") or ""),
            enable=bool((t.get("config") or {}).get("enable", True)),
        )
        for t in props.get("triggers") or []
        if isinstance(t, dict) and t.get("type") == "timer"
    )
    try:
        return FunctionSpec(
            service=str(service["name"]),
            name=str(function["name"]),
            handler=str(function["handler"]),
            code_uri=(base / str(code_uri)).resolve(),
            initializer=function.get("initializer") or None,
            initialization_timeout=_number(function.get("initializationTimeout")),
            memory=int(function.get("memorySize", 512)),
            timeout=_number(function.get("timeout")) or 3.0,  # the fc component's default
            environment=function.get("environmentVariables") or {},
            runtime=str(function.get("runtime", "python3.10")),
            region=props.get("region"),
            log_project=str(log_config.get("project", "")),
            log_store=str(log_config.get("logstore", "")),
            max_async_retry_attempts=int(async_config.get("maxAsyncRetryAttempts", DEFAULT_MAX_ASYNC_RETRY_ATTEMPTS)),
            max_async_event_age_seconds=_number(async_config.get("maxAsyncEventAgeInSeconds"))
            or DEFAULT_MAX_ASYNC_EVENT_AGE_SECONDS,
            on_failure=on_failure or None,
            triggers=triggers,
            python_path=tuple(python_path),
        )
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"{where}: {exc}") from None


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _resolve(value: Any, variables: dict, where: str, depth: int = 0) -> Any:
    if depth > 20:
        raise TemplateError(f"{where}: variable references nest too deeply (a cycle?)")
    if isinstance(value, dict):
        return {k: _resolve(v, variables, f"{where}.{k}", depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, variables, f"{where}[{i}]", depth) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _REFERENCE.fullmatch(value.strip())
    if whole:  # `service: ${vars.service}` keeps the referenced value's type (a mapping here)
        return _resolve(_lookup(whole.group(1), variables, where), variables, where, depth + 1)

    def text(match: re.Match) -> str:
        found = _resolve(_lookup(match.group(1), variables, where), variables, where, depth + 1)
        return str(found)

    return _REFERENCE.sub(text, value)


def _lookup(expression: str, variables: dict, where: str) -> Any:
    env = _ENV_CALL.match(expression)
    if env:
        name, default = env.group(1), env.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise TemplateError(f"{where}: environment variable {name} is not set and has no default")
        return default
    parts = expression.split(".")
    if parts[0] != "vars" or len(parts) < 2:
        raise TemplateError(f"{where}: unsupported reference ${{{expression}}} (only vars.* and env() are resolved)")
    current: Any = variables
    for part in parts[1:]:
        if not isinstance(current, dict) or part not in current:
            raise TemplateError(f"{where}: ${{{expression}}} is not defined")
        current = current[part]
    return current

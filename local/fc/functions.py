"""What the emulator and the runner know about a function: `FunctionSpec`, and `load_template` that reads
them from a Serverless Devs FC 2.0 template (edition 1.0.0, component `fc`; reference/fc.md §2.2-2.3);
`render_template`, the same resolution for `make build` / `make deploy`: the template as Serverless Devs deploys it."""

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


def env_reference(name: str) -> str:
    """The one spelling of an environment reference that Serverless Devs resolves in an edition 1.0.0 template:
    ``${env(NAME)}`` — no quotes, no default, and not inside ``vars`` (@serverless-devs/core reads
    ``process.env[<text between the parentheses>]`` and never resolves references held in ``vars``)."""
    return "${env(" + name + ")}"


@dataclass
class _Resolution:
    """How `${env(...)}` is resolved: from `environ`; a variable in `keep` is written back as a reference for
    Serverless Devs to read at deploy time (when set; else its default); a variable that is unset and has no
    default is collected in `missing` and becomes "" (`strict` makes that an error naming them all)."""

    environ: Mapping[str, str]
    strict: bool = False
    keep: frozenset[str] = frozenset()
    unresolved: str = "empty"  # "empty": a missing variable becomes ""; "reference": ${env(NAME)} for `s` to read
    missing: list[str] = field(default_factory=list)


def read_template(path: str | Path) -> dict[str, Any]:
    """The template's YAML as a mapping, checked to be an FC 2.0 template (edition 1.0.0 with `services:`)."""
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
    if not isinstance(document.get("services"), dict):
        raise TemplateError(f"{path}: no `services:` mapping (FC 2.0 templates use services, not resources)")
    return document


def render_template(
    path: str | Path,
    environ: Mapping[str, str] | None = None,
    *,
    keep: Sequence[str] = (),
    strict: bool = False,
    unresolved: str = "empty",
) -> dict[str, Any]:
    """The template with every `${vars.x}` and `${env('NAME', 'default')}` resolved and `vars` dropped: what
    Serverless Devs deploys. Variables named in `keep` (secrets) stay `${env(NAME)}` when set in `environ`, so `s`
    reads them at deploy time and they are never written down; unset, they take their default (usually "").
    A variable that is unset and has no default raises TemplateError naming every such variable when `strict`,
    else becomes "" (`unresolved="empty"`) or a `${env(NAME)}` reference (`unresolved="reference"`)."""
    path = Path(path)
    document = read_template(path)
    how = _Resolution(
        os.environ if environ is None else environ, strict=strict, keep=frozenset(keep), unresolved=unresolved
    )
    raw_vars = document.get("vars") or {}
    variables = _resolve(raw_vars, raw_vars, f"{path}: vars", how)
    rendered = {k: v for k, v in document.items() if k != "vars"}
    rendered["services"] = _resolve(document["services"], variables, f"{path}: services", how)
    if how.missing and strict:
        names = ", ".join(dict.fromkeys(how.missing))
        raise TemplateError(f"{path}: set these environment variables (they have no default): {names}")
    return rendered


def load_template(
    path: str | Path, *, python_path: Sequence[str | Path] = (), environ: Mapping[str, str] | None = None
) -> list[FunctionSpec]:
    """Every function under `services:` whose component is `fc`. `${vars.x}` (nested keys too) and
    `${env('NAME', 'default')}` are resolved from `environ` (default: os.environ); an unset variable without a
    default (an account-specific value the local stack does not need) becomes ""; codeUri is relative to the
    template's directory."""
    path = Path(path)
    document = read_template(path)
    how = _Resolution(os.environ if environ is None else environ)
    raw_vars = document.get("vars") or {}
    variables = _resolve(raw_vars, raw_vars, f"{path}: vars", how)
    specs: list[FunctionSpec] = []
    for entry_name, entry in document["services"].items():
        if not isinstance(entry, dict) or entry.get("component") != "fc":
            continue
        props = _resolve(entry.get("props") or {}, variables, f"{path}: services.{entry_name}.props", how)
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


def _resolve(value: Any, variables: dict, where: str, how: _Resolution, depth: int = 0) -> Any:
    if depth > 20:
        raise TemplateError(f"{where}: variable references nest too deeply (a cycle?)")
    if isinstance(value, dict):
        return {k: _resolve(v, variables, f"{where}.{k}", how, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, variables, f"{where}[{i}]", how, depth) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _REFERENCE.fullmatch(value.strip())
    if whole:  # `service: ${vars.service}` keeps the referenced value's type (a mapping here)
        return _resolved(_lookup(whole.group(1), variables, where, how), variables, where, how, depth)

    def text(match: re.Match) -> str:
        return str(_resolved(_lookup(match.group(1), variables, where, how), variables, where, how, depth))

    return _REFERENCE.sub(text, value)


class _Final(str):
    """An environment value (or a reference left for `s`): used as it is, never resolved again."""


def _resolved(found: Any, variables: dict, where: str, how: _Resolution, depth: int) -> Any:
    if isinstance(found, _Final):
        return str(found)
    return _resolve(found, variables, where, how, depth + 1)


def _lookup(expression: str, variables: dict, where: str, how: _Resolution) -> Any:
    env = _ENV_CALL.match(expression)
    if env:
        name, default = env.group(1), env.group(2)
        value = how.environ.get(name)
        if value is not None and not value.strip():
            value = None  # empty counts as unset, as in shared.settings.load_settings
        if value is not None and name in how.keep:
            return _Final(env_reference(name))
        if value is not None:
            return _Final(value)
        if default is not None:
            return _Final(default)
        how.missing.append(name)
        return _Final(env_reference(name) if how.unresolved == "reference" else "")
    parts = expression.split(".")
    if parts[0] != "vars" or len(parts) < 2:
        raise TemplateError(f"{where}: unsupported reference ${{{expression}}} (only vars.* and env() are resolved)")
    current: Any = variables
    for part in parts[1:]:
        if not isinstance(current, dict) or part not in current:
            raise TemplateError(f"{where}: ${{{expression}}} is not defined")
        current = current[part]
    return current

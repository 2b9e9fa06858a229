"""Configuration: one pydantic settings model, read once per instance from the environment.

Variable names are Alibaba's where Alibaba has one (``ALIBABA_CLOUD_ACCESS_KEY_ID`` …), defaults are the production
values from reference/alicom.md §7 (the Alicom MNS endpoint, ``dybaseapi.aliyuncs.com``, ``FlowReport``), and a
missing or bad value fails at start with ONE line naming the variable::

    ConfigError: DRAIN_POLLERS: must be between 1 and 16 (got 40)

Endpoints are URLs with a scheme (``http://127.0.0.1:9100`` works for the local stack) and are stored without a
trailing slash. ``python -m shared.settings --markdown`` prints the README's configuration table from the fields.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.errors import ConfigError

ALICOM_MNS_ENDPOINT = "https://1943695596114318.mns.cn-hangzhou.aliyuncs.com"
ALICOM_API_ENDPOINT = "https://dybaseapi.aliyuncs.com"
FLOW_API_ENDPOINT = "https://dycdpapi.aliyuncs.com"
# FC's only writable place is /tmp (the code directory is read-only); a file there lives as long as the
# instance, so production points LEDGER_URL at RDS / PolarDB. The default suits local runs, tests and the demo.
DEFAULT_LEDGER_URL = "sqlite:////tmp/flow-receipts/ledger.sqlite3"

_QUEUE_NAME = re.compile(r"Alicom-Queue-(?P<uid>\d+)-(?P<type>[A-Za-z][A-Za-z0-9]*)")
_MESSAGE_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_REGION = re.compile(r"[a-z]{2,}(?:-[a-z0-9]+)+")
_FC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")  # FC 2.0 service / function names
# FC 3.0 function names: the same, and `<service>$<function>` for a function migrated from FC 2.0.
_FC3_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}(?:\$[A-Za-z_][A-Za-z0-9_-]{0,127})?")
_MNS_QUEUE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,119}")
_DATABASE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+._-]*://\S*")
_PLAIN = re.compile(r"[\w.:/@+-]+")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_SECRET_VARIABLES = frozenset(
    {"ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN", "LEDGER_URL", "WEBHOOK_SECRET", "WEBHOOK_URL"}
)


def _endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"must be a URL with scheme http or https, e.g. https://host or http://127.0.0.1:9100 (got {value!r})"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"must be scheme://host[:port] with no path, query or credentials (got {value!r})")
    ipv6 = ":" in parts.hostname
    if not ipv6 and not all(_HOST_LABEL.fullmatch(label) for label in parts.hostname.removesuffix(".").split(".")):
        # e.g. https://.mns.cn-hangzhou.aliyuncs.com: a template rendered without FC_ACCOUNT_ID
        raise ValueError(f"has an empty or malformed part in its host name (got {value!r})")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"has a bad port (got {value!r})") from None
    return f"{parts.scheme}://{parts.netloc}"


def _matching(pattern: re.Pattern[str], shape: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"must look like {shape} (got {value!r})")
        return value

    return AfterValidator(check)


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _fc_api(value: Any) -> Any:
    """2, "2.0", "fc2" -> "2"; 3, "3.0", "fc3" -> "3"; anything else is left for the Literal check."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("fc")
        return {"2": "2", "2.0": "2", "3": "3", "3.0": "3"}.get(text, value)
    return value


def _log_level(value: Any) -> Any:
    if isinstance(value, str):
        level = value.strip().upper()
        return "WARNING" if level == "WARN" else level
    return value


def _webhook_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ValueError("must be an http or https URL without credentials, e.g. https://example.com/hooks/flow")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("has a bad port") from None
    return value


_HOOK = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")


Endpoint = Annotated[str, AfterValidator(_endpoint)]
Region = Annotated[str, _matching(_REGION, "cn-hangzhou")]
WebhookUrl = Annotated[str, AfterValidator(_webhook_url)]
HookPath = Annotated[str, _matching(_HOOK, "module.path:function")]
FcName = Annotated[str, _matching(_FC_NAME, "an FC name (letters, digits, '_', '-'; no digit or '-' first)")]


class Settings(BaseModel):
    """Everything the functions read from the environment, validated once. Field aliases are the variable names.

    Build it with ``load_settings()`` (or ``Settings.from_environ()``). A plain pydantic model rather than
    pydantic-settings' BaseSettings: ``load_settings`` does the reading, and BaseSettings' import (asyncio, ssl,
    dotenv, argparse and its many sources) would add 20-40 ms to every cold start for nothing used here.
    """

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        str_strip_whitespace=True,
        hide_input_in_errors=True,
    )

    # --- credentials (FC python3.10 passes them in the context; python3.12 and local runs use these) ---
    alibaba_cloud_access_key_id: str | None = Field(
        None,
        alias="ALIBABA_CLOUD_ACCESS_KEY_ID",
        description="AccessKey id. On FC python3.10 the function role's STS credentials come from the context.",
    )
    alibaba_cloud_access_key_secret: SecretStr | None = Field(
        None, alias="ALIBABA_CLOUD_ACCESS_KEY_SECRET", description="AccessKey secret (never logged)."
    )
    alibaba_cloud_security_token: SecretStr | None = Field(
        None, alias="ALIBABA_CLOUD_SECURITY_TOKEN", description="STS security token, with temporary credentials."
    )

    # --- Alicom: where the receipts come from (reference/alicom.md §1, §2) ---
    alicom_mns_endpoint: Endpoint = Field(
        ALICOM_MNS_ENDPOINT, alias="ALICOM_MNS_ENDPOINT", description="Alicom's MNS endpoint holding the receipt queue."
    )
    alicom_api_endpoint: Endpoint = Field(
        ALICOM_API_ENDPOINT,
        alias="ALICOM_API_ENDPOINT",
        description="Dybaseapi endpoint (QueryTokenForMnsQueue: the queue token).",
    )
    flow_api_endpoint: Endpoint = Field(
        FLOW_API_ENDPOINT, alias="FLOW_API_ENDPOINT", description="Dycdpapi endpoint (top-up status query, sweep)."
    )
    alicom_region: Region = Field("cn-hangzhou", alias="ALICOM_REGION", description="Region of the Alicom APIs.")
    alicom_message_type: Annotated[str, _matching(_MESSAGE_TYPE, "FlowReport")] = Field(
        "FlowReport", alias="ALICOM_MESSAGE_TYPE", description="Alicom message type the queue carries."
    )
    alicom_queue_name: Annotated[str, _matching(_QUEUE_NAME, "Alicom-Queue-<account id>-<MessageType>")] = Field(
        alias="ALICOM_QUEUE_NAME",
        description="Your Alicom receipt queue, as shown in the console: `Alicom-Queue-<account id>-FlowReport`.",
    )

    # --- the ledger ---
    ledger_url: str = Field(
        DEFAULT_LEDGER_URL,
        alias="LEDGER_URL",
        description="SQLAlchemy URL of the order ledger: `sqlite:///…`, `mysql+pymysql://…`, `postgresql+psycopg://…`. "
        "The default is on /tmp, FC's only writable place, and lives only as long as the instance.",
    )

    # --- dispatch: inline in the drainer, or async through FC ---
    dispatch_mode: Annotated[Literal["inline", "async"], BeforeValidator(_lower)] = Field(
        "inline",
        alias="DISPATCH_MODE",
        description="`inline`: the drainer applies receipts itself; `async`: it hands each one to the processor "
        "function (FC persists the invocation).",
    )
    fc_account_id: Annotated[str, _matching(re.compile(r"\d+"), "an account id of digits")] | None = Field(
        None, alias="FC_ACCOUNT_ID", description="Set by FC: the account id, used to derive FC_ENDPOINT."
    )
    fc_region: Region | None = Field(
        None, alias="FC_REGION", description="Set by FC: the region, used to derive FC_ENDPOINT."
    )
    fc_endpoint: Endpoint | None = Field(
        None,
        alias="FC_ENDPOINT",
        validate_default=True,
        description="FC endpoint for async dispatch. When unset it is derived on FC as "
        "`https://<FC_ACCOUNT_ID>.<FC_REGION>-internal.fc.aliyuncs.com`.",
    )
    fc_api: Annotated[Literal["2", "3"], BeforeValidator(_fc_api)] = Field(
        "2",
        alias="FUNCTION_COMPUTE_API",
        description="Which Function Compute API async dispatch and the sweep's self-invocation call: `2` (FC 2.0, "
        "API 2016-08-15, through fc2: a function is PROCESSOR_SERVICE + PROCESSOR_FUNCTION) or `3` (FC 3.0, API "
        "2023-03-30, through alibabacloud_fc20230330, installed by the `fc3` extra: a function is its name alone). "
        "Each SDK is imported only when its API is chosen.",
    )
    processor_service: FcName = Field(
        "flow-receipts",
        alias="PROCESSOR_SERVICE",
        description="FC 2.0 service of the processor (unused with FUNCTION_COMPUTE_API=3).",
    )
    processor_function: Annotated[
        str, _matching(_FC3_FUNCTION_NAME, "an FC name (letters, digits, '_', '-'; no digit or '-' first)")
    ] = Field(
        "processor",
        alias="PROCESSOR_FUNCTION",
        description="Processor function name: in PROCESSOR_SERVICE on FC 2.0; with FUNCTION_COMPUTE_API=3 its whole "
        "FC 3.0 name (a function migrated from FC 2.0 is `<service>$<function>`).",
    )

    # --- the drain loop ---
    drain_pollers: int = Field(
        4, ge=1, le=16, alias="DRAIN_POLLERS", description="Concurrent pollers (one MNS client each)."
    )
    drain_deadline_margin_seconds: float = Field(
        5.0,
        ge=0,
        le=600,
        alias="DRAIN_DEADLINE_MARGIN_SECONDS",
        description="The drainer stops receiving this long before its timeout.",
    )
    drain_long_poll_seconds: int = Field(
        5,
        ge=0,
        le=30,
        alias="DRAIN_LONG_POLL_SECONDS",
        description="MNS long-poll wait per receive, bounded by the time left.",
    )
    max_dequeue_count: int = Field(
        5,
        ge=1,
        alias="MAX_DEQUEUE_COUNT",
        description="A message still failing after this many deliveries is dead-lettered and deleted.",
    )
    token_refresh_margin_seconds: int = Field(
        120,
        ge=0,
        le=3600,
        alias="TOKEN_REFRESH_MARGIN_SECONDS",
        description="Refresh the Alicom queue token this long before its ExpireTime.",
    )

    # --- your own MNS, for the processor's dead letters ---
    mns_endpoint: Endpoint | None = Field(
        None, alias="MNS_ENDPOINT", description="Your own MNS endpoint (the processor's dead-letter queue)."
    )
    dlq_queue_name: Annotated[str, _matching(_MNS_QUEUE, "an MNS queue name (letters, digits, '-')")] | None = Field(
        None, alias="DLQ_QUEUE_NAME", description="Dead-letter queue in your own MNS (needs MNS_ENDPOINT)."
    )

    # --- placing top-ups (flow-receipts charge) ---
    flow_api: Annotated[Literal["charge", "cdp"], BeforeValidator(_lower)] = Field(
        "charge",
        alias="FLOW_API",
        description="Which flow API places and checks top-ups: `charge` (Dycdpapi 2017-05-25 Charge with a grade, "
        "QueryChargeDetail) or `cdp` (2018-06-10 CreateCdpOrder with an offer id, QueryCdpOrder).",
    )
    charge_rate_per_second: float = Field(
        10.0,
        gt=0,
        le=1000,
        alias="CHARGE_RATE_PER_SECOND",
        description="Top-ups per second placed by `flow-receipts charge --from-csv`.",
    )

    # --- the daily sweep ---
    sweep_grace_seconds: float = Field(
        3600.0,
        ge=0,
        le=7 * 86400,
        alias="SWEEP_GRACE_SECONDS",
        description="PENDING orders younger than this are left to their receipts; older ones are asked about.",
    )
    sweep_qps: float = Field(20.0, gt=0, le=1000, alias="SWEEP_QPS", description="Status queries per second, at most.")
    sweep_concurrency: int = Field(
        4, ge=1, le=64, alias="SWEEP_CONCURRENCY", description="Status queries in flight at once, at most."
    )
    sweep_page_size: int = Field(
        200, ge=1, le=5000, alias="SWEEP_PAGE_SIZE", description="PENDING orders read per page (keyset pagination)."
    )
    sweep_deadline_margin_seconds: float = Field(
        30.0,
        ge=0,
        le=3600,
        alias="SWEEP_DEADLINE_MARGIN_SECONDS",
        description="The sweep stops starting new work this long before its timeout and saves its cursor.",
    )
    sweep_lease_seconds: float = Field(
        300.0,
        ge=10,
        le=86400,
        alias="SWEEP_LEASE_SECONDS",
        description="A sweep holds a lease in the ledger, renewed as it goes; one that stopped renewing (killed) is "
        "taken over this long after its last renewal.",
    )
    sweep_not_found: Annotated[Literal["resubmit", "fail", "wait"], BeforeValidator(_lower)] = Field(
        "resubmit",
        alias="SWEEP_NOT_FOUND",
        description="What a NOT_FOUND answer (the provider has no record of the out id) does once it is believed: "
        "`resubmit` the top-up (idempotent per out id; orders placed by `flow-receipts charge` only, at most once, and "
        "only while younger than SWEEP_RESUBMIT_MAX_AGE_SECONDS; otherwise it fails), `fail` the order "
        "(err_code NOT_FOUND), or `wait` for expiry.",
    )
    sweep_not_found_after_seconds: float = Field(
        1800.0,
        ge=0,
        le=30 * 86400,
        alias="SWEEP_NOT_FOUND_AFTER_SECONDS",
        description="A NOT_FOUND answer is believed only this long after the order's last charge attempt (a top-up "
        "just placed may not be queryable yet).",
    )
    sweep_resubmit_max_age_seconds: float = Field(
        86400.0,
        ge=0,
        le=30 * 86400,
        alias="SWEEP_RESUBMIT_MAX_AGE_SECONDS",
        description="Never re-submit a top-up registered longer ago than this: a late top-up is failed instead.",
    )
    sweep_self_invoke: bool = Field(
        False,
        alias="SWEEP_SELF_INVOKE",
        description="On FC: when the sweep stops at its deadline with work left, it invokes itself asynchronously "
        "to continue from its cursor (otherwise the next scheduled run resumes), through the API "
        "FUNCTION_COMPUTE_API names (FC 2.0: its service and function name; FC 3.0: its function name alone).",
    )
    report_dir: str = Field(
        "/tmp/flow-receipts/reports",
        alias="REPORT_DIR",
        description="Where the sweep writes its reconciliation reports (JSON and CSV); on FC an OSS-mounted path.",
    )

    # --- telling your business code ---
    webhook_url: WebhookUrl | None = Field(
        None,
        alias="WEBHOOK_URL",
        description="POST every order event here as JSON, signed with WEBHOOK_SECRET (HMAC-SHA256 over timestamp + "
        "body).",
    )
    webhook_secret: SecretStr | None = Field(
        None, alias="WEBHOOK_SECRET", description="Key of the webhook signature (never logged); needs WEBHOOK_URL."
    )
    webhook_timeout_seconds: float = Field(
        5.0, gt=0, le=60, alias="WEBHOOK_TIMEOUT_SECONDS", description="Timeout of one webhook request."
    )
    notify_hook: HookPath | None = Field(
        None,
        alias="NOTIFY_HOOK",
        description="`module:function` called with every order event (a dict), importable from the function's code.",
    )
    notify_hook_timeout_seconds: float = Field(
        5.0, gt=0, le=60, alias="NOTIFY_HOOK_TIMEOUT_SECONDS", description="How long one hook call may take."
    )
    notify_budget_seconds: float = Field(
        10.0,
        ge=0,
        le=300,
        alias="NOTIFY_BUDGET_SECONDS",
        description="Time a drain or processor run spends delivering its new events after committing them; what is "
        "left is redelivered by the sweep and by `flow-receipts outbox redeliver`.",
    )
    notify_retry_seconds: float = Field(
        60.0,
        ge=0,
        le=86400,
        alias="NOTIFY_RETRY_SECONDS",
        description="Backoff before the first redelivery of a failed event; it doubles per attempt up to an hour.",
    )

    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_log_level)] = Field(
        "INFO", alias="LOG_LEVEL", description="`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`."
    )

    @field_validator("ledger_url")
    @classmethod
    def _ledger_url(cls, value: str) -> str:
        if not _DATABASE_URL.fullmatch(value):
            # The value may hold a database password: never echo it.
            raise ValueError("must be a database URL like sqlite:///path or mysql+pymysql://user:password@host/db")
        return value

    @field_validator("fc_endpoint")
    @classmethod
    def _derive_fc_endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            return value
        account, region = info.data.get("fc_account_id"), info.data.get("fc_region")
        if account and region:
            return f"https://{account}.{region}-internal.fc.aliyuncs.com"
        if info.data.get("dispatch_mode") == "async":
            raise ValueError("required when DISPATCH_MODE=async outside FC (FC_ACCOUNT_ID and FC_REGION are not set)")
        return None

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        has_id = self.alibaba_cloud_access_key_id is not None
        has_secret = self.alibaba_cloud_access_key_secret is not None
        if has_id and not has_secret:
            raise ValueError("ALIBABA_CLOUD_ACCESS_KEY_SECRET: required when ALIBABA_CLOUD_ACCESS_KEY_ID is set")
        if has_secret and not has_id:
            raise ValueError("ALIBABA_CLOUD_ACCESS_KEY_ID: required when ALIBABA_CLOUD_ACCESS_KEY_SECRET is set")
        if self.alibaba_cloud_security_token is not None and not has_id:
            raise ValueError("ALIBABA_CLOUD_ACCESS_KEY_ID: required when ALIBABA_CLOUD_SECURITY_TOKEN is set")
        queue_type = self.queue_message_type
        if queue_type != self.alicom_message_type:
            raise ValueError(
                f"ALICOM_QUEUE_NAME: is a {queue_type} queue but ALICOM_MESSAGE_TYPE is {self.alicom_message_type} "
                f"(got {self.alicom_queue_name!r})"
            )
        if self.fc_api == "2" and "$" in self.processor_function:
            raise ValueError(
                "PROCESSOR_FUNCTION: a name with '$' is an FC 3.0 name (set FUNCTION_COMPUTE_API=3), "
                "FC 2.0 names have no '$' "
                f"(got {self.processor_function!r})"
            )
        if self.dlq_queue_name is not None and self.mns_endpoint is None:
            raise ValueError("MNS_ENDPOINT: required when DLQ_QUEUE_NAME is set")
        if self.webhook_url is not None and self.webhook_secret is None:
            raise ValueError("WEBHOOK_SECRET: required when WEBHOOK_URL is set (every delivery is signed)")
        if self.webhook_secret is not None and self.webhook_url is None:
            raise ValueError("WEBHOOK_URL: required when WEBHOOK_SECRET is set")
        return self

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Same as ``load_settings(environ)``."""
        return load_settings(environ)

    @property
    def queue_message_type(self) -> str:
        """The message type named by the queue: FlowReport for Alicom-Queue-123-FlowReport."""
        match = _QUEUE_NAME.fullmatch(self.alicom_queue_name)
        return match["type"] if match else ""

    @property
    def has_static_credentials(self) -> bool:
        """True when an AccessKey pair is configured (python3.12, local); else the FC context provides one."""
        return self.alibaba_cloud_access_key_id is not None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings from ``environ`` (default ``os.environ``). Names are case-sensitive, empty
    values count as unset, and other variables are ignored.

    Raises ConfigError with one line naming each bad variable, e.g. ``ALICOM_QUEUE_NAME: field required``.
    """
    source = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for field in Settings.model_fields.values():
        name = field.alias or ""
        value = source.get(name)
        if value is not None and value.strip():
            values[name] = value
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> str:
    """One line: ``VARIABLE: problem`` for each error, joined with ``; ``. Secret values are never echoed."""
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        loc = error.get("loc") or ()
        variable = _variable(str(loc[0])) if loc else ""
        problem = _problem(error, variable)
        lines.append(f"{variable}: {problem}" if variable else problem)
    return "; ".join(dict.fromkeys(line.replace("\n", " ") for line in lines))


def _problem(error: Mapping[str, Any], variable: str) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    shown = "" if variable in _SECRET_VARIABLES else f" (got {_show(error.get('input'))})"
    if kind == "missing":
        return "field required"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _bounds(variable)
        if low is not None and high is not None:
            return f"must be between {low} and {high}{shown}"
        if low is not None:
            return f"must be at least {low}{shown}"
        if high is not None:
            return f"must be at most {high}{shown}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"must be a whole number{shown}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number{shown}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"must be one of {expected}{shown}"
    if kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", error.get("msg", "")))
        return message if message else f"invalid value{shown}"
    return f"{str(error.get('msg', 'invalid value')).lower()}{shown}"


def _variable(key: str) -> str:
    """The environment variable for an error location (a field validated from its default is named, not aliased)."""
    field = Settings.model_fields.get(key)
    return field.alias or key if field is not None else key


def _bounds(variable: str) -> tuple[Any, Any]:
    low = high = None
    for field in Settings.model_fields.values():
        if field.alias == variable:
            for rule in field.metadata:
                low = getattr(rule, "ge", getattr(rule, "gt", low))
                high = getattr(rule, "le", getattr(rule, "lt", high))
    return low, high


def _show(value: Any) -> str:
    """An input as the user typed it: 40, sync, 'two words'; truncated, and always on one line."""
    plain = isinstance(value, (int, float)) or (isinstance(value, str) and _PLAIN.fullmatch(value) is not None)
    text = str(value) if plain else repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def configuration_markdown() -> str:
    """The README's configuration table: variable, default, description, one row per field."""
    rows = ["| Variable | Default | Description |", "|---|---|---|"]
    for field in Settings.model_fields.values():
        if field.is_required():
            default = "**required**"
        elif field.default is None:
            default = "—"
        else:
            default = f"`{field.default}`"
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{field.alias}` | {default} | {description} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m shared.settings", description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the configuration table (Markdown)")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(configuration_markdown())
        return 0
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    for name, value in settings.model_dump(mode="json", by_alias=True).items():
        if name == "LEDGER_URL":
            value = re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", value)
        elif name in _SECRET_VARIABLES and value:
            value = "***"
        print(f"{name}={value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

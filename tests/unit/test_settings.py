"""Settings: production defaults, and one clear line naming the variable for every missing or bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.errors import ConfigError
from shared.settings import Settings, configuration_markdown, load_settings, main

QUEUE = "Alicom-Queue-1059202185248422-FlowReport"
ROOT = Path(__file__).resolve().parents[2]


def settings(**values: str) -> Settings:
    return load_settings({"ALICOM_QUEUE_NAME": QUEUE, **values})


def config_error(**values: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings({"ALICOM_QUEUE_NAME": QUEUE, **values})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_production_defaults_need_only_the_queue_name():
    s = settings()
    assert s.alicom_queue_name == QUEUE
    assert s.alicom_mns_endpoint == "https://1943695596114318.mns.cn-hangzhou.aliyuncs.com"
    assert s.alicom_api_endpoint == "https://dybaseapi.aliyuncs.com"
    assert s.flow_api_endpoint == "https://dycdpapi.aliyuncs.com"
    assert (s.alicom_region, s.alicom_message_type) == ("cn-hangzhou", "FlowReport")
    assert s.ledger_url == "sqlite:////tmp/flow-receipts/ledger.sqlite3"
    assert (s.dispatch_mode, s.fc_endpoint) == ("inline", None)
    assert (s.processor_service, s.processor_function) == ("flow-receipts", "processor")
    assert (s.drain_pollers, s.drain_deadline_margin_seconds, s.drain_long_poll_seconds) == (4, 5.0, 5)
    assert (s.max_dequeue_count, s.token_refresh_margin_seconds) == (5, 120)
    assert (s.mns_endpoint, s.dlq_queue_name, s.log_level) == (None, None, "INFO")
    assert s.alibaba_cloud_access_key_id is None and not s.has_static_credentials
    assert s.queue_message_type == "FlowReport"


def test_missing_queue_name_is_one_line_naming_it():
    with pytest.raises(ConfigError) as caught:
        load_settings({})
    assert str(caught.value) == "ALICOM_QUEUE_NAME: field required"


def test_out_of_range_value_names_variable_bounds_and_input():
    assert config_error(DRAIN_POLLERS="40") == "DRAIN_POLLERS: must be between 1 and 16 (got 40)"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("DRAIN_POLLERS", "0", "must be between 1 and 16"),
        ("DRAIN_POLLERS", "two", "must be a whole number (got two)"),
        ("DRAIN_LONG_POLL_SECONDS", "31", "must be between 0 and 30"),
        ("DRAIN_DEADLINE_MARGIN_SECONDS", "soon", "must be a number"),
        ("DRAIN_DEADLINE_MARGIN_SECONDS", "-1", "must be between 0 and 600"),
        ("MAX_DEQUEUE_COUNT", "0", "must be at least 1 (got 0)"),
        ("TOKEN_REFRESH_MARGIN_SECONDS", "-5", "must be between 0 and 3600"),
        ("DISPATCH_MODE", "sync", "must be one of inline or async (got sync)"),
        ("LOG_LEVEL", "LOUD", "must be one of DEBUG, INFO, WARNING, ERROR or CRITICAL"),
        ("ALICOM_MNS_ENDPOINT", "1943695596114318.mns.cn-hangzhou.aliyuncs.com", "must be a URL with scheme"),
        ("ALICOM_API_ENDPOINT", "ftp://dybaseapi.aliyuncs.com", "must be a URL with scheme http or https"),
        ("FLOW_API_ENDPOINT", "https://", "must be a URL with scheme"),
        ("FC_ENDPOINT", "http://127.0.0.1:port", "has a bad port"),
        ("MNS_ENDPOINT", "https://123.mns.cn-hangzhou.aliyuncs.com/queues/x", "no path"),
        ("ALICOM_REGION", "Hangzhou", "must look like cn-hangzhou"),
        ("ALICOM_MESSAGE_TYPE", "Flow Report", "must look like FlowReport"),
        ("ALICOM_QUEUE_NAME", "my-queue", "must look like Alicom-Queue-<account id>-<MessageType>"),
        ("ALICOM_QUEUE_NAME", "Alicom-Queue-abc-FlowReport", "must look like Alicom-Queue-"),
        (
            "ALICOM_QUEUE_NAME",
            "Alicom-Queue-123-SmsReport",
            "is a SmsReport queue but ALICOM_MESSAGE_TYPE is FlowReport",
        ),
        ("PROCESSOR_FUNCTION", "9 lives", "must look like an FC name"),
        ("PROCESSOR_SERVICE", "x" * 200, "must look like an FC name"),
        ("DLQ_QUEUE_NAME", "dead letters", "must look like an MNS queue name"),
        ("FC_ACCOUNT_ID", "acct-1", "must look like an account id of digits"),
        ("LEDGER_URL", "ledger.sqlite3", "must be a database URL"),
    ],
)
def test_every_bad_value_is_one_line_naming_the_variable(variable: str, value: str, problem: str):
    message = config_error(**{variable: value})
    assert message.startswith(f"{variable}: ")
    assert problem in message


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"DLQ_QUEUE_NAME": "flow-receipts-dlq"}, "MNS_ENDPOINT: required when DLQ_QUEUE_NAME is set"),
        ({"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-x"}, "ALIBABA_CLOUD_ACCESS_KEY_SECRET: required when"),
        ({"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s3cr3t-value"}, "ALIBABA_CLOUD_ACCESS_KEY_ID: required when"),
        ({"ALIBABA_CLOUD_SECURITY_TOKEN": "CAIS-token-value"}, "ALIBABA_CLOUD_ACCESS_KEY_ID: required when"),
        ({"DISPATCH_MODE": "async"}, "FC_ENDPOINT: required when DISPATCH_MODE=async outside FC"),
    ],
)
def test_inconsistent_values_name_the_missing_variable(values: dict[str, str], expected: str):
    assert config_error(**values).startswith(expected)


def test_secret_values_are_never_echoed_in_errors():
    message = config_error(ALIBABA_CLOUD_ACCESS_KEY_SECRET="s3cr3t-value", LEDGER_URL="mysql://u:pa55word@db x")
    assert "s3cr3t-value" not in message and "pa55word" not in message
    assert "LEDGER_URL: " in message and "ALIBABA_CLOUD_ACCESS_KEY_ID: " not in message  # field errors come first


def test_several_bad_values_stay_on_one_line():
    with pytest.raises(ConfigError) as caught:
        load_settings({"DRAIN_POLLERS": "40", "DISPATCH_MODE": "sync"})
    message = str(caught.value)
    assert "\n" not in message
    assert message.split("; ") == [
        "ALICOM_QUEUE_NAME: field required",
        "DISPATCH_MODE: must be one of inline or async (got sync)",
        "DRAIN_POLLERS: must be between 1 and 16 (got 40)",
    ]


def test_endpoints_keep_their_scheme_and_port_and_lose_the_trailing_slash():
    s = settings(
        ALICOM_MNS_ENDPOINT="http://127.0.0.1:9100/",
        ALICOM_API_ENDPOINT=" http://localhost:9200 ",
        FLOW_API_ENDPOINT="https://dycdpapi.aliyuncs.com/",
        MNS_ENDPOINT="http://[::1]:9300",
        DLQ_QUEUE_NAME="flow-receipts-dlq",
    )
    assert s.alicom_mns_endpoint == "http://127.0.0.1:9100"
    assert s.alicom_api_endpoint == "http://localhost:9200"
    assert s.flow_api_endpoint == "https://dycdpapi.aliyuncs.com"
    assert (s.mns_endpoint, s.dlq_queue_name) == ("http://[::1]:9300", "flow-receipts-dlq")


@pytest.mark.parametrize("endpoint", ["https://.mns.cn-hangzhou.aliyuncs.com", "http://mns..local", "http://-x.local"])
def test_an_endpoint_with_an_empty_or_malformed_host_part_is_refused_before_any_request(endpoint: str):
    # e.g. the template's MNS endpoint rendered without FC_ACCOUNT_ID: a clear error, not retries until the deadline
    message = config_error(MNS_ENDPOINT=endpoint, DLQ_QUEUE_NAME="flow-receipts-dlq")
    assert message.startswith(f"MNS_ENDPOINT: has an empty or malformed part in its host name (got {endpoint!r})")


def test_fc_endpoint_is_derived_from_fc_variables():
    s = settings(DISPATCH_MODE="async", FC_ACCOUNT_ID="1234567890123456", FC_REGION="cn-shanghai")
    assert s.fc_endpoint == "https://1234567890123456.cn-shanghai-internal.fc.aliyuncs.com"


def test_explicit_fc_endpoint_wins():
    s = settings(DISPATCH_MODE="Async", FC_ENDPOINT="http://127.0.0.1:9400", FC_ACCOUNT_ID="1", FC_REGION="cn-hangzhou")
    assert (s.dispatch_mode, s.fc_endpoint) == ("async", "http://127.0.0.1:9400")


def test_credentials_are_secret_strings():
    s = settings(
        ALIBABA_CLOUD_ACCESS_KEY_ID="LTAI-test",
        ALIBABA_CLOUD_ACCESS_KEY_SECRET="s3cr3t-value",
        ALIBABA_CLOUD_SECURITY_TOKEN="CAIS-token-value",
    )
    assert isinstance(s.alibaba_cloud_access_key_secret, SecretStr)
    assert s.alibaba_cloud_access_key_secret.get_secret_value() == "s3cr3t-value"
    assert s.alibaba_cloud_security_token is not None
    assert s.alibaba_cloud_security_token.get_secret_value() == "CAIS-token-value"
    assert "s3cr3t-value" not in repr(s) and "CAIS-token-value" not in repr(s)
    assert s.has_static_credentials


def test_empty_values_count_as_unset_and_unknown_variables_are_ignored():
    s = settings(ALIBABA_CLOUD_SECURITY_TOKEN="", DRAIN_POLLERS="  ", ALICOM_MNS_ADMIN_URL="http://x", PATH="/bin")
    assert (s.alibaba_cloud_security_token, s.drain_pollers) == (None, 4)


def test_values_are_normalised():
    s = settings(LOG_LEVEL="warn", DISPATCH_MODE=" INLINE ", DRAIN_DEADLINE_MARGIN_SECONDS="2.5")
    assert (s.log_level, s.dispatch_mode, s.drain_deadline_margin_seconds) == ("WARNING", "inline", 2.5)


def test_settings_are_read_once_and_frozen():
    s = settings()
    with pytest.raises(ValueError, match="frozen"):
        s.drain_pollers = 3


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ALICOM_QUEUE_NAME", QUEUE)
    monkeypatch.setenv("DRAIN_POLLERS", "7")
    monkeypatch.setenv("drain_pollers", "9")  # names are case-sensitive, as on Linux
    assert load_settings().drain_pollers == 7
    assert Settings.from_environ().drain_pollers == 7


def test_markdown_table_lists_every_variable_with_default_and_description():
    table = configuration_markdown()
    lines = table.splitlines()
    assert lines[:2] == ["| Variable | Default | Description |", "|---|---|---|"]
    assert len(lines) == 2 + len(Settings.model_fields)
    assert "| `ALICOM_QUEUE_NAME` | **required** |" in table
    assert "| `DRAIN_POLLERS` | `4` | " in table
    assert "| `ALIBABA_CLOUD_SECURITY_TOKEN` | — | " in table
    assert all(line.count(" | ") == 2 and line.rstrip().endswith("|") for line in lines[2:])


def test_markdown_from_the_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "shared.settings", "--markdown"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout == configuration_markdown()


def test_check_command_prints_one_line_on_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.delenv("ALICOM_QUEUE_NAME", raising=False)
    assert main([]) == 2
    assert capsys.readouterr().err == "configuration error: ALICOM_QUEUE_NAME: field required\n"
    monkeypatch.setenv("ALICOM_QUEUE_NAME", QUEUE)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-test")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s3cr3t-value")
    monkeypatch.setenv("LEDGER_URL", "mysql+pymysql://flow:pa55word@db:3306/ledger")
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET=***" in out and "s3cr3t-value" not in out
    assert "LEDGER_URL=mysql+pymysql://flow:***@db:3306/ledger" in out


@pytest.mark.parametrize(("value", "api"), [("2", "2"), ("2.0", "2"), ("3", "3"), (" 3.0 ", "3"), ("FC3", "3")])
def test_fc_api_chooses_the_fc_generation(value: str, api: str):
    assert settings(FUNCTION_COMPUTE_API=value).fc_api == api
    assert settings().fc_api == "2"


def test_fc_api_3_takes_an_fc3_function_name():
    s = settings(FUNCTION_COMPUTE_API="3", PROCESSOR_FUNCTION="flow-receipts$processor")
    assert s.processor_function == "flow-receipts$processor"
    assert settings(FUNCTION_COMPUTE_API="3", PROCESSOR_FUNCTION="flow-receipts-processor").processor_function.endswith(
        "processor"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"FUNCTION_COMPUTE_API": "4"}, "FUNCTION_COMPUTE_API: must be one of 2 or 3 (got 4)"),
        ({"PROCESSOR_FUNCTION": "flow-receipts$processor"}, "PROCESSOR_FUNCTION: a name with '$' is an FC 3.0 name"),
        ({"FUNCTION_COMPUTE_API": "3", "PROCESSOR_FUNCTION": "a$b$c"}, "PROCESSOR_FUNCTION: must look like an FC name"),
        ({"FUNCTION_COMPUTE_API": "3", "PROCESSOR_FUNCTION": "-x"}, "PROCESSOR_FUNCTION: must look like an FC name"),
    ],
)
def test_bad_fc_api_values_name_the_variable(values: dict[str, str], message: str):
    assert config_error(**values).startswith(message)

"""FUNCTION_COMPUTE_API in shared.runtime: async dispatch (``Runtime.dispatch``) and the sweep's self-invocation
(``Runtime.continue_sweep``) go through the FC 2.0 API (fc2, service + function) or the FC 3.0 API (the FC 3.0 SDK,
the function's name alone), against the FC emulator; and each loads only its own SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.fc import FcEmulator, FunctionSpec
from shared.adapters.fc import Credentials, FcInvocation
from shared.domain.models import Envelope
from shared.runtime import Runtime
from shared.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
AK, SK = "runtime-fc-api-ak", "runtime-fc-api-secret-58d1"
CREDENTIALS = Credentials(AK, SK, None)
SERVICE = "flow-receipts"
RECORDER = "def handler(event, context):\n    return 'ok'\n"


@pytest.fixture
def fc(tmp_path: Path) -> Iterator[FcEmulator]:
    (tmp_path / "recorder.py").write_text(RECORDER)
    specs = [FunctionSpec(SERVICE, name, "recorder.handler", tmp_path) for name in ("processor", "sweep")]
    with FcEmulator(specs, credentials={AK: SK}) as emulator:
        yield emulator


def runtime(fc: FcEmulator, **settings: str) -> Runtime:
    environ = {
        "ALICOM_QUEUE_NAME": "Alicom-Queue-1234567890123456-FlowReport",
        "DISPATCH_MODE": "async",
        "FC_ENDPOINT": fc.endpoint,
        **settings,
    }
    return Runtime(lambda: load_settings(environ))


def only_record(fc: FcEmulator, request_id: str | None = None) -> dict:
    assert fc.wait_idle(10)
    (record,) = fc.invocations(request_id=request_id) if request_id else fc.invocations()
    return record


@pytest.mark.parametrize(
    ("settings", "api"),
    [
        ({}, "2016-08-15"),
        ({"FUNCTION_COMPUTE_API": "2"}, "2016-08-15"),
        ({"FUNCTION_COMPUTE_API": "3"}, "2023-03-30"),
        ({"FUNCTION_COMPUTE_API": "3", "PROCESSOR_FUNCTION": f"{SERVICE}$processor"}, "2023-03-30"),
    ],
)
def test_async_dispatch_goes_through_the_api_fc_api_names(fc, settings, api):
    dispatch = runtime(fc, **settings).dispatch(CREDENTIALS)

    assert dispatch(Envelope(message_id="MSG-1", body="e30=")) == ("accepted",)

    record = only_record(fc)
    assert (record["function"], record["api"], record["status"]) == (f"{SERVICE}/processor", api, "succeeded")


@pytest.mark.parametrize(("fc_api", "api"), [("2", "2016-08-15"), ("3", "2023-03-30")])
def test_the_sweep_invokes_itself_through_the_api_fc_api_names(fc, fc_api, api):
    service = SERVICE if fc_api == "2" else None  # an FC 3.0 context has no service
    invocation = FcInvocation(
        request_id="r", function_name="sweep", memory_limit_in_mb=128, timeout_seconds=60, service_name=service
    )

    assert (
        runtime(fc, FUNCTION_COMPUTE_API=fc_api, SWEEP_SELF_INVOKE="true").continue_sweep(CREDENTIALS, invocation)
        is True
    )

    record = only_record(fc)
    assert (record["function"], record["api"]) == (f"{SERVICE}/sweep", api)


def test_on_fc2_the_sweep_without_a_service_does_not_invoke_itself(fc, caplog):
    invocation = FcInvocation(request_id="r", function_name="sweep", memory_limit_in_mb=128, timeout_seconds=60)

    assert runtime(fc, SWEEP_SELF_INVOKE="true").continue_sweep(CREDENTIALS, invocation) is False
    assert fc.invocations() == []
    assert any("SWEEP_SELF_INVOKE needs FC" in record.getMessage() for record in caplog.records)


PROBE = """
import json, sys
from shared.adapters.fc import Credentials
from shared.runtime import Runtime
from shared.settings import load_settings
environ = {"ALICOM_QUEUE_NAME": "Alicom-Queue-1-FlowReport", "DISPATCH_MODE": "async",
           "FC_ENDPOINT": "http://127.0.0.1:9", "FUNCTION_COMPUTE_API": sys.argv[1]}
Runtime(lambda: load_settings(environ)).dispatch(Credentials("ak", "sk", None))
print(json.dumps({name: name in sys.modules for name in ("fc2", "alibabacloud_fc20230330", "aiohttp")}))
"""


@pytest.mark.parametrize(
    ("fc_api", "loaded"),
    [
        ("2", {"fc2": True, "alibabacloud_fc20230330": False, "aiohttp": False}),
        ("3", {"fc2": False, "alibabacloud_fc20230330": True, "aiohttp": True}),
    ],
)
def test_each_api_loads_only_its_own_sdk(fc_api, loaded):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FC_", "PROCESSOR_", "DISPATCH_"))}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, fc_api], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == loaded

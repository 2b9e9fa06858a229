"""`make invoke` on test handlers: the local runner run as `python -m local.fc.runner` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "fc"


def run(*args: str, stdin: bytes | None = None, env: dict | None = None, cwd: Path = ROOT):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "FC_"))}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "local.fc.runner", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=environment,
        timeout=30,
    )


def test_runs_a_handler_with_an_fc_context(tmp_path):
    event = tmp_path / "event.json"
    event.write_bytes(b'{"hello": "world"}')
    result = run(
        "--handler",
        "handlers.context_info",
        "--code-uri",
        "tests/fixtures/fc",
        "--event",
        str(event),
        env={"ALIBABA_CLOUD_ACCESS_KEY_ID": "env-ak", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-sk"},
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["event_type"] == "bytes" and info["event"] == '{"hello": "world"}'
    assert info["credentials"] == {"access_key_id": "env-ak", "access_key_secret": "env-sk", "security_token": ""}
    assert info["function"]["handler"] == "handlers.context_info"
    assert info["service"]["qualifier"] == "LATEST"
    assert info["env"]["FC_FUNC_CODE_PATH"] == str(FIXTURES) and info["cwd"] == str(FIXTURES)
    assert info["initialized"] == []
    assert b"context_info called" in result.stderr  # the function's prints stay off stdout


def test_event_from_stdin_and_an_initializer():
    result = run(
        "--handler",
        "handlers.context_info",
        "--code-uri",
        str(FIXTURES),
        "--initializer",
        "handlers.initialize",
        "--event",
        "-",
        stdin=b"\xffraw",
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["event"] == "\ufffdraw" and len(info["initialized"]) == 1


def test_function_from_a_template_with_its_timer_payload():
    result = run("--template", str(FIXTURES / "template.yml"), "--function", "echo", "--timer", "every-minute")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    event = json.loads(info["event"])
    assert event["triggerName"] == "every-minute" and event["payload"] == '{"source":"timer"}'
    assert event["triggerTime"].endswith("Z")
    assert info["service"]["name"] == "fixture-svc" and info["region"] == "cn-shanghai"
    assert info["function"] == {"name": "echo", "handler": "handlers.context_info", "memory": 256, "timeout": 15}
    assert info["env"]["TEST_FC_GREETING"] == "hello-cn-shanghai" and len(info["initialized"]) == 1


def test_shell_variables_win_over_template_variables():
    result = run(
        "--template",
        str(FIXTURES / "template.yml"),
        "echo",
        "--event-text",
        "{}",
        env={"TEST_FC_GREETING": "from-shell"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["env"]["TEST_FC_GREETING"] == "from-shell"


def test_functions_directory_convention(tmp_path):
    (tmp_path / "functions" / "hello").mkdir(parents=True)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "__init__.py").write_text("GREETING = 'hi'\n")
    (tmp_path / "functions" / "hello" / "index.py").write_text(
        "from shared import GREETING\n\n"
        "def handler(event, context):\n"
        "    return GREETING + ' ' + context.function.name\n"
    )
    result = run("--function", "hello", env={"PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hi hello\n"


def test_a_failing_handler_exits_1_with_one_line():
    result = run("--handler", "handlers.always_fails", "--code-uri", str(FIXTURES), "--event-text", "bad")
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().strip().splitlines()[-1] == (
        "invoke: always_fails (handlers.always_fails) failed: ValueError: always fails: bad"
    )


def test_timeout_is_enforced():
    result = run(
        "--handler", "handlers.slow", "--code-uri", str(FIXTURES), "--event-text", '{"seconds": 5}', "--timeout", "0.3"
    )
    assert result.returncode == 1
    assert "FunctionTimeout: Function timed out after 0.3 seconds" in result.stderr.decode()


def test_unknown_function_in_template():
    result = run("--template", str(FIXTURES / "template.yml"), "--function", "nope")
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        f"invoke: function 'nope' is not in {FIXTURES / 'template.yml'} (functions there: echo, minimal)"
    )


def test_make_invoke_runs_a_test_handler(tmp_path):
    event = tmp_path / "event.json"
    event.write_bytes(b'{"hello": "make"}')
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "FC_", "ALICOM_"))}
    environment["LOCAL_DIR"] = str(tmp_path / "no-stack")
    result = subprocess.run(
        [
            "make",
            "-s",
            "invoke",
            "FN=context_info",
            f"EVENT={event}",
            "INVOKE_ARGS=--handler handlers.context_info --code-uri tests/fixtures/fc",
        ],
        capture_output=True,
        cwd=ROOT,
        env=environment,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["event_type"] == "bytes"
    assert json.loads(answer["event"]) == {"hello": "make"}
    assert answer["function"]["handler"] == "handlers.context_info"
    assert answer["request_id"]


def test_make_invoke_without_a_function_explains_usage():
    result = subprocess.run(["make", "-s", "invoke"], capture_output=True, cwd=ROOT, timeout=60, text=True)
    assert result.returncode != 0
    assert "usage: make invoke FN=<function> EVENT=<event file>" in result.stderr

"""`make invoke FN=drainer EVENT=events/timer.json` against a local stack started with `python -m local up`: the
drainer runs in-process with an FC-shaped context, finds the stack through $(LOCAL_DIR)/stack.env, prints its
JSON summary on stdout, and leaves the stack's Alicom queue empty. `make invoke FN=processor
EVENT=events/processor.json` against the same stack answers an outcome for the sample Envelope."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from process_support import processes_mentioning

from shared.adapters.ledger import Ledger
from shared.domain.orders import Status
from shared.settings import Settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((REPO / "events" / "processor.json").read_text())
# Everything the settings read, plus what FC and the stack set: the Makefile sources stack.env only when
# ALICOM_MNS_ENDPOINT is unset, and variables of an outer shell must not point the drainer elsewhere.
SETTINGS_VARIABLES = frozenset(field.alias for field in Settings.model_fields.values() if field.alias)
FOREIGN_PREFIXES = ("ALICOM_", "ALIBABA_CLOUD_", "FC_")
FOREIGN_NAMES = SETTINGS_VARIABLES | {"LOCAL_DIR", "LOCAL_STACK_PID"}


def clean_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not (k.startswith(FOREIGN_PREFIXES) or k in FOREIGN_NAMES)}
    return {**env, **extra}


def run(*command: str, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(command),
        cwd=REPO,
        env=env or clean_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def local(*args: str) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "local", *args)


def read_stack_env(state_dir: Path) -> dict[str, str]:
    lines = (state_dir / "stack.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def make_invoke(state_dir: Path, function: str, event: str) -> dict:
    """Runs `make -s invoke` and returns the handler's answer (the JSON on stdout; the logs go to stderr)."""
    # A 1 s long poll: the drain still ends on an empty receive, without the default 5 s wait at the end.
    env = clean_environment(DRAIN_LONG_POLL_SECONDS="1")
    result = run("make", "-s", "invoke", f"FN={function}", f"EVENT={event}", f"LOCAL_DIR={state_dir}", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines, f"nothing on stdout; stderr: {result.stderr[-3000:]}"
    return json.loads(lines[-1])


def publish(state_dir: Path, *args: str) -> str:
    result = local("publish", "--state-dir", str(state_dir), *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["message_id"]


def alicom_queue_depth(state_dir: Path, queue_name: str) -> int:
    result = local("stats", "mns", "--state-dir", str(state_dir))
    assert result.returncode == 0, result.stderr
    return sum(json.loads(result.stdout)["mns"]["queues"][queue_name].values())


def start_stack(state_dir: Path) -> dict[str, str]:
    up = local("up", "--state-dir", str(state_dir))
    assert up.returncode == 0, up.stderr
    return read_stack_env(state_dir)


def stop_stack(state_dir: Path) -> None:
    down = local("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert processes_mentioning(str(state_dir)) == []


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A running stack whose ledger schema exists (`flow-receipts migrate`, as `make migrate` runs it)."""
    state_dir = tmp_path_factory.mktemp("invoke-stack")
    try:
        env = start_stack(state_dir)
        migrate = run(sys.executable, "-m", "cli", "--ledger-url", env["LEDGER_URL"], "migrate")
        assert migrate.returncode == 0, migrate.stderr
        yield state_dir, env
    finally:
        stop_stack(state_dir)


def test_make_invoke_drainer_drains_the_local_stack(stack: tuple[Path, dict[str, str]]) -> None:
    state_dir, env = stack
    with Ledger(env["LEDGER_URL"]) as ledger:
        ledger.register_order("invoke-1", "13800138000")
        ledger.register_order("invoke-2", "13900139000")
    publish(state_dir, "--out-id", "invoke-1", "--phone", "13800138000", "--result", "3")
    publish(
        state_dir, "--out-id", "invoke-2", "--phone", "13900139000", "--result", "4", "--err-code", "BALANCE_NOT_ENOUGH"
    )
    publish(state_dir, "--out-id", "invoke-unknown", "--phone", "13700137000", "--result", "3")
    poison_id = publish(state_dir, "--raw", "not json at all")
    assert alicom_queue_depth(state_dir, env["ALICOM_QUEUE_NAME"]) == 4

    summary = make_invoke(state_dir, "drainer", "events/timer.json")

    assert summary["received"] == 4
    assert (summary["applied"], summary["orphans"], summary["dead_lettered"]) == (2, 1, 1)
    assert (summary["deleted"], summary["left_for_retry"], summary["delete_failed"]) == (4, 0, 0)
    assert summary["stopped_by"] == ["empty"]
    assert alicom_queue_depth(state_dir, env["ALICOM_QUEUE_NAME"]) == 0
    with Ledger(env["LEDGER_URL"]) as ledger:
        assert ledger.get_order("invoke-1").status is Status.SUCCEEDED
        failed = ledger.get_order("invoke-2")
        assert (failed.status, failed.err_code) == (Status.FAILED, "BALANCE_NOT_ENOUGH")
        assert ledger.get_order("invoke-unknown").registered is False
        dead = ledger.get_dead_letter(poison_id)
        assert dead is not None and dead.reason.startswith("body is not JSON")
        assert base64.b64decode(dead.raw_body) == b"not json at all"  # the body exactly as it came off the queue

    again = make_invoke(state_dir, "drainer", "events/timer.json")  # the next tick finds nothing
    assert (again["received"], again["deleted"], again["stopped_by"]) == (0, 0, ["empty"])


def test_make_invoke_processor_answers_an_outcome_for_the_sample_event(stack: tuple[Path, dict[str, str]]) -> None:
    state_dir, _env = stack

    first = make_invoke(state_dir, "processor", "events/processor.json")
    second = make_invoke(state_dir, "processor", "events/processor.json")

    assert first["message_id"] == SAMPLE["message_id"]
    assert first["outcomes"][0] in ("applied", "duplicate", "orphan")
    assert first["reason"] == ""
    assert second == {"message_id": SAMPLE["message_id"], "outcomes": ["duplicate"], "reason": ""}


def test_make_invoke_drainer_works_on_a_fresh_stack_without_a_migrate_step(tmp_path: Path) -> None:
    state_dir = tmp_path / "fresh"
    try:
        env = start_stack(state_dir)
        publish(state_dir, "--out-id", "fresh-1", "--phone", "13800138000", "--result", "3")

        summary = make_invoke(state_dir, "drainer", "events/timer.json")

        assert summary.get("errors") is None, summary.get("errors")
        assert (summary["received"], summary["orphans"], summary["deleted"]) == (1, 1, 1)
        assert alicom_queue_depth(state_dir, env["ALICOM_QUEUE_NAME"]) == 0
    finally:
        stop_stack(state_dir)

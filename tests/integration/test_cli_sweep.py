"""`flow-receipts sweep [--dry-run]`, `report [--date]` and `outbox redeliver [--rejected]`, and the sweep function
(`make invoke FN=sweep`), against the Alicom emulator, the local webhook receiver and a SQLite ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pipeline_support import PipelineWorld, pipeline_world
from typer.testing import CliRunner, Result
from webhook_support import webhook_receiver, webhook_settings

from cli.main import app
from shared.adapters.ledger.records import NewOrder
from shared.domain.orders import Source, Status
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
PHONE = "13800138000"
UNSET: dict[str, str | None] = {field.alias: None for field in Settings.model_fields.values() if field.alias}
UNSET["COLUMNS"] = None  # tables as a pipe gets them (pytest-xdist workers set COLUMNS=80)
runner = CliRunner()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[PipelineWorld]:
    with pipeline_world(tmp_path) as started:
        started.alicom.set_behaviour(success_rate=1.0, drop_rate=1.0)  # every receipt lost: the sweep's work
        yield started


def run(world: PipelineWorld, *args: str, **settings: str) -> Result:
    env = {**UNSET, **world.environ, "SWEEP_GRACE_SECONDS": "0", "SWEEP_NOT_FOUND_AFTER_SECONDS": "0", **settings}
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def placed(world: PipelineWorld, *out_ids: str, hours_ago: float = 2, completed: bool = True) -> None:
    submitted = datetime.now(timezone.utc) - timedelta(hours=hours_ago)
    world.ledger.register_orders([NewOrder(o, PHONE, "100M", "charge", submitted) for o in out_ids])
    flow = world.runtime.flow_api(world.credentials)
    for out_id in out_ids:
        flow.place(out_id, PHONE, "100M")
    assert not completed or world.alicom.wait_idle(10)


def test_sweep_closes_the_orders_and_says_what_it_did(world: PipelineWorld, tmp_path: Path):
    placed(world, "cli-1", "cli-2")

    result = run(world, "sweep", REPORT_DIR=str(tmp_path / "reports"))

    assert result.exit_code == 0, result.output
    assert "finished: every step of the cycle is done" in result.stdout
    assert "resolved_succeeded" in result.stdout and "report: " in result.stdout
    assert {world.ledger.get_order(o).resolved_by for o in ("cli-1", "cli-2")} == {Source.SWEEP}
    assert len(list((tmp_path / "reports").glob("sweep-*.json"))) == 1


def test_a_dry_run_changes_nothing_and_json_says_what_would_happen(world: PipelineWorld):
    placed(world, "dry-1")

    result = run(world, "sweep", "--dry-run", "--json")

    assert result.exit_code == 0, result.output
    said = json.loads(result.stdout)
    assert said["would_resolve_succeeded"] == 1 and said["stopped_by"] == "finished"
    assert world.ledger.get_order("dry-1").status is Status.PENDING


def test_a_sweep_that_cannot_reach_the_ledger_exits_1_with_the_reason(world: PipelineWorld):
    result = run(world, "--ledger-url", "postgresql+psycopg://nobody@127.0.0.1:1/ledger", "sweep")

    assert result.exit_code == 1 and "ledger database unavailable" in result.stderr


def test_report_for_a_day_lists_open_orders_and_writes_the_files(world: PipelineWorld, tmp_path: Path):
    world.alicom.set_behaviour(charge_delay_seconds=300)
    placed(world, "open-1", hours_ago=3, completed=False)
    run(world, "sweep")
    today = datetime.now(timezone(timedelta(hours=8))).date().isoformat()  # Beijing time

    result = run(world, "report", "--date", today, "--out", str(tmp_path / "out"))
    as_json = json.loads(run(world, "report", "--json").stdout)

    assert result.exit_code == 0, result.output
    assert "still open: 1" in result.stdout and "the provider is still processing" in result.stdout
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        f"reconciliation-{today}.csv",
        f"reconciliation-{today}.json",
    ]
    assert as_json["unresolved"][0]["out_id"] == "open-1" and as_json["unresolved"][0]["phone"] == "138****8000"
    assert run(world, "report", "--date", "yesterday").exit_code == 2


def test_outbox_redeliver_delivers_what_the_webhook_missed_and_retries_rejected_ones(
    world: PipelineWorld, pytestconfig
):
    with webhook_receiver(pytestconfig) as receiver:
        hook = webhook_settings(receiver, NOTIFY_RETRY_SECONDS="0")
        placed(world, "ev-1", "ev-2")
        receiver.misbehave(status=400)
        assert run(world, "sweep", **hook).exit_code == 0  # the webhook rejects both events
        assert run(world, "outbox", "redeliver", **hook).exit_code == 4  # rejected ones wait for a human
        receiver.behave()

        fixed = run(world, "outbox", "redeliver", "--rejected", "--json", **hook)

        assert fixed.exit_code == 0, fixed.output
        counts = json.loads(fixed.stdout)
        assert (counts["made_due"], counts["delivered"], counts["undelivered_left"]) == (2, 2, 0)
        assert {event.payload["out_id"] for event in world.ledger.outbox_events() if event.delivered_at} == {
            "ev-1",
            "ev-2",
        }
    assert run(world, "outbox", "redeliver").exit_code == 2  # no sink configured: says so


def test_make_invoke_runs_the_sweep_function_against_the_environment(world: PipelineWorld):
    placed(world, "fn-1")
    env = {
        **{k: v for k, v in os.environ.items() if k not in UNSET},
        **world.environ,
        "SWEEP_GRACE_SECONDS": "0",
        "REPORT_DIR": str(Path(world.ledger.url.database).parent / "reports"),
        "LOG_LEVEL": "WARNING",
        # inline dispatch: no dead-letter queue to re-drive (empty is unset; the template's value needs FC_ACCOUNT_ID)
        "MNS_ENDPOINT": "",
        "DLQ_QUEUE_NAME": "",
    }
    result = make_invoke_sweep(env, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["stopped_by"] == "finished" and answer["resolved_succeeded"] == 1
    assert world.ledger.get_order("fn-1").status is Status.SUCCEEDED


def test_make_invoke_names_a_template_endpoint_rendered_without_its_account_id(world: PipelineWorld):
    env = {**{k: v for k, v in os.environ.items() if k not in UNSET}, **world.environ, "FC_ACCOUNT_ID": ""}
    result = make_invoke_sweep(env, timeout=60)

    assert result.returncode != 0
    assert "MNS_ENDPOINT: has an empty or malformed part in its host name" in result.stdout + result.stderr


def test_the_cli_sweep_module_is_importable_without_the_sdks():
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, cli.main; print(sorted(m for m in sys.modules if m.startswith('aliyun')))"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "[]"


def make_invoke_sweep(env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "invoke", "FN=sweep", "EVENT=events/sweep.json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )

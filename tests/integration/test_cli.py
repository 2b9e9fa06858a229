"""The flow-receipts command line through typer's CliRunner (and a subprocess where a real process matters): exit
codes, --json that parses, tables a person can read (phones masked, values never read as markup), JSON log lines
on stderr only, and the commands against the ledger and the Alicom emulator."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_support import PipelineWorld, pipeline_world
from typer.testing import CliRunner, Result

from cli.main import app
from shared.adapters.ledger import DEFAULT_URL, Ledger
from shared.domain.orders import Status
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
PHONE, MASKED = "13800138000", "138****8000"
# Nothing from an outer shell (a sourced stack.env) may point the CLI elsewhere: the tests say what it gets.
UNSET: dict[str, str | None] = {field.alias: None for field in Settings.model_fields.values() if field.alias}
UNSET["COLUMNS"] = None  # tables as a pipe gets them (pytest-xdist workers set COLUMNS=80)
runner = CliRunner()


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return runner.invoke(app, list(args), env={**UNSET, **(env or {})}, catch_exceptions=False)


def stdout_json(result: Result) -> object:
    return json.loads(result.stdout)


@pytest.fixture
def url(tmp_path: Path) -> str:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    assert run("--ledger-url", ledger_url, "migrate").exit_code == 0
    return ledger_url


@pytest.fixture
def world(tmp_path: Path) -> Iterator[PipelineWorld]:
    with pipeline_world(tmp_path) as started:
        started.alicom.set_behaviour(success_rate=1.0)
        yield started


def env_of(world: PipelineWorld, **more: str) -> dict[str, str | None]:
    return {**world.environ, **more}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def flat(text: str) -> str:
    """Text out of a rich error box, on one line."""
    return " ".join(text.replace("│", " ").split())


def body(out_id: str) -> str:
    report = {"phone": PHONE, "out_id": out_id, "result": "3", "err_code": "", "err_msg": ""}
    return base64.b64encode(json.dumps(report).encode()).decode()


# ---- the command line itself -----------------------------------------------------------------------------------


def test_help_lists_every_command_and_the_default_ledger() -> None:
    result = run("--help")

    assert result.exit_code == 0
    for command in ("orders", "charge", "dead-letters", "outbox", "migrate", "summary", "--ledger-url"):
        assert command in result.stdout
    assert DEFAULT_URL in flat(result.stdout)


def test_the_cli_starts_without_importing_the_database_or_the_sdks() -> None:
    heavy = ("sqlalchemy", "aliyunsdkcore", "mns", "rich.table")
    probe = f"import sys, cli.main; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_migrate_is_idempotent_and_summary_counts(tmp_path: Path) -> None:
    ledger_url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"

    first = run("--ledger-url", ledger_url, "migrate")
    again = run("--ledger-url", ledger_url, "migrate", "--json")
    summary = run("summary", "--json", env={"LEDGER_URL": ledger_url})

    assert first.exit_code == 0 and "migrated from version 0 to" in first.stdout
    assert again.exit_code == 0 and stdout_json(again)["changed"] is False
    assert summary.exit_code == 0
    assert stdout_json(summary)["orders"] == {
        "PENDING": 0,
        "SUCCEEDED": 0,
        "FAILED": 0,
        "EXPIRED": 0,
        "unregistered": 0,
    }
    assert "PENDING" in run("--ledger-url", ledger_url, "summary").stdout


def test_a_ledger_without_its_schema_says_to_migrate(tmp_path: Path) -> None:
    result = run("--ledger-url", f"sqlite:///{tmp_path / 'empty.sqlite3'}", "orders", "pending")

    assert result.exit_code == 2
    assert "has no schema yet (this code needs" in result.stderr and "run `flow-receipts migrate`" in result.stderr
    assert result.stdout == ""


def test_an_unreachable_ledger_is_exit_1_and_a_bad_url_exit_2() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = run("--ledger-url", f"postgresql+psycopg://nobody:pw-9f3a@127.0.0.1:{port}/db", "summary")
    bad = run("--ledger-url", "not a url", "summary")

    assert down.exit_code == 1 and "ledger database unavailable" in down.stderr and "pw-9f3a" not in down.stderr
    assert bad.exit_code == 2 and "ledger URL is not a database URL" in bad.stderr
    assert "Traceback" not in down.stderr + bad.stderr


# ---- orders ----------------------------------------------------------------------------------------------------


def test_register_show_and_pending(url: str) -> None:
    registered = run("--ledger-url", url, "orders", "register", "--out-id", "o-1", "--phone", "+86 138 0013 8000")
    again = run("--ledger-url", url, "orders", "register", "--out-id", "o-1", "--phone", PHONE, "--json")
    shown = run("--ledger-url", url, "orders", "show", "o-1", "--json")
    pending = run("--ledger-url", url, "orders", "pending", "--json")
    none_old = run("--ledger-url", url, "orders", "pending", "--older-than", "2h", "--json")

    assert (registered.exit_code, registered.stdout.strip()) == (0, "registered: o-1")
    assert stdout_json(again) == {"out_id": "o-1", "state": "existing"}
    details = stdout_json(shown)
    assert (details["order"]["status"], details["order"]["phone"]) == ("PENDING", PHONE)  # JSON: the whole number
    assert (details["receipts"], details["events"]) == ([], [])
    assert [row["out_id"] for row in stdout_json(pending)] == ["o-1"] and stdout_json(none_old) == []


def test_order_tables_mask_phones_and_show_values_as_written(url: str) -> None:
    out_id = "[bold red]x'; DROP TABLE orders; --"
    run("--ledger-url", url, "orders", "register", "--out-id", out_id, "--phone", PHONE)

    shown = run("--ledger-url", url, "orders", "show", out_id)
    pending = run("--ledger-url", url, "orders", "pending")

    assert shown.exit_code == pending.exit_code == 0
    assert "DROP TABLE orders" in shown.stdout and "[bold red]" in shown.stdout
    assert MASKED in shown.stdout and PHONE not in shown.stdout + pending.stdout
    assert "no receipts" in shown.stdout and "no outbox events" in shown.stdout
    assert "[bold" in pending.stdout and "age" in pending.stdout


def test_an_unknown_order_is_exit_3(url: str) -> None:
    result = run("--ledger-url", url, "orders", "show", "nope")

    assert result.exit_code == 3 and "no order with out_id 'nope'" in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out-id", "x" * 200, "--phone", PHONE], "out_id is 200 characters long; at most 128 are allowed"),
        (["--out-id", "o-1", "--phone", "12345"], "phone is not a mainland China mobile number"),
        (["--out-id", "o-1", "--phone", PHONE, "--offer-id", "5"], "FLOW_API is charge: its top-ups take --grade"),
        (["--out-id", "o-1", "--phone", PHONE, "--grade", "1G", "--offer-id", "5"], "not both"),
    ],
)
def test_register_refuses_a_bad_order_with_exit_2(url: str, args: list[str], message: str) -> None:
    result = run("--ledger-url", url, "orders", "register", *args)

    assert result.exit_code == 2
    assert message in flat(result.stderr)
    assert "Traceback" not in result.stderr


def test_register_with_an_offer_id_when_flow_api_is_cdp(url: str) -> None:
    result = run(
        "--ledger-url",
        url,
        "orders",
        "register",
        "--out-id",
        "o-1",
        "--phone",
        PHONE,
        "--offer-id",
        "0042",
        env={"FLOW_API": "CDP"},
    )

    assert result.exit_code == 0
    with Ledger(url) as ledger:
        order = ledger.get_order("o-1")
    assert (order.product, order.flow_api) == ("42", "cdp")


def test_import_reports_bad_rows_and_exits_4(url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", f"\ufeffout_id,phone,grade\no-1,{PHONE},1G\no-2,123,1G\n,{PHONE},1G\n")

    human = run("--ledger-url", url, "orders", "import", str(path))
    scripted = run("--ledger-url", url, "orders", "import", str(path), "--json")

    assert human.exit_code == scripted.exit_code == 4
    assert "bad rows" in human.stdout and "out_id is empty" in human.stdout
    assert [line.split("│")[1].strip() for line in human.stdout.splitlines() if line.startswith("│ 3 ")] == ["3"]
    summary = stdout_json(scripted)
    assert (summary["registered"], summary["existing"], summary["bad"]) == (0, 1, 2)
    assert [(row["line"], row["out_id"]) for row in summary["bad_rows"]] == [(3, "o-2"), (4, "")]


def test_a_clean_import_is_exit_0(url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", f"phone,out_id\n{PHONE},o-1\n13900139000,o-2\n")

    result = run("--ledger-url", url, "orders", "import", str(path), "--json")

    assert result.exit_code == 0 and stdout_json(result)["registered"] == 2


def test_import_refuses_a_wrong_header_or_a_missing_file_with_exit_2(url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", f"id,mobile\no-1,{PHONE}\n")

    wrong = run("--ledger-url", url, "orders", "import", str(path))
    missing = run("--ledger-url", url, "orders", "import", str(tmp_path / "nope.csv"))

    assert wrong.exit_code == 2
    assert "the header row must name the columns out_id,phone[,grade]" in wrong.stderr
    assert missing.exit_code == 2 and "nope.csv" in missing.stderr and "No such file" in missing.stderr


# ---- charge ----------------------------------------------------------------------------------------------------


def test_charge_places_a_top_up(world: PipelineWorld) -> None:
    result = run("charge", "--out-id", "o-1", "--phone", PHONE, "--grade", "100M", "--json", env=env_of(world))

    assert result.exit_code == 0, result.stderr
    assert stdout_json(result)["state"] == "placed"
    assert world.alicom.charge("o-1")["product"] == "100M"


def test_a_rejected_top_up_is_exit_4_with_its_log_line_on_stderr_only(world: PipelineWorld) -> None:
    env = env_of(world, FLOW_API="cdp")

    result = run("charge", "--out-id", "o-1", "--phone", PHONE, "--offer-id", "9" * 25, "--json", env=env)
    events = run("outbox", "list", "--undelivered", "--json", env=env)

    assert result.exit_code == 4
    assert stdout_json(result)["state"] == "rejected"  # stdout is JSON and nothing else
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [line["message"] for line in logged] == ["top-up rejected: the order is FAILED"]
    assert world.ledger.get_order("o-1").status is Status.FAILED
    assert [(e["out_id"], e["kind"]) for e in stdout_json(events)] == [("o-1", "order.failed")]


def test_an_unanswered_top_up_is_exit_1_and_the_order_stays_pending(world: PipelineWorld) -> None:
    world.alicom.set_faults({"operations": {"Charge": {"unavailable": 1.0}}})

    result = run("charge", "--out-id", "o-1", "--phone", PHONE, "--grade", "1G", env=env_of(world))

    assert result.exit_code == 1
    assert "no answer: the order stays PENDING" in result.stdout
    assert world.ledger.get_order("o-1").status is Status.PENDING


def test_charge_needs_its_configuration_and_its_arguments(world: PipelineWorld, tmp_path: Path) -> None:
    no_queue = {**env_of(world), "ALICOM_QUEUE_NAME": None}

    unconfigured = run("charge", "--out-id", "o-1", "--phone", PHONE, "--grade", "1G", env=no_queue)
    wrong_product = run(
        "charge", "--out-id", "o-1", "--phone", PHONE, "--grade", "1G", env=env_of(world, FLOW_API="cdp")
    )
    both = run("charge", "--out-id", "o-1", "--from-csv", str(tmp_path / "x.csv"), env=env_of(world))
    neither = run("charge", "--out-id", "o-1", env=env_of(world))

    assert (
        unconfigured.exit_code == 2 and "configuration error: ALICOM_QUEUE_NAME: field required" in unconfigured.stderr
    )
    assert wrong_product.exit_code == 2 and "its top-ups take --offer-id, not --grade" in flat(wrong_product.stderr)
    assert both.exit_code == 2 and "not both" in both.stderr
    assert neither.exit_code == 2 and "give --out-id, --phone and --grade" in neither.stderr
    assert world.ledger.get_order("o-1") is None


def test_charge_from_csv_prints_a_summary(world: PipelineWorld, tmp_path: Path) -> None:
    rows = "".join(f"f-{n},{PHONE},1G\n" for n in range(5)) + "f-bad,123,1G\n"
    path = write(tmp_path / "charge.csv", "out_id,phone,grade\n" + rows)
    env = env_of(world, CHARGE_RATE_PER_SECOND="200")

    human = run("charge", "--from-csv", str(path), env=env)
    scripted = run("charge", "--from-csv", str(path), "--json", env=env)

    assert human.exit_code == 4  # one bad row
    assert "placed" in human.stdout and "bad rows" in human.stdout and "f-bad" in human.stdout
    summary = stdout_json(scripted)
    assert scripted.exit_code == 4
    assert (summary["rows"], summary["existing"], summary["already_placed"], summary["bad"]) == (6, 5, 5, 1)


def test_a_crash_while_the_flow_api_call_is_in_flight_leaves_the_order_registered(world: PipelineWorld) -> None:
    world.alicom.set_faults({"operations": {"Charge": {"latency_ms": 3000}}})
    env = {k: v for k, v in os.environ.items() if k not in UNSET} | world.environ
    command = [sys.executable, "-m", "cli", "charge", "--out-id", "crash-1", "--phone", PHONE, "--grade", "1G"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while world.alicom.stats()["actions"].get("Charge", {}).get("requests", 0) == 0:
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.kill()  # the process dies while its Charge call is in flight
    finally:
        process.communicate(timeout=30)

    order = world.ledger.get_order("crash-1")
    assert (order.status, order.registered, order.charge_attempts) == (Status.PENDING, True, 1)
    world.alicom.set_faults({})
    again = run("charge", "--out-id", "crash-1", "--phone", PHONE, "--grade", "1G", "--json", env=env_of(world))
    assert stdout_json(again)["state"] == "placed"
    assert sum(world.alicom.stats()["charges"].values()) == 1  # the call that was in flight, and its repeat


# ---- dead letters and the outbox -------------------------------------------------------------------------------


def test_dead_letters_are_replayed_after_a_fix_and_never_twice(url: str) -> None:
    with Ledger(url) as ledger:
        ledger.register_order("o-1", PHONE)
        ledger.record_dead_letter("m-1", "FlowReport", body("o-1"), "ledger unavailable (5 deliveries)", 5)
        ledger.record_dead_letter("m-poison", "FlowReport", "not json, not base64", "body is not valid base64", 1)

    listed = run("--ledger-url", url, "dead-letters", "list", "--json")
    shown = run("--ledger-url", url, "dead-letters", "show", "m-1")
    shown_json = run("--ledger-url", url, "dead-letters", "show", "m-1", "--json")
    replayed = run("--ledger-url", url, "dead-letters", "replay")
    again = run("--ledger-url", url, "dead-letters", "replay", "m-1", "--json")
    unknown = run("--ledger-url", url, "dead-letters", "replay", "nope")

    assert sorted(row["message_id"] for row in stdout_json(listed)) == ["m-1", "m-poison"]
    assert shown.exit_code == 0 and '"out_id": "o-1"' in shown.stdout and MASKED in shown.stdout
    assert PHONE not in shown.stdout
    assert json.loads(stdout_json(shown_json)["decoded_body"])["phone"] == PHONE
    assert replayed.exit_code == 4  # one is still poison
    assert "m-1: replayed (applied)" in replayed.stdout
    assert "m-poison: still poison, kept (body is not valid base64" in replayed.stdout
    assert again.exit_code == 0 and stdout_json(again)[0]["state"] == "already_replayed"
    assert unknown.exit_code == 3 and "no such dead letter" in unknown.stdout
    with Ledger(url) as ledger:
        assert ledger.get_order("o-1").status is Status.SUCCEEDED
        assert len(ledger.receipts_for("o-1")) == 1 and len(ledger.outbox_events("o-1")) == 1
        assert [record.message_id for record in ledger.dead_letters()] == ["m-poison"]
    remaining = run("--ledger-url", url, "dead-letters", "list")
    assert "m-poison" in remaining.stdout and "m-1" not in remaining.stdout
    assert "m-1" in run("--ledger-url", url, "dead-letters", "list", "--all").stdout


def test_an_unknown_dead_letter_is_exit_3(url: str) -> None:
    result = run("--ledger-url", url, "dead-letters", "show", "nope")

    assert result.exit_code == 3 and "no dead letter with message id 'nope'" in result.stderr


def test_outbox_list(url: str) -> None:
    with Ledger(url) as ledger:
        ledger.register_order("o-1", PHONE)
        ledger.record_dead_letter("m-1", "FlowReport", body("o-1"), "ledger unavailable", 5)
    run("--ledger-url", url, "dead-letters", "replay")

    everything = run("--ledger-url", url, "outbox", "list")
    undelivered = run("--ledger-url", url, "outbox", "list", "--undelivered", "--json")

    assert everything.exit_code == 0 and "order.succeeded" in everything.stdout
    assert [event["kind"] for event in stdout_json(undelivered)] == ["order.succeeded"]


# ---- logs ------------------------------------------------------------------------------------------------------


def test_logs_go_to_stderr_or_a_file_at_the_level_asked(url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", f"out_id,phone\no-1,{PHONE}\n")
    log_file = tmp_path / "cli.log"

    quiet = run("--ledger-url", url, "orders", "import", str(path), "--json")
    chatty = run("--ledger-url", url, "--log-level", "info", "orders", "import", str(path), "--json")
    to_file = run(
        "--ledger-url", url, "--log-level", "INFO", "--log-file", str(log_file), "orders", "import", str(path)
    )

    assert quiet.stderr == "" and stdout_json(quiet)["registered"] == 1
    (line,) = [json.loads(line) for line in chatty.stderr.splitlines()]
    assert (line["level"], line["message"], line["existing"]) == ("INFO", "orders imported", 1)
    assert stdout_json(chatty)["existing"] == 1
    assert to_file.stderr == "" and json.loads(log_file.read_text())["message"] == "orders imported"

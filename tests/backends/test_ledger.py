"""The ledger as a user notices it, on SQLite, MariaDB and PostgreSQL (the `ledger` fixture)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import inspect, text, update

from shared.adapters.ledger import ApplyResult, Ledger, ReportToApply, migrate
from shared.adapters.ledger import apply as ledger_apply
from shared.adapters.ledger.engine import TransactionAborted, transient_errors
from shared.adapters.ledger.schema import orders
from shared.domain.orders import Outcome, Source, Status
from shared.errors import PoisonMessage, TransientError

PHONE = "13800138000"
THREADS = 8


def report(out_id: str, result: str = "3", message_id: str | None = None, **fields) -> ReportToApply:
    body = f'{{"phone":"{PHONE}","out_id":"{out_id}","result":"{result}"}}'
    values = {"message_type": "FlowReport", "phone": PHONE, "raw_body": body, **fields}
    return ReportToApply(message_id=message_id or uuid.uuid4().hex.upper(), out_id=out_id, result=result, **values)


def all_at_once(calls: list[Callable[[], ApplyResult]]) -> list[ApplyResult]:
    """Run the calls in threads released together, so their transactions overlap."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], ApplyResult]) -> ApplyResult:
        start.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def outcomes(results: list[ApplyResult]) -> Counter[Outcome]:
    return Counter(result.outcome for result in results)


# ---- applied -------------------------------------------------------------------------------------------


def test_success_report_resolves_the_order_with_one_event(ledger: Ledger):
    assert ledger.register_order("o-1", PHONE) is True
    first = report("o-1", "3")

    result = ledger.apply_report(first)

    assert result.outcome is Outcome.APPLIED and result.status is Status.SUCCEEDED and result.event_id
    order = ledger.get_order("o-1")
    assert order.status is Status.SUCCEEDED and order.registered
    assert order.resolved_by is Source.RECEIPT and order.resolved_message_id == first.message_id
    assert order.resolved_at is not None and order.resolved_at.tzinfo is timezone.utc
    [event] = ledger.outbox_events("o-1")
    assert event.event_id == result.event_id and event.kind == "order.succeeded" and event.delivered_at is None
    assert event.payload["status"] == "SUCCEEDED" and event.payload["previous_status"] == "PENDING"
    assert event.payload["message_id"] == first.message_id and event.payload["registered"] is True
    [receipt] = ledger.receipts_for("o-1")
    assert receipt.outcome is Outcome.APPLIED and receipt.source is Source.RECEIPT
    assert receipt.raw_body == first.raw_body and receipt.result == "3"


def test_failure_report_keeps_error_code_and_message(ledger: Ledger):
    ledger.register_order("o-2", PHONE)

    result = ledger.apply_report(report("o-2", "4", err_code="UNKNOW", err_msg="运营商失败"))

    assert (result.outcome, result.status) == (Outcome.APPLIED, Status.FAILED)
    order = ledger.get_order("o-2")
    assert (order.status, order.err_code, order.err_msg) == (Status.FAILED, "UNKNOW", "运营商失败")
    [event] = ledger.outbox_events("o-2")
    assert event.kind == "order.failed" and event.payload["err_code"] == "UNKNOW"


def test_a_bad_result_is_poison_and_touches_nothing(ledger: Ledger):
    ledger.register_order("o-3", PHONE)
    with pytest.raises(PoisonMessage):
        ledger.apply_report(report("o-3", "5"))
    assert ledger.get_order("o-3").status is Status.PENDING
    assert ledger.receipts_for("o-3") == []


# ---- duplicates ----------------------------------------------------------------------------------------


def test_a_redelivered_message_changes_nothing(ledger: Ledger):
    ledger.register_order("o-4", PHONE)
    message = report("o-4", "3", message_id="MSG-4")
    ledger.apply_report(message)
    before = ledger.get_order("o-4")

    again = ledger.apply_report(report("o-4", "4", message_id="MSG-4", dequeue_count=2))

    assert again == ApplyResult(Outcome.DUPLICATE, Status.SUCCEEDED, None)
    assert ledger.get_order("o-4") == before
    assert len(ledger.outbox_events("o-4")) == 1
    [receipt] = ledger.receipts_for("o-4")
    assert receipt.dequeue_count == 1 and receipt.outcome is Outcome.APPLIED


def test_the_same_result_under_a_new_message_id_is_kept_as_duplicate(ledger: Ledger):
    ledger.register_order("o-5", PHONE)
    ledger.apply_report(report("o-5", "3"))

    again = ledger.apply_report(report("o-5", "3", source=Source.SWEEP))

    assert again == ApplyResult(Outcome.DUPLICATE, Status.SUCCEEDED, None)
    assert [r.outcome for r in ledger.receipts_for("o-5")] == [Outcome.APPLIED, Outcome.DUPLICATE]
    assert len(ledger.outbox_events("o-5")) == 1


# ---- terminal states -----------------------------------------------------------------------------------


def test_a_contradicting_report_is_kept_as_conflict(ledger: Ledger, caplog):
    ledger.register_order("o-6", PHONE)
    ledger.apply_report(report("o-6", "4", err_code="UNKNOW"))

    with caplog.at_level(logging.WARNING, logger="shared.adapters.ledger"):
        result = ledger.apply_report(report("o-6", "3"))

    assert result == ApplyResult(Outcome.CONFLICT, Status.FAILED, None)
    order = ledger.get_order("o-6")
    assert (order.status, order.err_code) == (Status.FAILED, "UNKNOW")
    receipts = ledger.receipts_for("o-6")
    assert [(r.outcome, r.result) for r in receipts] == [(Outcome.APPLIED, "4"), (Outcome.CONFLICT, "3")]
    assert len(ledger.outbox_events("o-6")) == 1
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.out_id == "o-6" and warning.order_status == "FAILED" and PHONE not in warning.getMessage()


def test_an_expired_order_never_changes(ledger: Ledger):
    ledger.register_order("o-7", PHONE)
    event_id = ledger.expire_order("o-7", "no receipt within 30 days")
    assert event_id is not None

    late = ledger.apply_report(report("o-7", "3"))

    assert late == ApplyResult(Outcome.CONFLICT, Status.EXPIRED, None)
    order = ledger.get_order("o-7")
    assert order.status is Status.EXPIRED and order.resolved_by is Source.EXPIRY
    assert order.err_msg == "no receipt within 30 days"
    assert ledger.expire_order("o-7", "again") is None
    assert [e.kind for e in ledger.outbox_events("o-7")] == ["order.expired"]


def test_a_resolved_order_does_not_expire(ledger: Ledger):
    ledger.register_order("o-8", PHONE)
    ledger.apply_report(report("o-8", "3"))
    assert ledger.expire_order("o-8", "too old") is None
    assert ledger.expire_order("never-registered", "too old") is None
    assert ledger.get_order("o-8").status is Status.SUCCEEDED


# ---- orphans -------------------------------------------------------------------------------------------


def test_a_report_for_an_unknown_out_id_is_kept_as_an_unregistered_order(ledger: Ledger, caplog):
    with caplog.at_level(logging.WARNING, logger="shared.adapters.ledger"):
        result = ledger.apply_report(report("stranger", "4", err_code="E1", err_msg="no balance"))

    assert result.outcome is Outcome.ORPHAN and result.status is Status.FAILED and result.event_id
    order = ledger.get_order("stranger")
    assert not order.registered and order.submitted_at is None
    assert (order.status, order.err_code, order.err_msg, order.phone) == (Status.FAILED, "E1", "no balance", PHONE)
    [event] = ledger.outbox_events("stranger")
    assert event.kind == "order.failed" and event.payload["registered"] is False
    assert event.payload["previous_status"] is None

    again = ledger.apply_report(report("stranger", "4"))

    assert again == ApplyResult(Outcome.DUPLICATE, Status.FAILED, None)
    assert [r.outcome for r in ledger.receipts_for("stranger")] == [Outcome.ORPHAN, Outcome.DUPLICATE]
    assert ledger.summary().unregistered_orders == 1
    assert any(r.out_id == "stranger" for r in caplog.records)


def test_registering_an_order_first_seen_in_a_receipt_claims_it(ledger: Ledger):
    ledger.apply_report(report("early", "3"))

    assert ledger.register_order("early", PHONE) is True
    assert ledger.register_order("early", PHONE) is False
    order = ledger.get_order("early")
    assert order.registered and order.status is Status.SUCCEEDED and order.submitted_at is not None


# ---- registration, time, bodies -------------------------------------------------------------------------


def test_register_order_is_idempotent_and_keeps_utc_with_microseconds(ledger: Ledger):
    shanghai = datetime(2026, 11, 25, 8, 30, 15, 123456, tzinfo=ZoneInfo("Asia/Shanghai"))

    assert ledger.register_order("o-9", PHONE, submitted_at=shanghai) is True
    assert ledger.register_order("o-9", "13900000000", submitted_at=shanghai + timedelta(hours=1)) is False

    order = ledger.get_order("o-9")
    assert order.status is Status.PENDING and order.phone == PHONE and order.resolved_by is None
    assert order.submitted_at == shanghai and order.submitted_at.tzinfo is timezone.utc
    assert order.submitted_at.microsecond == 123456
    with ledger.engine.connect() as conn:
        stored = conn.execute(text("SELECT submitted_at FROM orders WHERE out_id = 'o-9'")).scalar_one()
    assert str(stored).startswith("2026-11-25 00:30:15.123456")  # naive UTC in the database


def test_naive_datetimes_are_refused(ledger: Ledger):
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.register_order("o-10", PHONE, submitted_at=datetime(2026, 1, 1))


def test_a_64_kb_body_is_kept_whole(ledger: Ledger):
    body = "流量" * 32 * 1024  # 64 K characters, 192 KB in UTF-8
    ledger.apply_report(report("o-11", "3", raw_body=body))
    assert ledger.receipts_for("o-11")[0].raw_body == body


# ---- dead letters --------------------------------------------------------------------------------------


def test_dead_letters_are_idempotent_by_message_id(ledger: Ledger):
    assert ledger.record_dead_letter("DL-1", "FlowReport", "not json {", "body is not JSON", 1) is True
    assert ledger.record_dead_letter("DL-1", "FlowReport", "not json {", "again", 5) is False

    letter = ledger.get_dead_letter("DL-1")
    assert (letter.raw_body, letter.reason, letter.dequeue_count) == ("not json {", "body is not JSON", 1)
    assert letter.first_seen_at.tzinfo is timezone.utc and letter.replayed_at is None
    assert ledger.summary().dead_letters == 1


def test_a_dead_letter_body_that_is_not_text_is_kept_as_base64(ledger: Ledger):
    ledger.record_dead_letter("DL-2", None, b"\xff\xfe\x00garbage", "not UTF-8", 3)
    assert ledger.get_dead_letter("DL-2").raw_body == "base64://4AZ2FyYmFnZQ=="


# ---- schema --------------------------------------------------------------------------------------------


def test_migrate_twice_is_harmless(ledger: Ledger):
    ledger.register_order("kept", PHONE)

    again = ledger.migrate()

    assert not again.changed and again.to_version == ledger.schema_version() == migrate.LATEST_VERSION
    assert ledger.get_order("kept") is not None


# ---- outbox and summary --------------------------------------------------------------------------------


def test_outbox_events_are_marked_delivered_or_failed(ledger: Ledger):
    for out_id in ("a", "b"):
        ledger.register_order(out_id, PHONE)
        ledger.apply_report(report(out_id, "3"))
    first, second = ledger.undelivered_events()

    assert ledger.record_delivery_failure(first.event_id, "webhook answered 503") is True
    assert ledger.mark_event_delivered(second.event_id) is True
    assert ledger.mark_event_delivered(second.event_id) is False

    [pending] = ledger.undelivered_events()
    assert pending.event_id == first.event_id and pending.attempts == 1
    assert pending.last_error == "webhook answered 503"


def test_summary_counts_orders_receipts_and_dead_letters(ledger: Ledger):
    for out_id in ("p", "s", "f"):
        ledger.register_order(out_id, PHONE)
    ledger.apply_report(report("s", "3"))
    ledger.apply_report(report("f", "4"))
    ledger.apply_report(report("f", "3"))
    ledger.apply_report(report("x", "3"))
    ledger.record_dead_letter("DL", "FlowReport", "?", "bad", 1)

    assert ledger.summary().as_dict() == {
        "orders": {"PENDING": 1, "SUCCEEDED": 2, "FAILED": 1, "EXPIRED": 0, "unregistered": 1},
        "receipts": {"applied": 2, "duplicate": 0, "conflict": 1, "orphan": 1},
        "dead_letters": 1,
        "undelivered_events": 3,
    }


# ---- concurrency ---------------------------------------------------------------------------------------


def test_concurrent_reports_for_one_order_apply_once(ledger: Ledger):
    ledger.register_order("race", PHONE)

    results = all_at_once([lambda: ledger.apply_report(report("race", "3")) for _ in range(THREADS)])

    assert outcomes(results) == {Outcome.APPLIED: 1, Outcome.DUPLICATE: THREADS - 1}
    assert len(ledger.outbox_events("race")) == 1
    assert len(ledger.receipts_for("race")) == THREADS


def test_concurrent_deliveries_of_one_message_record_one_receipt(ledger: Ledger):
    ledger.register_order("same", PHONE)
    message = report("same", "3", message_id="MSG-SAME")

    results = all_at_once([lambda: ledger.apply_report(message) for _ in range(THREADS)])

    assert outcomes(results) == {Outcome.APPLIED: 1, Outcome.DUPLICATE: THREADS - 1}
    assert len(ledger.receipts_for("same")) == 1
    assert len(ledger.outbox_events("same")) == 1


def test_concurrent_first_reports_for_an_unknown_order_create_it_once(ledger: Ledger):
    results = all_at_once([lambda: ledger.apply_report(report("newcomer", "3")) for _ in range(THREADS)])

    assert outcomes(results) == {Outcome.ORPHAN: 1, Outcome.DUPLICATE: THREADS - 1}
    assert len(ledger.outbox_events("newcomer")) == 1
    assert len(ledger.receipts_for("newcomer")) == THREADS


@pytest.mark.parametrize(
    ("receipt_result", "sweep_result", "loser"), [("3", "3", Outcome.DUPLICATE), ("3", "4", Outcome.CONFLICT)]
)
def test_a_sweep_answer_racing_a_receipt_makes_one_transition(ledger: Ledger, receipt_result, sweep_result, loser):
    out_ids = [f"swept-{i}" for i in range(5)]
    for out_id in out_ids:
        ledger.register_order(out_id, PHONE)

    for out_id in out_ids:
        results = all_at_once(
            [
                lambda: ledger.apply_report(report(out_id, receipt_result)),  # noqa: B023 (run before the loop moves on)
                lambda: ledger.apply_report(report(out_id, sweep_result, source=Source.SWEEP)),  # noqa: B023
            ]
        )
        assert outcomes(results) == {Outcome.APPLIED: 1, loser: 1}
        [event] = ledger.outbox_events(out_id)
        order = ledger.get_order(out_id)
        winner = next(r for r in ledger.receipts_for(out_id) if r.outcome is Outcome.APPLIED)
        assert order.resolved_by is winner.source and event.payload["resolved_by"] == winner.source.value


# ---- the database away ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["mysql+pymysql://flow:s3cr3t-pw@127.0.0.1:1/ledger", "postgresql+psycopg://flow:s3cr3t-pw@127.0.0.1:1/ledger"],
)
def test_an_unreachable_database_is_a_transient_error_without_the_password(url):
    with Ledger(url) as ledger, pytest.raises(TransientError) as raised:
        ledger.apply_report(report("o", "3"))
    assert "unavailable" in str(raised.value) and "127.0.0.1" in str(raised.value)
    assert "s3cr3t-pw" not in str(raised.value) and "s3cr3t-pw" not in repr(ledger)


# ---- schema upgrades and deadlocks ---------------------------------------------------------------------


def test_migrate_runs_a_new_step_once(ledger: Ledger, monkeypatch):
    def add_column(conn) -> None:
        conn.execute(text("ALTER TABLE outbox ADD COLUMN trace_id VARCHAR(40)"))

    latest = migrate.LATEST_VERSION
    monkeypatch.setattr(migrate, "STEPS", (*migrate.STEPS, migrate.Step(latest + 1, "outbox.trace_id", add_column)))
    monkeypatch.setattr(migrate, "LATEST_VERSION", latest + 1)

    upgraded = ledger.migrate()
    again = ledger.migrate()

    assert (upgraded.from_version, upgraded.to_version, upgraded.steps) == (latest, latest + 1, ["outbox.trace_id"])
    assert not again.changed and ledger.schema_version() == latest + 1
    assert "trace_id" in {column["name"] for column in inspect(ledger.engine).get_columns("outbox")}


def test_a_deadlock_victim_is_told_to_run_again(ledger: Ledger, backend: str):
    if backend == "sqlite":
        pytest.skip("SQLite takes its write lock at BEGIN (IMMEDIATE): transactions queue, they never deadlock")
    for out_id in ("left", "right"):
        ledger.register_order(out_id, PHONE)
    both_hold_one = threading.Barrier(2, timeout=10)

    def cross(first: str, second: str) -> Exception | None:
        try:
            with transient_errors(ledger.url, "crossing updates"), ledger.engine.begin() as conn:
                conn.execute(update(orders).where(orders.c.out_id == first).values(phone="1"))
                both_hold_one.wait()
                conn.execute(update(orders).where(orders.c.out_id == second).values(phone="2"))
        except TransientError as error:
            return error
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        errors = list(pool.map(lambda pair: cross(*pair), [("left", "right"), ("right", "left")]))

    [victim] = [error for error in errors if error is not None]
    assert isinstance(victim, TransactionAborted)


def test_apply_report_runs_again_after_a_deadlock(ledger: Ledger, monkeypatch):
    ledger.register_order("retried", PHONE)
    real_apply = ledger_apply.apply_report
    calls = []

    def deadlocked_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TransactionAborted("deadlock found when trying to get lock")
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(ledger_apply, "apply_report", deadlocked_once)

    assert ledger.apply_report(report("retried", "3")).outcome is Outcome.APPLIED
    assert len(calls) == 2

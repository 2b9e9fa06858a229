"""A whole batch in one transaction (Ledger.apply_batch), on SQLite, MariaDB and PostgreSQL: the same outcomes as one
report at a time, duplicates, conflicts and orphans inside one batch, dead letters in the same transaction,
concurrent batches over the same orders and message ids, and a report that fails rolling back only itself."""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from sqlalchemy import exc

from shared.adapters.ledger import Ledger, ReportToApply
from shared.adapters.ledger import apply as ledger_apply
from shared.adapters.ledger import batch as ledger_batch
from shared.adapters.ledger.batch import DeadLetterToRecord
from shared.adapters.ledger.records import NewOrder
from shared.domain.orders import Outcome, Source, Status
from shared.errors import PoisonMessage

PHONE = "13800138000"


def report(out_id: str, result: str = "3", message_id: str | None = None, **fields) -> ReportToApply:
    values = {"message_type": "FlowReport", "phone": PHONE, "raw_body": "{}", **fields}
    return ReportToApply(message_id=message_id or uuid.uuid4().hex, out_id=out_id, result=result, **values)


def outcomes(results) -> list[str]:
    return [result.outcome.value for result in results]


def test_a_batch_applies_each_report_as_one_at_a_time_would(ledger: Ledger):
    for out_id in ("pending-1", "pending-2", "done-1"):
        ledger.register_order(out_id, PHONE)
    ledger.apply_report(report("done-1", "3", message_id="OLD-1"))

    done = ledger.apply_batch(
        [
            report("pending-1", "3"),
            report("pending-2", "4", err_code="UNKNOW", err_msg="未知"),
            report("done-1", "3", message_id="OLD-1"),  # redelivered
            report("done-1", "3"),  # the same result under a new message id
            report("done-1", "4"),  # contradicts a terminal order
            report("stranger", "3"),  # never registered
        ]
    )

    assert outcomes(done.reports) == ["applied", "applied", "duplicate", "duplicate", "conflict", "orphan"]
    assert [r.status for r in done.reports] == [Status.SUCCEEDED, Status.FAILED, *[Status.SUCCEEDED] * 4]
    assert (ledger.get_order("pending-2").err_code, ledger.get_order("pending-2").err_msg) == ("UNKNOW", "未知")
    stranger = ledger.get_order("stranger")
    assert stranger.status is Status.SUCCEEDED and not stranger.registered
    for out_id in ("pending-1", "pending-2", "stranger"):
        [event] = ledger.outbox_events(out_id)
        assert event.event_id == next(r.event_id for r in done.reports if r.event and r.event["out_id"] == out_id)
    assert len(ledger.outbox_events("done-1")) == 1  # from before the batch
    kept = Counter(r.outcome.value for r in ledger.receipts_for("done-1"))
    assert kept == {"applied": 1, "duplicate": 1, "conflict": 1}  # the redelivery wrote nothing


def test_inside_one_batch_a_repeated_message_id_is_a_duplicate_and_a_second_report_sees_the_first(ledger: Ledger):
    ledger.register_order("twice", PHONE)
    same = report("twice", "3", message_id="MSG-TWICE")

    done = ledger.apply_batch([same, same, report("twice", "4"), report("new-one", "4"), report("new-one", "4")])

    assert outcomes(done.reports) == ["applied", "duplicate", "conflict", "orphan", "duplicate"]
    assert [r.message_id for r in ledger.receipts_for("twice")].count("MSG-TWICE") == 1
    assert len(ledger.outbox_events("twice")) == len(ledger.outbox_events("new-one")) == 1
    assert ledger.get_order("new-one").status is Status.FAILED


def test_dead_letters_are_written_in_the_same_transaction_once_each(ledger: Ledger):
    poison = DeadLetterToRecord("DL-B1", "FlowReport", "bm90IGpzb24=", "body is not JSON", 1)

    first = ledger.apply_batch([report("with-poison", "3")], [poison, poison])
    again = ledger.apply_batch([], [poison])

    assert first.dead_letters == [True, False] and again.dead_letters == [False]
    assert ledger.get_dead_letter("DL-B1").reason == "body is not JSON"
    assert ledger.get_order("with-poison").status is Status.SUCCEEDED


def test_a_poison_result_refuses_the_whole_batch_before_any_write(ledger: Ledger):
    ledger.register_order("ok-before", PHONE)

    with pytest.raises(PoisonMessage):
        ledger.apply_batch([report("ok-before", "3"), report("ok-before", "9")])

    assert ledger.get_order("ok-before").status is Status.PENDING


def test_a_report_that_fails_rolls_back_only_itself(ledger: Ledger, monkeypatch):
    for out_id in ("a", "b", "c"):
        ledger.register_order(out_id, PHONE)
    original = ledger_apply.apply_report

    def failing_for_b(conn, one, reported, now):
        applied = original(conn, one, reported, now)  # b's order moved, its event and receipt written ...
        if one.out_id == "b":
            raise exc.IntegrityError("INSERT ...", {}, Exception("simulated constraint failure"))  # ... then not
        return applied

    monkeypatch.setattr(ledger_batch.apply, "apply_report", failing_for_b)
    monkeypatch.setattr(ledger_batch, "apply_batch_fast", _always_unforeseen)

    done = ledger.apply_batch([report("a"), report("b"), report("c")])

    assert outcomes([done.reports[0], done.reports[2]]) == ["applied", "applied"]
    assert isinstance(done.reports[1], exc.IntegrityError)
    assert [ledger.get_order(o).status for o in ("a", "b", "c")] == [Status.SUCCEEDED, Status.PENDING, Status.SUCCEEDED]
    assert ledger.outbox_events("b") == [] and ledger.receipts_for("b") == []


def _always_unforeseen(*_args, **_kwargs):
    raise ledger_batch.Unforeseen("forced for the test")


def test_concurrent_batches_over_the_same_orders_and_messages_apply_each_once(ledger: Ledger):
    out_ids = [f"contended-{n}" for n in range(12)]
    for out_id in out_ids:
        ledger.register_order(out_id, PHONE)
    shared_messages = [report(out_id, "3", message_id=f"MSG-{out_id}") for out_id in out_ids]
    start = threading.Barrier(4)

    def one_batch(n: int):
        start.wait()
        mine = shared_messages[n::2] + [report(out_id, "3") for out_id in out_ids[n::3]] + [report(f"orphan-{n % 2}")]
        return ledger.apply_batch(list(reversed(mine)) if n % 2 else mine)

    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(one_batch, range(4)))

    applied = Counter()
    for done in batches:
        for result in done.reports:
            assert not isinstance(result, Exception), result
            if result.outcome in (Outcome.APPLIED, Outcome.ORPHAN):
                applied[result.event["out_id"]] += 1
    for out_id in [*out_ids, "orphan-0", "orphan-1"]:
        assert applied[out_id] == 1, out_id
        assert len(ledger.outbox_events(out_id)) == 1, out_id
        assert ledger.get_order(out_id).status is Status.SUCCEEDED
    for message in shared_messages:
        assert [r.message_id for r in ledger.receipts_for(message.out_id)].count(message.message_id) == 1


def test_a_batch_of_sweep_answers_resolves_by_sweep(ledger: Ledger):
    ledger.register_order("swept", PHONE)

    ledger.apply_batch([report("swept", "4", source=Source.SWEEP, err_code="E1")])

    order = ledger.get_order("swept")
    assert (order.status, order.resolved_by, order.err_code) == (Status.FAILED, Source.SWEEP, "E1")


def _stored(ledger: Ledger, table: str, key: str, value: str) -> dict:
    """A row as the database holds it, read through the DB-API (no SQLAlchemy type processing)."""
    with ledger.engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        marker = "?" if ledger.engine.dialect.paramstyle == "qmark" else "%s"
        cursor.execute(f"SELECT * FROM {table} WHERE {key} = {marker}", (value,))
        names = [column[0] for column in cursor.description]
        [row] = cursor.fetchall()
        cursor.close()
    return dict(zip(names, row, strict=True))


def _shape(value: object) -> object:
    """A stored value with its digits blanked: two timestamps of the same format have the same shape."""
    return re.sub(r"\d", "9", value) if isinstance(value, str) else type(value)


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "orphan"])
def test_the_batch_path_stores_what_the_per_report_path_stores(ledger: Ledger, registered: bool):
    if registered:
        ledger.register_orders([NewOrder(out_id, PHONE, "100M", "charge", None) for out_id in ("one", "batch")])
    ledger.apply_report(report("one", "4", message_id="M-ONE", err_code="E1", err_msg="失败"))
    ledger.apply_batch([report("batch", "4", message_id="M-BATCH", err_code="E1", err_msg="失败")])

    by_one = {
        "orders": _stored(ledger, "orders", "out_id", "one"),
        "receipts": _stored(ledger, "receipts", "out_id", "one"),
    }
    by_batch = {
        "orders": _stored(ledger, "orders", "out_id", "batch"),
        "receipts": _stored(ledger, "receipts", "out_id", "batch"),
    }
    different = {"out_id", "message_id", "resolved_message_id", "id"}
    for table in ("orders", "receipts"):
        one, batch = by_one[table], by_batch[table]
        assert one.keys() == batch.keys()
        for column in one.keys() - different:
            if isinstance(one[column], str) and re.fullmatch(r"\d{4}-.*", one[column]):
                assert _shape(batch[column]) == _shape(one[column]), (table, column)  # a timestamp, same format
            elif isinstance(one[column], datetime):
                assert type(batch[column]) is datetime and batch[column].tzinfo == one[column].tzinfo, (table, column)
            else:
                assert batch[column] == one[column], (table, column)


def test_every_event_id_is_a_distinct_version_4_uuid(ledger: Ledger):
    out_ids = [f"uuid-{n}" for n in range(40)]
    done = ledger.apply_batch([report(out_id, "3") for out_id in out_ids])

    ids = [result.event_id for result in done.reports]
    assert len(set(ids)) == len(out_ids)
    for event_id in ids:
        parsed = uuid.UUID(event_id)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, event_id)
    assert {event.event_id for out_id in out_ids for event in ledger.outbox_events(out_id)} == set(ids)

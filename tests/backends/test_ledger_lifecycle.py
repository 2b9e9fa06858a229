"""The ledger beyond receipts, on SQLite, MariaDB and PostgreSQL: registering orders in bulk, charge attempts,
the sweep's lease and keyset pages, outbox delivery bookkeeping, dead-letter replay marks, reconciliation counts,
and the upgrade of a version-1 ledger."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from schema_v1 import metadata_v1, orders_v1, outbox_v1, receipts_v1
from sqlalchemy import insert, inspect, text
from sqlalchemy.exc import IntegrityError

from shared.adapters.ledger import Ledger, ReportToApply, migrate
from shared.adapters.ledger.events import DeliveryFailure
from shared.adapters.ledger.records import NewOrder
from shared.adapters.ledger.schema import metadata, schema_version
from shared.domain.orders import Outcome, Source, Status
from shared.errors import PoisonMessage

PHONE = "13800138000"
T0 = datetime(2026, 11, 1, 4, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(ledger: Ledger, clock: Clock):
    """The same database as `ledger`, through a Ledger whose clock the test turns."""
    with Ledger(ledger.url, clock=clock) as timed:
        yield timed


def receipt(out_id: str, result: str = "3", source: Source = Source.RECEIPT, **fields) -> ReportToApply:
    return ReportToApply(
        message_id=uuid.uuid4().hex,
        message_type="FlowReport",
        out_id=out_id,
        phone=PHONE,
        result=result,
        raw_body="{}",
        source=source,
        **fields,
    )


# ---- registering ---------------------------------------------------------------------------------------


def test_registering_a_batch_inserts_new_claims_orphans_and_leaves_the_rest(timed: Ledger):
    timed.register_order("known", PHONE)
    timed.apply_report(receipt("orphan", "4", err_code="UNKNOW"))

    done = timed.register_orders(
        [
            NewOrder("new-1", PHONE, product="100", flow_api="charge"),
            NewOrder("known", "13900139000"),
            NewOrder("orphan", PHONE, product="100", flow_api="charge"),
            NewOrder("new-1", "13900139000"),  # the first occurrence wins
        ]
    )

    assert (done.registered, done.claimed, done.existing) == (["new-1"], ["orphan"], ["known"])
    new = timed.get_order("new-1")
    assert (new.status, new.phone, new.product, new.flow_api, new.charge_attempts) == (
        Status.PENDING, PHONE, "100", "charge", 0,
    )  # fmt: skip
    orphan = timed.get_order("orphan")
    assert orphan.registered and orphan.status is Status.FAILED and orphan.product == "100"
    assert timed.get_order("known").phone == PHONE
    again = timed.register_orders([NewOrder("new-1", PHONE), NewOrder("orphan", PHONE)])
    assert (again.registered, again.claimed, again.existing) == ([], [], ["new-1", "orphan"])


def test_out_ids_with_sql_metacharacters_and_unicode_are_data(ledger: Ledger):
    tricky = ["x'; DROP TABLE orders; --", 'a"b\\c%_', "订单-①-🚀", "o" * 128]
    ledger.register_orders([NewOrder(out_id, PHONE) for out_id in tricky])

    for out_id in tricky:
        assert ledger.get_order(out_id).out_id == out_id
        assert ledger.apply_report(receipt(out_id)).outcome is Outcome.APPLIED
    assert ledger.summary().orders_by_status["SUCCEEDED"] == len(tricky)


def test_an_out_id_longer_than_128_characters_is_refused_clearly(ledger: Ledger):
    with pytest.raises(ValueError, match="out_id must be 1 to 128 characters"):
        ledger.register_order("o" * 200, PHONE)
    with pytest.raises(PoisonMessage, match="out_id is longer than 128 characters"):
        receipt("o" * 200)
    assert ledger.get_order("o" * 200) is None


def test_charge_attempts_are_counted_before_the_call_and_only_while_pending(timed: Ledger, clock: Clock):
    timed.register_order("c-1", PHONE, product="100", flow_api="charge")
    clock.advance(seconds=5)

    assert timed.start_charge_attempt("c-1") is True
    timed.record_charge_id("c-1", "100000000001")

    order = timed.get_order("c-1")
    assert (order.charge_attempts, order.last_charge_at, order.charge_id) == (1, clock.now, "100000000001")
    timed.apply_report(receipt("c-1"))
    assert timed.start_charge_attempt("c-1") is False
    assert timed.start_charge_attempt("never-registered") is False


def test_a_charge_attempt_keeps_the_product_of_an_order_registered_without_one(ledger: Ledger):
    ledger.register_order("bare-1", PHONE)
    ledger.register_order("given-1", PHONE, product="100M", flow_api="charge")

    ledger.start_charge_attempt("bare-1", "1001", "cdp")
    ledger.start_charge_attempt("given-1", "500M", "cdp")

    assert (ledger.get_order("bare-1").product, ledger.get_order("bare-1").flow_api) == ("1001", "cdp")
    assert (ledger.get_order("given-1").product, ledger.get_order("given-1").flow_api) == ("100M", "charge")


def test_a_charge_rejection_resolves_the_order_by_charge(ledger: Ledger):
    ledger.register_order("r-1", PHONE, product="100", flow_api="charge")

    result = ledger.apply_report(receipt("r-1", "4", Source.CHARGE, err_code="isv.MOBILE_NUMBER_ILLEGAL"))

    order = ledger.get_order("r-1")
    assert result.outcome is Outcome.APPLIED and result.event["resolved_by"] == "charge"
    assert (order.status, order.resolved_by, order.err_code) == (
        Status.FAILED, Source.CHARGE, "isv.MOBILE_NUMBER_ILLEGAL",
    )  # fmt: skip


# ---- the sweep's lease and pages -----------------------------------------------------------------------


def test_one_sweep_holds_the_lease_until_it_releases_or_stops_renewing(timed: Ledger, clock: Clock):
    ttl = timedelta(minutes=5)
    first = timed.acquire_sweep_lease("sweep-a", ttl)
    assert first is not None and first.holder == "sweep-a" and first.cycle_id is None

    assert timed.acquire_sweep_lease("sweep-b", ttl) is None
    clock.advance(minutes=4)
    assert timed.renew_sweep_lease("sweep-a", ttl, phase="query", cycle_id="c1") is True
    clock.advance(minutes=4)
    assert timed.acquire_sweep_lease("sweep-b", ttl) is None  # renewed 4 minutes ago: still held

    clock.advance(minutes=2)  # sweep-a stopped renewing (killed): its lease expired
    taken = timed.acquire_sweep_lease("sweep-b", ttl)
    assert taken is not None and taken.holder == "sweep-b" and (taken.cycle_id, taken.phase) == ("c1", "query")
    assert timed.renew_sweep_lease("sweep-a", ttl, phase="expire") is False  # the old holder must stop
    assert timed.renew_sweep_lease("sweep-b", None, phase=None, counts={"queried": 3}) is True  # released
    state = timed.sweep_state()
    assert state.holder is None and state.counts == {"queried": 3}
    assert timed.acquire_sweep_lease("sweep-a", ttl) is not None


def test_pending_pages_follow_the_keyset_and_skip_nothing_across_equal_times(timed: Ledger, clock: Clock):
    same_time = T0 - timedelta(hours=5)
    timed.register_orders([NewOrder(f"tie-{n:02d}", PHONE, submitted_at=same_time) for n in range(7)])
    timed.register_orders([NewOrder(f"later-{n}", PHONE, submitted_at=T0 - timedelta(hours=4 - n)) for n in range(3)])
    timed.register_orders([NewOrder("too-old", PHONE, submitted_at=T0 - timedelta(days=31))])
    timed.register_orders([NewOrder("too-young", PHONE, submitted_at=T0)])
    timed.apply_report(receipt("tie-03"))

    seen, after = [], None
    while True:
        page = timed.pending_page(
            submitted_from=T0 - timedelta(days=30), submitted_to=T0 - timedelta(hours=1), after=after, limit=3
        )
        seen += [row.order.out_id for row in page]
        if len(page) < 3:
            break
        after = (page[-1].order.submitted_at, page[-1].order.out_id)

    expected = [f"tie-{n:02d}" for n in range(7) if n != 3] + ["later-0", "later-1", "later-2"]
    assert seen == expected


def test_a_resumed_page_leaves_out_orders_already_queried_in_this_cycle(timed: Ledger, clock: Clock):
    timed.register_orders([NewOrder(f"q-{n}", PHONE, submitted_at=T0 - timedelta(hours=3)) for n in range(4)])
    cycle_started = clock.now
    clock.advance(seconds=1)
    assert timed.record_query("q-1", "STILL_PENDING", "the provider is still processing the top-up") is True

    page = timed.pending_page(
        submitted_from=T0 - timedelta(days=30), submitted_to=clock.now, not_queried_since=cycle_started, limit=10
    )

    assert [row.order.out_id for row in page] == ["q-0", "q-2", "q-3"]
    queried = timed.get_order("q-1")
    assert (queried.last_query_answer, queried.last_query_at) == ("STILL_PENDING", clock.now)


def test_orders_past_the_window_are_listed_for_expiry_and_expire_once(timed: Ledger):
    timed.register_orders([NewOrder(f"old-{n}", PHONE, submitted_at=T0 - timedelta(days=31 + n)) for n in range(3)])
    timed.register_orders([NewOrder("young", PHONE, submitted_at=T0 - timedelta(days=29))])

    due = timed.expirable_orders(T0 - timedelta(days=30))

    assert due == ["old-2", "old-1", "old-0"]
    event = timed.expire("old-2", "beyond the status query window")
    assert event["kind"] == "order.expired" and event["resolved_by"] == "expiry"
    assert timed.expire("old-2", "again") is None
    assert timed.expirable_orders(T0 - timedelta(days=30)) == ["old-1", "old-0"]


# ---- outbox and dead letters ---------------------------------------------------------------------------


def test_failed_deliveries_back_off_rejected_ones_wait_for_a_human(timed: Ledger, clock: Clock):
    for out_id in ("e-1", "e-2", "e-3"):
        timed.register_order(out_id, PHONE)
        timed.apply_report(receipt(out_id))
    first, second, third = (event.event_id for event in timed.due_events())

    assert timed.mark_events_delivered([first, first]) == 1
    timed.record_delivery_failures(
        [
            DeliveryFailure(second, "webhook answered 503"),
            DeliveryFailure(third, "webhook answered 400", rejected=True),
        ],
        retry_after=timedelta(minutes=1),
    )

    assert timed.due_events() == []
    clock.advance(seconds=61)
    [due] = timed.due_events()
    assert (due.event_id, due.attempts, due.last_error) == (second, 1, "webhook answered 503")
    timed.record_delivery_failures([DeliveryFailure(second, "timed out")], retry_after=timedelta(minutes=1))
    clock.advance(seconds=61)
    assert timed.due_events() == []  # the second failure doubled the backoff
    clock.advance(seconds=60)
    assert [event.event_id for event in timed.due_events()] == [second]

    rejected = next(event for event in timed.list_events(undelivered=True) if event.event_id == third)
    assert rejected.rejected_at is not None and rejected.next_attempt_at is None
    assert timed.retry_rejected_events() == 1
    assert {event.event_id for event in timed.due_events()} == {second, third}
    assert timed.reconciliation().undelivered_events == 2


def test_dead_letters_are_listed_newest_first_and_marked_replayed_once(timed: Ledger, clock: Clock):
    timed.record_dead_letter("DL-1", "FlowReport", "bm90IGpzb24=", "body is not JSON", 1)
    clock.advance(seconds=1)
    timed.record_dead_letter("DL-2", "FlowReport", "e30=", "not a FlowReport", 2)

    assert [dl.message_id for dl in timed.dead_letters()] == ["DL-2", "DL-1"]
    assert timed.mark_dead_letter_replayed("DL-1") is True
    assert timed.mark_dead_letter_replayed("DL-1") is False
    assert [dl.message_id for dl in timed.dead_letters()] == ["DL-2"]
    assert [dl.message_id for dl in timed.dead_letters(include_replayed=True)] == ["DL-2", "DL-1"]


def test_reconciliation_counts_by_status_resolver_and_error_code(timed: Ledger):
    timed.register_orders([NewOrder(f"o-{n}", PHONE, submitted_at=T0 - timedelta(hours=n)) for n in range(6)])
    timed.apply_report(receipt("o-0"))
    timed.apply_report(receipt("o-1", "4", err_code="UNKNOW"))
    timed.apply_report(receipt("o-2", "4", Source.SWEEP, err_code="UNKNOW"))
    timed.apply_report(receipt("o-3", "4", Source.CHARGE, err_code="isv.MOBILE_NUMBER_ILLEGAL"))
    timed.expire("o-4", "beyond the status query window")
    timed.apply_report(receipt("o-0", "4"))  # a conflict
    timed.apply_report(receipt("stray"))  # unregistered

    counts = timed.reconciliation()

    assert counts.orders_by_status == {"PENDING": 1, "SUCCEEDED": 2, "FAILED": 3, "EXPIRED": 1}
    assert counts.orders_by_resolver == {"receipt": 3, "sweep": 1, "expiry": 1, "charge": 1}
    assert counts.failures_by_code == {"UNKNOW": 2, "isv.MOBILE_NUMBER_ILLEGAL": 1}
    assert (counts.unregistered_orders, counts.conflicts) == (1, 1)
    assert [order.out_id for order in timed.unresolved_orders()] == ["o-5"]
    recent = timed.reconciliation(submitted_from=T0 - timedelta(hours=2), submitted_to=T0)
    assert recent.orders_by_status == {"PENDING": 0, "SUCCEEDED": 0, "FAILED": 2, "EXPIRED": 0}  # o-1 and o-2


# ---- upgrading a version-1 ledger ----------------------------------------------------------------------


def test_a_version_1_ledger_is_upgraded_in_place_keeping_its_rows(ledger: Ledger):
    with ledger.engine.begin() as conn:
        metadata.drop_all(conn)
        metadata_v1.create_all(conn)
        conn.execute(insert(schema_version).values(version=1, description="v1", applied_at=T0))
        conn.execute(
            insert(orders_v1).values(
                out_id="v1-order", phone=PHONE, status="SUCCEEDED", resolved_by="receipt", resolved_message_id="M1",
                submitted_at=T0, resolved_at=T0, created_at=T0, registered=True,
            )
        )  # fmt: skip
        conn.execute(
            insert(receipts_v1).values(
                message_id="M1", message_type="FlowReport", out_id="v1-order", result="3", raw_body="{}",
                dequeue_count=1, received_at=T0, outcome="applied", source="receipt",
            )
        )  # fmt: skip
        conn.execute(
            insert(outbox_v1).values(
                event_id="E1", out_id="v1-order", kind="order.succeeded", payload="{}", created_at=T0
            )
        )

    upgraded = ledger.migrate()

    assert (upgraded.from_version, upgraded.to_version) == (1, migrate.LATEST_VERSION)
    assert not ledger.migrate().changed
    kept = ledger.get_order("v1-order")
    assert (kept.status, kept.resolved_by, kept.charge_attempts) == (Status.SUCCEEDED, Source.RECEIPT, 0)
    assert [r.message_id for r in ledger.receipts_for("v1-order")] == ["M1"]
    assert [e.event_id for e in ledger.outbox_events("v1-order")] == ["E1"]
    assert "sweep_state" in inspect(ledger.engine).get_table_names()
    ledger.register_order("v2-order", PHONE, product="100", flow_api="charge")
    rejected = ledger.apply_report(receipt("v2-order", "4", Source.CHARGE, err_code="isv.MOBILE_NUMBER_ILLEGAL"))
    assert rejected.outcome is Outcome.APPLIED  # the new resolver passes the upgraded CHECK constraints
    with pytest.raises(IntegrityError), ledger.engine.begin() as conn:  # foreign keys still hold
        conn.execute(
            text(
                "INSERT INTO outbox (event_id, out_id, kind, payload, created_at, attempts) "
                "VALUES ('E2', 'no-such-order', 'order.failed', '{}', '2026-11-01 04:00:00', 0)"
            )
        )

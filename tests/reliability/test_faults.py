"""Faults around the drain: the ledger down, the token API failing, access denied, MNS throttling / 5xx / dropped
connections, queue tokens expiring mid-run, the visibility timeout running out under a slow message, a message
that keeps failing. Whatever happens, nothing is deleted before its effect is committed, a report is applied once,
and once the fault is gone the queue drains empty."""

from __future__ import annotations

import re
import sqlite3
import threading
import time

import pytest
from mns.account import Account
from mns.queue import Message, QueueMeta
from pipeline_support import ALICOM_OWNER, ALICOM_PUBLISHER

from shared.adapters.alicom import TokenProvider, acs_client
from shared.adapters.queue import AlicomQueue
from shared.domain.orders import Outcome, Status
from shared.errors import TransientError
from shared.services.drain import Drainer

PHONE = "13800138000"
REQUEST_ID = re.compile(r" \(request [0-9A-F]+\)")
BROKEN_LEDGER = "mysql+pymysql://root@127.0.0.1:1/flow_receipts"  # port 1: refused at once


def flow_report(out_id: str, result: str = "3") -> dict:
    return {"phone": PHONE, "out_id": out_id, "result": result, "err_code": "", "err_msg": ""}


def publish_reports(world, prefix: str, count: int, *, register: bool = True) -> dict[str, str]:
    """out_id -> message id, alternating successes and failures."""
    published = {}
    for n in range(count):
        out_id = f"{prefix}-{n}"
        if register:
            world.world.register(out_id)
        published[out_id] = world.publish(flow_report(out_id, "3" if n % 2 == 0 else "4"))
    return published


def assert_applied_once(world, published: dict[str, str]) -> None:
    """Each report: one receipt under its own message id that moved the order, one outbox event, none lost."""
    for out_id, message_id in published.items():
        receipts = world.ledger.receipts_for(out_id)
        assert [(r.message_id, r.outcome) for r in receipts] == [(message_id, Outcome.APPLIED)], out_id
        assert len(world.ledger.outbox_events(out_id)) == 1, out_id
        order = world.ledger.get_order(out_id)
        assert order.status in (Status.SUCCEEDED, Status.FAILED) and order.resolved_message_id == message_id
    assert world.queue_depth() == 0


def publish_in_background(world, prefix: str, count: int, interval: float) -> tuple[threading.Thread, dict]:
    published: dict[str, str] = {}

    def run() -> None:
        for n in range(count):
            out_id = f"{prefix}-{n}"
            world.world.register(out_id)
            published[out_id] = world.publish(flow_report(out_id))
            time.sleep(interval)

    thread = threading.Thread(target=run, name="publisher", daemon=True)
    thread.start()
    return thread, published


# ---- the ledger -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ledger_unavailable_deletes_nothing_names_the_cause_and_messages_come_back(make_world, log_lines):
    world = make_world(visibility=1)
    published = publish_reports(world, "down", 5)
    poison = world.publish_text("not a report at all!")
    broken = world.runtime_with(LEDGER_URL=BROKEN_LEDGER)

    summary = world.drain_with(broken, 5)

    counts = summary.as_dict()
    assert counts["received"] == 6 and counts["left_for_retry"] == 6, counts
    assert counts["deleted"] == counts["applied"] == counts["dead_lettered"] == counts["orphans"] == 0
    assert "batch_failed" in summary.stopped_by
    assert len(summary.errors) == 1
    assert "ledger database unavailable" in summary.errors[0] and "127.0.0.1:1" in summary.errors[0]
    stopped = [line for line in log_lines() if line["message"] == "drain stopped: every message of a batch failed"]
    assert stopped and "ledger database unavailable" in stopped[0]["error"]
    finished = [line for line in log_lines() if line["message"] == "drain finished"]
    assert finished[-1]["left_for_retry"] == 6 and "ledger database unavailable" in finished[-1]["errors"][0]
    # nothing was deleted: after the visibility timeout every message is receivable again
    assert world.queue_depth() == 6
    time.sleep(1.2)
    assert world.queue_counts()["active"] == 6

    later = world.drain_until_empty()

    totals = world.totals(later)
    assert totals["applied"] == 5 and totals["dead_lettered"] == 1 and totals["deleted"] == 6, totals
    assert_applied_once(world, published)
    letter = world.ledger.get_dead_letter(poison)
    assert letter.raw_body == "not a report at all!" and letter.dequeue_count == 2
    assert all(r.dequeue_count == 2 for out_id in published for r in world.ledger.receipts_for(out_id))


@pytest.mark.slow
def test_at_the_dequeue_limit_a_ledger_outage_still_deletes_nothing(make_world):
    """Giving up needs the ledger too (the dead letter lives there): with it down nothing is deleted, whatever the
    dequeue count; once it is back the messages apply (a delivery is tried before it is given up on)."""
    world = make_world(visibility=1, MAX_DEQUEUE_COUNT="1")
    published = publish_reports(world, "limit", 3)
    broken = world.runtime_with(LEDGER_URL=BROKEN_LEDGER)

    summary = world.drain_with(broken, 5)

    assert summary.counts["left_for_retry"] == 3 and summary.counts["deleted"] == 0, summary.as_dict()
    assert world.queue_depth() == 3
    time.sleep(1.2)
    later = world.drain_until_empty()

    assert world.totals(later)["dead_lettered"] == 0
    assert_applied_once(world, published)


@pytest.mark.slow
def test_a_message_that_keeps_failing_is_dead_lettered_at_the_dequeue_limit(make_world, monkeypatch):
    world = make_world(visibility=2, MAX_DEQUEUE_COUNT="2")
    published = publish_reports(world, "fine", 3)
    world.world.register("stuck-1")
    stuck = world.publish(flow_report("stuck-1"))
    real_apply_batch = world.ledger.apply_batch

    def failing_for_stuck(reports, letters=()):
        """stuck-1's report fails on its own inside the batch (its savepoint rolled back); the others commit."""
        keep = [report for report in reports if report.out_id != "stuck-1"]
        done = real_apply_batch(keep, letters)
        applied = iter(done.reports)
        done.reports = [
            TransientError("ledger database unavailable while applying a report (simulated for stuck-1)")
            if report.out_id == "stuck-1"
            else next(applied)
            for report in reports
        ]
        return done

    monkeypatch.setattr(world.ledger, "apply_batch", failing_for_stuck)

    first = world.drain()
    assert first.counts["applied"] == 3 and first.counts["left_for_retry"] == 1, first.as_dict()
    assert world.ledger.get_dead_letter(stuck) is None
    time.sleep(2.2)
    later = world.drain_until_empty()

    totals = world.totals(later)
    assert totals["dead_lettered"] == 1 and totals["deleted"] == 1, totals
    letter = world.ledger.get_dead_letter(stuck)
    assert letter.dequeue_count == 2
    assert letter.reason.startswith("gave up after 2 deliveries; last error: ")
    assert "simulated for stuck-1" in letter.reason
    assert letter.raw_body == world.bodies[stuck]
    assert world.ledger.get_order("stuck-1").status is Status.PENDING
    assert world.ledger.receipts_for("stuck-1") == []
    assert_applied_once(world, published)


# ---- the token API and access ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["internal_error", "unavailable", "throttle", "drop_connection"])
def test_token_api_failing_stops_cleanly_and_later_drains_all(make_world, log_lines, fault):
    world = make_world()
    published = publish_reports(world, "token", 4)
    world.alicom.set_faults({"seed": 3, "operations": {"QueryTokenForMnsQueue": {fault: 1.0}}})

    started = time.monotonic()
    summary = world.drain(1.5)

    assert time.monotonic() - started < 3.0
    counts = summary.as_dict()
    assert counts["received"] == counts["deleted"] == counts["applied"] == 0, counts
    assert counts["receive_errors"] >= 1
    assert summary.stopped_by <= {"deadline", "queue_unavailable"}
    retried = [line for line in log_lines() if line["message"] == "receive failed; backing off"]
    assert retried and all("QueryTokenForMnsQueue" in line["error"] for line in retried)
    assert world.queue_counts()["active"] == 4  # nothing was even received

    world.alicom.set_faults({})
    later = world.drain_until_empty()

    assert world.totals(later)["applied"] == 4
    assert_applied_once(world, published)


def test_a_queue_of_another_account_stops_the_drain_with_one_clear_line(make_world):
    """ALICOM_QUEUE_NAME naming someone else's queue: the token API refuses it; nothing is received."""
    world = make_world()
    publish_reports(world, "mine", 2)
    foreign = "Alicom-Queue-2468024680246802-FlowReport"

    summary = world.drain_with(world.runtime_with(ALICOM_QUEUE_NAME=foreign), 5)

    assert summary.stopped_by == {"config_error"}, summary.as_dict()
    assert summary.counts["received"] == 0
    (error,) = summary.errors
    assert foreign in error and "FlowReport" in error and "\n" not in error
    assert world.queue_counts()["active"] == 2


def test_mns_access_denied_stops_the_drain_with_one_clear_line(make_world, log_lines):
    """A token that covers only the account's own queue (the token API asked without QueueName, as older SDKs
    do) used on another account's queue: MNS answers AccessDenied."""
    world = make_world()
    own = publish_reports(world, "mine", 2)
    foreign = "Alicom-Queue-2468024680246802-FlowReport"
    Account(world.mns.endpoint, *ALICOM_OWNER).get_queue(foreign).create(QueueMeta())
    Account(world.mns.endpoint, *ALICOM_PUBLISHER).get_queue(foreign).send_message(Message("theirs"))
    settings = world.world.runtime.settings
    credentials = world.world.credentials
    client = acs_client(credentials.access_key_id, credentials.access_key_secret, None, settings.alicom_region)
    tokens = TokenProvider(client, settings.alicom_api_endpoint, "FlowReport", "")
    drainer = Drainer(
        queue_factory=lambda: AlicomQueue(settings.alicom_mns_endpoint, foreign, "FlowReport", tokens),
        dispatch=world.world.runtime.dispatch(credentials),
        ledger=world.ledger,
        max_dequeue_count=5,
        pollers=3,
        long_poll_seconds=0,
    )

    summary = drainer.run(time.monotonic() + 5)

    assert summary.stopped_by == {"access_denied"}, summary.as_dict()
    assert summary.counts["received"] == 0
    # one line in the summary, naming the queue and the message type
    assert len(summary.errors) == 1
    assert {REQUEST_ID.sub("", error) for error in summary.errors} == {
        f"MNS denied BatchReceiveMessage on queue {foreign} for message type FlowReport (AccessDenied): the queue "
        "token covers only your own Alicom-Queue-<uid>-<MessageType> queue; check ALICOM_QUEUE_NAME and "
        "ALICOM_MESSAGE_TYPE"
    }
    denied = [line for line in log_lines() if line["level"] == "ERROR" and foreign in line["message"]]
    # each poller that was already receiving logs its own line, differing only by the MNS request id
    assert 1 <= len(denied) <= 3
    assert {REQUEST_ID.sub("", line["message"]) for line in denied} == {REQUEST_ID.sub("", summary.errors[0])}
    assert world.mns.stats()["queues"][foreign]["active"] == 1
    assert world.queue_counts()["active"] == len(own)


# ---- MNS faults --------------------------------------------------------------------------------------------------

MNS_FAULTS = {
    "receive-throttled": {"BatchReceiveMessage": {"throttle": 0.5}},
    "receive-5xx": {"BatchReceiveMessage": {"internal_error": 0.5}},
    "receive-dropped": {"BatchReceiveMessage": {"drop_connection": 0.3}},
    "delete-5xx-and-throttled": {"BatchDeleteMessage": {"internal_error": 0.4, "throttle": 0.3}},
    "everything-token-expired": {"*": {"token_expired": 0.3}},
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(MNS_FAULTS))
def test_mns_faults_at_a_partial_rate_still_drain_everything(make_world, case):
    world = make_world(visibility=1)
    published = publish_reports(world, "mns", 24)
    published.update(publish_reports(world, "unknown", 6, register=False))
    poison = world.publish_text("%%% poison %%%")
    world.mns.set_faults({"seed": 20240611, "operations": MNS_FAULTS[case]})

    summaries = world.drain_until_empty(timeout=25)
    world.mns.set_faults({})

    injected = sum(sum(world.mns_faults(op).values()) for op in ("BatchReceiveMessage", "BatchDeleteMessage"))
    assert injected > 0
    totals = world.totals(summaries)
    assert totals["applied"] == 24 and totals["orphan"] == 6, totals
    assert world.ledger.get_dead_letter(poison).raw_body == "%%% poison %%%"
    for out_id, message_id in published.items():
        (receipt,) = [r for r in world.ledger.receipts_for(out_id) if r.outcome is not Outcome.DUPLICATE]
        assert receipt.message_id == message_id
        assert len(world.ledger.receipts_for(out_id)) == 1  # a redelivery is never recorded twice
        assert len(world.ledger.outbox_events(out_id)) == 1
    assert world.queue_depth() == 0


@pytest.mark.slow
def test_queue_tokens_expiring_mid_run_are_refetched(make_world):
    world = make_world(visibility=2, DRAIN_LONG_POLL_SECONDS="1")
    world.drain()  # a token is cached before the run
    publisher, published = publish_in_background(world, "expiring", 30, 0.06)
    stop = threading.Event()

    def expire_tokens() -> None:
        while not stop.wait(0.4):
            world.mns.expire_sts()

    expirer = threading.Thread(target=expire_tokens, name="expirer", daemon=True)
    expirer.start()
    try:
        summaries = [world.drain(10)]
        publisher.join()
    finally:
        stop.set()
        expirer.join()
    summaries += world.drain_until_empty()

    errors = {
        code
        for op in ("BatchReceiveMessage", "BatchDeleteMessage")
        for code in world.mns.stats()["operations"].get(op, {}).get("errors", {})
    }
    assert "SecurityTokenExpired" in errors
    fetched = world.alicom.stats()["actions"]["QueryTokenForMnsQueue"]["requests"]
    assert fetched >= 3
    assert world.totals(summaries)["applied"] == 30
    assert_applied_once(world, published)


@pytest.mark.slow
def test_short_lived_tokens_are_refreshed_before_they_expire(make_world):
    world = make_world(visibility=2, DRAIN_LONG_POLL_SECONDS="1")
    world.alicom.set_behaviour(token_ttl_seconds=3)  # refreshed every 1.5 s (half its life)
    publisher, published = publish_in_background(world, "short", 30, 0.12)

    summaries = [world.drain(10)]
    publisher.join()
    summaries += world.drain_until_empty()

    totals = world.totals(summaries)
    assert totals["applied"] == 30 and totals["receive_errors"] == 0 and totals["delete_failed"] == 0, totals
    assert world.alicom.stats()["actions"]["QueryTokenForMnsQueue"]["requests"] >= 2
    errors = world.mns.stats()["operations"]["BatchReceiveMessage"].get("errors", {})
    assert "SecurityTokenExpired" not in errors  # refreshed ahead of ExpireTime, not after a rejection
    assert_applied_once(world, published)


@pytest.mark.slow
def test_a_delete_whose_token_cannot_be_refreshed_does_not_kill_the_poller(make_world):
    world = make_world(visibility=1, DRAIN_POLLERS="1")
    world.drain()  # a token is cached before the run
    published = publish_reports(world, "nodelete", 3)
    world.mns.set_faults({"operations": {"BatchDeleteMessage": {"token_expired": 1.0}}})
    world.alicom.set_faults({"operations": {"QueryTokenForMnsQueue": {"internal_error": 1.0}}})

    summary = world.drain(3)  # fails here: "a poller thread died during the drain"

    assert summary.counts["applied"] == 3 and summary.counts["delete_failed"] == 3, summary.as_dict()
    world.mns.set_faults({})
    world.alicom.set_faults({})
    time.sleep(1.2)
    world.drain_until_empty()
    assert_applied_once(world, published)


# ---- visibility ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("pollers", ["1", "2"])
def test_visibility_expiring_under_a_slow_message_applies_it_once(make_world, pollers):
    """Another connection holds the SQLite write lock for longer than the visibility timeout: the message is
    applied late, its delete finds a stale handle, the redelivery is a duplicate, the queue ends empty."""
    world = make_world(visibility=1, DRAIN_POLLERS=pollers, DRAIN_LONG_POLL_SECONDS="1")
    world.world.register("slow-1")
    message_id = world.publish(flow_report("slow-1"))
    blocker = sqlite3.connect(world.ledger.url.database, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    release = threading.Timer(2.2, blocker.commit)
    release.start()
    try:
        summaries = world.drain_until_empty()
    finally:
        release.join()
        blocker.close()

    totals = world.totals(summaries)
    assert totals["applied"] == 1 and totals["duplicate"] >= 1, totals
    assert totals["delete_failed"] >= 1 and totals["deleted"] == 1, totals
    (receipt,) = world.ledger.receipts_for("slow-1")
    assert (receipt.message_id, receipt.outcome) == (message_id, Outcome.APPLIED)
    assert len(world.ledger.outbox_events("slow-1")) == 1
    assert world.ledger.get_order("slow-1").status is Status.SUCCEEDED
    assert world.queue_depth() == 0

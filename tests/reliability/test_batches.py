"""The drainer applies each received batch in ONE ledger transaction, on SQLite, MariaDB and PostgreSQL: a batch
holding a poison message, a conflicting report, duplicates and an unknown out_id commits once and is deleted in one
BatchDelete; a crash between the commit and the delete brings the batch back, recognised as duplicates; and a commit
that fails deletes nothing."""

from __future__ import annotations

import time
from collections import Counter

from sqlalchemy import event

from shared.domain.orders import Outcome, Status
from shared.errors import TransientError

PHONE = "13800138000"


def flow_report(out_id: str, result: str = "3") -> dict:
    return {"phone": PHONE, "out_id": out_id, "result": result, "err_code": "", "err_msg": ""}


class SimulatedCrash(BaseException):
    """The instance dies here (not an Exception: nothing catches it)."""


def commits_of(world) -> list[int]:
    counted = [0]
    event.listen(world.ledger.engine, "commit", lambda _conn: counted.__setitem__(0, counted[0] + 1))
    return counted


def test_one_batch_with_poison_a_conflict_and_duplicates_commits_once_and_is_deleted_at_once(ledger_url, make_world):
    world = make_world(ledger_url=ledger_url, DRAIN_POLLERS="1")
    for out_id in ("b-1", "b-2", "b-closed"):
        world.world.register(out_id)
    world.publish(flow_report("b-closed", "3"))
    world.drain()
    published = {
        "good": world.publish(flow_report("b-1", "3")),
        "failed": world.publish(flow_report("b-2", "4")),
        "same again": world.publish(flow_report("b-1", "3")),
        "poison": world.publish_text("this is not base64 at all"),
        "conflict": world.publish(flow_report("b-closed", "4")),
        "unknown": world.publish(flow_report("b-stranger", "4")),
    }
    commits = commits_of(world)
    deletes_before = world.mns.stats()["operations"]["BatchDeleteMessage"]["requests"]

    summary = world.drain()

    assert commits[0] == 1  # the whole batch, one transaction (counted before the reads below)
    counts = summary.as_dict()
    assert (counts["received"], counts["deleted"], counts["left_for_retry"]) == (6, 6, 0), counts
    assert (counts["applied"], counts["duplicates"], counts["conflicts"], counts["orphans"]) == (2, 1, 1, 1)
    assert counts["dead_lettered"] == 1 and world.ledger.get_dead_letter(published["poison"]) is not None
    assert world.mns.stats()["operations"]["BatchDeleteMessage"]["requests"] - deletes_before == 1
    assert [world.ledger.get_order(o).status for o in ("b-1", "b-2", "b-closed", "b-stranger")] == [
        Status.SUCCEEDED, Status.FAILED, Status.SUCCEEDED, Status.FAILED,
    ]  # fmt: skip
    for out_id in ("b-1", "b-2", "b-closed", "b-stranger"):
        assert len(world.ledger.outbox_events(out_id)) == 1, out_id
    assert world.queue_depth() == 0


def test_a_crash_between_commit_and_delete_brings_the_batch_back_as_duplicates(ledger_url, make_world, thread_crashes):
    world = make_world(visibility=1, ledger_url=ledger_url, DRAIN_POLLERS="1")
    out_ids = [f"crash-{n}" for n in range(5)]
    for n, out_id in enumerate(out_ids):
        world.world.register(out_id)
        world.publish(flow_report(out_id, "3" if n % 2 else "4"))
    real_apply_batch = world.ledger.apply_batch

    def commit_then_die(reports, letters=()):
        real_apply_batch(reports, letters)  # committed ...
        raise SimulatedCrash  # ... and the instance is gone before the delete

    world.ledger.apply_batch = commit_then_die
    world.world.drain(5)
    assert thread_crashes and all("SimulatedCrash" in crash for crash in thread_crashes)
    thread_crashes.clear()
    del world.ledger.apply_batch
    assert world.queue_depth() == 5  # committed, never deleted

    summaries = world.drain_until_empty()

    totals = world.totals(summaries)
    assert (totals["duplicate"], totals["applied"], totals["deleted"]) == (5, 0, 5), totals
    for out_id in out_ids:
        assert Counter(r.outcome for r in world.ledger.receipts_for(out_id)) == {Outcome.APPLIED: 1}
        assert len(world.ledger.outbox_events(out_id)) == 1
    assert world.queue_depth() == 0


def test_a_commit_that_fails_deletes_nothing_and_the_batch_comes_back(ledger_url, make_world):
    world = make_world(visibility=1, ledger_url=ledger_url, DRAIN_POLLERS="1")
    for n in range(4):
        world.world.register(f"later-{n}")
        world.publish(flow_report(f"later-{n}"))
    real_apply_batch = world.ledger.apply_batch

    def commit_fails(reports, letters=()):
        raise TransientError("ledger database unavailable while applying a batch (simulated commit failure)")

    world.ledger.apply_batch = commit_fails
    failed = world.drain(3)
    world.ledger.apply_batch = real_apply_batch

    assert (failed.counts["deleted"], failed.counts["left_for_retry"]) == (0, 4), failed.as_dict()
    assert failed.stopped_by == {"batch_failed"} and "simulated commit failure" in failed.errors[0]
    time.sleep(1.1)
    totals = world.totals(world.drain_until_empty())
    assert (totals["applied"], totals["deleted"]) == (4, 4)
    assert all(world.ledger.get_order(f"later-{n}").status is Status.SUCCEEDED for n in range(4))

"""The sweep on SQLite, MariaDB and PostgreSQL: racing the drainer on the same orders (every order changes once, with
one outbox event, whoever gets there first), two sweeps started together (one runs), and a sweep killed mid-page
(taken over once its lease expires, asking no finished order twice and skipping none)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from pipeline_support import pipeline_world
from sweep_support import ago, charge, queries, statuses, sweep_config, sweeper

from shared.adapters.ledger import Ledger
from shared.adapters.ledger.records import NewOrder
from shared.domain.orders import Source

PHONE = "13800138000"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(ledger: Ledger, tmp_path):
    url = ledger.url.render_as_string(hide_password=False)
    with pipeline_world(tmp_path, url, DRAIN_POLLERS="2", DRAIN_LONG_POLL_SECONDS="0") as started:
        yield started


def test_a_sweep_racing_the_drainer_changes_each_order_once(world):
    out_ids = [f"race-{n:03d}" for n in range(40)]
    world.alicom.set_behaviour(success_rate=0.8, drop_rate=0.0, duplicate_rate=0.3, seed=9)
    world.ledger.register_orders([NewOrder(o, PHONE, "100M", "charge", submitted_at=ago(hours=2)) for o in out_ids])
    flow = world.runtime.flow_api(world.credentials)
    for out_id in out_ids:
        flow.place(out_id, PHONE, "100M")
    assert world.alicom.wait_idle(10)  # every receipt is in the queue, every answer is final
    start = threading.Barrier(2)

    def sweep() -> None:
        start.wait()
        sweeper(world, sweep_config(concurrency=4, page_size=10)).run(time.monotonic() + 30)

    racer = threading.Thread(target=sweep)
    racer.start()
    start.wait()
    world.drain_until_empty()
    racer.join()

    resolvers = Counter()
    for out_id in out_ids:
        order = world.ledger.get_order(out_id)
        assert order.status.is_terminal
        assert len(world.ledger.outbox_events(out_id)) == 1, out_id
        applied = [r for r in world.ledger.receipts_for(out_id) if r.outcome.value == "applied"]
        assert len(applied) == 1 and applied[0].source is order.resolved_by
        resolvers[order.resolved_by] += 1
    assert set(resolvers) <= {Source.RECEIPT, Source.SWEEP} and sum(resolvers.values()) == 40


def test_two_sweeps_started_together_run_once(world):
    charge(world, [f"pair-{n}" for n in range(20)])
    world.alicom.set_faults({"operations": {"QueryChargeDetail": {"latency_ms": 20}}})
    results, start = [], threading.Barrier(2)

    def run() -> None:
        start.wait()
        results.append(sweeper(world).run(time.monotonic() + 30))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(result.stopped_by for result in results) == ["finished", "lease_held"]
    assert queries(world) == Counter({f"pair-{n}": 1 for n in range(20)})
    assert statuses(world, [f"pair-{n}" for n in range(20)])["PENDING"] == 0


def test_a_sweep_killed_mid_page_is_taken_over_and_asks_no_finished_order_twice(world, tmp_path):
    out_ids = [f"kill-{n:03d}" for n in range(60)]
    charge(world, out_ids)
    world.alicom.set_faults({"operations": {"QueryChargeDetail": {"latency_ms": 40}}})
    spec = {
        "ledger_url": str(world.ledger.url.render_as_string(hide_password=False)),
        "endpoint": world.alicom.endpoint,
        "key": world.credentials[0],
        "secret": world.credentials[1],
        "qps": 100,
        "concurrency": 2,
        "page_size": 20,
        "lease_seconds": 2,
        "seconds": 60,
    }
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "sweep_support.py"), json.dumps(spec)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "ERROR"},
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while sum(queries(world).values()) < 30 and time.monotonic() < deadline:  # well into the second page
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(10)
    asked_before = queries(world)
    cursor = world.ledger.sweep_state().cursor
    assert cursor is not None and 20 <= len(asked_before) < 60

    assert sweeper(world).run(time.monotonic() + 30).stopped_by == "lease_held"  # until the dead one's lease expires
    time.sleep(2.1)
    resumed = sweeper(world).run(time.monotonic() + 30)

    assert resumed.stopped_by == "finished" and resumed.resumed
    asked = queries(world)
    assert set(asked) == set(out_ids)  # none skipped
    finished_window = [out_id for out_id in out_ids if out_id <= cursor[1]]
    assert all(asked[out_id] == 1 for out_id in finished_window)  # none asked twice before the saved cursor
    twice = [out_id for out_id in out_ids if asked[out_id] > 1]
    assert len(twice) <= spec["concurrency"] and all(asked[out_id] == 2 for out_id in twice)  # in flight at the kill
    assert statuses(world, out_ids)["PENDING"] == 0
    assert all(len(world.ledger.outbox_events(out_id)) == 1 for out_id in out_ids)

"""The sweep racing the drainer on the same orders, on SQLite, MariaDB and PostgreSQL: every order changes once, with
one outbox event, whoever gets there first."""

from __future__ import annotations

import threading
import time
from collections import Counter

from pipeline_support import pipeline_world
from sweep_support import ago, sweep_config, sweeper

from shared.adapters.ledger import Ledger
from shared.adapters.ledger.records import NewOrder
from shared.domain.orders import Source

PHONE = "13800138000"


def test_a_sweep_racing_the_drainer_changes_each_order_once(ledger: Ledger, tmp_path):
    url = ledger.url.render_as_string(hide_password=False)
    with pipeline_world(tmp_path, url, DRAIN_POLLERS="2", DRAIN_LONG_POLL_SECONDS="0") as world:
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

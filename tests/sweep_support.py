"""Building a Sweeper against a PipelineWorld (MNS + Alicom emulators + a ledger), in this process or as a child
process that a test can kill (``python tests/sweep_support.py <json>``)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from shared.adapters.alicom import acs_client
from shared.adapters.flow import FlowApi
from shared.adapters.ledger import Ledger
from shared.adapters.ledger.records import NewOrder
from shared.domain.sweep import NotFoundRule
from shared.services.sweep import SweepConfig, Sweeper

REGION = "cn-hangzhou"
PHONE = "13800138000"


def sweep_config(**changes) -> SweepConfig:
    """Test defaults: no grace period, quick, NOT_FOUND believed at once."""
    values = {
        "grace": timedelta(0),
        "qps": 500.0,
        "concurrency": 4,
        "page_size": 50,
        "lease": timedelta(seconds=30),
        "not_found": NotFoundRule("resubmit", believe_after=timedelta(0), resubmit_max_age=timedelta(days=1)),
        **changes,
    }
    return SweepConfig(**values)


def flow_api(endpoint: str, key: str, secret: str, api: str = "charge", read_timeout: float = 2.0) -> FlowApi:
    return FlowApi(acs_client(key, secret, None, REGION, read_timeout=read_timeout), endpoint, api)  # type: ignore[arg-type]


def sweeper(
    world, config: SweepConfig | None = None, ledger: Ledger | None = None, read_timeout: float = 2.0, **options
) -> Sweeper:
    flow = flow_api(world.alicom.endpoint, *world.credentials[:2], read_timeout=read_timeout)
    return Sweeper(ledger or world.ledger, flow, config or sweep_config(), **options)


def ago(**delta: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(**delta)


def charge(world, out_ids: list[str], *, drop: bool = True, hours_ago: float = 2.0) -> None:
    """Registers the orders (submitted `hours_ago`) and has the emulator charge them, their receipts dropped."""
    world.alicom.set_behaviour(drop_rate=1.0 if drop else 0.0, duplicate_rate=0.0)
    world.ledger.register_orders(
        [NewOrder(out_id, PHONE, "100M", "charge", submitted_at=ago(hours=hours_ago)) for out_id in out_ids]
    )
    flow = world.runtime.flow_api(world.credentials)
    for out_id in out_ids:
        flow.place(out_id, PHONE, "100M")
    assert world.alicom.wait_idle(10)


def statuses(world, out_ids) -> Counter[str]:
    return Counter(world.ledger.get_order(out_id).status.value for out_id in out_ids)


def queries(world) -> Counter[str]:
    return Counter(world.alicom.api.queries())


def _child(spec: dict) -> int:
    """Runs one sweep with the settings in ``spec`` and prints its result as JSON."""
    config = sweep_config(
        qps=spec["qps"],
        concurrency=spec["concurrency"],
        page_size=spec["page_size"],
        lease=timedelta(seconds=spec["lease_seconds"]),
        report_dir=Path(spec["report_dir"]) if spec.get("report_dir") else None,
    )
    with Ledger(spec["ledger_url"]) as ledger:
        flow = flow_api(spec["endpoint"], spec["key"], spec["secret"])
        result = Sweeper(ledger, flow, config).run(time.monotonic() + spec["seconds"])
    print(json.dumps(result.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(json.loads(sys.argv[1])))

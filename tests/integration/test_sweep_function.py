"""The sweep as deployed: the template's sweep function in the FC emulator going on in a new invocation when it
stops at its deadline (SWEEP_SELF_INVOKE), and the runtime's sweep redelivering events an earlier drain could not
deliver and re-driving the processor's failure destination queue (DLQ_QUEUE_NAME)."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import fc2
import pytest
from mns.account import Account
from mns.queue import Message, QueueMeta
from pipeline_support import CUSTOMER_AK, CUSTOMER_SK, UID, pipeline_world
from webhook_support import webhook_receiver, webhook_settings

from local.fc import FcEmulator, load_template
from local.fc.destination import destination_message
from local.mns import MnsEmulator
from shared.adapters.ledger.records import NewOrder
from shared.domain.models import Envelope
from shared.domain.orders import Source, Status

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PHONE = "13800138000"
ASYNC = {"x-fc-invocation-type": "Async"}


def pending(world, out_ids: list[str]) -> None:
    submitted = datetime.now(timezone.utc) - timedelta(hours=2)
    world.ledger.register_orders([NewOrder(o, PHONE, "100M", "charge", submitted) for o in out_ids])
    for out_id in out_ids:
        world.alicom.seed_charge(out_id, status="SUCCESS", phone=PHONE)


def test_a_sweep_function_out_of_time_invokes_itself_and_the_next_invocation_finishes(tmp_path: Path):
    (spec,) = [s for s in load_template(REPO / "template.yml", python_path=[REPO]) if s.name == "sweep"]
    with pipeline_world(tmp_path) as world:
        out_ids = [f"self-{n:02d}" for n in range(24)]
        pending(world, out_ids)
        world.alicom.set_faults({"operations": {"QueryChargeDetail": {"latency_ms": 30}}})
        fc = FcEmulator(
            [dataclasses.replace(spec, timeout=3.0)],
            credentials={CUSTOMER_AK: CUSTOMER_SK},
            account_id=UID,
        )
        with fc:
            fc.environment.update(
                {
                    **world.environ,
                    "FC_ENDPOINT": fc.endpoint,
                    "SWEEP_SELF_INVOKE": "true",
                    "SWEEP_QPS": "10",
                    "SWEEP_PAGE_SIZE": "5",
                    "SWEEP_DEADLINE_MARGIN_SECONDS": "1.5",
                    "SWEEP_GRACE_SECONDS": "0",
                    "REPORT_DIR": str(tmp_path / "reports"),
                    "LOG_LEVEL": "WARNING",
                    "MNS_ENDPOINT": "",  # inline dispatch: no dead-letter queue (the template's needs FC_ACCOUNT_ID)
                    "DLQ_QUEUE_NAME": "",
                }
            )
            client = fc2.Client(endpoint=fc.endpoint, accessKeyID=CUSTOMER_AK, accessKeySecret=CUSTOMER_SK)
            client.invoke_function(spec.service, spec.name, payload=b'{"job":"sweep"}', headers=ASYNC)
            deadline = time.monotonic() + 60
            while world.ledger.summary().orders_by_status["PENDING"] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert fc.wait_idle(30)
            runs = [i for i in fc.invocations(f"{spec.service}/{spec.name}") if i.get("status") == "succeeded"]

        assert world.ledger.summary().orders_by_status["PENDING"] == 0
        assert len(runs) >= 2  # the first one stopped at its deadline and went on in a new invocation
        assert sum(world.alicom.api.queries().values()) == len(out_ids)  # and nobody was asked twice
        assert world.ledger.sweep_state().cycle_id is None  # the cycle finished


def test_the_sweep_redelivers_events_a_drain_could_not_deliver(tmp_path: Path, pytestconfig):
    with webhook_receiver(pytestconfig) as receiver:
        settings = webhook_settings(receiver, NOTIFY_RETRY_SECONDS="0", SWEEP_GRACE_SECONDS="0")
        with pipeline_world(tmp_path, **settings) as world:
            for n in range(5):
                world.register(f"late-{n}")
                world.publish({"phone": PHONE, "out_id": f"late-{n}", "result": "3"})
            receiver.refuse_connections()
            world.drain_until_empty()
            assert len(world.ledger.due_events()) == 5
            receiver.accept_connections()

            result = world.runtime.sweeper(world.credentials).run(time.monotonic() + 30)

        assert result.stopped_by == "finished" and result.counts["redelivered_delivered"] == 5
        assert all(event.delivered_at is not None for event in world.ledger.outbox_events())
        assert len(receiver.accepted()) == 5


def test_the_sweep_redrives_the_processors_failure_queue(tmp_path: Path):
    with MnsEmulator(owner=(CUSTOMER_AK, CUSTOMER_SK), publisher=("unused", "unused-secret-1234")) as customer:
        dlq = Account(customer.endpoint, CUSTOMER_AK, CUSTOMER_SK).get_queue("flow-receipts-dlq")
        dlq.create(QueueMeta())
        settings = {"MNS_ENDPOINT": customer.endpoint, "DLQ_QUEUE_NAME": "flow-receipts-dlq"}
        with pipeline_world(tmp_path, **settings) as world:
            world.register("failed-over-1")
            body = json.dumps({"phone": PHONE, "out_id": "failed-over-1", "result": "4", "err_code": "UNKNOW"})
            envelope = Envelope(message_id="MSG-1", body=base64.b64encode(body.encode()).decode())
            message = destination_message(
                request_id="req-1",
                function_arn="acs:fc:cn-hangzhou:1:services/flow-receipts/functions/processor",
                condition="UnhandledInvocationError",
                invoke_count=3,
                payload=envelope.model_dump_json().encode(),
                last=None,
            )
            dlq.set_encoding(False)
            dlq.send_message(Message(json.dumps(message)))

            result = world.runtime.sweeper(world.credentials).run(time.monotonic() + 30)

            order = world.ledger.get_order("failed-over-1")
        assert (result.counts["redrive_received"], result.counts["redrive_applied"]) == (1, 1)
        assert (order.status, order.resolved_by, order.err_code) == (Status.FAILED, Source.RECEIPT, "UNKNOW")
        assert sum(customer.stats()["queues"]["flow-receipts-dlq"].values()) == 0

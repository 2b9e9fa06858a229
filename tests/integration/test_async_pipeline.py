"""DISPATCH_MODE=async end to end: the drainer hands every report to the real processor function of template.yml,
run by the FC emulator (worker processes, FC's async retries, the onFailure destination in the customer's own MNS).

Proves: every report is applied once and the Alicom queue ends empty; a message is deleted only once FC accepted
its invocation (a throttled FC leaves everything in the queue, and it drains once FC recovers); a processor that
cannot reach its ledger is retried twice by FC, then the event lands in the DLQ queue as FC's destination message
(reference/fc.md §6.4), with the Envelope as its request payload."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from emulator_credentials import OWNER_ID, OWNER_SECRET, PUBLISHER_ID, PUBLISHER_SECRET
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import QueueMeta
from pipeline_support import CUSTOMER_AK, CUSTOMER_SK, UID, PipelineWorld, pipeline_world

from local.fc import FcEmulator, FunctionSpec, load_template
from local.mns import MnsEmulator
from shared.domain.models import Envelope
from shared.domain.orders import Outcome, Status
from shared.services.drain import DrainSummary

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
REGION = "cn-hangzhou"


def processor_spec() -> FunctionSpec:
    """The processor exactly as template.yml declares it; shared/ is found on the repo root, as the stack does."""
    (spec,) = [s for s in load_template(REPO / "template.yml", python_path=[REPO]) if s.name == "processor"]
    return spec


@dataclass
class AsyncPipeline:
    world: PipelineWorld
    fc: FcEmulator
    spec: FunctionSpec
    dlq: object  # the customer's DLQ queue (aliyun-mns-sdk Queue, raw bodies)

    @property
    def function(self) -> str:
        return f"{self.spec.service}/{self.spec.name}"

    def fc_counters(self) -> dict:
        return self.fc.stats()["functions"][self.function]

    def dlq_messages(self) -> list[dict]:
        messages = []
        while True:
            try:
                message = self.dlq.receive_message(wait_seconds=0)
            except MNSServerException as exc:
                assert exc.type == "MessageNotExist", exc
                return messages
            messages.append(json.loads(message.message_body))
            self.dlq.delete_message(message.receipt_handle)


@contextmanager
def async_pipeline(tmp_path: Path, processor_ledger_url: str | None = None) -> Iterator[AsyncPipeline]:
    spec = processor_spec()
    assert spec.max_async_retry_attempts == 2 and spec.failure_queue  # template.yml: 2 retries, then the DLQ
    with MnsEmulator(owner=(OWNER_ID, OWNER_SECRET), publisher=(PUBLISHER_ID, PUBLISHER_SECRET)) as customer_mns:
        dlq = Account(customer_mns.endpoint, OWNER_ID, OWNER_SECRET).get_queue(spec.failure_queue)
        dlq.create(QueueMeta())
        dlq.set_encoding(False)  # FC writes the destination message as JSON text, not base64
        fc = FcEmulator(
            [spec],
            credentials={CUSTOMER_AK: CUSTOMER_SK},
            account_id=UID,
            region=REGION,
            mns_endpoint=customer_mns.endpoint,
            mns_credentials=customer_mns.owner,
            retry_backoff_seconds=0.05,
            retry_backoff_max_seconds=0.2,
        )
        with fc:
            settings = {
                "DISPATCH_MODE": "async",
                "FC_ENDPOINT": fc.endpoint,
                "PROCESSOR_SERVICE": spec.service,
                "PROCESSOR_FUNCTION": spec.name,
                "DRAIN_LONG_POLL_SECONDS": "0",  # an empty queue ends a drain at once
            }
            with pipeline_world(tmp_path, **settings) as world:
                # The processor instances start on the first invocation, with these variables.
                fc.environment.update(
                    {
                        "LEDGER_URL": processor_ledger_url or world.environ["LEDGER_URL"],
                        "ALICOM_QUEUE_NAME": world.queue_name,
                    }
                )
                yield AsyncPipeline(world, fc, spec, dlq)


def report(out_id: str, result: str = "3", phone: str = "13800138000") -> dict:
    failure = result == "4"
    return {
        "phone": phone,
        "out_id": out_id,
        "result": result,
        "err_code": "BALANCE_NOT_ENOUGH" if failure else "",
        "err_msg": "余额不足" if failure else "",
    }


def totals(summaries: list[DrainSummary]) -> dict[str, int]:
    keys = ("received", "accepted", "dead_lettered", "deleted", "left_for_retry", "delete_failed")
    return {key: sum(s.as_dict()[key] for s in summaries) for key in keys}


def test_every_report_is_applied_once_through_async_invocations(tmp_path: Path) -> None:
    with async_pipeline(tmp_path) as pipeline:
        world = pipeline.world
        results = {f"async-{n}": "3" if n % 3 else "4" for n in range(8)}
        for out_id in results:
            world.register(out_id)
        for out_id, result in results.items():
            world.publish(report(out_id, result))
        world.publish(report("async-1", "3"))  # Alicom sends a receipt twice (another message id)
        world.publish([report("async-arr-0"), report("async-arr-1", "4")])  # an array body: two reports
        world.publish_raw("this is not a FlowReport")  # poison: dead-lettered by the drainer, never dispatched
        valid_messages = len(results) + 2

        summaries = world.drain_until_empty()
        assert pipeline.fc.wait_idle(30)

        total = totals(summaries)
        assert total["received"] == valid_messages + 1
        assert total["accepted"] == valid_messages
        assert total["dead_lettered"] == 1
        assert total["deleted"] == valid_messages + 1  # accepted by FC, or dead-lettered with its raw body
        assert (total["left_for_retry"], total["delete_failed"]) == (0, 0)
        assert world.queue_depth() == 0

        counters = pipeline.fc_counters()
        assert counters["async_accepted"] == valid_messages
        assert (counters["succeeded"], counters["failed_attempts"], counters["retries"]) == (valid_messages, 0, 0)
        assert counters["destination_messages"] == 0

        ledger = world.ledger
        for out_id, result in results.items():
            order = ledger.get_order(out_id)
            assert order.status is (Status.SUCCEEDED if result == "3" else Status.FAILED), out_id
            applied = [r for r in ledger.receipts_for(out_id) if r.outcome is Outcome.APPLIED]
            assert len(applied) == 1, out_id
            assert len(ledger.outbox_events(out_id)) == 1, out_id
        outcomes = sorted(r.outcome.value for r in ledger.receipts_for("async-1"))
        assert outcomes == ["applied", "duplicate"]
        assert ledger.get_order("async-arr-0").status is Status.SUCCEEDED  # orphans: created, marked unregistered
        assert ledger.get_order("async-arr-1").status is Status.FAILED
        summary = ledger.summary()
        assert summary.receipts_by_outcome["applied"] == len(results)
        assert summary.receipts_by_outcome["orphan"] == 2
        assert summary.dead_letters == 1
        assert pipeline.dlq_messages() == []


def wait_until_visible(world: PipelineWorld, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while world.mns.stats()["queues"][world.queue_name].get("inactive", 0):
        assert time.monotonic() < deadline, "messages never became visible again"
        time.sleep(0.05)


def test_nothing_is_deleted_until_fc_accepts_and_a_throttled_fc_is_retried_later(tmp_path: Path) -> None:
    with async_pipeline(tmp_path) as pipeline:
        world, fc = pipeline.world, pipeline.fc
        meta = QueueMeta()
        meta.set_visibilitytimeout(1)  # messages left for retry come back quickly
        world.owner_queue().set_attributes(meta)
        out_ids = [f"throttled-{n}" for n in range(3)]
        for out_id in out_ids:
            world.register(out_id)
            world.publish(report(out_id))

        fc.set_faults({"operations": {"InvokeFunction": {"throttle": 1.0}}})
        throttled = world.drain()

        counts = throttled.as_dict()
        assert counts["received"] >= len(out_ids)
        assert (counts["accepted"], counts["deleted"]) == (0, 0)
        assert counts["left_for_retry"] == counts["received"]
        assert "batch_failed" in counts["stopped_by"]
        assert world.queue_depth() == len(out_ids)
        assert fc.stats()["operations"]["InvokeFunction"]["faults"]["throttle"] >= len(out_ids)
        assert pipeline.fc_counters()["async_accepted"] == 0
        assert world.ledger.summary().receipts_by_outcome["applied"] == 0

        fc.set_faults({})
        wait_until_visible(world)
        summaries = world.drain_until_empty()
        assert fc.wait_idle(30)

        total = totals(summaries)
        assert total["accepted"] == total["deleted"] == len(out_ids)
        assert world.queue_depth() == 0
        for out_id in out_ids:
            assert world.ledger.get_order(out_id).status is Status.SUCCEEDED
            (receipt,) = world.ledger.receipts_for(out_id)
            assert receipt.outcome is Outcome.APPLIED and receipt.dequeue_count >= 2  # the redelivered message
        assert pipeline.fc_counters()["succeeded"] == len(out_ids)


def test_a_processor_without_its_ledger_is_retried_twice_then_sent_to_the_dlq(tmp_path: Path) -> None:
    down = tmp_path / "ledger-is-a-directory"
    down.mkdir()
    with async_pipeline(tmp_path, processor_ledger_url=f"sqlite:///{down}") as pipeline:
        world, fc = pipeline.world, pipeline.fc
        world.register("dlq-1")
        message_id = world.publish(report("dlq-1"))

        summary = world.drain().as_dict()
        assert (summary["accepted"], summary["deleted"]) == (1, 1)  # FC holds it durably now
        assert world.queue_depth() == 0
        assert fc.wait_idle(30)

        (message,) = pipeline.dlq_messages()
        assert set(message) == {"timestamp", "requestContext", "requestPayload", "responseContext", "responsePayload"}
        assert isinstance(message["timestamp"], int) and abs(message["timestamp"] / 1000 - time.time()) < 60
        context = message["requestContext"]
        attempts = fc.invocations(function=pipeline.function)
        assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "failed"), (2, "failed"), (3, "failed")]
        assert context == {
            "requestId": attempts[0]["request_id"],
            "functionArn": f"acs:fc:{REGION}:{UID}:services/{pipeline.spec.service}.LATEST/functions/processor",
            "condition": "UnhandledInvocationError",
            "approximateInvokeCount": 3,  # the first attempt and maxAsyncRetryAttempts: 2
        }
        envelope = Envelope.model_validate_json(message["requestPayload"])  # enough to redrive the receipt later
        assert (envelope.message_id, envelope.message_type, envelope.dequeue_count) == (message_id, "FlowReport", 1)
        assert message["responseContext"] == {"statusCode": 200, "functionError": "UnhandledInvocationError"}
        error = json.loads(message["responsePayload"])
        assert error["errorType"] == "TransientError"
        assert "ledger database unavailable" in error["errorMessage"]
        assert CUSTOMER_SK not in json.dumps(message)

        counters = pipeline.fc_counters()
        assert (counters["attempts"], counters["retries"], counters["destination_messages"]) == (3, 2, 1)
        assert world.ledger.get_order("dlq-1").status is Status.PENDING  # nothing applied, nothing lost

"""The processor handler (functions/processor/index.py) called in-process as FC calls it, with a webhook configured:
its event is delivered right after the commit; a webhook that is down or slow never fails the invocation, nor keeps
it past its budget, and leaves the event in the outbox; a NOTIFY_HOOK that cannot be imported fails the instance at
initialization, before any receipt is applied."""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import notify_hooks
import pytest
from emulator_credentials import OWNER_ID, OWNER_SECRET, PUBLISHER_ID, PUBLISHER_SECRET
from mns.account import Account
from mns.queue import QueueMeta
from pipeline_support import CUSTOMER_AK, CUSTOMER_SK, UID, pipeline_world
from webhook_support import scan_logs_for, webhook_receiver, webhook_settings

import shared.runtime
from local.fc import Credentials, FcEmulator, FunctionSpec, build_context, load_template
from local.mns import MnsEmulator
from local.webhook import WebhookReceiver
from shared.errors import ConfigError
from shared.logs import logger
from shared.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]
SAMPLE_EVENT = (REPO / "events" / "processor.json").read_bytes()
SAMPLE_OUT_ID = "demo-order-0001"  # inside the sample's base64 body
QUEUE_NAME = "Alicom-Queue-1234567890123456-FlowReport"
SPEC = FunctionSpec(
    "flow-receipts", "processor", "index.handler", REPO / "functions" / "processor", initializer="index.initialize"
)
CONTEXT_CREDENTIALS = Credentials("STS.notify-test", "processor-notify-context-secret-8e1f", "CAIS-notify-test-token")
FOREIGN_PREFIXES = ("ALICOM_", "ALIBABA_CLOUD_", "FC_", "LEDGER_", "DISPATCH_", "DRAIN_", "MNS_", "WEBHOOK_", "NOTIFY_")

Invoke = Callable[[bytes], dict]


@pytest.fixture
def receiver(pytestconfig: pytest.Config) -> Iterator[WebhookReceiver]:
    with webhook_receiver(pytestconfig) as running:
        yield running


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict]]]:
    """The JSON lines our logger writes during the test (still passed on to the stream it wrote to)."""
    handler = logger.registered_handler  # type: ignore[attr-defined]
    passed_on, kept = handler.stream, io.StringIO()

    class Tee:
        def write(self, text: str) -> int:
            kept.write(text)
            return passed_on.write(text)

        def flush(self) -> None:
            passed_on.flush()

    tee = Tee()
    handler.setStream(tee)
    try:
        yield lambda: [json.loads(line) for line in kept.getvalue().splitlines() if line.startswith("{")]
    finally:
        if handler.stream is tee:
            handler.setStream(passed_on)


@pytest.fixture
def processor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pytestconfig: pytest.Config
) -> Callable[..., tuple[Runtime, Invoke]]:
    """processor(**settings) -> (runtime, invoke): a fresh instance (initializer run) reading these settings."""
    scan_logs_for(
        pytestconfig,
        "test_processor_notifications.CONTEXT_CREDENTIALS",
        CONTEXT_CREDENTIALS.access_key_secret,
        CONTEXT_CREDENTIALS.security_token,
    )
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))
    module: ModuleType = importlib.import_module("functions.processor.index")

    def start(**settings: str) -> tuple[Runtime, Invoke]:
        for name in list(os.environ):
            if name.startswith(FOREIGN_PREFIXES):
                monkeypatch.delenv(name)
        environ = {"ALICOM_QUEUE_NAME": QUEUE_NAME, "LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}"}
        for name, value in {**environ, **settings}.items():
            monkeypatch.setenv(name, value)
        runtime = Runtime()
        monkeypatch.setattr(shared.runtime, "runtime", runtime)
        monkeypatch.setattr(module, "runtime", runtime)
        runtime.ledger.migrate()
        context = build_context(SPEC, CONTEXT_CREDENTIALS, request_id=str(uuid.uuid4()))
        module.initialize(context)

        def invoke(event: bytes) -> dict:
            return json.loads(module.handler(event, build_context(SPEC, CONTEXT_CREDENTIALS)))

        return runtime, invoke

    return start


def test_the_processor_delivers_its_event_right_after_the_commit(processor, receiver) -> None:
    runtime, invoke = processor(**webhook_settings(receiver))
    runtime.ledger.register_order(SAMPLE_OUT_ID, "13800138000")

    answer = invoke(SAMPLE_EVENT)

    assert answer["outcomes"] == ["applied"]
    (event,) = runtime.ledger.outbox_events(SAMPLE_OUT_ID)
    assert event.delivered_at is not None and event.attempts == 1
    (delivery,) = receiver.deliveries()
    assert delivery.signature_valid and delivery.event_id == event.event_id
    assert delivery.event["out_id"] == SAMPLE_OUT_ID and delivery.event["status"] == "SUCCEEDED"


def test_a_duplicate_invocation_delivers_nothing_more(processor, receiver) -> None:
    runtime, invoke = processor(**webhook_settings(receiver))
    runtime.ledger.register_order(SAMPLE_OUT_ID, "13800138000")
    invoke(SAMPLE_EVENT)

    assert invoke(SAMPLE_EVENT)["outcomes"] == ["duplicate"]  # FC retried it
    assert len(receiver.deliveries()) == 1


def test_a_processor_whose_webhook_is_down_answers_and_keeps_the_event(processor, receiver, log_lines) -> None:
    runtime, invoke = processor(**webhook_settings(receiver))
    runtime.ledger.register_order(SAMPLE_OUT_ID, "13800138000")
    receiver.refuse_connections()

    answer = invoke(SAMPLE_EVENT)

    assert answer["outcomes"] == ["applied"]  # not raised: FC must not retry a committed receipt for a webhook
    (event,) = runtime.ledger.outbox_events(SAMPLE_OUT_ID)
    assert event.delivered_at is None and event.attempts == 1 and "Connection refused" in event.last_error
    (warning,) = [line for line in log_lines() if line["message"] == "events left for redelivery"]
    assert warning["failed"] == 1 and warning["sinks"] == {"webhook": receiver.endpoint}


def test_a_slow_webhook_keeps_the_processor_within_its_budget(processor, receiver) -> None:
    runtime, invoke = processor(**webhook_settings(receiver, WEBHOOK_TIMEOUT_SECONDS="10", NOTIFY_BUDGET_SECONDS="1"))
    runtime.ledger.register_order(SAMPLE_OUT_ID, "13800138000")
    receiver.misbehave(latency_ms=5000)

    started = time.monotonic()
    answer = invoke(SAMPLE_EVENT)

    assert answer["outcomes"] == ["applied"]
    assert time.monotonic() - started < 4  # loose sanity bound: the 1 s budget, not the 10 s timeout
    (event,) = runtime.ledger.outbox_events(SAMPLE_OUT_ID)
    assert event.delivered_at is None and "no answer within" in event.last_error


def test_the_processor_calls_the_hook_with_its_event(processor) -> None:
    notify_hooks.reset()
    runtime, invoke = processor(NOTIFY_HOOK="notify_hooks:record")
    runtime.ledger.register_order(SAMPLE_OUT_ID, "13800138000")

    invoke(SAMPLE_EVENT)

    (event,) = runtime.ledger.outbox_events(SAMPLE_OUT_ID)
    assert [received["event_id"] for received in notify_hooks.received] == [event.event_id]
    assert event.delivered_at is not None


def test_a_hook_that_cannot_be_imported_fails_the_initializer(processor) -> None:
    with pytest.raises(ConfigError, match=r"^NOTIFY_HOOK: cannot import 'no_such_business_module'"):
        processor(NOTIFY_HOOK="no_such_business_module:on_event")


@pytest.mark.slow
def test_async_dispatch_leaves_delivery_to_the_processor_instances(tmp_path: Path, receiver) -> None:
    """DISPATCH_MODE=async end to end: FC (the emulator's worker processes) runs the processor of template.yml, which
    delivers each event right after its commit; the drainer itself delivers nothing."""
    (spec,) = [s for s in load_template(REPO / "template.yml", python_path=[REPO]) if s.name == "processor"]
    with MnsEmulator(owner=(OWNER_ID, OWNER_SECRET), publisher=(PUBLISHER_ID, PUBLISHER_SECRET)) as customer_mns:
        Account(customer_mns.endpoint, OWNER_ID, OWNER_SECRET).get_queue(spec.failure_queue).create(QueueMeta())
        fc = FcEmulator(
            [spec],
            credentials={CUSTOMER_AK: CUSTOMER_SK},
            account_id=UID,
            mns_endpoint=customer_mns.endpoint,
            mns_credentials=customer_mns.owner,
        )
        with fc:
            settings = {
                "DISPATCH_MODE": "async",
                "FC_ENDPOINT": fc.endpoint,
                "PROCESSOR_SERVICE": spec.service,
                "PROCESSOR_FUNCTION": spec.name,
                "DRAIN_LONG_POLL_SECONDS": "0",
            }
            with pipeline_world(tmp_path, **webhook_settings(receiver), **settings) as world:
                fc.environment.update(
                    {
                        "LEDGER_URL": world.environ["LEDGER_URL"],
                        "ALICOM_QUEUE_NAME": world.queue_name,
                        **webhook_settings(receiver),
                    }
                )
                out_ids = [f"async-notify-{n}" for n in range(4)]
                for out_id in out_ids:
                    world.register(out_id)
                    world.publish({"phone": "13800138000", "out_id": out_id, "result": "3"})

                summaries = world.drain_until_empty()
                assert fc.wait_idle(30)

                assert sum(s.counts["accepted"] for s in summaries) == 4
                assert sum(s.counts["events"] for s in summaries) == 0  # the drainer applied nothing itself
                events = [e for out_id in out_ids for e in world.ledger.outbox_events(out_id)]
                assert len(events) == 4 and all(event.delivered_at is not None for event in events)
                assert receiver.accepted() == {event.event_id: 1 for event in events}

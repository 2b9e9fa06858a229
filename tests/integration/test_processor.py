"""The processor handler (functions/processor/index.py) called in-process, as FC python3.10 calls it: the event as
bytes and an FC-shaped context. A valid Envelope is applied once and answered with its outcome as JSON; the same
event again is a duplicate; a poison body or an event that is no envelope at all is dead-lettered (raw body and
reason kept) and NOT raised, since FC would only retry what can never succeed; an unavailable ledger raises
TransientError so FC retries; a JSON array body gives one receipt per report (message_id#0, #1, ...)."""

from __future__ import annotations

import base64
import importlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

import shared.runtime
from local.fc import Credentials, FunctionSpec, build_context
from shared.adapters.ledger import Ledger
from shared.domain.orders import Outcome, Source, Status
from shared.errors import TransientError
from shared.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]
SAMPLE_EVENT = (REPO / "events" / "processor.json").read_bytes()
SAMPLE = json.loads(SAMPLE_EVENT)
SAMPLE_OUT_ID = "demo-order-0001"  # inside the sample's base64 body
QUEUE_NAME = "Alicom-Queue-1234567890123456-FlowReport"
SPEC = FunctionSpec(
    "flow-receipts", "processor", "index.handler", REPO / "functions" / "processor", initializer="index.initialize"
)
CONTEXT_CREDENTIALS = Credentials("STS.processor-test", "processor-context-secret-2c7d", "CAIS-processor-test-token")
# Variables an outer shell (a sourced stack.env) may hold; the processor must see only the test's own.
FOREIGN_PREFIXES = ("ALICOM_", "ALIBABA_CLOUD_", "FC_", "LEDGER_", "DISPATCH_", "PROCESSOR_", "DRAIN_", "MNS_", "DLQ_")


def body_of(report: object) -> str:
    """A queue message body as Alicom sends it: compact JSON, base64."""
    return base64.b64encode(json.dumps(report, separators=(",", ":")).encode()).decode()


def envelope_event(message_id: str, body: str, dequeue_count: int = 1) -> bytes:
    envelope = {"message_id": message_id, "message_type": "FlowReport", "body": body, "dequeue_count": dequeue_count}
    return json.dumps(envelope).encode()


def report(out_id: str, result: str = "3", phone: str = "13800138000") -> dict:
    return {"phone": phone, "out_id": out_id, "result": result, "err_code": "", "err_msg": ""}


def handler_module(name: str) -> ModuleType:
    """functions/<name>/index.py as the runner loads it (the repo root on sys.path, for shared/)."""
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))
    return importlib.import_module(f"functions.{name}.index")


class Processor:
    """The handler module with its module-level runtime replaced by one reading the test's environment."""

    def __init__(self, module: ModuleType, runtime: Runtime) -> None:
        self.module = module
        self.runtime = runtime

    @property
    def ledger(self) -> Ledger:
        return self.runtime.ledger

    def context(self, request_id: str | None = None):
        return build_context(SPEC, CONTEXT_CREDENTIALS, request_id=request_id or str(uuid.uuid4()))

    def __call__(self, event: bytes, request_id: str | None = None) -> dict:
        answer = self.module.handler(event, self.context(request_id))
        assert isinstance(answer, str)
        return json.loads(answer)


def use_runtime(monkeypatch: pytest.MonkeyPatch, module: ModuleType, environ: dict[str, str]) -> Runtime:
    for name in list(os.environ):
        if name.startswith(FOREIGN_PREFIXES):
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    runtime = Runtime()  # reads os.environ once, as the module-level one does on FC
    monkeypatch.setattr(shared.runtime, "runtime", runtime)
    monkeypatch.setattr(module, "runtime", runtime)  # the handler did `from shared.runtime import runtime`
    return runtime


@pytest.fixture
def processor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Processor]:
    module = handler_module("processor")
    environ = {"ALICOM_QUEUE_NAME": QUEUE_NAME, "LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}"}
    runtime = use_runtime(monkeypatch, module, environ)
    runtime.ledger.migrate()
    processor = Processor(module, runtime)
    module.initialize(processor.context())  # FC runs the initializer once per instance
    yield processor
    runtime.ledger.close()


def test_a_valid_envelope_is_applied_and_answered_as_json(processor: Processor) -> None:
    processor.ledger.register_order(SAMPLE_OUT_ID, "13800138000")

    answer = processor(SAMPLE_EVENT)

    assert answer == {"message_id": SAMPLE["message_id"], "outcomes": ["applied"], "reason": ""}
    order = processor.ledger.get_order(SAMPLE_OUT_ID)
    assert order is not None
    assert (order.status, order.resolved_by, order.resolved_message_id) == (
        Status.SUCCEEDED,
        Source.RECEIPT,
        SAMPLE["message_id"],
    )
    (receipt,) = processor.ledger.receipts_for(SAMPLE_OUT_ID)
    assert (receipt.message_id, receipt.outcome, receipt.dequeue_count) == (SAMPLE["message_id"], Outcome.APPLIED, 1)
    assert len(processor.ledger.outbox_events(SAMPLE_OUT_ID)) == 1


def test_the_same_event_again_is_a_duplicate_and_changes_nothing(processor: Processor) -> None:
    processor.ledger.register_order(SAMPLE_OUT_ID, "13800138000")
    assert processor(SAMPLE_EVENT)["outcomes"] == ["applied"]

    again = processor(SAMPLE_EVENT)  # FC retried the invocation, or the drainer dispatched the message twice

    assert again == {"message_id": SAMPLE["message_id"], "outcomes": ["duplicate"], "reason": ""}
    assert processor.ledger.get_order(SAMPLE_OUT_ID).status is Status.SUCCEEDED
    assert len(processor.ledger.receipts_for(SAMPLE_OUT_ID)) == 1
    assert len(processor.ledger.outbox_events(SAMPLE_OUT_ID)) == 1  # one event per real transition


def test_an_unregistered_out_id_is_kept_as_an_orphan(processor: Processor) -> None:
    answer = processor(SAMPLE_EVENT)

    assert answer["outcomes"] == ["orphan"]
    order = processor.ledger.get_order(SAMPLE_OUT_ID)
    assert order is not None and order.registered is False and order.status is Status.SUCCEEDED


@pytest.mark.parametrize(
    ("body", "reason_starts"),
    [
        ("this is not base64!", "body is not valid base64"),
        (base64.b64encode(b"not json at all").decode(), "body is not JSON"),
        (body_of({"phone": "13800138000", "out_id": "o-7", "result": "7"}), "result must be"),
        (body_of({"phone": "13800138000", "out_id": True, "result": "3"}), "out_id must be a string"),
        (body_of({"hello": "world"}), "JSON object is not a FlowReport"),
    ],
    ids=["not-base64", "not-json", "bad-result", "boolean-out-id", "not-a-report"],
)
def test_a_poison_body_is_dead_lettered_with_its_raw_body_not_raised(
    processor: Processor, body: str, reason_starts: str
) -> None:
    message_id = "POISON-" + uuid.uuid4().hex

    answer = processor(envelope_event(message_id, body, dequeue_count=2))

    assert answer["message_id"] == message_id
    assert answer["outcomes"] == ["dead_lettered"]
    assert answer["reason"].startswith(reason_starts), answer["reason"]
    dead = processor.ledger.get_dead_letter(message_id)
    assert dead is not None
    assert (dead.raw_body, dead.reason, dead.dequeue_count) == (body, answer["reason"], 2)
    assert processor.ledger.summary().receipts_by_outcome == {outcome.value: 0 for outcome in Outcome}


def test_a_poison_body_delivered_again_is_dead_lettered_once(processor: Processor) -> None:
    event = envelope_event("POISON-TWICE", "%%%")
    first, second = processor(event), processor(event)

    assert first["outcomes"] == second["outcomes"] == ["dead_lettered"]
    assert processor.ledger.summary().dead_letters == 1


@pytest.mark.parametrize(
    "event",
    [b"plain text, not JSON", b'{"job": "drain"}', b"[1, 2, 3]", b'{"message_id": "", "body": "x"}', b""],
    ids=["text", "json-without-envelope-fields", "json-array", "empty-message-id", "empty"],
)
def test_an_event_that_is_not_an_envelope_is_dead_lettered_under_the_request_id(
    processor: Processor, event: bytes
) -> None:
    request_id = str(uuid.uuid4())

    answer = processor(event, request_id=request_id)

    assert answer["outcomes"] == ["dead_lettered"]
    assert request_id in answer["message_id"]
    assert answer["reason"].startswith("event is not a message envelope"), answer["reason"]
    dead = processor.ledger.get_dead_letter(answer["message_id"])
    assert dead is not None
    assert dead.raw_body == event.decode()
    assert dead.reason == answer["reason"]


def test_a_json_array_body_gives_one_receipt_per_report(processor: Processor) -> None:
    for out_id in ("batch-a", "batch-b"):
        processor.ledger.register_order(out_id, "13800138000")
    body = body_of([report("batch-a", "3"), report("batch-b", "4", phone="13900139000")])

    answer = processor(envelope_event("ARRAY-1", body))

    assert answer == {"message_id": "ARRAY-1", "outcomes": ["applied", "applied"], "reason": ""}
    (first,) = processor.ledger.receipts_for("batch-a")
    (second,) = processor.ledger.receipts_for("batch-b")
    assert (first.message_id, second.message_id) == ("ARRAY-1#0", "ARRAY-1#1")
    assert processor.ledger.get_order("batch-a").status is Status.SUCCEEDED
    assert processor.ledger.get_order("batch-b").status is Status.FAILED

    assert processor(envelope_event("ARRAY-1", body))["outcomes"] == ["duplicate", "duplicate"]


def test_a_context_shaped_like_fc_python310_is_enough(processor: Processor) -> None:
    """The handler needs only what FC's own context object has (no local.fc type)."""
    context = SimpleNamespace(
        request_id="plain-context-request",
        credentials=SimpleNamespace(access_key_id="STS.x", access_key_secret="plain-ctx-secret", security_token="t"),
        function=SimpleNamespace(name="processor", handler="index.handler", memory=512, timeout=60),
        service=SimpleNamespace(name="flow-receipts", log_project="", log_store="", qualifier="LATEST"),
        region="cn-hangzhou",
        account_id="1234567890123456",
    )

    answer = json.loads(processor.module.handler(b"not an envelope", context))

    assert answer["message_id"] == "invalid-event-plain-context-request"


@pytest.fixture
def unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Processor]:
    """LEDGER_URL names a directory: SQLite cannot open it (what a database that is down looks like to us)."""
    module = handler_module("processor")
    directory = tmp_path / "not-a-database"
    directory.mkdir()
    runtime = use_runtime(
        monkeypatch, module, {"ALICOM_QUEUE_NAME": QUEUE_NAME, "LEDGER_URL": f"sqlite:///{directory}"}
    )
    processor = Processor(module, runtime)
    module.initialize(processor.context())  # builds the engine only; nothing connects yet
    yield processor
    runtime.ledger.close()


@pytest.mark.parametrize(
    "event",
    [SAMPLE_EVENT, envelope_event("POISON-DOWN", "not base64 !"), b"not an envelope"],
    ids=["valid", "poison", "not-an-envelope"],
)
def test_an_unavailable_ledger_raises_transient_error_so_fc_retries(unavailable: Processor, event: bytes) -> None:
    # Even poison is raised here: its dead letter cannot be recorded, and FC must not drop the event.
    with pytest.raises(TransientError, match="ledger database unavailable"):
        unavailable(event)

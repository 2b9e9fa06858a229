"""Re-driving the processor's failure destination queue (shared.services.redrive) with the real emulators.

The story: the drainer hands receipts to the real processor of template.yml through the FC emulator (async); the
processor cannot reach its ledger, FC retries it twice and writes its destination messages into the DLQ queue of
the customer's own MNS. Then the ledger is back and the re-drive, reading the DLQ with the function's own STS key
(aliyun-mns-sdk), applies every receipt exactly once and empties the queue. Around it: nothing is deleted before
its effect is committed (ledger outages, whole and midway), a crash or a failed delete between commit and delete
re-drives as a duplicate, poison is dead-lettered with its raw body and deleted, the deadline and max_messages hold,
and the queue's error lines name MNS_ENDPOINT / DLQ_QUEUE_NAME."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import fc2
import pytest
from emulator_credentials import OWNER_ID, OWNER_SECRET, PUBLISHER_ID, PUBLISHER_SECRET
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message, QueueMeta
from pipeline_support import CUSTOMER_AK, CUSTOMER_SK, UID, PipelineWorld, pipeline_world

from local.fc import FcEmulator, FunctionSpec, load_template
from local.fc.destination import destination_message
from local.mns import MnsEmulator
from shared.adapters.fc import Credentials
from shared.adapters.ledger import Ledger, ReportToApply
from shared.adapters.queue import AccessDenied, MnsQueue, TokenRejected, dlq_queue
from shared.domain.models import Envelope
from shared.domain.orders import Outcome, Status
from shared.errors import ConfigError, TransientError
from shared.services.redrive import DELETE_RESERVE_SECONDS, RedriveCounts, redrive, redrive_queue
from shared.settings import load_settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
REGION = "cn-hangzhou"
ASYNC = {"x-fc-invocation-type": "Async"}


def processor_spec() -> FunctionSpec:
    (spec,) = [s for s in load_template(REPO / "template.yml", python_path=[REPO]) if s.name == "processor"]
    return spec


def report(out_id: str, result: str = "3") -> dict:
    return {"phone": "13800138000", "out_id": out_id, "result": result, "err_code": "", "err_msg": ""}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- ledgers that fail the way the tests need (our own adapter, not an SDK) ------------------------------------


class SimulatedCrash(BaseException):
    """The instance dies here: nothing after it runs (not an Exception, so nothing catches it)."""


class CrashAfterFirstCommit(Ledger):
    def apply_report(self, report: ReportToApply):
        super().apply_report(report)  # committed
        raise SimulatedCrash(report.message_id)


class DownAfter(Ledger):
    """Commits `commits` reports, then the database is unavailable."""

    def __init__(self, url: str, commits: int) -> None:
        super().__init__(url)
        self.commits = commits

    def apply_report(self, report: ReportToApply):
        if self.commits <= 0:
            raise TransientError("ledger database unavailable while applying a report (simulated outage)")
        self.commits -= 1
        return super().apply_report(report)


class Slow(Ledger):
    def apply_report(self, report: ReportToApply):
        time.sleep(0.25)
        return super().apply_report(report)


class Broken(Ledger):
    """A bug of ours (not a database outage): every apply raises."""

    def apply_report(self, report: ReportToApply):
        raise RuntimeError("an unforeseen bug")


# --- the world ---------------------------------------------------------------------------------------------------


@dataclass
class RedriveWorld:
    world: PipelineWorld
    fc: FcEmulator
    spec: FunctionSpec
    customer: MnsEmulator  # the customer's own MNS, holding the DLQ
    credentials: Credentials  # the function role's STS key (it may read and delete the DLQ only)

    @property
    def dlq_name(self) -> str:
        return self.spec.failure_queue

    @property
    def ledger(self) -> Ledger:
        return self.world.ledger

    @property
    def ledger_url(self) -> str:
        return self.world.environ["LEDGER_URL"]

    def queue(self) -> MnsQueue:
        return redrive_queue(self.world.runtime.settings, self.credentials)

    def run(self, ledger: Ledger | None = None, seconds: float = 10, **options) -> RedriveCounts:
        return redrive(ledger or self.ledger, self.queue(), time.monotonic() + seconds, **options)

    def owner_dlq(self):
        queue = Account(self.customer.endpoint, OWNER_ID, OWNER_SECRET).get_queue(self.dlq_name)
        queue.set_encoding(False)
        return queue

    def send_raw(self, body: str) -> str:
        return self.owner_dlq().send_message(Message(body)).message_id

    def dlq_depth(self) -> int:
        return sum(self.customer.stats()["queues"].get(self.dlq_name, {}).values())

    def peek_bodies(self) -> dict[str, str]:
        """The visible DLQ messages, id -> body, without receiving them."""
        try:
            return {m.message_id: m.message_body for m in self.owner_dlq().batch_peek_message(16)}
        except MNSServerException as error:
            assert error.type == "MessageNotExist", error
            return {}

    def set_visibility_timeout(self, seconds: int) -> None:
        meta = QueueMeta()
        meta.set_visibilitytimeout(seconds)
        self.owner_dlq().set_attributes(meta)

    def wait_until_visible(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.customer.stats()["queues"][self.dlq_name].get("inactive", 0):
            assert time.monotonic() < deadline, "messages never became visible again"
            time.sleep(0.05)

    def fail_through_fc(self, reports: dict[str, str], *, arrays: tuple[list[dict], ...] = ()) -> None:
        """Registers and publishes the reports; the processor (ledger down) fails them into the DLQ."""
        before = self.dlq_depth()
        for out_id, result in reports.items():
            self.world.register(out_id)
            self.world.publish(report(out_id, result))
        for body in arrays:
            self.world.publish(body)
        summaries = self.world.drain_until_empty()
        assert sum(s.as_dict()["accepted"] for s in summaries) == len(reports) + len(arrays)
        assert self.fc.wait_idle(30)
        assert self.dlq_depth() == before + len(reports) + len(arrays)

    def invoke_async(self, payload: bytes) -> str:
        client = fc2.Client(endpoint=self.fc.endpoint, accessKeyID=CUSTOMER_AK, accessKeySecret=CUSTOMER_SK)
        response = client.invoke_function(self.spec.service, self.spec.name, payload=payload, headers=ASYNC)
        return response.headers["x-fc-request-id"]

    def applied_once(self, out_id: str, status: Status) -> None:
        assert self.ledger.get_order(out_id).status is status, out_id
        applied = [r for r in self.ledger.receipts_for(out_id) if r.outcome is Outcome.APPLIED]
        assert len(applied) == 1, out_id
        assert len(self.ledger.outbox_events(out_id)) == 1, out_id


@contextmanager
def redrive_world(tmp_path: Path) -> Iterator[RedriveWorld]:
    spec = processor_spec()
    down = tmp_path / "processor-ledger-is-a-directory"
    down.mkdir()
    with MnsEmulator(owner=(OWNER_ID, OWNER_SECRET), publisher=(PUBLISHER_ID, PUBLISHER_SECRET)) as customer:
        Account(customer.endpoint, OWNER_ID, OWNER_SECRET).get_queue(spec.failure_queue).create(QueueMeta())
        fc = FcEmulator(
            [spec],
            credentials={CUSTOMER_AK: CUSTOMER_SK},
            account_id=UID,
            region=REGION,
            mns_endpoint=customer.endpoint,
            mns_credentials=customer.owner,
            retry_backoff_seconds=0.05,
            retry_backoff_max_seconds=0.2,
        )
        with fc:
            settings = {
                "DISPATCH_MODE": "async",
                "FC_ENDPOINT": fc.endpoint,
                "PROCESSOR_SERVICE": spec.service,
                "PROCESSOR_FUNCTION": spec.name,
                "DRAIN_LONG_POLL_SECONDS": "0",
                "MNS_ENDPOINT": customer.endpoint,
                "DLQ_QUEUE_NAME": spec.failure_queue,
            }
            with pipeline_world(tmp_path, **settings) as world:
                fc.environment.update({"LEDGER_URL": f"sqlite:///{down}", "ALICOM_QUEUE_NAME": world.queue_name})
                sts = customer.issue_sts(spec.failure_queue, 3600)
                credentials = Credentials(sts.access_key_id, sts.access_key_secret, sts.security_token)
                yield RedriveWorld(world, fc, spec, customer, credentials)


# --- the story ---------------------------------------------------------------------------------------------------


def test_failed_invocations_are_redriven_and_every_receipt_is_applied_exactly_once(tmp_path: Path) -> None:
    with redrive_world(tmp_path) as w:
        results = {f"redrive-{n}": "3" if n % 2 else "4" for n in range(5)}
        w.fail_through_fc(results, arrays=([report("redrive-arr-0"), report("redrive-arr-1", "4")],))
        assert w.fc.stats()["functions"][f"{w.spec.service}/{w.spec.name}"]["destination_messages"] == 6
        for out_id in results:
            assert w.ledger.get_order(out_id).status is Status.PENDING  # nothing applied yet

        first = w.run(max_messages=2).as_dict()
        assert (first["received"], first["deleted"], first["stopped_by"]) == (2, 2, "max_messages")
        rest = w.run().as_dict()
        assert rest["stopped_by"] == "empty"
        total = {k: first[k] + rest[k] for k in ("received", "applied", "orphan", "duplicate", "deleted", "left")}
        assert total == {"received": 6, "applied": 5, "orphan": 2, "duplicate": 0, "deleted": 6, "left": 0}
        assert (rest["dead_lettered"], rest["errors"], rest["delete_failed"]) == (0, 0, 0)

        assert w.dlq_depth() == 0
        for out_id, result in results.items():
            w.applied_once(out_id, Status.SUCCEEDED if result == "3" else Status.FAILED)
        assert w.ledger.get_order("redrive-arr-1").status is Status.FAILED  # an array body: both reports
        assert w.ledger.summary().dead_letters == 0

        again = w.run().as_dict()
        assert (again["received"], again["stopped_by"]) == (0, "empty")


def test_a_ledger_outage_deletes_nothing_and_the_messages_come_back(tmp_path: Path) -> None:
    with redrive_world(tmp_path) as w:
        w.set_visibility_timeout(1)
        results = {f"outage-{n}": "3" for n in range(4)}
        w.fail_through_fc(results)
        directory = tmp_path / "still-down"
        directory.mkdir()

        with Ledger(f"sqlite:///{directory}") as down:
            counts = w.run(down).as_dict()
        assert (counts["received"], counts["left"], counts["deleted"]) == (4, 4, 0)
        assert (counts["stopped_by"], counts["errors"]) == ("ledger_unavailable", 1)
        assert "ledger database unavailable" in counts["error"]
        assert w.dlq_depth() == 4
        assert w.ledger.summary().receipts_by_outcome.get("applied", 0) == 0

        w.wait_until_visible()
        with DownAfter(w.ledger_url, commits=1) as flaky:  # fails midway: only the committed one is deleted
            counts = w.run(flaky).as_dict()
        assert (counts["received"], counts["applied"], counts["deleted"], counts["left"]) == (4, 1, 1, 3)
        assert counts["stopped_by"] == "ledger_unavailable"
        w.wait_until_visible()
        waiting = {Envelope.model_validate_json(json.loads(b)["requestPayload"]) for b in w.peek_bodies().values()}
        assert len(waiting) == 3
        for out_id in results:
            in_queue = any(out_id in json.loads(base64.b64decode(e.body)).values() for e in waiting)
            applied = w.ledger.get_order(out_id).status is Status.SUCCEEDED
            assert in_queue is not applied, out_id  # deleted exactly when committed

        counts = w.run().as_dict()
        assert (counts["received"], counts["applied"], counts["deleted"], counts["stopped_by"]) == (3, 3, 3, "empty")
        assert w.dlq_depth() == 0
        for out_id in results:
            w.applied_once(out_id, Status.SUCCEEDED)


def test_a_crash_between_commit_and_delete_redrives_as_a_duplicate(tmp_path: Path) -> None:
    with redrive_world(tmp_path) as w:
        w.set_visibility_timeout(1)
        w.fail_through_fc({"crash-1": "3", "crash-2": "4"})

        with CrashAfterFirstCommit(w.ledger_url) as crashing, pytest.raises(SimulatedCrash):
            w.run(crashing)
        assert w.dlq_depth() == 2  # committed, never deleted
        applied = [o for o in ("crash-1", "crash-2") if w.ledger.get_order(o).status is not Status.PENDING]
        assert len(applied) == 1

        w.wait_until_visible()
        counts = w.run().as_dict()
        assert (counts["received"], counts["applied"], counts["duplicate"], counts["deleted"]) == (2, 1, 1, 2)
        assert w.dlq_depth() == 0
        w.applied_once("crash-1", Status.SUCCEEDED)
        w.applied_once("crash-2", Status.FAILED)
        (receipt,) = w.ledger.receipts_for(applied[0])
        assert receipt.outcome is Outcome.APPLIED  # the duplicate changed nothing


def test_a_failed_delete_leaves_committed_messages_to_come_back_as_duplicates(tmp_path: Path) -> None:
    with redrive_world(tmp_path) as w:
        w.set_visibility_timeout(1)
        w.fail_through_fc({"undeleted-1": "3", "undeleted-2": "3"})

        w.customer.set_faults({"operations": {"BatchDeleteMessage": {"internal_error": 1.0}}})
        counts = w.run().as_dict()
        assert (counts["applied"], counts["deleted"], counts["delete_failed"]) == (2, 0, 2)
        w.customer.set_faults({})
        assert w.dlq_depth() == 2

        w.wait_until_visible()
        counts = w.run().as_dict()
        assert (counts["applied"], counts["duplicate"], counts["deleted"]) == (0, 2, 2)
        assert w.dlq_depth() == 0
        for out_id in ("undeleted-1", "undeleted-2"):
            w.applied_once(out_id, Status.SUCCEEDED)


def test_poison_is_dead_lettered_with_its_raw_body_and_deleted_and_odd_encodings_are_applied(tmp_path: Path) -> None:
    with redrive_world(tmp_path) as w:
        request_id = w.invoke_async(b"this event is not an envelope")  # FC retries, then the DLQ
        assert w.fc.wait_idle(30)
        (fc_written,) = w.peek_bodies().values()
        not_json = w.send_raw("plain text, not a destination message")
        not_destination = w.send_raw('{"hello": "world"}')

        def destination(payload: str | bytes, rid: str) -> dict:
            raw = payload if isinstance(payload, bytes) else payload.encode()
            arn = f"acs:fc:{REGION}:{UID}:services/{w.spec.service}.LATEST/functions/processor"
            return destination_message(
                request_id=rid,
                function_arn=arn,
                condition="UnhandledInvocationError",
                invoke_count=3,
                payload=raw,
                last=None,
            )

        poison_body = Envelope(message_id="alicom-poison-1", body="not base64 at all!").model_dump_json()
        w.send_raw(json.dumps(destination(poison_body, "req-poison")))
        w.world.register("odd-1")
        w.world.register("odd-2")
        good = Envelope(message_id="alicom-odd-1", body=b64(json.dumps(report("odd-1"))))
        w.send_raw(b64(json.dumps(destination(good.model_dump_json(), "req-odd-1"))))  # base64 of the JSON
        as_object = destination("", "req-odd-2")
        as_object["requestPayload"] = Envelope(message_id="alicom-odd-2", body=b64(json.dumps(report("odd-2"))))
        as_object["requestPayload"] = as_object["requestPayload"].model_dump()  # an already-decoded object
        w.send_raw(json.dumps(as_object))

        counts = w.run().as_dict()
        assert (counts["received"], counts["dead_lettered"], counts["applied"], counts["deleted"]) == (6, 4, 2, 6)
        assert (counts["left"], counts["errors"], counts["stopped_by"]) == (0, 0, "empty")
        assert w.dlq_depth() == 0

        letter = w.ledger.get_dead_letter(f"invalid-event-{request_id}")  # the id the processor would have used
        assert letter.raw_body == fc_written  # the whole destination message, as FC wrote it
        assert "requestPayload is not a message envelope" in letter.reason
        assert "FC gave up after 3 attempts (UnhandledInvocationError)" in letter.reason
        letter = w.ledger.get_dead_letter(f"fc-destination-{not_json}")
        assert letter.raw_body == "plain text, not a destination message"
        assert "not an FC destination message" in letter.reason
        letter = w.ledger.get_dead_letter(f"fc-destination-{not_destination}")
        assert letter.raw_body == '{"hello": "world"}'
        assert "requestContext" in letter.reason and "hello" in letter.reason
        letter = w.ledger.get_dead_letter("alicom-poison-1")  # the processor logic: the envelope's own body
        assert letter.raw_body == "not base64 at all!"
        assert "base64" in letter.reason
        w.applied_once("odd-1", Status.SUCCEEDED)
        w.applied_once("odd-2", Status.SUCCEEDED)


def test_a_message_that_keeps_failing_for_another_reason_is_dead_lettered_at_the_dequeue_limit(tmp_path: Path) -> None:
    with redrive_world(tmp_path) as w:
        w.set_visibility_timeout(1)
        w.fail_through_fc({"buggy-1": "3"})

        with Broken(w.ledger_url) as broken:
            first = w.run(broken, max_dequeue_count=2).as_dict()
            assert (first["left"], first["deleted"], first["dead_lettered"]) == (1, 0, 0)  # kept: it may be fixed
            w.wait_until_visible()
            second = w.run(broken, max_dequeue_count=2).as_dict()

        assert (second["left"], second["deleted"]) == (0, 1) and second["dead_lettered"] >= 1  # twice when slow:
        assert w.dlq_depth() == 0  # a delete after the visibility timeout brings it back, and it is kept once
        (letter,) = w.ledger.dead_letters()
        assert letter.reason.startswith("re-drive gave up after 2 deliveries; last error: an unforeseen bug")
        assert json.loads(letter.raw_body)["requestContext"]  # the whole destination message, as it was


def test_the_deadline_is_respected(tmp_path: Path) -> None:
    with redrive_world(tmp_path) as w:
        w.fail_through_fc({f"late-{n}": "3" for n in range(8)})
        counts = redrive(w.ledger, w.queue(), time.monotonic() - 1).as_dict()
        assert (counts["received"], counts["stopped_by"]) == (0, "deadline")
        assert "BatchReceiveMessage" not in w.customer.stats()["operations"]  # not even asked

        deadline = time.monotonic() + DELETE_RESERVE_SECONDS + 0.6
        with Slow(w.ledger_url) as slow:  # 0.25 s per receipt
            counts = redrive(slow, w.queue(), deadline).as_dict()
        assert time.monotonic() < deadline
        assert counts["stopped_by"] == "deadline"
        assert counts["received"] == 8 and 1 <= counts["applied"] <= 4
        assert counts["deleted"] == counts["applied"]
        assert counts["left"] == 8 - counts["applied"]
        assert w.dlq_depth() == counts["left"]


# --- the queue's error lines -------------------------------------------------------------------------------------


def test_queue_errors_name_the_dlq_settings_and_stop_the_redrive(tmp_path: Path, mns_emulator: MnsEmulator) -> None:
    Account(mns_emulator.endpoint, OWNER_ID, OWNER_SECRET).get_queue("flow-receipts-dlq").create(QueueMeta())
    owner = Credentials(OWNER_ID, OWNER_SECRET)
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as ledger:
        ledger.migrate()

        missing = dlq_queue(mns_emulator.endpoint, "no-such-dlq", owner)
        with pytest.raises(ConfigError, match="DLQ_QUEUE_NAME and MNS_ENDPOINT") as info:
            redrive(ledger, missing, time.monotonic() + 5)
        assert "ALICOM" not in str(info.value) and "\n" not in str(info.value)

        with pytest.raises(ConfigError, match=r"^MNS_ENDPOINT: "):
            dlq_queue("127.0.0.1:1", "flow-receipts-dlq", owner).receive()

        other = mns_emulator.issue_sts("some-other-queue", 600)  # a role whose policy covers another queue
        scoped = Credentials(other.access_key_id, other.access_key_secret, other.security_token)
        with pytest.raises(AccessDenied, match="DLQ_QUEUE_NAME") as denied:
            dlq_queue(mns_emulator.endpoint, "flow-receipts-dlq", scoped).receive()
        assert "ALICOM" not in str(denied.value)

        wrong = Credentials(OWNER_ID, "not-the-owner-secret-5b1d")
        with pytest.raises(TokenRejected, match="rejected the credentials twice"):
            dlq_queue(mns_emulator.endpoint, "flow-receipts-dlq", wrong).receive()
        started = time.monotonic()
        counts = redrive(ledger, dlq_queue(mns_emulator.endpoint, "flow-receipts-dlq", wrong), started + 10)
        assert (counts.stopped_by, counts.received, counts.errors) == ("queue_unavailable", 0, 1)
        assert time.monotonic() - started < 2  # no retrying a key MNS rejected twice

    settings = load_settings({"ALICOM_QUEUE_NAME": f"Alicom-Queue-{UID}-FlowReport"})
    with pytest.raises(ConfigError, match=r"^DLQ_QUEUE_NAME: "):
        redrive_queue(settings, owner)

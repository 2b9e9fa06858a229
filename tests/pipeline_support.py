"""A running Alibaba side plus a pipeline wired to it, for drainer / processor tests.

`PipelineWorld` starts Alicom's MNS and the Alicom API in-process, points a `Runtime` at them through a
settings environment (no os.environ), and offers the few actions tests need: publish reports as Alicom does,
register orders, drain, and look at the queue and the ledger.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mns.account import Account
from mns.queue import Message

from local.alicom import AlicomEmulator
from local.mns import MnsEmulator
from shared.adapters.fc import Credentials
from shared.adapters.ledger import Ledger
from shared.runtime import Runtime
from shared.services.drain import DrainSummary
from shared.settings import load_settings

ALICOM_OWNER = ("pipeline-alicom-owner", "pipeline-alicom-owner-secret-3e8a")
ALICOM_PUBLISHER = ("pipeline-alicom-publisher", "pipeline-publisher-secret-9c21")
CUSTOMER_AK, CUSTOMER_SK, UID = "pipeline-ak", "pipeline-customer-secret-61f0", "1357913579135791"
SECRETS = (ALICOM_OWNER[1], ALICOM_PUBLISHER[1], CUSTOMER_SK)


class PipelineWorld:
    def __init__(self, mns: MnsEmulator, alicom: AlicomEmulator, ledger_url: str, **settings: str) -> None:
        self.mns = mns
        self.alicom = alicom
        self.queue_name = alicom.queue_name(UID)
        self.environ = {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": CUSTOMER_AK,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": CUSTOMER_SK,
            "ALICOM_MNS_ENDPOINT": mns.endpoint,
            "ALICOM_API_ENDPOINT": alicom.endpoint,
            "FLOW_API_ENDPOINT": alicom.endpoint,
            "ALICOM_QUEUE_NAME": self.queue_name,
            "LEDGER_URL": ledger_url,
            "DRAIN_LONG_POLL_SECONDS": "1",
            "DRAIN_DEADLINE_MARGIN_SECONDS": "1",
            **settings,
        }
        self.credentials = Credentials(CUSTOMER_AK, CUSTOMER_SK, None)
        self.runtime = Runtime(lambda: load_settings(self.environ))
        self.ledger: Ledger = self.runtime.ledger
        self.ledger.migrate()

    # ---- the Alicom side ---------------------------------------------------------------------------------

    def publisher_queue(self):
        return Account(self.mns.endpoint, *ALICOM_PUBLISHER).get_queue(self.queue_name)

    def owner_queue(self):
        return Account(self.mns.endpoint, *ALICOM_OWNER).get_queue(self.queue_name)

    def publish(self, report: dict | list) -> str:
        """A FlowReport (or an array of them) as Alicom sends it: compact JSON, base64 in MNS."""
        body = json.dumps(report, separators=(",", ":"), ensure_ascii=False)
        return self.publisher_queue().send_message(Message(body)).message_id

    def publish_raw(self, body_text: str) -> str:
        """A body stored verbatim (raw mode), e.g. text that is not base64 at all."""
        queue = self.publisher_queue()
        queue.set_encoding(False)
        return queue.send_message(Message(body_text)).message_id

    def queue_depth(self) -> int:
        return sum(self.mns.stats()["queues"].get(self.queue_name, {}).values())

    # ---- the pipeline ------------------------------------------------------------------------------------

    def register(self, out_id: str, phone: str = "13800138000") -> None:
        self.ledger.register_order(out_id, phone)

    def drain(self, seconds: float = 20) -> DrainSummary:
        return self.runtime.drainer(self.credentials).run(time.monotonic() + seconds)

    def drain_until_empty(self, runs: int = 10, seconds: float = 20) -> list[DrainSummary]:
        summaries = []
        for _ in range(runs):
            summaries.append(self.drain(seconds))
            if self.queue_depth() == 0:
                break
        return summaries


@contextmanager
def pipeline_world(tmp_path: Path, ledger_url: str | None = None, **settings: str) -> Iterator[PipelineWorld]:
    with MnsEmulator(owner=ALICOM_OWNER, publisher=ALICOM_PUBLISHER) as mns:
        accounts = {CUSTOMER_AK: (CUSTOMER_SK, UID)}
        with AlicomEmulator(mns, accounts=accounts, charge_delay_seconds=0.02, seed=11) as alicom:
            world = PipelineWorld(mns, alicom, ledger_url or f"sqlite:///{tmp_path / 'ledger.sqlite3'}", **settings)
            try:
                yield world
            finally:
                world.ledger.close()

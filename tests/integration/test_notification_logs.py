"""No log line holds the webhook secret or a request's signature, whatever the webhook answers — even at DEBUG, with
urllib3's own loggers on, and with an endpoint that echoes the request back. Phone numbers in the events are masked.
(The session-wide log scan of tests/log_scan.py is also told about the secret and about every signature sent here.)"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from webhook_support import WEBHOOK_SECRET, event, signatures_to_scan, webhook_receiver

from local.webhook import WebhookReceiver
from shared.adapters.ledger import Ledger
from shared.adapters.notify import Notifier, WebhookSink
from shared.logs import SERVICE, logger
from shared.services.outbox import BackgroundDeliverer, deliver_now, redeliver

PHONE = "13912345678"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        extras = {k: v for k, v in record.__dict__.items() if k not in ("args", "msg", "exc_info")}
        self.lines.append(f"{record.name} {record.getMessage()} {json.dumps(extras, default=str)}")


@pytest.fixture
def captured() -> Iterator[Capture]:
    capture = Capture()
    loggers = [logging.getLogger(), logging.getLogger(SERVICE), logging.getLogger("urllib3")]
    levels = [target.level for target in loggers]
    for target in loggers:
        target.addHandler(capture)
        target.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        for target, level in zip(loggers, levels, strict=True):
            target.removeHandler(capture)
            target.setLevel(level)
        logger.setLevel(logging.INFO)


@pytest.fixture
def receiver(pytestconfig: pytest.Config) -> Iterator[WebhookReceiver]:
    with webhook_receiver(pytestconfig, on_request=signatures_to_scan(pytestconfig)) as running:
        yield running


def test_no_log_line_holds_the_secret_or_a_signature(tmp_path: Path, receiver, captured: Capture) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as ledger:
        ledger.migrate()
        notifier = Notifier([WebhookSink(receiver.url, WEBHOOK_SECRET, 0.3)])
        events = [event(f"evt-log-{n}", phone=PHONE) for n in range(8)]

        for fault in ({"echo": True, "status": 500}, {"status": 400}, {"down": "reset"}, {"latency_ms": 1000}):
            receiver.misbehave(**fault)
            deliver_now(ledger, notifier, events[:2], time.monotonic() + 2)
        receiver.behave()
        receiver.refuse_connections()
        deliverer = BackgroundDeliverer(ledger, notifier)
        deliverer.submit(events)
        deliverer.close(2)
        receiver.accept_connections()
        redeliver(ledger, notifier, time.monotonic() + 2)
        notifier.close()

    signatures = [d.headers["X-Flow-Receipts-Signature"].removeprefix("v1=") for d in receiver.deliveries()]
    text = "\n".join(captured.lines)
    assert len(signatures) >= 8 and captured.lines
    assert "events left for redelivery" in text  # the lines looked at exist
    assert WEBHOOK_SECRET not in text
    assert not [signature for signature in signatures if signature in text]
    assert PHONE not in text

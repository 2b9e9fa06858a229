"""The customer's webhook for tests: a local receiver with the test secret, the environment pointing a pipeline at
it, and the log scan told about the secret (tests/log_scan.py fails the session on any line holding it).

`scan_logs_for(config, kind, *values)` adds values to the session's log scan; `signatures_to_scan(config)` is an
``on_request`` callback adding every delivery's signature as it arrives (only the log-safety tests use it: each
value makes every later line's scan a little slower).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from local.webhook import WebhookReceiver

WEBHOOK_SECRET = "whsec-test-4b1d9e77c2a0f5"
OTHER_WEBHOOK_SECRET = "whsec-other-93ac61e0d47b"
LOG_SCAN_PLUGIN = "log-scan-instance"
FAST = {  # a pipeline that gives up on the webhook quickly, so that fault tests stay short
    "WEBHOOK_TIMEOUT_SECONDS": "0.5",
    "NOTIFY_HOOK_TIMEOUT_SECONDS": "0.5",
    "NOTIFY_BUDGET_SECONDS": "3",
    "NOTIFY_RETRY_SECONDS": "60",
}


def scan_logs_for(config: pytest.Config, kind: str, *values: str) -> None:
    plugin = config.pluginmanager.get_plugin(LOG_SCAN_PLUGIN)
    if plugin is not None:
        for value in values:
            plugin.scanner.book.add(kind, value)


def register_webhook_secrets(config: pytest.Config) -> None:
    scan_logs_for(config, "webhook_support.WEBHOOK_SECRET", WEBHOOK_SECRET)
    scan_logs_for(config, "webhook_support.OTHER_WEBHOOK_SECRET", OTHER_WEBHOOK_SECRET)


def signatures_to_scan(config: pytest.Config) -> Callable[[dict[str, str]], None]:
    def add(headers: dict[str, str]) -> None:
        signature = headers.get("X-Flow-Receipts-Signature", "")
        scan_logs_for(config, "webhook signature (sent during the run)", *signature.replace("v1=", "").split(","))

    return add


@contextmanager
def webhook_receiver(config: pytest.Config, **options: Any) -> Iterator[WebhookReceiver]:
    register_webhook_secrets(config)
    with WebhookReceiver(options.pop("secret", WEBHOOK_SECRET), **options) as receiver:
        yield receiver


def webhook_settings(receiver: WebhookReceiver, **settings: str) -> dict[str, str]:
    """Settings pointing at ``receiver`` with the test secret, and quick timeouts (FAST), overridable."""
    return {"WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": WEBHOOK_SECRET, **FAST, **settings}


def event(event_id: str, out_id: str = "order-1", **fields: Any) -> dict[str, Any]:
    """An outbox payload as the ledger writes it."""
    return {
        "event_id": event_id,
        "kind": "order.succeeded",
        "out_id": out_id,
        "phone": "13800138000",
        "status": "SUCCEEDED",
        "err_code": None,
        "err_msg": None,
        "resolved_by": "receipt",
        "occurred_at": "2026-01-02T03:04:05.000006+00:00",
        "resolved_at": "2026-01-02T03:04:05.000006+00:00",
        "previous_status": "PENDING",
        "registered": True,
        "message_id": "MSG-1",
        **fields,
    }

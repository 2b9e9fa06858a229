"""The README's webhook consumer really verifies what flow-receipts sends: a signed delivery is accepted once, a
tampered body, a wrong secret or a stale timestamp is refused (the README's code, run as it is printed)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from shared.adapters.notify import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, webhook_body

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = b"whsec-readme-3d71c0"
EVENT = {
    "event_id": "e-1",
    "kind": "order.failed",
    "out_id": "o-1",
    "phone": "13800138000",
    "status": "FAILED",
    "err_code": "UNKNOW",
    "err_msg": "x",
    "resolved_by": "receipt",
    "occurred_at": "2026-12-01T00:00:00+00:00",
}


def consumer():
    code = re.search(r"```python\n(import hashlib, hmac, json, time\n.*?)```", README.read_text(), re.DOTALL).group(1)
    seen: set[str] = set()
    recorded: list[tuple] = []
    namespace = {
        "first_time": lambda event_id: event_id not in seen and not seen.add(event_id),
        "record_outcome": lambda *outcome: recorded.append(outcome),
    }
    exec(compile(code, str(README), "exec"), namespace)
    return namespace["flow_receipts_webhook"], recorded


def delivery(timestamp: int, secret: bytes = SECRET, body: bytes | None = None) -> tuple[dict[str, str], bytes]:
    sent = webhook_body(EVENT)
    headers = {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"v1={sign(secret, timestamp, sent)}",
        EVENT_ID_HEADER: EVENT["event_id"],
    }
    return headers, sent if body is None else body


def test_the_readme_consumer_accepts_a_signed_delivery_once_and_refuses_forgeries():
    receive, recorded = consumer()
    now = int(time.time())

    assert receive(*delivery(now), SECRET) == 204
    assert receive(*delivery(now), SECRET) == 204  # delivered again: acknowledged, not recorded twice
    assert recorded == [("o-1", "FAILED", "UNKNOW", "x")]

    tampered = webhook_body({**EVENT, "status": "SUCCEEDED"})
    assert receive(*delivery(now, body=tampered), SECRET) == 401
    assert receive(*delivery(now, secret=b"not-the-secret"), SECRET) == 401
    assert receive(*delivery(now - 301), SECRET) == 401
    assert len(recorded) == 1 and json.loads(tampered)["status"] == "SUCCEEDED"

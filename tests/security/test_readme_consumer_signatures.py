"""The README's webhook consumer (its code, run as printed) accepts exactly what flow-receipts signs: a correct
delivery passes; a tampered body, a wrong secret, a stale or future timestamp, a signature for another timestamp or
another body fail. The product's own verifier (shared.adapters.notify.verify_signature) and the local webhook
receiver's (local/webhook/signing.py) give the same verdict on every one of those deliveries.

(tests/unit/test_readme_consumer.py runs the consumer once end to end, with deduplication; this module goes through
the forgeries one by one.)
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from local.webhook import signing as receiver_signing
from shared.adapters.notify import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    verify_signature,
    webhook_body,
)

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = b"whsec-security-readme-5a90c1"
EVENT = {
    "event_id": "readme-security-1",
    "kind": "order.failed",
    "out_id": "order-'; DROP TABLE x; --",
    "phone": "13800138000",
    "status": "FAILED",
    "err_code": "BALANCE_NOT_ENOUGH",
    "err_msg": "余额不足 \u202e",
    "resolved_by": "receipt",
    "occurred_at": "2026-12-01T00:00:00+00:00",
}
TOLERANCE = 300


def readme_consumer() -> tuple[Callable[..., int], list[tuple]]:
    match = re.search(r"```python\n(import hashlib, hmac, json, time\n.*?)```", README.read_text(), re.DOTALL)
    assert match, "the README's webhook consumer example is not where it was"
    recorded: list[tuple] = []
    namespace = {"first_time": lambda event_id: True, "record_outcome": lambda *outcome: recorded.append(outcome)}
    exec(compile(match.group(1), str(README), "exec"), namespace)
    return namespace["flow_receipts_webhook"], recorded


def delivery(
    *,
    secret: bytes = SECRET,
    age: int = 0,
    signed_age: int | None = None,
    body: bytes | None = None,
    signature: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body as flow-receipts sends them ``age`` seconds ago (signed for ``signed_age`` when given),
    with ``body`` or ``signature`` replaced after signing."""
    now = int(time.time())
    sent = webhook_body(EVENT)
    timestamp = now - age
    mac = sign(secret, now - (age if signed_age is None else signed_age), sent)
    headers = {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"v1={mac}" if signature is None else signature,
        EVENT_ID_HEADER: EVENT["event_id"],
    }
    return headers, sent if body is None else body


def verdicts(headers: dict[str, str], body: bytes) -> dict[str, bool]:
    """Accepted or not, by the README consumer, the product's verifier and the local receiver's."""
    consumer, _ = readme_consumer()
    now = time.time()
    timestamp, signature = headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
    problem = receiver_signing.problem(SECRET, timestamp, signature, body, now, TOLERANCE)
    return {
        "readme": consumer(headers, body, SECRET) == 204,
        "product": verify_signature(SECRET, timestamp, body, signature, now, TOLERANCE),
        "receiver": problem == "",
    }


def reserialised(**changes: object) -> bytes:
    return json.dumps({**EVENT, **changes}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def test_a_correct_delivery_passes_and_is_recorded() -> None:
    consumer, recorded = readme_consumer()

    assert consumer(*delivery(), SECRET) == 204
    assert recorded == [(EVENT["out_id"], "FAILED", "BALANCE_NOT_ENOUGH", EVENT["err_msg"])]
    assert verdicts(*delivery()) == {"readme": True, "product": True, "receiver": True}


def test_a_delivery_signed_with_the_old_and_the_new_secret_passes_while_the_secret_rotates() -> None:
    headers, body = delivery()
    old = sign(b"whsec-the-previous-secret", headers[TIMESTAMP_HEADER], body)
    headers[SIGNATURE_HEADER] = f"v1={old}, {headers[SIGNATURE_HEADER]}"

    assert verdicts(headers, body) == {"readme": True, "product": True, "receiver": True}


def test_a_delivery_just_inside_the_window_passes() -> None:
    assert verdicts(*delivery(age=TOLERANCE - 5)) == {"readme": True, "product": True, "receiver": True}
    assert verdicts(*delivery(age=-(TOLERANCE - 5))) == {"readme": True, "product": True, "receiver": True}


FORGERIES = {
    # tampered bodies: the signature covers the raw bytes, not the meaning
    "status-changed": {"body": reserialised(status="SUCCEEDED")},
    "out-id-changed": {"body": reserialised(out_id="order-43")},
    "byte-appended": {"body": webhook_body(EVENT) + b"\n"},
    "same-json-other-bytes": {"body": json.dumps(EVENT).encode()},  # ASCII escapes, spaces: another byte string
    "empty-body": {"body": b""},
    # wrong secrets
    "wrong-secret": {"secret": b"whsec-not-the-right-one"},
    "secret-in-other-case": {"secret": SECRET.upper()},
    "empty-secret": {"secret": b""},
    # stale or future: a replay after the window, or a clock far off
    "stale": {"age": TOLERANCE + 1},
    "an-hour-old": {"age": 3600},
    "future": {"age": -(TOLERANCE + 1)},
    "fresh-timestamp-old-signature": {"signed_age": 3600},
    # signatures that are not one
    "no-signature": {"signature": ""},
    "only-the-scheme": {"signature": "v1="},
    "zero-mac": {"signature": "v1=" + "0" * 64},
    "mac-in-upper-case": {"signature": None},  # filled in below
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_a_forged_tampered_or_stale_delivery_fails_in_every_verifier(name: str) -> None:
    headers, body = delivery(**FORGERIES[name])
    if name == "mac-in-upper-case":
        headers[SIGNATURE_HEADER] = headers[SIGNATURE_HEADER].upper().replace("V1=", "v1=")
    consumer, recorded = readme_consumer()

    assert consumer(headers, body, SECRET) == 401
    assert recorded == []
    assert verdicts(headers, body) == {"readme": False, "product": False, "receiver": False}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {SIGNATURE_HEADER: "v1=" + "0" * 64},
        {TIMESTAMP_HEADER: "not-a-number", SIGNATURE_HEADER: "v1=" + "0" * 64},
        {TIMESTAMP_HEADER: "-1", SIGNATURE_HEADER: "v1=" + "0" * 64},
        {TIMESTAMP_HEADER: "1.5e9", SIGNATURE_HEADER: "v1=" + "0" * 64},
    ],
    ids=["no-headers", "no-timestamp", "word", "negative", "float"],
)
def test_missing_or_malformed_headers_fail_in_every_verifier(headers: dict[str, str]) -> None:
    body = webhook_body(EVENT)
    consumer, recorded = readme_consumer()

    assert consumer(headers, body, SECRET) == 401 and recorded == []
    assert verdicts(headers, body) == {"readme": False, "product": False, "receiver": False}


def test_a_timestamp_of_thousands_of_digits_is_refused_by_the_receiver_and_the_product() -> None:
    """int() refuses more than 4300 digits (Python >= 3.10.7): a verifier must bound the length before converting,
    or a hostile request raises instead of getting its 401. local/webhook/signing.py does (fixed here)."""
    headers = {TIMESTAMP_HEADER: "9" * 5000, SIGNATURE_HEADER: "v1=" + "0" * 64}
    body = webhook_body(EVENT)

    assert receiver_signing.problem(SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body, 0.0, 300.0)
    assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], 0.0, 300.0) is False


def test_the_readme_consumer_answers_401_to_a_timestamp_of_thousands_of_digits() -> None:
    consumer, _ = readme_consumer()
    headers = {TIMESTAMP_HEADER: "9" * 5000, SIGNATURE_HEADER: "v1=" + "0" * 64}

    assert consumer(headers, webhook_body(EVENT), SECRET) == 401

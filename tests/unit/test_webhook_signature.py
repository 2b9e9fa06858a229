"""What a consumer checks on every webhook request (shared.adapters.notify.verify_signature), what the body holds, and
which answers mean delivered, rejected (kept for a human) or failed (retried)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from shared.adapters.notify import (
    EVENT_FIELDS,
    Verdict,
    answer_verdict,
    public_event,
    sign,
    verify_signature,
    webhook_body,
)

SECRET = "whsec-unit-2f7c91d0e4"
NOW = 1_767_322_800.0
BODY = b'{"event_id":"e-1","kind":"order.succeeded","out_id":"o-1"}'


def header(secret: str = SECRET, timestamp: int = int(NOW), body: bytes = BODY) -> str:
    return f"v1={sign(secret, timestamp, body)}"


def test_a_signature_is_the_hex_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{int(NOW)}.".encode() + BODY, hashlib.sha256).hexdigest()

    assert sign(SECRET, int(NOW), BODY) == expected
    assert verify_signature(SECRET, str(int(NOW)), BODY, f"v1={expected}", NOW)


def test_a_tampered_body_fails_verification() -> None:
    tampered = BODY.replace(b"succeeded", b"failed")

    assert not verify_signature(SECRET, str(int(NOW)), tampered, header(), NOW)


def test_a_wrong_secret_fails_verification() -> None:
    assert not verify_signature("whsec-someone-else-00", str(int(NOW)), BODY, header(), NOW)


def test_a_stale_or_future_timestamp_fails_verification_even_when_well_signed() -> None:
    old = int(NOW) - 301
    future = int(NOW) + 301

    assert not verify_signature(SECRET, str(old), BODY, header(timestamp=old), NOW)
    assert not verify_signature(SECRET, str(future), BODY, header(timestamp=future), NOW)
    assert verify_signature(SECRET, str(old), BODY, header(timestamp=old), NOW, tolerance_seconds=600)


def test_a_signature_made_for_another_timestamp_fails_verification() -> None:
    assert not verify_signature(SECRET, str(int(NOW) + 1), BODY, header(), NOW)


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [(None, header()), ("", header()), ("12.5", header()), ("-1", header()), ("١٢٣", header()), (str(int(NOW)), None)],
)
def test_missing_or_malformed_headers_fail_verification(timestamp: str | None, signature: str | None) -> None:
    assert not verify_signature(SECRET, timestamp, BODY, signature, NOW)


def test_a_signature_without_its_version_prefix_fails_verification() -> None:
    assert not verify_signature(SECRET, str(int(NOW)), BODY, sign(SECRET, int(NOW), BODY), NOW)


def test_any_of_several_comma_separated_signatures_may_match() -> None:
    several = f"v1={'0' * 64}, {header()}"

    assert verify_signature(SECRET, str(int(NOW)), BODY, several, NOW)


def test_the_body_holds_exactly_the_documented_fields_in_order() -> None:
    stored = {name: f"value-{name}" for name in EVENT_FIELDS} | {"previous_status": "PENDING", "registered": True}

    body = webhook_body(stored)

    assert list(json.loads(body)) == list(EVENT_FIELDS)
    assert json.loads(body) == public_event(stored)
    assert b" " not in body.replace(b"value-", b"")  # compact JSON: what is signed is what is sent


def test_a_missing_field_is_sent_as_null_and_text_stays_utf8() -> None:
    body = webhook_body({"event_id": "e-2", "err_msg": "余额不足"})

    assert json.loads(body)["phone"] is None
    assert "余额不足".encode() in body


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (202, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (301, Verdict.FAILED),
        (302, Verdict.FAILED),
        (400, Verdict.REJECTED),
        (401, Verdict.REJECTED),
        (404, Verdict.REJECTED),
        (410, Verdict.REJECTED),
        (422, Verdict.REJECTED),
        (408, Verdict.FAILED),
        (429, Verdict.FAILED),
        (500, Verdict.FAILED),
        (502, Verdict.FAILED),
        (503, Verdict.FAILED),
    ],
)
def test_what_each_webhook_answer_means(status: int, verdict: Verdict) -> None:
    assert answer_verdict(status) is verdict

"""The webhook sink (shared.adapters.notify.WebhookSink) against the local receiver (local/webhook): what a delivery
looks like on the wire, and what each misbehaviour of the customer's endpoint makes of it — delivered, rejected
(kept for a human) or failed (retried later). Never a redirect followed, never an unverified certificate trusted,
never the secret or the signature in an error text."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from webhook_support import OTHER_WEBHOOK_SECRET, WEBHOOK_SECRET, event, webhook_receiver

from local.webhook import WebhookReceiver
from shared.adapters.notify import (
    EVENT_FIELDS,
    USER_AGENT,
    Notifier,
    Verdict,
    WebhookSink,
    verify_signature,
)

TIMEOUT = 0.5


@pytest.fixture
def receiver(pytestconfig: pytest.Config) -> Iterator[WebhookReceiver]:
    with webhook_receiver(pytestconfig) as running:
        yield running


@pytest.fixture
def sink(receiver: WebhookReceiver) -> Iterator[WebhookSink]:
    webhook = WebhookSink(receiver.url, WEBHOOK_SECRET, TIMEOUT)
    yield webhook
    webhook.close()


def test_a_delivery_is_signed_compact_json_with_the_documented_headers(
    receiver: WebhookReceiver, sink: WebhookSink
) -> None:
    result = sink.send(event("evt-1"), TIMEOUT)

    assert result.verdict is Verdict.DELIVERED, result
    (delivery,) = receiver.deliveries()
    assert delivery.signature_valid and delivery.answered == 200
    assert list(delivery.event or {}) == list(EVENT_FIELDS)
    assert delivery.event == {name: event("evt-1")[name] for name in EVENT_FIELDS}
    headers = delivery.headers
    assert headers["X-Flow-Receipts-Event-Id"] == "evt-1"
    assert headers["User-Agent"] == USER_AGENT
    assert headers["Content-Type"].startswith("application/json")
    assert abs(int(headers["X-Flow-Receipts-Timestamp"]) - time.time()) < 5
    assert headers["X-Flow-Receipts-Signature"].startswith("v1=")
    assert verify_signature(
        WEBHOOK_SECRET,
        headers["X-Flow-Receipts-Timestamp"],
        delivery.body,
        headers["X-Flow-Receipts-Signature"],
        time.time(),
    )


def test_deliveries_reuse_one_pooled_connection(receiver: WebhookReceiver, sink: WebhookSink) -> None:
    results = [sink.send(event(f"evt-{n}"), TIMEOUT) for n in range(20)]

    assert {result.verdict for result in results} == {Verdict.DELIVERED}
    assert receiver.stats()["accepted_events"] == 20
    assert sink.open_connections == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_a_client_error_rejects_the_event_for_a_human(
    receiver: WebhookReceiver, sink: WebhookSink, status: int
) -> None:
    receiver.misbehave(status=status)

    result = sink.send(event("evt-rejected"), TIMEOUT)

    assert result.verdict is Verdict.REJECTED
    assert result.error.startswith(f"HTTP {status}")


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_timeouts_throttling_and_server_errors_fail_the_attempt_to_be_retried(
    receiver: WebhookReceiver, sink: WebhookSink, status: int
) -> None:
    receiver.misbehave(status=status)

    result = sink.send(event("evt-retry"), TIMEOUT)

    assert result.verdict is Verdict.FAILED
    assert result.error.startswith(f"HTTP {status}")


def test_a_redirect_is_not_followed_and_fails_the_attempt(pytestconfig: pytest.Config, receiver, sink) -> None:
    with webhook_receiver(pytestconfig) as elsewhere:
        receiver.misbehave(status=302, location=elsewhere.url)

        result = sink.send(event("evt-redirected"), TIMEOUT)

        assert result.verdict is Verdict.FAILED
        assert f"HTTP 302 redirect to {elsewhere.url} (not followed)" in result.error
        assert elsewhere.deliveries() == []


def test_a_webhook_refusing_connections_fails_the_attempt_at_once(receiver: WebhookReceiver, sink) -> None:
    assert sink.send(event("evt-warm"), TIMEOUT).verdict is Verdict.DELIVERED  # a pooled connection exists
    receiver.refuse_connections()

    started = time.monotonic()
    result = sink.send(event("evt-down"), TIMEOUT)

    assert result.verdict is Verdict.FAILED
    assert "Connection refused" in result.error
    assert time.monotonic() - started < TIMEOUT * 4  # loose sanity bound


@pytest.mark.parametrize("down", ["close", "reset"])
def test_a_webhook_dropping_connections_fails_the_attempt(receiver: WebhookReceiver, sink, down: str) -> None:
    receiver.misbehave(down=down)

    result = sink.send(event("evt-dropped"), TIMEOUT)

    assert result.verdict is Verdict.FAILED
    assert result.error.startswith("connection dropped")


def test_a_pooled_connection_the_server_closed_is_reopened_once(receiver: WebhookReceiver, sink) -> None:
    receiver.misbehave(down="close", times=1)  # as a server does with an idle keep-alive connection

    result = sink.send(event("evt-stale"), TIMEOUT)

    assert result.verdict is Verdict.DELIVERED, result
    assert receiver.accepted() == {"evt-stale": 1}


def test_a_slow_webhook_is_given_up_after_the_timeout(receiver: WebhookReceiver, sink: WebhookSink) -> None:
    receiver.misbehave(latency_ms=3000)

    started = time.monotonic()
    result = sink.send(event("evt-slow"), TIMEOUT)

    assert result.verdict is Verdict.FAILED
    assert result.error == f"no answer within {TIMEOUT:g} s"
    assert time.monotonic() - started < 2.5  # loose sanity bound: well before the webhook would answer


def test_a_shorter_deadline_than_the_timeout_bounds_the_request(receiver: WebhookReceiver) -> None:
    receiver.misbehave(latency_ms=3000)
    notifier = Notifier([WebhookSink(receiver.url, WEBHOOK_SECRET, 5.0)])

    started = time.monotonic()
    result = notifier.deliver(event("evt-deadline"), deadline=time.monotonic() + 0.5)

    assert result.verdict is Verdict.FAILED and "no answer within" in result.error
    assert time.monotonic() - started < 2.5  # loose sanity bound: the 5 s timeout did not apply
    assert notifier.deliver(event("evt-late"), deadline=time.monotonic()).verdict is Verdict.UNSENT
    notifier.close()


def test_a_self_signed_certificate_is_refused(pytestconfig: pytest.Config) -> None:
    with webhook_receiver(pytestconfig, tls=True) as https:
        webhook = WebhookSink(https.url, WEBHOOK_SECRET, TIMEOUT)

        result = webhook.send(event("evt-tls"), TIMEOUT)

        assert result.verdict is Verdict.FAILED
        assert result.error.startswith("TLS error") and "certificate verify failed" in result.error
        assert https.wait_until(lambda receiver: receiver.stats().get("tls_failures") == 1, timeout=5)
        assert https.deliveries() == []
        webhook.close()


def test_https_with_a_trusted_certificate_delivers(pytestconfig: pytest.Config) -> None:
    with webhook_receiver(pytestconfig, tls=True) as https:
        webhook = WebhookSink(https.url, WEBHOOK_SECRET, TIMEOUT, ca_certs=str(https.cert_file))

        assert webhook.send(event("evt-tls-ok"), TIMEOUT).verdict is Verdict.DELIVERED
        assert https.accepted() == {"evt-tls-ok": 1}
        webhook.close()


def test_a_webhook_holding_another_secret_rejects_every_event(pytestconfig: pytest.Config) -> None:
    with webhook_receiver(pytestconfig, secret=OTHER_WEBHOOK_SECRET) as other:
        webhook = WebhookSink(other.url, WEBHOOK_SECRET, TIMEOUT)

        result = webhook.send(event("evt-wrong-key"), TIMEOUT)

        assert result.verdict is Verdict.REJECTED and result.error.startswith("HTTP 401")
        assert other.bad_signatures == 1
        webhook.close()


def test_an_answer_echoing_the_request_leaves_no_secret_or_signature_in_the_error(
    receiver: WebhookReceiver, sink: WebhookSink
) -> None:
    receiver.misbehave(echo=True, status=500)

    result = sink.send(event("evt-echo"), TIMEOUT)

    (delivery,) = receiver.deliveries()
    signature = delivery.headers["X-Flow-Receipts-Signature"].removeprefix("v1=")
    assert result.verdict is Verdict.FAILED and '"signature": "v1=***"' in result.error
    assert signature[:16] not in result.error and WEBHOOK_SECRET not in result.error
    assert signature[:16] not in repr(sink) and WEBHOOK_SECRET not in repr(sink)

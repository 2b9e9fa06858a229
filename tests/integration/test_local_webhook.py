"""The local webhook receiver itself (local/webhook): its unsigned admin JSON API under /_admin, what it records, and
`python -m local.webhook` as the demo and the benchmarks run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from webhook_support import WEBHOOK_SECRET, event, webhook_receiver

from local.webhook import WebhookReceiver
from shared.adapters.notify import Verdict, WebhookSink, sign, webhook_body

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def receiver(pytestconfig: pytest.Config) -> Iterator[WebhookReceiver]:
    with webhook_receiver(pytestconfig) as running:
        yield running


def admin(receiver_admin_url: str, method: str, path: str, body: object = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(receiver_admin_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_faults_are_set_read_and_cleared_through_the_admin_api(receiver: WebhookReceiver) -> None:
    sink = WebhookSink(receiver.url, WEBHOOK_SECRET, 1.0)

    assert admin(receiver.admin_url, "PUT", "/faults", {"status": 503, "times": 1}) == (
        200,
        {"status": 503, "times": 1, "refusing_connections": False},
    )
    assert sink.send(event("evt-a1"), 1.0).verdict is Verdict.FAILED
    assert sink.send(event("evt-a1"), 1.0).verdict is Verdict.DELIVERED  # the fault was for one request only
    admin(receiver.admin_url, "PUT", "/faults", {"latency_ms": 50})
    assert admin(receiver.admin_url, "GET", "/faults")[1]["latency_ms"] == 50
    assert admin(receiver.admin_url, "DELETE", "/faults") == (200, {"refusing_connections": False})
    sink.close()


@pytest.mark.parametrize(
    "fault",
    [{"status": 99}, {"down": "refuse"}, {"latency_ms": -1}, {"times": 0}, {"colour": "red"}, {"echo": "yes"}],
)
def test_a_bad_fault_is_refused_with_the_reason(receiver: WebhookReceiver, fault: dict) -> None:
    status, answer = admin(receiver.admin_url, "PUT", "/faults", fault)

    assert status == 400 and answer["error"]
    assert admin(receiver.admin_url, "GET", "/faults")[1] == {"refusing_connections": False}


def test_deliveries_are_counted_per_event_and_bad_signatures_kept_apart(receiver: WebhookReceiver) -> None:
    body = webhook_body(event("evt-r1"))
    now = str(int(time.time()))
    good = {"X-Flow-Receipts-Event-Id": "evt-r1", "X-Flow-Receipts-Timestamp": now}
    signed = {**good, "X-Flow-Receipts-Signature": f"v1={sign(WEBHOOK_SECRET, now, body)}"}
    stale = str(int(time.time()) - 600)

    assert post(receiver.url, body, signed) == 200
    assert post(receiver.url, body, signed) == 200
    assert post(receiver.url, body + b" ", signed) == 401  # tampered
    assert post(receiver.url, body, {**good, "X-Flow-Receipts-Signature": "v1=" + "0" * 64}) == 401
    assert post(receiver.url, body, {**signed, "X-Flow-Receipts-Timestamp": stale}) == 401

    status, listed = admin(receiver.admin_url, "GET", "/deliveries")
    assert status == 200
    assert listed["accepted"] == {"evt-r1": 2} and listed["received"] == {"evt-r1": 5}
    assert listed["bad_signatures"] == 3
    assert [d["signature_valid"] for d in listed["deliveries"]] == [True, True, False, False, False]
    assert receiver.stats()["duplicates"] == 1
    assert admin(receiver.admin_url, "DELETE", "/deliveries")[1]["requests"] == 0


def test_the_receiver_runs_from_the_command_line() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "local.webhook"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "WEBHOOK_SECRET": WEBHOOK_SECRET},
    )
    try:
        announced = json.loads(process.stdout.readline())
        sink = WebhookSink(announced["url"], WEBHOOK_SECRET, 2.0)

        assert sink.send(event("evt-cli"), 2.0).verdict is Verdict.DELIVERED
        assert admin(announced["admin_url"], "GET", "/stats")[1]["accepted_events"] == 1
        sink.close()
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == 0


def test_the_command_line_needs_the_secret_in_the_environment() -> None:
    environ = {name: value for name, value in os.environ.items() if name != "WEBHOOK_SECRET"}

    done = subprocess.run(
        [sys.executable, "-m", "local.webhook"], cwd=REPO, env=environ, capture_output=True, text=True, timeout=30
    )

    assert done.returncode == 2 and done.stderr.startswith("WEBHOOK_SECRET: required")

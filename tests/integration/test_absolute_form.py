"""Absolute-form request targets (``GET http://host:port/queues/x?waitseconds=1 HTTP/1.1``, RFC 9112 §3.2.2: what a
client sends through an HTTP proxy, and what a server must accept) reach every emulator as origin-form ones do:
routed by path, and verified over path+query, as the real services sign them. Each request is sent raw with
http.client and signed with the client side's own code (mns_support, fc2.auth, the Tea SDK, the webhook contract)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import fc2.auth
import pytest
from acs3_support import send, signed_headers
from emulator_credentials import OWNER_ID, OWNER_SECRET
from mns.account import Account
from mns.queue import Message, QueueMeta
from mns_support import mns_signature
from test_alicom_support import AK, SK, base_params, running_emulators, signed_params

from local.fc import FcEmulator, FunctionSpec
from local.mns import MnsEmulator
from local.webhook import WebhookReceiver

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fc"
FC_AK, FC_SK = "absolute-fc-ak", "absolute-fc-secret-6e2b"
WEBHOOK_SECRET = "whsec-absolute-form-71c3"


@pytest.fixture(params=[True, False], ids=["absolute-form", "origin-form"])
def absolute_form(request) -> bool:
    return request.param


# ---- MNS -----------------------------------------------------------------------------------------------------


def mns_request(mns: MnsEmulator, method: str, target: str, body: bytes = b"", *, absolute_form: bool, signed_over=""):
    headers = {"x-mns-version": "2015-06-06", "date": formatdate(usegmt=True)}
    signature = mns_signature(OWNER_SECRET, method, headers, signed_over or target)
    headers["Authorization"] = f"MNS {OWNER_ID}:{signature}"
    return send(mns.endpoint, method, target, headers, body, absolute_form=absolute_form)


def test_mns_routes_and_verifies_an_absolute_form_receive(mns_emulator: MnsEmulator, absolute_form: bool) -> None:
    queue = Account(mns_emulator.endpoint, OWNER_ID, OWNER_SECRET).get_queue("absolute-form-queue")
    queue.create(QueueMeta())
    queue.send_message(Message("hello"))

    answer = mns_request(
        mns_emulator, "GET", "/queues/absolute-form-queue/messages?numOfMessages=16&waitseconds=1",
        absolute_form=absolute_form,
    )  # fmt: skip

    assert answer.status == 200, answer.body
    assert b"<MessageBody>aGVsbG8=</MessageBody>" in answer.body
    assert mns_emulator.stats()["operations"]["BatchReceiveMessage"]["responses"] == {"200": 1}


def test_mns_signs_path_and_query_not_the_absolute_url(mns_emulator: MnsEmulator) -> None:
    target = "/queues/absolute-form-queue"
    answer = mns_request(mns_emulator, "GET", target, absolute_form=True, signed_over=mns_emulator.endpoint + target)

    assert answer.status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in answer.body


def test_mns_admin_answers_absolute_form(mns_emulator: MnsEmulator) -> None:
    answer = send(mns_emulator.endpoint, "GET", "/_admin/stats", {}, absolute_form=True)

    assert answer.status == 200 and "operations" in answer.json


# ---- Alicom (POP RPC and V3) ---------------------------------------------------------------------------------


def test_alicom_rpc_request_in_absolute_form(absolute_form: bool) -> None:
    with running_emulators() as (_, alicom):
        params = signed_params(base_params("QueryTokenForMnsQueue", "2017-05-25", MessageType="FlowReport"))
        target = "/?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)

        answer = send(alicom.endpoint, "GET", target, {}, absolute_form=absolute_form)

    assert answer.status == 200, answer.body
    assert answer.json["Code"] == "OK"
    assert answer.json["MessageTokenDTO"]["SecurityToken"]


def test_alicom_v3_request_in_absolute_form(absolute_form: bool) -> None:
    with running_emulators() as (_, alicom):
        query = {"MessageType": "FlowReport"}
        headers = {"host": alicom.domain, "x-acs-action": "QueryTokenForMnsQueue", "x-acs-version": "2017-05-25"}
        headers = signed_headers("POST", "/", query, headers, b"", AK, SK)
        target = "/?" + urllib.parse.urlencode(query)

        answer = send(alicom.endpoint, "POST", target, headers, absolute_form=absolute_form)

    assert answer.status == 200, answer.body
    assert answer.json["Code"] == "OK"


# ---- FC (2016-08-15 and 2023-03-30) --------------------------------------------------------------------------


@pytest.fixture
def fc() -> Iterator[FcEmulator]:
    with FcEmulator([FunctionSpec("svc", "echo", "handlers.echo", FIXTURES)], credentials={FC_AK: FC_SK}) as emulator:
        yield emulator


def test_fc2_invocation_in_absolute_form(fc: FcEmulator, absolute_form: bool) -> None:
    path = "/2016-08-15/services/svc/functions/echo/invocations"
    headers = {"date": formatdate(usegmt=True), "content-type": "application/octet-stream"}
    headers["authorization"] = fc2.auth.Auth(FC_AK, FC_SK).sign_request("POST", path, headers)

    answer = send(fc.endpoint, "POST", path, headers, b"absolute", absolute_form=absolute_form)

    assert (answer.status, answer.body) == (200, b"absolute")


def test_fc3_invocation_in_absolute_form(fc: FcEmulator, absolute_form: bool) -> None:
    path = "/2023-03-30/functions/svc%24echo/invocations"
    query = {"qualifier": "LATEST"}
    headers = {
        "host": fc.endpoint.removeprefix("http://"),
        "x-acs-action": "InvokeFunction",
        "x-acs-version": "2023-03-30",
        "content-type": "application/octet-stream",
    }
    headers = signed_headers("POST", path, query, headers, b"absolute", FC_AK, FC_SK)

    answer = send(fc.endpoint, "POST", f"{path}?qualifier=LATEST", headers, b"absolute", absolute_form=absolute_form)

    assert (answer.status, answer.body) == (200, b"absolute")


def test_fc_admin_answers_absolute_form(fc: FcEmulator) -> None:
    answer = send(fc.endpoint, "GET", "/_admin/stats", {}, absolute_form=True)

    assert answer.status == 200 and "functions" in answer.json


# ---- the webhook receiver ------------------------------------------------------------------------------------


def test_webhook_delivery_in_absolute_form(absolute_form: bool) -> None:
    body = json.dumps({"event_id": "evt-absolute"}).encode()
    timestamp = str(int(time.time()))
    mac = hmac.new(WEBHOOK_SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Flow-Receipts-Timestamp": timestamp,
        "X-Flow-Receipts-Signature": f"v1={mac}",
        "X-Flow-Receipts-Event-Id": "evt-absolute",
    }
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        path = urllib.parse.urlsplit(receiver.url).path
        answer = send(receiver.endpoint, "POST", path, headers, body, absolute_form=absolute_form)
        admin = send(receiver.endpoint, "GET", "/_admin/stats", {}, absolute_form=absolute_form)
        (delivery,) = receiver.deliveries()

    assert (answer.status, answer.json) == (200, {"received": "evt-absolute"})
    assert delivery.path == path and delivery.signature_valid
    assert admin.status == 200 and admin.json["accepted_events"] == 1

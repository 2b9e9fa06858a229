"""The Alicom emulator's V3 (ACS3-HMAC-SHA256) authentication, as the POP gateway gives it next to the RPC one: what
the V2.0 SDK alibabacloud_dybaseapi20170525 sends by default is accepted, and a hand-built V3 request (signed with
the Tea SDK's own signing function, tests/acs3_support.py) is refused when its signature is wrong, its x-acs-date is
stale, its nonce replayed, or its body or parameters are not the ones signed. Error codes: local/alicom/errors.py."""

from __future__ import annotations

import hashlib
import re
import urllib.parse
import uuid
from collections.abc import Iterator

import pytest
from acs3_support import Answer, acs_date, send, sha256_hex, signed_headers
from test_alicom_support import (
    AK,
    BASEAPI,
    CDP_2017,
    CDP_2018,
    SK,
    dybaseapi_models,
    running_emulators,
    tea_call,
    tea_dybaseapi,
)

from local.alicom import AlicomEmulator

FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def alicom() -> Iterator[AlicomEmulator]:
    with running_emulators() as (_, emulator):
        yield emulator


def v3_request(
    alicom: AlicomEmulator,
    query: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    *,
    action: str = "QueryTokenForMnsQueue",
    version: str = BASEAPI,
    key: tuple[str, str] = (AK, SK),
    sent_query: dict[str, str] | None = None,
    sent_body: bytes | None = None,
    extra_headers: dict[str, str] | None = None,
    **signing: str,
) -> Answer:
    """A V3-signed POST / (RPC style) with ``query`` and a ``form`` body; ``sent_query`` / ``sent_body`` replace what
    goes on the wire after signing, ``extra_headers`` are added unsigned, ``signing`` goes to signed_headers."""
    query = {"MessageType": "FlowReport"} if query is None else query
    body = urllib.parse.urlencode(form).encode() if form else b""
    headers = {"host": alicom.domain, "x-acs-action": action, "x-acs-version": version}
    if form:
        headers["content-type"] = FORM
    headers = signed_headers("POST", "/", query, headers, body, *key, **signing)
    headers.update(extra_headers or {})
    target = "/?" + urllib.parse.urlencode(sent_query if sent_query is not None else query)
    return send(alicom.endpoint, "POST", target, headers, body if sent_body is None else sent_body)


def code_of(answer: Answer) -> tuple[int, str]:
    return answer.status, answer.json["Code"]


# ---- accepted ------------------------------------------------------------------------------------------------


def test_a_v3_request_is_accepted(alicom) -> None:
    answer = v3_request(alicom)

    assert code_of(answer) == (200, "OK")
    assert answer.json["MessageTokenDTO"]["SecurityToken"]
    assert answer.headers["x-acs-request-id"] == answer.json["RequestId"]


def test_v3_parameters_may_come_in_a_form_body(alicom) -> None:
    answer = v3_request(alicom, {}, {"MessageType": "FlowReport", "QueueName": alicom.queue_name()})

    assert code_of(answer) == (200, "OK")


def test_the_v2_sdk_signs_v3_by_default_and_rpc_when_asked(alicom) -> None:
    request = dybaseapi_models.QueryTokenForMnsQueueRequest(message_type="FlowReport")
    for client in (tea_dybaseapi(alicom), tea_dybaseapi(alicom, signature_algorithm="v2")):
        assert client.query_token_for_mns_queue(request).body.code == "OK"
    # the Dycdpapi 2018-06-10 V2.0 SDK still signs RPC (HMAC-SHA1): both kinds reach the same endpoint
    assert tea_call(alicom, CDP_2018, "QueryCdpOrder", OutOrderId="none")["Code"] == "isv.RECORD_NOT_FOUND"


# ---- refused -------------------------------------------------------------------------------------------------


def test_a_wrong_secret_does_not_match_and_shows_the_server_string_to_sign(alicom) -> None:
    answer = v3_request(alicom, key=(AK, "not-the-secret"))

    assert code_of(answer) == (400, "SignatureDoesNotMatch")
    message = answer.json["Message"]
    assert re.fullmatch(
        r"Specified signature is not matched with our calculation\. server string to sign is:"
        r"ACS3-HMAC-SHA256\n[0-9a-f]{64}",
        message,
    )


def test_an_unknown_key_is_404(alicom) -> None:
    assert code_of(v3_request(alicom, key=("nobody", SK))) == (404, "InvalidAccessKeyId.NotFound")


@pytest.mark.parametrize(("offset", "accepted"), [(-16 * 60, False), (16 * 60, False), (-14 * 60, True)])
def test_x_acs_date_must_be_within_fifteen_minutes(alicom, offset: float, accepted: bool) -> None:
    answer = v3_request(alicom, date=acs_date(offset))

    assert code_of(answer) == ((200, "OK") if accepted else (400, "InvalidTimeStamp.Expired"))


@pytest.mark.parametrize("date", ["2024-01-01 00:00:00", "Mon, 01 Jan 2024 00:00:00 GMT", "2024-13-45T99:00:00Z"])
def test_a_malformed_x_acs_date_is_a_format_error(alicom, date: str) -> None:
    assert code_of(v3_request(alicom, date=date)) == (400, "InvalidTimeStamp.Format")


def test_a_replayed_nonce_is_refused(alicom) -> None:
    nonce = uuid.uuid4().hex

    first = v3_request(alicom, nonce=nonce)
    again = v3_request(alicom, nonce=nonce)

    assert code_of(first) == (200, "OK")
    assert code_of(again) == (400, "SignatureNonceUsed")


def test_an_unsigned_request_does_not_burn_its_nonce(alicom) -> None:
    nonce = uuid.uuid4().hex

    assert code_of(v3_request(alicom, key=(AK, "wrong"), nonce=nonce)) == (400, "SignatureDoesNotMatch")
    assert code_of(v3_request(alicom, nonce=nonce)) == (200, "OK")


def test_a_body_other_than_the_signed_one_is_refused(alicom) -> None:
    form = {"MessageType": "FlowReport"}
    tampered = urllib.parse.urlencode({"MessageType": "SmsReport"}).encode()

    answer = v3_request(alicom, {}, form, sent_body=tampered)

    assert code_of(answer) == (400, "SignatureDoesNotMatch")
    assert "x-acs-content-sha256 header is not the SHA-256 of the request body" in answer.json["Message"]


def test_a_content_hash_that_is_not_the_bodys_is_refused_even_if_signed(alicom) -> None:
    form = {"MessageType": "FlowReport"}

    answer = v3_request(alicom, {}, form, content_sha256=sha256_hex(b"another body"))

    assert code_of(answer) == (400, "SignatureDoesNotMatch")
    assert "x-acs-content-sha256" in answer.json["Message"]


def test_a_query_parameter_changed_after_signing_is_refused(alicom) -> None:
    answer = v3_request(alicom, sent_query={"MessageType": "FlowReport", "QueueName": "Alicom-Queue-9-FlowReport"})

    assert code_of(answer) == (400, "SignatureDoesNotMatch")


@pytest.mark.parametrize("header", ["x-acs-signature-nonce", "host"])
def test_a_signed_header_changed_after_signing_is_refused(alicom, header: str) -> None:
    changed = uuid.uuid4().hex if header != "host" else alicom.domain.replace("127.0.0.1", "localhost")

    answer = v3_request(alicom, extra_headers={header: changed})

    assert code_of(answer) == (400, "SignatureDoesNotMatch")


def test_an_unsigned_x_acs_header_is_an_incomplete_signature(alicom) -> None:
    answer = v3_request(alicom, extra_headers={"x-acs-extra": "not signed"})

    assert code_of(answer) == (400, "IncompleteSignature")
    assert "x-acs-extra" in answer.json["Message"]


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("ACS3-HMAC-SHA256 Credential=local-ak,SignedHeaders=host", "IncompleteSignature"),
        ("ACS3-HMAC-SHA256", "IncompleteSignature"),
        (
            "ACS3-HMAC-SM3 Credential=local-ak,SignedHeaders=host;x-acs-action,Signature=" + "0" * 64,
            "InvalidSignatureMethod",
        ),
    ],
)
def test_a_malformed_authorization_is_refused(alicom, authorization: str, code: str) -> None:
    assert code_of(v3_request(alicom, extra_headers={"Authorization": authorization})) == (400, code)


def test_a_missing_nonce_or_date_is_an_incomplete_signature(alicom) -> None:
    headers = {"host": alicom.domain, "x-acs-action": "QueryTokenForMnsQueue", "x-acs-version": BASEAPI}
    headers = signed_headers("POST", "/", {"MessageType": "FlowReport"}, headers, b"", AK, SK)
    for missing in ("x-acs-signature-nonce", "x-acs-date", "x-acs-content-sha256"):
        sent = {name: value for name, value in headers.items() if name != missing}
        answer = send(alicom.endpoint, "POST", "/?MessageType=FlowReport", sent)
        assert code_of(answer) == (400, "IncompleteSignature"), missing


def test_a_v3_request_without_its_action_header_is_missing_action(alicom) -> None:
    headers = signed_headers("POST", "/", {}, {"host": alicom.domain, "x-acs-version": BASEAPI}, b"", AK, SK)

    assert code_of(send(alicom.endpoint, "POST", "/", headers)) == (400, "MissingAction")


def test_an_unknown_action_or_version_in_the_headers(alicom) -> None:
    assert code_of(v3_request(alicom, action="Charge", version=CDP_2018)) == (404, "InvalidAction.NotFound")
    assert code_of(v3_request(alicom, version="2099-01-01")) == (400, "InvalidVersion")
    # V3 reaches the actions that have no V2.0 SDK too (Dycdpapi 2017-05-25)
    answer = v3_request(alicom, {"OutId": "v3-none"}, action="QueryChargeDetail", version=CDP_2017)
    assert code_of(answer) == (200, "isv.RECORD_NOT_FOUND")


def test_a_body_hash_is_of_the_exact_bytes(alicom) -> None:
    """x-acs-content-sha256 is over the body as sent: re-encoding the same form differently is another body."""
    body = b"MessageType=FlowReport&QueueName="
    headers = {"host": alicom.domain, "x-acs-action": "QueryTokenForMnsQueue", "x-acs-version": BASEAPI}
    headers = signed_headers("POST", "/", {}, {**headers, "content-type": FORM}, body, AK, SK)
    assert headers["x-acs-content-sha256"] == hashlib.sha256(body).hexdigest()

    assert code_of(send(alicom.endpoint, "POST", "/", headers, body)) == (200, "OK")
    headers = signed_headers("POST", "/", {}, {**headers, "content-type": FORM}, body, AK, SK)
    assert code_of(send(alicom.endpoint, "POST", "/", headers, body + b"&x=1"))[1] == "SignatureDoesNotMatch"

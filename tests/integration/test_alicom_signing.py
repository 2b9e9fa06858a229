"""The emulator's POP RPC signing (local.alicom.signing, written from the algorithm) against the published
example and against the strings and signatures the core SDK produces."""

from __future__ import annotations

import urllib.parse

import pytest
from aliyunsdkcore.auth.composer import rpc_signature_composer

from local.alicom.signing import canonical_query, percent_encode, signature, string_to_sign

DOCS_EXAMPLE = {
    "AccessKeyId": "testid",
    "Action": "DescribeRegions",
    "Format": "XML",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "SignatureVersion": "1.0",
    "Timestamp": "2016-02-23T12:46:24Z",
    "Version": "2014-05-26",
}


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("a b", "a%20b"),
        ("*", "%2A"),
        ("~-_.", "~-_."),
        ("/", "%2F"),
        ("+", "%2B"),
        ("é", "%C3%A9"),
        ("2016-02-23T12:46:24Z", "2016-02-23T12%3A46%3A24Z"),
    ],
)
def test_percent_encoding_leaves_only_unreserved_characters(text: str, encoded: str) -> None:
    assert percent_encode(text) == encoded


def test_published_example_string_to_sign_and_signature() -> None:
    to_sign = string_to_sign("GET", DOCS_EXAMPLE)

    assert to_sign == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1"
        "%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
        "%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
    )
    assert signature("testsecret", to_sign) == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_signature_parameter_is_not_signed() -> None:
    assert canonical_query({**DOCS_EXAMPLE, "Signature": "x"}) == canonical_query(DOCS_EXAMPLE)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    ("query", "body"),
    [
        ({"MessageType": "FlowReport"}, {}),
        ({"QueueName": "Alicom-Queue-1-FlowReport"}, {"MessageType": "FlowReport"}),
        ({"Reason": "spaces and * and ~ and / and + and é 中文"}, {"OutId": "a=b&c"}),
        ({}, {"PhoneNumber": "13800138000", "Grade": "100M", "Empty": ""}),
    ],
)
def test_verification_agrees_with_the_sdk(method: str, query: dict[str, str], body: dict[str, str]) -> None:
    params = {"Action": "Charge", "Version": "2017-05-25", **query}
    url, sdk_string_to_sign = rpc_signature_composer.get_signed_url(
        dict(params), "ak", "vector-sk", "JSON", method, body
    )
    received = dict(urllib.parse.parse_qsl(url.partition("?")[2], keep_blank_values=True))
    received.update(body)

    assert string_to_sign(method, received) == sdk_string_to_sign
    assert signature("vector-sk", sdk_string_to_sign) == received["Signature"]

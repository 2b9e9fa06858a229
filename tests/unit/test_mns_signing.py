"""The emulator's server-side signing helpers reproduce every vector of mns-wire.md §3.2.

`local.mns.signing` is written independently of the SDK, so these vectors (recomputed with HMAC-SHA1 and
identical to the Authorization headers the SDK 1.3.0 sent) are what ties the two together.
"""

from __future__ import annotations

import pytest

from local.mns.signing import signature, string_to_sign

SDK_DATE = "Wed, 25 Nov 2026 16:41:41 GMT"
VERSION = {"x-mns-version": "2015-06-06"}


def test_docs_example_get_my_queue() -> None:
    """Docs example (§3.2): GET /MyQueue with TestAccessSecret."""
    headers = {"Date": "Thu, 09 Jul 2015 03:01:34 GMT", "x-mns-version": "2015-06-06"}

    sts = string_to_sign("GET", headers, "/MyQueue")

    assert sts == "GET\n\n\nThu, 09 Jul 2015 03:01:34 GMT\nx-mns-version:2015-06-06\n/MyQueue"
    assert signature("TestAccessSecret", sts) == "uwx3yeWoILzgmvesW0BQSgfM7b8="


# (case id, method, headers as the SDK sends them, raw request target, expected StringToSign, signature)
SDK_VECTORS = [
    (
        "SendMessage",
        "POST",
        {
            "content-md5": "Y2UzYjI4NjkyMDlmMzk0YTBkZTQxNWExMTdlNTA1Yjc=",
            "content-type": "text/xml;charset=UTF-8",
            "date": SDK_DATE,
            **VERSION,
        },
        "/queues/test-queue/messages",
        "POST\nY2UzYjI4NjkyMDlmMzk0YTBkZTQxNWExMTdlNTA1Yjc=\ntext/xml;charset=UTF-8\n"
        f"{SDK_DATE}\nx-mns-version:2015-06-06\n/queues/test-queue/messages",
        "oWsfWGE4uuukZ3CWy8y50jbRZ7g=",
    ),
    (
        "DeleteMessage",
        "DELETE",
        {"date": SDK_DATE, **VERSION},
        "/queues/test-queue/messages?ReceiptHandle=8-ODU4OTkzNDU5My0xNDM1MTk3NjAwLTItNg==",
        f"DELETE\n\n\n{SDK_DATE}\nx-mns-version:2015-06-06\n"
        "/queues/test-queue/messages?ReceiptHandle=8-ODU4OTkzNDU5My0xNDM1MTk3NjAwLTItNg==",
        "dRhCWYqOhttK/XxdjJU3AOtBEPI=",
    ),
    (
        "BatchReceiveMessage",
        "GET",
        {"date": SDK_DATE, **VERSION},
        "/queues/test-queue/messages?numOfMessages=16&waitseconds=5",
        f"GET\n\n\n{SDK_DATE}\nx-mns-version:2015-06-06\n/queues/test-queue/messages?numOfMessages=16&waitseconds=5",
        "ayf3fJTx59Ac/at0ANR9uX6Lxeo=",
    ),
    (
        "BatchDeleteMessage",
        "DELETE",
        {
            "content-md5": "YjJmZjg0MDZhOTQ2NGFjODhkYjg2Yzg2NjI2ZTQzOWM=",
            "content-type": "text/xml;charset=UTF-8",
            "date": SDK_DATE,
            **VERSION,
        },
        "/queues/test-queue/messages",
        "DELETE\nYjJmZjg0MDZhOTQ2NGFjODhkYjg2Yzg2NjI2ZTQzOWM=\ntext/xml;charset=UTF-8\n"
        f"{SDK_DATE}\nx-mns-version:2015-06-06\n/queues/test-queue/messages",
        "SwQad18p3pAPUiXXSqdO9XB+m5U=",
    ),
]


# every test decorated with this runs once per SDK_VECTORS case
each_sdk_vector = pytest.mark.parametrize(
    ("method", "headers", "resource", "expected_sts", "expected_signature"),
    [case[1:] for case in SDK_VECTORS],
    ids=[case[0] for case in SDK_VECTORS],
)


@each_sdk_vector
def test_sdk_vectors_with_secret_key(method, headers, resource, expected_sts, expected_signature) -> None:
    """The four SDK-captured vectors of §3.2 (secret "key")."""
    sts = string_to_sign(method, headers, resource)

    assert sts == expected_sts
    assert signature("key", sts) == expected_signature


@each_sdk_vector
def test_sdk_vectors_with_extra_unsigned_headers(method, headers, resource, expected_sts, expected_signature) -> None:
    """Headers the SDK also sends (§2.3) but that are not signed do not change the result (§3.1)."""
    noisy = {
        "Accept-Encoding": "identity",
        "Content-Length": "0",
        "Connection": "Keep-Alive",
        "host": "127.0.0.1:18765",
        "user-agent": "aliyun-sdk-python/1.3.0(Linux/6.1/x86_64;3.11.7)",
        "Authorization": "MNS id:whatever",
        **headers,
    }

    sts = string_to_sign(method, noisy, resource)

    assert sts == expected_sts
    assert signature("key", sts) == expected_signature


def test_header_names_are_case_insensitive_for_md5_type_and_date() -> None:
    """Names arrive in any case (§2.2: the SDK sends lowercase, other clients capitalise)."""
    lower = string_to_sign(*SDK_VECTORS[0][1:4])
    capitalised = string_to_sign(
        "POST",
        {
            "Content-MD5": "Y2UzYjI4NjkyMDlmMzk0YTBkZTQxNWExMTdlNTA1Yjc=",
            "Content-Type": "text/xml;charset=UTF-8",
            "Date": SDK_DATE,
            "X-MNS-Version": "2015-06-06",
        },
        "/queues/test-queue/messages",
    )

    assert capitalised == lower
    assert signature("key", capitalised) == "oWsfWGE4uuukZ3CWy8y50jbRZ7g="


def test_x_mns_headers_are_lower_cased_and_sorted() -> None:
    headers = {
        "date": SDK_DATE,
        "X-MNS-Version": "2015-06-06",
        "x-mns-user-request-id": "req-1",
        "X-Mns-Prefix": "Alicom",
        "X-Mns-Ret-Number": "10",
    }

    sts = string_to_sign("GET", headers, "/queues")

    assert sts == (
        f"GET\n\n\n{SDK_DATE}\n"
        "x-mns-prefix:Alicom\n"
        "x-mns-ret-number:10\n"
        "x-mns-user-request-id:req-1\n"
        "x-mns-version:2015-06-06\n"
        "/queues"
    )


def test_user_request_id_is_signed() -> None:
    """§8: RequestInfo(request_id=...) adds x-mns-user-request-id, which is part of the signature."""
    plain = string_to_sign("GET", {"date": SDK_DATE, **VERSION}, "/queues/test-queue")
    with_id = string_to_sign("GET", {"date": SDK_DATE, **VERSION, "x-mns-user-request-id": "x"}, "/queues/test-queue")

    assert with_id != plain
    assert "x-mns-user-request-id:x\nx-mns-version:2015-06-06\n" in with_id
    assert signature("key", with_id) != signature("key", plain)


def test_security_token_is_not_signed() -> None:
    """§2.3/§3.4: the STS header `security-token` is added after signing and is not part of it."""
    base = {"date": SDK_DATE, **VERSION}
    without = string_to_sign("GET", base, "/queues/test-queue/messages?numOfMessages=16&waitseconds=5")
    with_token = string_to_sign(
        "GET",
        {**base, "security-token": "TOKEN123"},
        "/queues/test-queue/messages?numOfMessages=16&waitseconds=5",
    )

    assert with_token == without
    assert "TOKEN123" not in with_token
    assert signature("key", with_token) == "ayf3fJTx59Ac/at0ANR9uX6Lxeo="


def test_resource_is_the_raw_request_target() -> None:
    """§3.1: the resource is taken verbatim: not decoded, not re-sorted, '+' and '==' kept."""
    target = "/queues/q/messages?waitseconds=5&numOfMessages=16&ReceiptHandle=1-a+b/c%2B=="

    sts = string_to_sign("GET", {"date": SDK_DATE, **VERSION}, target)

    assert sts.endswith("\n" + target)


def test_signature_depends_on_the_secret() -> None:
    sts = string_to_sign(*SDK_VECTORS[2][1:4])

    assert signature("key", sts) == "ayf3fJTx59Ac/at0ANR9uX6Lxeo="
    assert signature("other-key", sts) != "ayf3fJTx59Ac/at0ANR9uX6Lxeo="

"""The emulators' V3 verifier (local/acs3.py, written from Alibaba's "V3 request structure and signature") against
the worked example of that documentation and against the signatures the Tea SDK computes for varied requests."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from alibabacloud_tea_openapi.utils import Utils

from local import acs3
from local.acs3 import Acs3Problem, Acs3Request, NonceBook, canonical_uri, percent_encode

# The documentation's "verify your signature implementation" example: POST / (RPC style), empty body.
DOCS_HEADERS = [
    ("host", "ecs.cn-shanghai.aliyuncs.com"),
    ("x-acs-action", "RunInstances"),
    ("x-acs-version", "2014-05-26"),
    ("x-acs-date", "2023-10-26T10:22:32Z"),
    ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
    ("x-acs-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
]
DOCS_QUERY = "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai"
DOCS_SIGNED = "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
DOCS_HASH = "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
DOCS_SIGNATURE = "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"


def docs_request(signature: str = DOCS_SIGNATURE, **changes: str) -> Acs3Request:
    headers = [(name, changes.get(name, value)) for name, value in DOCS_HEADERS]
    authorization = f"ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders={DOCS_SIGNED},Signature={signature}"
    return Acs3Request("POST", "/", DOCS_QUERY, [*headers, ("Authorization", authorization)], b"")


def test_the_documented_example_verifies() -> None:
    request = docs_request()

    assert request.string_to_sign() == f"ACS3-HMAC-SHA256\n{DOCS_HASH}"
    assert acs3.signature("YourAccessKeySecret", request.string_to_sign()) == DOCS_SIGNATURE
    request.check_signature("YourAccessKeySecret")
    with pytest.raises(Acs3Problem) as info:
        request.check_signature("AnotherSecret")
    assert info.value.kind == Acs3Problem.SIGNATURE and info.value.detail == request.string_to_sign()


def test_the_documented_canonical_request_layout() -> None:
    lines = docs_request().canonical_request().split("\n")

    assert lines[:3] == ["POST", "/", DOCS_QUERY]
    assert lines[3:9] == [f"{name}:{value}" for name, value in sorted(DOCS_HEADERS)]
    assert lines[9:] == ["", DOCS_SIGNED, acs3.sha256_hex(b"")]


@pytest.mark.parametrize(
    ("text", "encoded"),
    [("a b", "a%20b"), ("*", "%2A"), ("~-_.", "~-_."), ("/", "%2F"), ("+", "%2B"), ("$", "%24"), ("é", "%C3%A9")],
)
def test_percent_encoding_follows_rfc_3986(text: str, encoded: str) -> None:
    assert percent_encode(text) == encoded


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", "/"),
        ("/", "/"),
        ("/2023-03-30/functions/svc%24fn/invocations", "/2023-03-30/functions/svc%24fn/invocations"),
        ("/2023-03-30/functions/svc$fn/invocations", "/2023-03-30/functions/svc%24fn/invocations"),
        ("/a%20b/c~d", "/a%20b/c~d"),
    ],
)
def test_the_canonical_uri_encodes_each_segment_once(raw: str, canonical: str) -> None:
    assert canonical_uri(raw) == canonical


def sdk_signed(method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes, secret: str):
    """Headers and Authorization as the Tea SDK signs them (its own function), and the raw query as sent."""
    headers = {**headers, "x-acs-content-sha256": acs3.sha256_hex(body)}
    request = SimpleNamespace(method=method, pathname=path, query=query, headers=headers)
    authorization = Utils.get_authorization(request, acs3.ALGORITHM, headers["x-acs-content-sha256"], "ak", secret)
    raw_query = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in query.items())
    return [*headers.items(), ("Authorization", authorization)], raw_query


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    ("path", "query", "extra", "body"),
    [
        ("/", {"MessageType": "FlowReport"}, {}, b""),
        ("/", {"B": "2", "A": "1", "Empty": ""}, {"content-type": "application/x-www-form-urlencoded"}, b"OutId=x"),
        ("/", {"Reason": "spaces and * and ~ and / and + and é 中文"}, {"x-acs-security-token": "tok"}, b""),
        (
            "/2023-03-30/functions/svc%24fn/invocations",
            {"qualifier": "LATEST"},
            {"x-fc-invocation-type": "Async", "user-agent": "AlibabaCloud (x)  Python/3"},
            b'{"a": 1}',
        ),
    ],
)
def test_verification_agrees_with_the_tea_sdk(method, path, query, extra, body) -> None:
    headers = {
        "host": "127.0.0.1:9000",
        "x-acs-action": "Action",
        "x-acs-version": "2023-03-30",
        "x-acs-date": "2026-01-02T03:04:05Z",
        "x-acs-signature-nonce": "n-1",
        **extra,
    }
    sent, raw_query = sdk_signed(method, path, query, headers, body, "vector-sk")

    request = Acs3Request(method, path, raw_query, sent, body)
    request.check_signed_headers()
    request.check_content_hash()
    request.check_signature("vector-sk")


def test_problems_are_named() -> None:
    def problem(make) -> str:
        with pytest.raises(Acs3Problem) as info:
            make()
        return info.value.kind

    base = dict(DOCS_HEADERS)
    signed = f"Credential=k,SignedHeaders={DOCS_SIGNED},Signature=00"

    def request(headers: dict[str, str], authorization: str = f"ACS3-HMAC-SHA256 {signed}", body: bytes = b""):
        return Acs3Request("POST", "/", "", [*headers.items(), ("authorization", authorization)], body)

    assert problem(lambda: request(base, "ACS3-HMAC-SHA256 Credential=k")) == Acs3Problem.MALFORMED
    assert problem(lambda: request(base, f"ACS3-HMAC-SM3 {signed}")) == Acs3Problem.ALGORITHM
    assert problem(lambda: request({**base, "x-acs-other": "1"}).check_signed_headers()) == Acs3Problem.UNSIGNED_HEADER
    without_date = {k: v for k, v in base.items() if k != "x-acs-date"}
    assert problem(lambda: request(without_date).check_signed_headers()) == Acs3Problem.ABSENT_SIGNED_HEADER
    assert problem(lambda: request(without_date).require("x-acs-date")) == Acs3Problem.MISSING_HEADER
    assert problem(lambda: request({**base, "x-acs-date": "2023-10-26"}).date()) == Acs3Problem.BAD_DATE
    assert problem(lambda: request(base).check_date(900)) == Acs3Problem.STALE_DATE
    assert problem(lambda: request(base, body=b"x").check_content_hash()) == Acs3Problem.CONTENT_HASH
    request(base).check_date(None)  # no clock check
    fresh = time.strftime(acs3.DATE_FORMAT, time.gmtime())
    request({**base, "x-acs-date": fresh}).check_date(900)


def test_a_nonce_is_used_once_per_key_for_a_while() -> None:
    book = NonceBook(keep_seconds=0.2)

    assert book.use("ak", "n") and not book.use("ak", "n") and book.use("other-ak", "n")
    with pytest.raises(Acs3Problem):
        book.check("ak", "n")
    time.sleep(0.25)
    assert book.use("ak", "n")


def test_the_v3_family_is_recognised_by_its_scheme() -> None:
    assert acs3.is_v3("ACS3-HMAC-SHA256 Credential=a") and acs3.is_v3("acs3-hmac-sm3 x")
    assert not acs3.is_v3("FC ak:sig") and not acs3.is_v3("acs ak:sig") and not acs3.is_v3(None)

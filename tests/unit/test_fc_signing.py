"""The FC request signature verifier, checked against what the real fc2 client signs."""

from __future__ import annotations

import fc2.auth

from local.fc import signing

PATH = "/2016-08-15/services/svc/functions/fn/invocations"


def fc2_signature(headers: dict[str, str], path: str = PATH, queries: dict | None = None) -> str:
    """What fc2 2.5.2 puts after 'FC id:' for these headers."""
    return fc2.auth.Auth("ak", "vector-sk").sign_request("POST", path, headers, queries).split(":", 1)[1]


def test_string_to_sign_layout():
    headers = [
        ("Content-Type", "application/json"),
        ("Date", "Wed, 01 Jan 2025 00:00:00 GMT"),
        ("X-Fc-Invocation-Type", "Async"),
        ("x-fc-async-delay", "5"),
        ("User-Agent", "ignored"),
    ]
    assert signing.string_to_sign("post", headers, PATH) == (
        "POST\n\napplication/json\nWed, 01 Jan 2025 00:00:00 GMT\n"
        "x-fc-async-delay:5\nx-fc-invocation-type:Async\n" + PATH
    )


def test_signature_matches_the_fc2_client_for_an_async_call_with_a_token():
    headers = {
        "host": "127.0.0.1:9000",
        "date": "Wed, 01 Jan 2025 00:00:00 GMT",
        "content-type": "application/json",
        "x-fc-security-token": "token-1",
        "x-fc-invocation-type": "Async",
    }
    text = signing.string_to_sign("POST", headers.items(), PATH)
    assert signing.signature("vector-sk", text) == fc2_signature(headers)
    assert signing.matches("vector-sk", text, fc2_signature(headers))
    assert not signing.matches("other-secret", text, fc2_signature(headers))


def test_query_items_are_sorted_into_the_resource():
    headers = {"date": "d", "content-type": "application/json"}
    text = signing.string_to_sign("POST", headers.items(), "/p", ["b=2", "a=1"])
    assert text.endswith("/p\na=1\nb=2")
    assert signing.signature("vector-sk", text) == fc2_signature(headers, "/p", {"b": "2", "a": "1"})

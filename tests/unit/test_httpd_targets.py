"""local/httpd.py: request targets in absolute form become the origin form they designate, byte for byte (the
emulators route and verify signatures on it); tests/integration/test_absolute_form.py sends them to each emulator."""

from __future__ import annotations

import pytest

from local.httpd import origin_form


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("http://127.0.0.1:9100/queues/x?waitseconds=1", ("/queues/x?waitseconds=1", "127.0.0.1:9100")),
        ("https://h.example/a%2Fb?ReceiptHandle=ab+c==", ("/a%2Fb?ReceiptHandle=ab+c==", "h.example")),
        ("HTTP://h:1?x=1", ("/?x=1", "h:1")),
        ("http://h:1", ("/", "h:1")),
        ("http://h:1/p#fragment", ("/p", "h:1")),
        ("/queues/x?waitseconds=1", ("/queues/x?waitseconds=1", None)),
        ("/?url=http://elsewhere/", ("/?url=http://elsewhere/", None)),
        ("*", ("*", None)),
    ],
)
def test_origin_form(target: str, expected: tuple[str, str | None]) -> None:
    assert origin_form(target) == expected

"""Capped decoding of response bodies: the plain fast path and the coded layers."""

from __future__ import annotations

import gzip

import pytest

from connectors.decoding import BadEncoding, CappedBody, TooLarge, content_codings


@pytest.mark.parametrize(
    ("header", "codings"),
    [
        (None, []),
        ("", []),
        ("identity", []),
        ("gzip", ["gzip"]),
        (" GZip , identity,br ", ["gzip", "br"]),
        ("deflate,,", ["deflate"]),
    ],
)
def test_content_codings(header: str | None, codings: list[str]) -> None:
    assert content_codings(header) == codings


def test_plain_body_keeps_a_single_chunk_and_joins_several() -> None:
    one = CappedBody(None, 10)
    chunk = b"0123456789"
    one.feed(chunk)
    assert one.finish() is chunk  # not copied
    several = CappedBody("identity", 10)
    for part in (b"012", b"", b"3456", b"789"):
        several.feed(part)
    assert several.finish() == b"0123456789" and several.size == 10


def test_plain_body_over_the_cap_is_too_large() -> None:
    body = CappedBody(None, 10)
    body.feed(b"01234")
    with pytest.raises(TooLarge):
        body.feed(b"567890")


def test_identity_listed_with_a_coding_is_no_layer() -> None:
    data = b"<rss>" + b"item " * 1000 + b"</rss>"
    body = CappedBody("identity, gzip", len(data))
    wire = gzip.compress(data)
    body.feed(wire[:100])
    body.feed(wire[100:])
    assert body.finish() == data
    over = CappedBody("gzip", len(data) - 1)
    with pytest.raises(TooLarge):
        over.feed(wire)


def test_unknown_coding_and_truncation_are_bad_encoding() -> None:
    with pytest.raises(BadEncoding):
        CappedBody("gzip, zstd-ish", 100)
    body = CappedBody("gzip", 100)
    body.feed(gzip.compress(b"x" * 50)[:-8])
    with pytest.raises(BadEncoding):
        body.finish()

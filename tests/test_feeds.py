"""parse_feed_bytes on the fixture feeds: fields, dates, relative links, partial and non-feeds."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from connectors.feeds import parse_feed_bytes
from schemas.records import RawFetch
from tests.conftest import feed_fixture

FETCHED = datetime(2024, 6, 21, 8, 0, tzinfo=timezone.utc)
FEED_URL = "https://wire.example.org/feeds/main.xml"


def raw_for(origin: str = FEED_URL, content_type: str | None = "application/rss+xml") -> RawFetch:
    return RawFetch(
        raw_id="raw-1",
        source="wire",
        source_kind="feed",
        origin=origin,
        fetched_at=FETCHED,
        status="ok",
        http_status=200,
        content_type=content_type,
    )


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc)


def test_rss2_entries() -> None:
    result = parse_feed_bytes(raw_for(), feed_fixture("rss2.xml"))

    assert result.problems == []
    assert [e.title for e in result.entries] == [
        "Putin and Kim Jong Un sign defence treaty in Pyongyang",
        "Seoul condemns new missile launch",
        "Markets close higher in Tokyo",
    ]
    assert [e.url for e in result.entries] == [
        "https://wire.example.org/2024/06/19/treaty?utm_source=rss&utm_medium=feed",
        "https://wire.example.org/2024/06/20/missile",
        "https://wire.example.org/2024/06/20/markets",
    ]
    assert [e.guid for e in result.entries] == ["wire-1001", "wire-1002", "wire-1003"]
    # pubDate in +0900, converted to UTC.
    assert [e.published_at for e in result.entries] == [
        utc(2024, 6, 19, 0, 30),
        utc(2024, 6, 19, 22, 0),
        utc(2024, 6, 20, 7, 0),
    ]
    assert {e.published_at.tzinfo for e in result.entries if e.published_at} == {timezone.utc}
    assert result.entries[0].published == "Wed, 19 Jun 2024 09:30:00 +0900"
    assert [e.position for e in result.entries] == [0, 1, 2]
    first = result.entries[0]
    assert (first.publisher, first.language_hint) == ("Peninsula Wire", "en")
    assert (first.raw_id, first.source, first.source_kind, first.origin, first.fetched_at) == (
        "raw-1",
        "wire",
        "feed",
        FEED_URL,
        FETCHED,
    )
    assert first.html is not None and first.html.startswith("<p>Russian President Vladimir Putin")
    assert (
        result.entries[2].html == "Japanese shares ended the day higher as exporters gained on a weaker yen."
    )


def test_relative_link_resolves_against_the_feed_url() -> None:
    result = parse_feed_bytes(raw_for("https://mirror.example.com/feeds/wire.xml"), feed_fixture("rss2.xml"))
    markets = result.entries[2]
    assert markets.url == "https://mirror.example.com/2024/06/20/markets"
    assert result.entries[1].url == "https://wire.example.org/2024/06/20/missile"  # absolute: untouched


def test_atom_entries() -> None:
    result = parse_feed_bytes(
        raw_for("https://east.example.net/atom", "application/atom+xml"), feed_fixture("atom.xml")
    )

    assert result.problems == []
    first, second = result.entries
    assert first.title == "Путин прибыл в Пхеньян с визитом"
    assert second.title == "푸틴, 평양 도착…김정은 위원장과 정상회담"
    assert (first.url, second.url) == (
        "https://east.example.net/news/putin-pyongyang",
        "https://east.example.net/ko/putin-pyongyang",
    )
    assert (first.guid, second.guid) == ("urn:example:atom:1", "urn:example:atom:2")
    assert first.published_at == utc(2024, 6, 18, 23, 0)  # <published> wins over <updated>
    assert second.published_at == utc(2024, 6, 19, 1, 0)  # no <published>: <updated>
    assert second.published == "2024-06-19T01:00:00Z"
    assert {e.publisher for e in result.entries} == {"Восточный вестник"}
    assert {e.language_hint for e in result.entries} == {"ru"}
    assert first.html is not None and first.html.startswith("<p>Владимир Путин прибыл в Пхеньян")
    assert second.html is not None and second.html.startswith("블라디미르 푸틴")


def test_truncated_feed_keeps_complete_entries_and_reports_problems() -> None:
    result = parse_feed_bytes(raw_for(), feed_fixture("truncated.xml"))

    assert [(e.title, e.url, e.position) for e in result.entries] == [
        ("Complete item before the cut", "https://half.example.com/a", 0)
    ]
    assert result.entries[0].publisher == "Half a feed"
    reasons = {p.reason: p for p in result.problems}
    assert sorted(reasons) == ["malformed_feed_partial", "truncated_entry"]
    assert reasons["truncated_entry"].position == 1
    assert reasons["malformed_feed_partial"].detail.endswith("(1 entries kept)")
    assert not any(p.retryable for p in result.problems)


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/xml", None])
def test_html_page_is_not_a_feed_whatever_its_type(content_type: str | None) -> None:
    result = parse_feed_bytes(raw_for(content_type=content_type), feed_fixture("not_a_feed.html"))

    assert result.entries == []
    assert [(p.reason, p.error_kind) for p in result.problems] == [("not_a_feed", "permanent")]


@pytest.mark.parametrize("content_type", ["text/html", "text/plain", None])
def test_feed_served_with_a_wrong_content_type_parses_cleanly(content_type: str | None) -> None:
    result = parse_feed_bytes(raw_for(content_type=content_type), feed_fixture("rss2.xml"))
    assert len(result.entries) == 3
    assert result.entries[2].url == "https://wire.example.org/2024/06/20/markets"
    assert result.problems == []


def test_entry_without_title_or_content_is_an_empty_entry() -> None:
    body = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Sparse</title>
  <item><link>https://sparse.example.com/1</link><guid isPermaLink="false">s-1</guid></item>
  <item><title>Only a title</title><guid isPermaLink="false">s-2</guid></item>
  <item><description>Only a body</description><guid isPermaLink="false">s-3</guid></item>
</channel></rss>"""
    result = parse_feed_bytes(raw_for(), body)

    assert [(e.guid, e.position, e.title) for e in result.entries] == [
        ("s-2", 1, "Only a title"),
        ("s-3", 2, ""),
    ]
    assert result.entries[0].html is None
    assert result.entries[1].html == "Only a body"
    assert [(p.reason, p.position) for p in result.problems] == [("empty_entry", 0)]

"""Self-describing hostile fixtures: tests/fixtures/feeds/<case>.xml beside <case>.expect.json.

Each feed is parsed (fast path and feedparser) and cleaned; the expectation names the
exact cleaned titles, the problems recorded, and strings that must never come out.
"""

from __future__ import annotations

import json
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.feeds import parse_feed_bytes
from pipeline.steps.clean import clean_entry
from schemas.records import Article, RawFetch

FEEDS = Path(__file__).resolve().parent / "fixtures" / "feeds"
CASES = sorted(p.name.removesuffix(".expect.json") for p in FEEDS.glob("*.expect.json"))
FETCHED = datetime(2024, 6, 21, 8, 0, tzinfo=timezone.utc)
FEED_URL = "https://hostile.example.com/feeds/main.xml"


def raw_for(content_type: str | None) -> RawFetch:
    return RawFetch(
        raw_id="raw-h",
        source="hostile",
        source_kind="feed",
        origin=FEED_URL,
        fetched_at=FETCHED,
        status="ok",
        http_status=200,
        content_type=content_type,
    )


def load(case: str) -> tuple[bytes, dict[str, Any]]:
    return (FEEDS / f"{case}.xml").read_bytes(), json.loads((FEEDS / f"{case}.expect.json").read_text())


@pytest.mark.parametrize("mode", ["auto", "feedparser"])
@pytest.mark.parametrize("case", CASES)
def test_fixture_meets_its_expectation(case: str, mode: str) -> None:
    body, expect = load(case)
    result = parse_feed_bytes(raw_for(expect["content_type"]), body, mode=mode)
    articles = [a for a in map(clean_entry, result.entries) if isinstance(a, Article)]

    assert [a.title for a in articles] == expect["titles"]
    assert sorted(p.reason for p in result.problems) == sorted(expect["problems"])
    if "texts" in expect:
        assert [a.text for a in articles] == expect["texts"]
    if "urls" in expect:
        assert [a.url for a in articles] == expect["urls"]
    out = "\n".join(f"{a.title}\n{a.text}\n{a.url}" for a in articles)
    for needle in expect.get("must_not_contain", []):
        assert needle not in out
    for a in articles:
        for value in (a.title, a.text):
            value.encode("utf-8")  # no lone surrogates
            assert all(c in "\n" or c >= " " for c in value)


def test_both_parsers_agree_on_every_fixture() -> None:
    for case in CASES:
        body, expect = load(case)
        fast = parse_feed_bytes(raw_for(expect["content_type"]), body)
        slow = parse_feed_bytes(raw_for(expect["content_type"]), body, mode="feedparser")
        assert fast.entries == slow.entries, case


def test_links_dates_and_guids_are_flagged_where_they_occur() -> None:
    body, expect = load("links_dates_guids")
    result = parse_feed_bytes(raw_for(expect["content_type"]), body)
    by_position = {e.position: e for e in result.entries}

    assert by_position[0].url == "https://hostile.example.com/news/relative"
    assert [by_position[p].url for p in (1, 2, 3, 4)] == [None, None, None, None]
    assert {(p.reason, p.position) for p in result.problems if p.reason == "unsafe_link"} == {
        ("unsafe_link", 1),
        ("unsafe_link", 2),
        ("unsafe_link", 3),
        ("unsafe_link", 4),
    }
    assert [(p.reason, p.position) for p in result.problems if p.reason == "duplicate_guid"] == [
        ("duplicate_guid", 1)
    ]
    assert by_position[3].guid is None
    dates = {p.position for p in result.problems if p.reason == "implausible_date"}
    assert dates == {5, 7}
    future = clean_entry(by_position[5])
    assert isinstance(future, Article)
    assert (future.published_at, future.date_source, future.partition_date) == (None, "fetched", "2024-06-21")
    undated = clean_entry(by_position[6])
    assert isinstance(undated, Article) and undated.date_source == "fetched"


# --- entity attacks: bounded time and memory ---------------------------------------------------


def big_entity_feed(entity_kb: int = 60, references: int = 2000) -> bytes:
    """One large internal entity referenced many times: ~80 KB that feedparser's defaults
    expand to ~245 MB of text (500 MB peak, ~20 s): its DOCTYPE pre-pass substitutes
    entities declared on a line of their own by string replacement."""
    value = "A" * (entity_kb * 1024)
    refs = "&big;" * references
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY big "{value}">\n]>\n'
        '<rss version="2.0"><channel><title>Big</title>'
        f"<item><title>Expanded {refs}</title><link>https://big.example.com/1</link>"
        f"<description>Body of the big feed {refs}</description></item></channel></rss>"
    ).encode()


@pytest.mark.parametrize(
    "body",
    [big_entity_feed(), load("billion_laughs")[0], load("xxe_file")[0]],
    ids=["large-internal-entity", "billion-laughs", "external-entity"],
)
def test_entity_attacks_are_neutralised_with_bounded_memory(body: bytes) -> None:
    tracemalloc.start()
    try:
        result = parse_feed_bytes(raw_for("application/rss+xml"), body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert [p.reason for p in result.problems] == ["dtd_internal_subset"]
    assert len(result.entries) == 1
    entry = result.entries[0]
    assert len(entry.title) < 100 and len(entry.html or "") < 100
    assert "root:" not in (entry.html or "") + entry.title

"""JSON Feed 1.0/1.1: chosen by content, the same entries and dead letters as XML feeds,
refused when nested too deep, capped like any body; served by a real local server and
read back from the lake with DuckDB."""

from __future__ import annotations

import codecs
import dataclasses
import json
import time
import tracemalloc
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.feeds import parse_feed_bytes
from connectors.fetch import HttpSettings
from connectors.http import FeedSource, poll_feeds
from connectors.jsonfeed import (
    MAX_DEPTH,
    JsonFeed,
    is_json_feed,
    load_json_feed,
    looks_like_json,
    nesting_depth,
)
from connectors.seeds import parse_seed
from pipeline.run import EXIT_OK, run_cycle
from pipeline.steps.clean import clean_entry
from schemas.records import Article, RawFetch
from tests.conftest import FAST_HTTP, FIXTURES, feed_fixture, make_config
from tests.feedserver import FeedServer, Route
from tests.lakeread import duck_rows

JSONFEEDS = FIXTURES / "jsonfeed"
FETCHED = datetime(2024, 6, 21, 8, 0, tzinfo=timezone.utc)
FEED_URL = "https://ledger.example.net/feed.json"
V1 = "https://jsonfeed.org/version/1"
V11 = "https://jsonfeed.org/version/1.1"
PREFIX = f'{{"version": "{V11}", "items": [], "x": '  # a feed with room for one more value


def fixture(name: str) -> bytes:
    return (JSONFEEDS / name).read_bytes()


def raw_for(
    content_type: str | None = "application/feed+json", kind: str = "feed", origin: str = FEED_URL
) -> RawFetch:
    return RawFetch(
        raw_id="raw-j",
        source="ledger",
        source_kind=kind,
        origin=origin,
        fetched_at=FETCHED,
        status="ok",
        http_status=200,
        content_type=content_type,
    )


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)  # type: ignore[misc]


def feed_json(items: list[Any], version: str = V11, **top: Any) -> bytes:
    return json.dumps({"version": version, "title": "Generated", **top, "items": items}).encode()


# --- the parser -------------------------------------------------------------------


def test_json_feed_1_1_items_become_entries() -> None:
    result = parse_feed_bytes(raw_for(), fixture("v1_1.json"))

    assert result.parser == "jsonfeed" and result.problems == []
    first, second, third = result.entries
    assert first.title == "Grain barges return to Rason after the spring thaw"
    assert first.url == first.guid == "https://ledger.example.net/2024/06/20/rason-grain"
    assert first.html is not None and first.html.startswith("<p>Barges loaded with wheat")
    assert first.text is None, "content_html wins over summary"
    assert first.published == "2024-06-20T09:30:00+09:00"
    assert first.published_at == utc(2024, 6, 20, 0, 30), "date_published, in UTC"
    assert (first.language_hint, first.publisher) == ("en", "Harbour Ledger")

    # external_url when there is no url; plain content_text; date_modified when unpublished
    assert second.url == "https://elsewhere.example.org/reports/ferry-timetable"
    assert second.guid == "ledger-4412"
    assert second.html is None and second.text is not None and second.text.startswith("The operator said")
    assert (second.published, second.published_at) == ("2024-06-19T22:15:00Z", utc(2024, 6, 19, 22, 15))
    assert second.language_hint == "ko", "the item's language over the feed's"

    # a numeric id coerced to a string, a relative url joined, summary as the text, the feed's language
    assert third.guid == "4413" and third.url == "https://ledger.example.net/2024/06/18/customs-queue"
    assert (
        third.title == ""
        and third.text == "Lorries waited two days at the Tumen crossing as new customs rules took effect."
    )
    assert third.published_at == utc(2024, 6, 18, 0, 0) and third.language_hint == "en-GB"
    assert [e.position for e in result.entries] == [0, 1, 2]
    assert {(e.raw_id, e.source, e.source_kind, e.origin, e.fetched_at) for e in result.entries} == {
        ("raw-j", "ledger", "feed", FEED_URL, FETCHED)
    }


def test_json_feed_1_0_author_and_an_id_that_is_the_link() -> None:
    result = parse_feed_bytes(raw_for("application/json"), fixture("v1_0.json"))

    assert result.parser == "jsonfeed" and result.problems == []
    first, second = result.entries
    assert first.url == "https://tumen.example.com/notes/bridge-survey", "a URL id is the permalink"
    assert second.url == "https://tumen.example.com/notes/88" and second.guid == "tumen-88"
    assert second.published_at == utc(2024, 6, 16, 12, 45)
    assert {e.publisher for e in result.entries} == {"Tumen River Notes"}
    assert {e.language_hint for e in result.entries} == {None}, "1.0 has no language"


def test_parser_reads_authors_tags_and_languages() -> None:
    feed = load_json_feed(fixture("v1_1.json").decode(), FEED_URL)
    assert isinstance(feed, JsonFeed)
    assert feed.version == V11 and feed.language == "en-GB" and feed.authors == ("Ledger Desk",)
    first, second, _ = feed.items
    assert first is not None and second is not None
    assert first.authors == ("Mira Holm", "https://ledger.example.net/staff/7"), (
        "1.1 authors; url when no name"
    )
    assert first.tags == ("shipping", "grain"), "blank and non-string tags dropped"
    assert second.authors == ("Ledger Desk",), "the feed's authors when the item has none"

    old = load_json_feed(fixture("v1_0.json").decode(), "https://tumen.example.com/feed.json")
    assert isinstance(old, JsonFeed)
    assert old.authors == ("Tumen River Notes staff",)
    assert [i.authors for i in old.items if i is not None] == [("Tumen River Notes staff",), ("Ilya Ford",)]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/feed+json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/rss+xml",
        "text/html",
        None,
    ],
)
def test_chosen_by_content_whatever_it_was_served_as(content_type: str | None) -> None:
    body = fixture("v1_1.json")
    reference = parse_feed_bytes(raw_for(), body).entries
    for variant in (
        body,
        b" \r\n\t " + body,
        codecs.BOM_UTF8 + body,
        codecs.BOM_UTF16_LE + body.decode().encode("utf-16-le"),
    ):
        result = parse_feed_bytes(raw_for(content_type), variant)
        assert result.parser == "jsonfeed"
        assert result.entries == reference
        assert [p.reason for p in result.problems if p.reason != "charset_mismatch"] == []


def test_xml_documents_keep_their_own_parsers() -> None:
    assert parse_feed_bytes(raw_for("application/json"), feed_fixture("rss2.xml")).parser == "fast"
    assert parse_feed_bytes(raw_for("application/feed+json"), feed_fixture("atom.xml")).parser == "fast"
    assert not looks_like_json(feed_fixture("rss2.xml")) and not looks_like_json(b"[{}]")
    # An RSS item may quote a JSON Feed: only the first character decides.
    rss = feed_fixture("rss2.xml").replace(
        b"</channel>", b'<item><title>{"version": "%s"}</title></item></channel>' % V11.encode()
    )
    assert parse_feed_bytes(raw_for(), rss).parser in ("fast", "feedparser")


def test_dead_letters_are_the_xml_feeds_reasons() -> None:
    result = parse_feed_bytes(raw_for(), fixture("edge_items.json"))

    by_position = {(p.position, p.reason) for p in result.problems}
    assert by_position == {
        (0, "malformed_entry"),  # a string
        (2, "empty_entry"),  # an id and a url, no title, no content: what XML items get
        (3, "malformed_entry"),  # an array
        (4, "unsafe_link"),
        (5, "duplicate_guid"),
        (6, "invalid_field"),  # a number as the title: ignored, the item kept
        (7, "implausible_date"),
        (8, "malformed_entry"),  # null
        (9, "invalid_field"),  # tags as a string
    }
    assert [e.position for e in result.entries] == [1, 4, 5, 6, 7, 9]
    assert next(e for e in result.entries if e.position == 4).url is None
    articles = [clean_entry(e) for e in result.entries]
    assert all(isinstance(a, Article) for a in articles)
    untitled = next(a for a in articles if isinstance(a, Article) and a.url == "https://edge.example.org/6")
    assert untitled.title_source == "lead" and untitled.title == "Its title was a number."
    future = next(a for a in articles if isinstance(a, Article) and a.url == "https://edge.example.org/7")
    assert future.date_source == "fetched" and future.published_at is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (fixture("truncated.json"), "malformed_feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [,]}', "malformed_feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "title": "No items"}', "malformed_feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {"id": "1"}}', "malformed_feed"),
        (
            b'{"version": "https://jsonfeed.org/version/1.1", "items": [], "n": 1' + b"9" * 5000 + b"}",
            "malformed_feed",
        ),
        (fixture("not_a_jsonfeed.json"), "not_a_feed"),
        (b'{"version": 1.1, "items": []}', "not_a_feed"),
        (b"{}", "not_a_feed"),
        (b"{\xff\xfe not even text", "malformed_feed"),
    ],
    ids=[
        "truncated",
        "syntax",
        "no-items",
        "items-object",
        "huge-integer",
        "other-json",
        "numeric-version",
        "empty",
        "binary",
    ],
)
def test_unusable_documents_are_one_typed_problem(body: bytes, reason: str) -> None:
    result = parse_feed_bytes(raw_for(), body)
    assert result.parser == "jsonfeed" and result.entries == []
    assert [
        p.reason for p in result.problems if p.reason not in ("charset_mismatch", "undecodable_bytes")
    ] == [reason]
    assert all(p.detail for p in result.problems)


def test_an_empty_items_array_is_a_feed_with_nothing_new() -> None:
    result = parse_feed_bytes(raw_for(), feed_json([]))
    assert result.parser == "jsonfeed" and result.entries == [] and result.problems == []


# --- limits ------------------------------------------------------------------------


def test_a_100k_deep_nesting_is_refused_without_recursing() -> None:
    for opener, closer in (('{"a":', "}"), ("[", "]")):
        body = (PREFIX + opener * 100_000 + "1" + closer * 100_000 + "}").encode()
        started = time.perf_counter()
        result = parse_feed_bytes(raw_for(), body)  # RecursionError would fail the test
        assert time.perf_counter() - started < 2.0
        assert [p.reason for p in result.problems] == ["too_deep"] and result.entries == []
    # Unbalanced too: 100k openers and nothing else.
    assert [p.reason for p in parse_feed_bytes(raw_for(), b"{" + b"[" * 100_000).problems] == ["too_deep"]


def test_the_depth_limit_is_exact_and_strings_do_not_count() -> None:
    def nested(levels: int) -> bytes:
        # feed object (1) + items array (2) + item object (3) + `deep` arrays
        deep = "[" * (levels - 3) + "]" * (levels - 3)
        item = '{"id": "d", "title": "Deep \\" [[[[ {{{{", "content_text": "x", "deep": ' + deep + "}"
        return (f'{{"version": "{V11}", "items": [' + item + "]}").encode()

    assert nesting_depth(nested(MAX_DEPTH).decode()) == MAX_DEPTH
    assert len(parse_feed_bytes(raw_for(), nested(MAX_DEPTH)).entries) == 1
    assert [p.reason for p in parse_feed_bytes(raw_for(), nested(MAX_DEPTH + 1)).problems] == ["too_deep"]
    assert nesting_depth('{"a": "]]]]\\\\", "b": ["[[[[\\"{"]}') == 2
    assert nesting_depth('"unterminated [[[[') == 0


def test_the_depth_scan_is_linear_on_hostile_strings() -> None:
    # An unterminated string full of escaped quotes: a backtracking scan would be quadratic.
    for tail in ("", "\\"):
        body = (PREFIX + '"' + '\\"' * 1_000_000 + tail).encode()
        started = time.perf_counter()
        result = parse_feed_bytes(raw_for(), body)
        assert time.perf_counter() - started < 3.0
        assert [p.reason for p in result.problems] == ["malformed_feed"]


def _big_feed(items: int, body_chars: int) -> bytes:
    text = "word " * (body_chars // 5)
    return feed_json(
        [
            {
                "id": f"b-{n}",
                "url": f"https://big.example.org/{n}",
                "title": f"Item {n}",
                "content_html": f"<p>{n} {text}</p>",
            }
            for n in range(items)
        ]
    )


def test_a_feed_at_the_body_cap_parses_with_bounded_memory() -> None:
    body = _big_feed(2_000, 5_000)  # ~10 MB: the default [http] max_bytes
    assert len(body) <= HttpSettings().max_bytes
    tracemalloc.start()
    try:
        result = parse_feed_bytes(raw_for(), body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(result.entries) == 2_000 and result.problems == []
    assert peak < 4 * len(body), f"peak {peak / 1e6:.1f} MB for a {len(body) / 1e6:.1f} MB body"


# --- served by a real server ------------------------------------------------------------


def _port(server: FeedServer) -> int:
    return int(server.url("/").rsplit(":", 1)[1].strip("/"))


def test_served_json_feeds_are_polled_ok_and_parsed(feed_server: FeedServer) -> None:
    feed_server.routes["/feed.json"] = Route(fixture("v1_1.json"), content_type="application/feed+json")
    feed_server.routes["/old.json"] = Route(fixture("v1_0.json"), content_type="application/json")
    feed_server.routes["/mislabelled"] = Route(fixture("v1_1.json"), content_type="text/html; charset=utf-8")
    sources = [
        FeedSource(n, feed_server.url(p))
        for n, p in [("new", "/feed.json"), ("old", "/old.json"), ("odd", "/mislabelled")]
    ]
    outcomes = poll_feeds(sources, {}, FAST_HTTP, clock=lambda: FETCHED)

    assert [o.status for o in outcomes] == ["ok", "ok", "ok"]
    counts = []
    for outcome in outcomes:
        assert outcome.raw is not None and outcome.raw.body is not None
        result = parse_feed_bytes(outcome.raw, outcome.raw.body)
        assert result.parser == "jsonfeed" and result.problems == []
        counts.append(len(result.entries))
    assert counts == [3, 2, 3]
    # relative links resolve against the URL polled
    relative = parse_feed_bytes(outcomes[0].raw, outcomes[0].raw.body).entries[2]  # type: ignore[union-attr,arg-type]
    assert relative.url == feed_server.url("/2024/06/18/customs-queue")


def test_a_200_mb_json_feed_stops_at_the_body_cap(feed_server: FeedServer) -> None:
    # 200 MB of JSON Feed, gzip-compressed to a few hundred KB: the decoded body is cut at
    # max_bytes while it is decoded, before any parser sees it.
    item = json.dumps({"id": "x", "title": "padding", "content_text": "y" * 1000}) + ","
    chunk = item.encode() * 1000
    gzipper = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip stream, made without 200 MB in memory
    parts = [gzipper.compress(f'{{"version": "{V11}", "items": ['.encode())]
    parts += [gzipper.compress(chunk) for _ in range(200 * 1024 * 1024 // len(chunk))]
    bomb = b"".join([*parts, gzipper.compress(b'{"id": "end"}]}'), gzipper.flush()])
    assert len(bomb) < 2 * 1024 * 1024
    feed_server.routes["/huge.json"] = Route(
        bomb, content_type="application/feed+json", headers={"Content-Encoding": "gzip"}
    )
    settings = dataclasses.replace(FAST_HTTP, total_deadline=30.0, read_timeout=10.0)

    tracemalloc.start()
    try:
        [outcome] = poll_feeds([FeedSource("huge", feed_server.url("/huge.json"))], {}, settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome.status == "error" and outcome.detail.startswith("too_large")
    assert outcome.raw is not None and outcome.raw.body is None
    assert peak < 4 * settings.max_bytes, f"peak {peak / 1e6:.1f} MB"


# --- whole cycles ------------------------------------------------------------------------


def test_cycle_lands_json_feed_articles_that_duckdb_reads_back(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/feed.json"] = Route(fixture("v1_1.json"), content_type="application/feed+json")
    feed_server.routes["/old.json"] = Route(fixture("v1_0.json"), content_type="application/json")
    feed_server.routes["/broken.json"] = Route(
        fixture("truncated.json"), content_type="application/feed+json"
    )
    feeds = [
        FeedSource("ledger", feed_server.url("/feed.json")),
        FeedSource("tumen", feed_server.url("/old.json")),
        FeedSource("broken", feed_server.url("/broken.json")),
    ]
    config = make_config(tmp_path, seeds_dir, feeds)
    report = run_cycle(config)
    out = config.output_dir

    assert report.exit_code == EXIT_OK
    assert {s.source: s.status for s in report.sources if s.kind == "feed"} == {
        "ledger": "ok",
        "tumen": "ok",
        "broken": "ok",
    }
    rows = duck_rows(out, "articles", "source, url, title, text, publisher, published_at, guid", order="url")
    by_url = {r["url"]: r for r in rows if r["source"] in ("ledger", "tumen")}
    assert set(by_url) == {
        "https://elsewhere.example.org/reports/ferry-timetable",
        feed_server.url("/2024/06/18/customs-queue"),
        "https://ledger.example.net/2024/06/20/rason-grain",
        "https://tumen.example.com/notes/88",
        "https://tumen.example.com/notes/bridge-survey",
    }
    grain = by_url["https://ledger.example.net/2024/06/20/rason-grain"]
    assert grain["title"] == "Grain barges return to Rason after the spring thaw"
    assert "river ice" in grain["text"] and "<em>" not in grain["text"]
    assert grain["publisher"] == "Harbour Ledger"
    assert grain["published_at"] == utc(2024, 6, 20, 0, 30)
    ferry = by_url["https://elsewhere.example.org/reports/ferry-timetable"]
    assert (
        ferry["text"]
        == "The operator said the ferry would sail twice a week from July.\nTickets go on sale next month."
    )
    customs = by_url[feed_server.url("/2024/06/18/customs-queue")]
    assert customs["guid"] == "4413" and customs["title"].startswith("Lorries waited two days")

    rejects = duck_rows(out, "rejects", "source, stage, reason, detail", order="source")
    broken = [r for r in rejects if r["source"] == "broken"]
    assert [(r["stage"], r["reason"]) for r in broken] == [("parse", "malformed_feed")]
    assert "JSONDecodeError" in broken[0]["detail"]
    assert not [r for r in rejects if r["source"] in ("ledger", "tumen")]

    # The same documents again: conditional GETs, nothing new.
    again = run_cycle(config)
    assert {s.status for s in again.sources if s.kind == "feed"} == {"not_modified"}
    assert again.run_id is None


# --- seed files --------------------------------------------------------------------------


def test_a_json_feed_seed_parses_through_the_feed_parser() -> None:
    assert is_json_feed(fixture("v1_1.json")) and is_json_feed(fixture("v1_0.json"))
    assert is_json_feed(codecs.BOM_UTF8 + fixture("v1_0.json"))
    records = json.dumps([{"title": "A record", "text": "Body", "version": V11}]).encode()
    assert not is_json_feed(records) and not is_json_feed(fixture("not_a_jsonfeed.json"))
    assert not is_json_feed(b'{"meta": {"version": "%s"}, "items": []}' % V11.encode()), "top-level only"
    assert not is_json_feed(fixture("truncated.json"))
    php = fixture("v1_0.json").replace(b"/", b"\\/")  # json_encode's escaped slashes
    assert is_json_feed(php) and len(parse_feed_bytes(raw_for(), php).entries) == 2

    raw = raw_for("application/json", kind="seed", origin="feeds/ledger.json")
    result = parse_feed_bytes(
        raw,
        fixture("v1_1.json").replace(b'"date_published": "2024-06-18"', b'"date_published": "2099-01-01"'),
    )
    assert len(result.entries) == 3
    # A local file has no URL to resolve against and its time is the run's: a relative link
    # (no article URL) and a date after the run are expected there, not flagged.
    assert result.problems == []
    assert result.entries[2].url is None


def test_a_json_feed_seed_file_is_read_as_a_feed() -> None:
    raw = dataclasses.replace(
        raw_for("application/json", kind="seed", origin="ledger.json"), body=fixture("v1_1.json")
    )
    result = parse_seed(raw)
    assert len(result.entries) == 3 and result.problems == []

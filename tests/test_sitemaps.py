"""Google News sitemaps as feeds: entries with url, headline, date and language; indexes
reported, not followed; the same XML guard as feeds; and whole cycles in which each
entry's page is fetched (robots.txt honoured) although the feed does not ask for pages."""

from __future__ import annotations

import dataclasses
import time
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.articles import ArticleSettings, new_page_requests
from connectors.feeds import parse_feed_bytes, sitemap_kind
from connectors.http import FeedSource, FetchOutcome
from connectors.sitemaps import SITEMAP_INDEX, URLSET, parse_sitemap, root_kind
from connectors.state import FeedState
from pipeline.articles import wants_pages
from pipeline.clean import clean_entry
from pipeline.run import EXIT_OK, run_cycle
from schemas.records import Article, RawFetch
from tests.conftest import FAST_HTTP, FIXTURES, feed_fixture, make_config
from tests.feedserver import FeedServer, Route
from tests.lakeread import duck_rows
from tests.test_netguard import CountingListener

SITEMAPS = FIXTURES / "sitemaps"
FETCHED = datetime(2024, 6, 21, 8, 0, tzinfo=timezone.utc)
ORIGIN = "https://coast.example.com/news-sitemap.xml"
HTML = "text/html; charset=utf-8"
SM = "http://www.sitemaps.org/schemas/sitemap/0.9"
NEWS = "http://www.google.com/schemas/sitemap-news/0.9"


def fixture(name: str) -> bytes:
    return (SITEMAPS / name).read_bytes()


def raw_for(
    content_type: str | None = "application/xml", origin: str = ORIGIN, body: bytes | None = None
) -> RawFetch:
    return RawFetch(
        raw_id="raw-s",
        source="coast",
        source_kind="feed",
        origin=origin,
        fetched_at=FETCHED,
        status="ok",
        http_status=200,
        content_type=content_type,
        body=body,
    )


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)  # type: ignore[misc]


def news_url(loc: str, title: str | None, date: str | None = "2024-06-20T08:00:00Z", lang: str = "en") -> str:
    title_xml = f"<news:title>{title}</news:title>" if title is not None else ""
    date_xml = f"<news:publication_date>{date}</news:publication_date>" if date else ""
    return (
        f"<url><loc>{loc}</loc><news:news><news:publication><news:name>Coastal Courier</news:name>"
        f"<news:language>{lang}</news:language></news:publication>{date_xml}{title_xml}</news:news></url>"
    )


def urlset(*urls: str) -> bytes:
    head = f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{SM}" xmlns:news="{NEWS}">\n'
    return (head + "\n".join(urls) + "\n</urlset>\n").encode()


# --- the parser -------------------------------------------------------------------


def test_news_urls_become_entries_with_url_headline_date_and_language() -> None:
    result = parse_feed_bytes(raw_for(), fixture("news.xml"))

    assert result.parser == "sitemap"
    lighthouse, trawlers, ferry = result.entries
    assert [e.position for e in result.entries] == [0, 2, 3], "positions count every <url>"
    assert lighthouse.url == "https://coast.example.com/2024/06/20/lighthouse"
    assert lighthouse.title == "Keepers relight the lighthouse at Cape Sokol & the harbour cheers"
    assert lighthouse.published == "2024-06-20T09:30:00+09:00"
    assert lighthouse.published_at == utc(2024, 6, 20, 0, 30), "news:publication_date, in UTC"
    assert (lighthouse.language_hint, lighthouse.publisher) == ("en", "Coastal Courier")
    assert lighthouse.html is None and lighthouse.text is None and lighthouse.guid is None
    assert trawlers.published_at == utc(2024, 6, 19, 18, 0), "<lastmod> without a publication date"
    assert trawlers.language_hint == "ko"
    assert ferry.url == "https://coast.example.com/2024/06/18/ferry", (
        "a relative <loc> joined to the sitemap's URL"
    )
    assert ferry.language_hint == "zh-cn"
    assert [(p.reason, p.position) for p in result.problems] == [("sitemap_not_news", None)]
    assert "1 of 4 <url>" in result.problems[0].detail


def test_the_parser_reads_keywords_and_skips_plain_urls() -> None:
    sitemap = parse_sitemap(fixture("news.xml"), URLSET, ORIGIN)
    first = sitemap.items[0]
    assert first is not None and first.keywords == ("lighthouse", "harbour", "maritime")
    assert sitemap.items[1] is None


def test_a_sitemap_index_is_reported_with_the_sitemaps_it_lists() -> None:
    result = parse_feed_bytes(raw_for(), fixture("index.xml"))
    assert result.parser == "sitemap" and result.entries == []
    [problem] = result.problems
    assert problem.reason == "sitemap_index_not_followed" and not problem.retryable
    assert "3 sitemaps" in problem.detail
    for child in ("news.xml", "pages-1.xml", "https://coast.example.com/sitemaps/pages-2.xml"):
        assert child in problem.detail
    many = (
        f'<sitemapindex xmlns="{SM}">'
        + "".join(f"<sitemap><loc>https://c.example/s{n}.xml</loc></sitemap>" for n in range(40))
        + "</sitemapindex>"
    ).encode()
    [problem] = parse_feed_bytes(raw_for(), many).problems
    assert "40 sitemaps" in problem.detail and "and 35 more" in problem.detail


def test_entities_are_never_expanded() -> None:
    tracemalloc.start()
    try:
        result = parse_feed_bytes(raw_for(), fixture("entities.xml"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert [p.reason for p in result.problems] == ["dtd_internal_subset"]
    [entry] = result.entries
    assert entry.title == "Headline with entities  and a file  reference"
    assert entry.publisher == "Coastal Courier"
    assert "AAAA" not in entry.title + (entry.publisher or "") and "root:" not in entry.title
    assert entry.url == "https://coast.example.com/2024/06/20/expanded", "prefixed elements are read"


def test_a_cut_off_sitemap_keeps_the_urls_read_before_the_cut() -> None:
    result = parse_feed_bytes(raw_for(), fixture("truncated.xml"))
    assert [e.title for e in result.entries] == ["The first story is whole"]
    assert [p.reason for p in result.problems] == ["malformed_feed_partial"]
    assert "1 entries kept" in result.problems[0].detail
    broken = parse_feed_bytes(raw_for(), urlset("<url><loc>https://c.example/1</loc><news:news>&nbsp;"))
    assert broken.entries == [] and [p.reason for p in broken.problems] == ["malformed_feed"]


def test_entries_without_a_headline_wait_for_their_page_and_without_a_page_are_empty() -> None:
    body = urlset(
        news_url("https://coast.example.com/untitled", None),
        news_url("", "No location at all"),
        news_url("", None),
        news_url("javascript:alert(1)", None),
    )
    result = parse_feed_bytes(raw_for(), body)
    assert [(e.position, e.url, e.title) for e in result.entries] == [
        (0, "https://coast.example.com/untitled", ""),
        (1, None, "No location at all"),
    ]
    assert sorted((p.position, p.reason) for p in result.problems) == [
        (2, "empty_entry"),
        (3, "empty_entry"),
        (3, "unsafe_link"),
    ]


@pytest.mark.parametrize(
    "content_type", ["application/xml", "text/xml", "text/html", "application/octet-stream", None]
)
def test_chosen_by_content_whatever_it_was_served_as(content_type: str | None) -> None:
    assert parse_feed_bytes(raw_for(content_type), fixture("news.xml")).parser == "sitemap"
    assert sitemap_kind(fixture("news.xml"), content_type) == URLSET
    assert sitemap_kind(fixture("index.xml"), content_type) == SITEMAP_INDEX


def test_feeds_and_pages_that_mention_sitemaps_are_not_sitemaps() -> None:
    rss = feed_fixture("rss2.xml").replace(
        b"</channel>",
        b"<item><title>What a &lt;urlset&gt; is</title><description>urlset</description></item></channel>",
    )
    assert root_kind(rss) is None and sitemap_kind(rss, "application/rss+xml") is None
    assert parse_feed_bytes(raw_for(), rss).parser in ("fast", "feedparser")
    commented = b"<!-- <urlset> --><rss version='2.0'><channel><title>t</title></channel></rss>"
    assert root_kind(commented) is None
    assert sitemap_kind(b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', None) is None
    # UTF-16 hides the hint from a byte search: decoded first, then decided.
    wide = fixture("news.xml").decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    assert sitemap_kind(wide, "application/xml") == URLSET
    assert len(parse_feed_bytes(raw_for(), wide).entries) == 3


def test_a_large_sitemap_is_read_in_linear_time_and_flat_memory() -> None:
    plain = "".join(
        f"<url><loc>https://coast.example.com/page/{n}</loc><lastmod>2024-01-01</lastmod></url>"
        for n in range(50_000)
    )
    body = urlset(plain, *(news_url(f"https://coast.example.com/n/{n}", f"Story {n}") for n in range(1_000)))
    started = time.perf_counter()
    tracemalloc.start()
    try:
        sitemap = parse_sitemap(body, URLSET, ORIGIN)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 10.0
    assert len(sitemap.items) == 51_000 and sum(i is not None for i in sitemap.items) == 1_000
    assert peak < len(body), f"peak {peak / 1e6:.1f} MB for a {len(body) / 1e6:.1f} MB sitemap"


# --- which pages are fetched -----------------------------------------------------------


def _outcome(
    body: bytes, fetch_articles: bool = False, content_type: str = "application/xml"
) -> FetchOutcome:
    raw = raw_for(content_type, body=body)
    return FetchOutcome(
        FeedSource("coast", ORIGIN, fetch_articles=fetch_articles), "ok", "", raw, FeedState()
    )


def test_a_news_sitemap_asks_for_its_pages_without_fetch_articles() -> None:
    sitemap = _outcome(fixture("news.xml"))
    rss = _outcome(feed_fixture("rss2.xml"), content_type="application/rss+xml")
    index = _outcome(fixture("index.xml"))
    assert wants_pages(sitemap).source.fetch_articles is True
    assert wants_pages(rss) is rss and wants_pages(index) is index
    unchanged = dataclasses.replace(sitemap, raw=None, status="not_modified")
    assert wants_pages(unchanged) is unchanged
    requests = new_page_requests([wants_pages(o) for o in (sitemap, rss, index)], seen=set())
    assert [(r.source, r.url) for r in requests] == [
        ("coast", "https://coast.example.com/2024/06/20/lighthouse"),
        ("coast", "https://coast.example.com/2024/06/19/trawlers"),
        ("coast", "https://coast.example.com/2024/06/18/ferry"),
    ]
    assert wants_pages(sitemap).source.url == ORIGIN and wants_pages(sitemap).source.name == "coast"


# --- whole cycles --------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    server = CountingListener()
    yield server
    server.close()


def _port(server: FeedServer) -> int:
    return int(server.url("/").rsplit(":", 1)[1].strip("/"))


LIGHTHOUSE = "Keepers relight the lighthouse at Cape Sokol"
TRAWLERS = "Trawler fleet returns early as the squid season thins"
PRIVATE = "Harbour board minutes leak ahead of the vote"
FERRY_PAGE = (
    b"<html><head><title>Ferry back at the quay</title></head><body><article><h1>Ferry back at the quay</h1>"
    b"<p>The island ferry tied up at the quay on Friday morning for the first time since March, after "
    b"engineers finished pouring the new slipway and the harbour master signed off the mooring lines.</p>"
    b"<p>Passengers queued from dawn with bicycles and crates of vegetables, and the crew handed out "
    b"printed timetables promising three crossings a day until the end of September.</p>"
    b"</article></body></html>"
)


def _serve_site(server: FeedServer) -> None:
    server.routes["/news-sitemap.xml"] = Route(
        urlset(
            news_url(server.url("/2024/06/20/lighthouse"), LIGHTHOUSE, "2024-06-20T09:30:00+09:00"),
            f"<url><loc>{server.url('/about')}</loc></url>",
            news_url(server.url("/2024/06/19/trawlers"), TRAWLERS, None),
            news_url(server.url("/private/minutes"), PRIVATE),
        ),
        content_type="application/xml; charset=utf-8",
    )
    server.routes["/sitemap-index.xml"] = Route(fixture("index.xml"), content_type="application/xml")
    server.routes["/robots.txt"] = Route(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    server.routes["/2024/06/20/lighthouse"] = Route(fixture("page_lighthouse.html"), content_type=HTML)
    server.routes["/2024/06/19/trawlers"] = Route(fixture("page_trawlers.html"), content_type=HTML)
    server.routes["/private/minutes"] = Route(fixture("page_trawlers.html"), content_type=HTML)


def _config(tmp_path: Path, seeds_dir: Path, server: FeedServer):  # type: ignore[no-untyped-def]
    feeds = [
        FeedSource("coast", server.url("/news-sitemap.xml")),  # fetch_articles not set
        FeedSource("coast-index", server.url("/sitemap-index.xml")),
    ]
    config = make_config(tmp_path, seeds_dir, feeds)
    # The site's port only: feeds and pages may reach it, nothing else on 127.0.0.1.
    site = (f"127.0.0.1:{_port(server)}",)
    http = dataclasses.replace(FAST_HTTP, allow_hosts=site)
    return dataclasses.replace(config, http=http, articles=ArticleSettings(allow_hosts=site))


def test_cycle_fetches_each_news_entrys_page_and_duckdb_reads_the_full_text(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer, listener: CountingListener
) -> None:
    _serve_site(feed_server)
    config = _config(tmp_path, seeds_dir, feed_server)
    report = run_cycle(config)
    out = config.output_dir

    assert report.exit_code == EXIT_OK
    assert {s.source: s.status for s in report.sources if s.kind == "feed"} == {
        "coast": "ok",
        "coast-index": "ok",
    }
    rows = duck_rows(out, "articles", "source, url, title, text, published_at, date_source, publisher")
    articles = {r["url"].rsplit("/", 1)[1]: r for r in rows if r["source"] == "coast"}
    assert sorted(articles) == ["lighthouse", "minutes", "trawlers"]

    lighthouse = articles["lighthouse"]
    assert lighthouse["title"] == LIGHTHOUSE
    assert "volunteer keepers" in lighthouse["text"] and "Popular this week" not in lighthouse["text"]
    assert not lighthouse["text"].startswith(LIGHTHOUSE), "the page's <h1> repeating the headline is dropped"
    assert (
        lighthouse["published_at"] == utc(2024, 6, 20, 0, 30) and lighthouse["publisher"] == "Coastal Courier"
    )
    trawlers = articles["trawlers"]
    assert "thinnest squid catches" in trawlers["text"]
    # No date in the sitemap: the page's (htmldate reads it from the page's URL).
    assert (trawlers["date_source"], trawlers["published_at"]) == ("published", utc(2024, 6, 19, 0, 0))
    # robots.txt keeps the page out: the entry keeps what the sitemap gave, its headline.
    assert articles["minutes"]["title"] == PRIVATE and articles["minutes"]["text"] == ""
    assert not feed_server.hits("/private/minutes") and not feed_server.hits("/about")
    assert len(feed_server.hits("/robots.txt")) == 1

    rejects = {
        (r["source"], r["stage"], r["reason"]) for r in duck_rows(out, "rejects", "source, stage, reason")
    }
    assert rejects == {
        ("coast", "parse", "sitemap_not_news"),
        ("coast", "article", "robots_disallowed"),
        ("coast-index", "parse", "sitemap_index_not_followed"),
    }
    assert listener.accepts == 0

    # Unchanged sitemap: no page is fetched again.
    second = run_cycle(config)
    assert second.run_id is None
    assert len(feed_server.hits("/2024/06/20/lighthouse")) == 1

    # A new story: only its page is fetched; the others are duplicates by URL.
    feed_server.routes["/2024/06/21/ferry"] = Route(FERRY_PAGE, content_type=HTML)
    body = feed_server.routes["/news-sitemap.xml"].body.replace(
        b"</urlset>",
        news_url(feed_server.url("/2024/06/21/ferry"), "Ferry back at the quay").encode() + b"</urlset>",
    )
    feed_server.routes["/news-sitemap.xml"] = Route(body, content_type="application/xml")
    third = run_cycle(config)
    assert third.exit_code == EXIT_OK
    assert len(feed_server.hits("/2024/06/21/ferry")) == 1
    assert (
        len(feed_server.hits("/2024/06/20/lighthouse")) == 1
        and len(feed_server.hits("/2024/06/19/trawlers")) == 1
    )
    ferry = [r for r in duck_rows(out, "articles", "url, text") if (r["url"] or "").endswith("/ferry")]
    assert len(ferry) == 1 and "new slipway" in ferry[0]["text"]


def test_a_sitemap_seed_file_gives_headlines_without_fetching(tmp_path: Path, seeds_dir: Path) -> None:
    (seeds_dir / "coast-sitemap.xml").write_bytes(fixture("news.xml"))
    config = make_config(tmp_path, seeds_dir)
    report = run_cycle(config)
    assert report.exit_code == EXIT_OK
    rows = duck_rows(config.output_dir, "articles", "source, title, url")
    titles = sorted(r["title"] for r in rows if r["source"] == "seeds/coast-sitemap.xml")
    assert titles == [
        "Ferry service resumes after repairs to the slipway",
        "Keepers relight the lighthouse at Cape Sokol & the harbour cheers",
        "Trawler fleet returns early as the squid season thins",
    ]
    article = clean_entry(parse_feed_bytes(raw_for(), fixture("news.xml")).entries[0])
    assert isinstance(article, Article) and article.text == "" and article.title_source == "headline"

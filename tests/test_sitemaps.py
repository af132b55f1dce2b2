"""Google News sitemaps as feeds: entries with url, headline, date and language; indexes
reported, not followed; the same XML guard as feeds; and whole cycles in which each
entry's page is fetched (robots.txt honoured) although the feed does not ask for pages."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import time
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.articles import ArticleSettings, new_page_requests
from connectors.feeds import parse_feed_bytes, sitemap_kind
from connectors.fetch import Fetcher, HttpSettings
from connectors.http import FeedSource, FetchOutcome, fetch_feed, landed_raws, per_document
from connectors.sitemaps import (
    MAX_CHILDREN,
    SITEMAP_INDEX,
    URLSET,
    ChildSitemap,
    children_to_follow,
    parse_sitemap,
    root_kind,
)
from connectors.state import FeedState
from pipeline.run import EXIT_OK, run_cycle
from pipeline.steps.clean import clean_entry
from pipeline.steps.pages import wants_pages
from pipeline.steps.parse import parse_raw
from schemas.records import Article, RawFetch, Reject
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


def index_of(*children: str | tuple[str, str]) -> bytes:
    """A sitemap index listing `children`: a `<loc>`, or a (`<loc>`, `<lastmod>`) pair."""
    rows = []
    for child in children:
        loc, lastmod = (child, None) if isinstance(child, str) else child
        rows.append(
            f"<sitemap><loc>{loc}</loc>" + (f"<lastmod>{lastmod}</lastmod>" if lastmod else "") + "</sitemap>"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns="{SM}">\n'
        + "\n".join(rows)
        + "\n</sitemapindex>\n"
    ).encode()


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


def test_an_index_in_a_seed_file_is_reported_with_the_sitemaps_it_lists() -> None:
    seed = raw_for(origin="coast-index.xml")  # a seed's origin is its path: nothing follows it
    result = parse_feed_bytes(seed, fixture("index.xml"))
    assert result.parser == "sitemap" and result.entries == []
    [problem] = result.problems
    assert problem.reason == "sitemap_index_not_followed" and not problem.retryable
    assert "3 sitemaps" in problem.detail
    for child in ("news.xml", "pages-1.xml", "pages-2.xml"):
        assert child in problem.detail
    [problem] = parse_feed_bytes(seed, index_of(*(f"https://c.example/s{n}.xml" for n in range(40)))).problems
    assert "40 sitemaps" in problem.detail and "and 35 more" in problem.detail


def test_an_index_from_a_feed_url_was_followed_and_names_only_the_sitemaps_over_the_cap() -> None:
    result = parse_feed_bytes(raw_for(), fixture("index.xml"))
    assert result.parser == "sitemap" and result.entries == [] and result.problems == []
    many = index_of(*(f"https://c.example/s{n}.xml" for n in range(MAX_CHILDREN + 7)))
    [problem] = parse_feed_bytes(raw_for(), many).problems
    assert problem.reason == "sitemap_index_capped" and not problem.retryable
    assert f"listing {MAX_CHILDREN + 7} sitemaps" in problem.detail and "and 2 more" in problem.detail
    assert f"s{MAX_CHILDREN}.xml" in problem.detail and f"s{MAX_CHILDREN - 1}.xml" not in problem.detail


def test_the_children_followed_are_news_ones_then_the_newest_each_once() -> None:
    listed = parse_sitemap(
        index_of(
            ("/sitemaps/pages-old.xml", "2023-01-01"),
            "/sitemaps/pages-undated.xml",
            ("/sitemaps/pages-new.xml", "2024-06-20T10:00:00Z"),
            ("/sitemaps/NEWS-b.xml", "2024-06-19"),
            "/sitemaps/google-news.xml",
            ("/sitemaps/pages-new.xml", "2024-06-20T10:00:00Z"),
            ("/sitemaps/news-a.xml", "2024-06-20T09:00:00+00:00"),
        ),
        SITEMAP_INDEX,
        ORIGIN,
    ).children
    chosen, left_out = children_to_follow(listed)
    assert [c.loc.rsplit("/", 1)[1] for c in chosen] == [
        "news-a.xml",
        "NEWS-b.xml",
        "google-news.xml",
        "pages-new.xml",
        "pages-old.xml",
        "pages-undated.xml",
    ]
    assert chosen[0] == ChildSitemap(
        "https://coast.example.com/sitemaps/news-a.xml", "2024-06-20T09:00:00+00:00"
    )
    assert left_out == []
    many = [
        ChildSitemap(f"https://c.example/p{n}.xml", f"2024-01-{n + 1:02d}") for n in range(MAX_CHILDREN + 3)
    ]
    chosen, left_out = children_to_follow(many)
    assert chosen == many[::-1][:MAX_CHILDREN] and left_out == many[:3][::-1]


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


# --- a sitemap index followed in the poll -------------------------------------------------


def poll(
    url: str, settings: HttpSettings = FAST_HTTP, state: FeedState | None = None, name: str = "coast-index"
) -> FetchOutcome:
    async def one() -> FetchOutcome:
        fetcher = Fetcher(settings)
        try:
            return await fetch_feed(fetcher, FeedSource(name, url), state or FeedState(), FETCHED)
        finally:
            await fetcher.aclose()

    return asyncio.run(one())


def _serve_news(server: FeedServer, path: str, *stories: str) -> None:
    server.routes[path] = Route(
        urlset(*(news_url(server.url(f"/story/{s}"), f"Story {s}") for s in stories)),
        content_type="application/xml",
    )


def _serve_index(
    server: FeedServer, *children: str | tuple[str, str], path: str = "/sitemap_index.xml"
) -> None:
    server.routes[path] = Route(index_of(*children), content_type="application/xml")


def _requested(server: FeedServer) -> list[str]:
    return [path for path, _ in server.requests]


def _errors(outcome: FetchOutcome) -> dict[str, str]:
    """origin path -> error of the outcome's error records."""
    return {r.origin.split("/", 3)[3]: r.error or "" for r in outcome.extra_raws if r.status == "error"}


def test_an_index_is_followed_and_its_news_sitemaps_give_entries_whose_pages_are_fetched(
    feed_server: FeedServer,
) -> None:
    _serve_news(feed_server, "/sitemaps/news-a.xml", "a1", "a2")
    _serve_news(feed_server, "/sitemaps/news-b.xml", "b1")
    feed_server.routes["/sitemaps/pages.xml"] = Route(
        urlset(f"<url><loc>{feed_server.url('/about')}</loc></url>"), content_type="application/xml"
    )
    _serve_index(
        feed_server,
        ("/sitemaps/pages.xml", "2024-06-21T07:00:00Z"),  # the newest, but not news
        ("/sitemaps/news-a.xml", "2024-06-20T08:00:00Z"),
        ("/sitemaps/news-b.xml", "2024-06-21T06:00:00Z"),
    )
    outcome = poll(feed_server.url("/sitemap_index.xml"))

    assert outcome.status == "ok" and outcome.raw is not None
    assert outcome.raw.origin == feed_server.url("/sitemap_index.xml")
    assert "3 followed" in outcome.detail and "3 landed, 0 unchanged, 0 failed" in outcome.detail
    assert _requested(feed_server) == [
        "/sitemap_index.xml",
        "/sitemaps/news-b.xml",
        "/sitemaps/news-a.xml",
        "/sitemaps/pages.xml",
    ], "news sitemaps first, the newest first"
    news_b, news_a, pages = outcome.extra_raws
    for child, path in (
        (news_b, "/sitemaps/news-b.xml"),
        (news_a, "/sitemaps/news-a.xml"),
        (pages, "/sitemaps/pages.xml"),
    ):
        assert (child.origin, child.source, child.source_kind, child.status) == (
            feed_server.url(path),
            "coast-index",
            "feed",
            "ok",
        )
        assert (
            child.fetched_at == FETCHED
            and child.http_status == 200
            and child.body == feed_server.routes[path].body
        )
    assert landed_raws([outcome]) == [outcome.raw, news_b, news_a, pages]
    assert len({r.raw_id for r in landed_raws([outcome])}) == 4

    # The parse path reads each child as the document it is; the index itself gives nothing.
    assert [out for out in parse_raw(outcome.raw)] == []
    entries = [e for child in (news_a, news_b) for e in parse_feed_bytes(child, child.body or b"").entries]
    assert [(e.title, e.source, e.origin) for e in entries] == [
        ("Story a1", "coast-index", feed_server.url("/sitemaps/news-a.xml")),
        ("Story a2", "coast-index", feed_server.url("/sitemaps/news-a.xml")),
        ("Story b1", "coast-index", feed_server.url("/sitemaps/news-b.xml")),
    ]
    plain = parse_feed_bytes(pages, pages.body or b"")
    assert plain.entries == [] and [p.reason for p in plain.problems] == ["sitemap_not_news"]

    # Each child read as a document of its own: its news entries' pages are asked for.
    documents = [wants_pages(o) for o in per_document([outcome])]
    assert [o.raw.origin for o in documents if o.raw is not None] == [
        r.origin for r in landed_raws([outcome])
    ]
    requests = new_page_requests(documents, seen=set())
    assert sorted((r.source, r.url.rsplit("/", 1)[1]) for r in requests) == [
        ("coast-index", "a1"),
        ("coast-index", "a2"),
        ("coast-index", "b1"),
    ]
    assert not feed_server.hits("/about")
    assert outcome.state.consecutive_failures == 0 and outcome.state.sitemap_children is not None
    assert sorted(outcome.state.sitemap_children) == [
        feed_server.url(p) for p in ("/sitemaps/news-a.xml", "/sitemaps/news-b.xml", "/sitemaps/pages.xml")
    ]


def test_children_are_fetched_again_only_when_the_index_changes_and_landed_only_when_they_did(
    feed_server: FeedServer,
) -> None:
    _serve_news(feed_server, "/news-a.xml", "a1")
    _serve_news(feed_server, "/news-b.xml", "b1")
    _serve_index(feed_server, ("/news-a.xml", "2024-06-20"), ("/news-b.xml", "2024-06-20"))
    first = poll(feed_server.url("/sitemap_index.xml"))
    assert len(first.extra_raws) == 2

    # Same index (a 304 to its ETag): the children are not even asked for.
    second = poll(feed_server.url("/sitemap_index.xml"), state=first.state)
    assert (second.status, second.raw, second.extra_raws) == ("not_modified", None, ())
    assert (
        len(feed_server.hits("/news-a.xml")) == 1
        and second.state.sitemap_children == first.state.sitemap_children
    )

    # A new <lastmod> for news-a, which changed: both are fetched, only news-a lands.
    _serve_news(feed_server, "/news-a.xml", "a1", "a3")
    _serve_index(feed_server, ("/news-a.xml", "2024-06-21"), ("/news-b.xml", "2024-06-20"))
    third = poll(feed_server.url("/sitemap_index.xml"), state=second.state)
    assert third.status == "ok" and "1 landed, 1 unchanged, 0 failed" in third.detail
    [news_a] = third.extra_raws
    assert news_a.origin == feed_server.url("/news-a.xml") and b"a3" in (news_a.body or b"")
    assert len(feed_server.hits("/news-b.xml")) == 2

    # The URL no longer serves an index: the children's hashes are forgotten.
    feed_server.routes["/sitemap_index.xml"] = feed_server.routes["/news-b.xml"]
    fourth = poll(feed_server.url("/sitemap_index.xml"), state=third.state)
    assert fourth.status == "ok" and fourth.extra_raws == () and fourth.state.sitemap_children is None


def test_a_child_on_a_refused_address_is_an_error_record_and_nothing_is_asked_of_it(
    feed_server: FeedServer,
) -> None:
    other = FeedServer().start()
    try:
        _serve_news(other, "/news.xml", "private")
        _serve_news(feed_server, "/news.xml", "public")
        _serve_index(feed_server, other.url("/news.xml"), "/news.xml")
        # The first server's port only: 127.0.0.1 on any other port stays a private address.
        settings = dataclasses.replace(FAST_HTTP, allow_hosts=(f"127.0.0.1:{_port(feed_server)}",))
        outcome = poll(feed_server.url("/sitemap_index.xml"), settings)
        assert other.requests == []
    finally:
        other.stop()

    assert outcome.status == "ok" and outcome.state.consecutive_failures == 0
    assert "1 landed, 0 unchanged, 1 failed" in outcome.detail
    refused, public = outcome.extra_raws
    assert (refused.origin, refused.status, refused.error_kind, refused.body) == (
        other.url("/news.xml"),
        "error",
        "permanent",
        None,
    )
    assert (refused.error or "").startswith("refused_address: 127.0.0.1"), refused.error
    assert refused.source == "coast-index" and refused.source_kind == "feed"
    [reject] = list(parse_raw(refused))
    assert isinstance(reject, Reject)
    assert (reject.stage, reject.reason, reject.origin) == (
        "fetch",
        "refused_address",
        other.url("/news.xml"),
    )
    assert [e.title for e in parse_feed_bytes(public, public.body or b"").entries] == ["Story public"]
    assert outcome.state.sitemap_children is not None and list(outcome.state.sitemap_children) == [
        feed_server.url("/news.xml")
    ], "a failed child has no hash: it lands the next time it is fetched"


def test_children_that_fail_are_typed_error_records_each(feed_server: FeedServer) -> None:
    _serve_news(feed_server, "/news.xml", "fine")
    feed_server.routes["/big-news.xml"] = Route(
        urlset(*(news_url(f"https://c.example/{n}", "x" * 80) for n in range(40)))
    )
    feed_server.routes["/feed.xml"] = Route(feed_fixture("rss2.xml"))
    feed_server.routes["/zipped-news.xml.gz"] = Route(
        gzip.compress(urlset()), content_type="application/x-gzip"
    )
    feed_server.routes["/down-news.xml"] = Route(b"busy", status=503, content_type="text/plain")
    _serve_index(
        feed_server,
        "/news.xml",
        "/missing-news.xml",
        "/big-news.xml",
        "/feed.xml",
        "/zipped-news.xml.gz",
        "/down-news.xml",
        "ftp://c.example/news.xml",
    )
    settings = dataclasses.replace(FAST_HTTP, max_bytes=4096)  # the index and news.xml fit, big-news.xml not
    assert len(feed_server.routes["/big-news.xml"].body) > 4096
    outcome = poll(feed_server.url("/sitemap_index.xml"), settings)

    assert outcome.status == "ok" and "1 landed, 0 unchanged, 6 failed" in outcome.detail
    errors = _errors(outcome)
    assert {path: error.split(":", 1)[0] for path, error in errors.items()} == {
        "missing-news.xml": "HTTP 404",
        "big-news.xml": "too_large",
        "feed.xml": "not_a_sitemap",
        "zipped-news.xml.gz": "not_a_sitemap",
        "down-news.xml": "HTTP 503",
        "news.xml": "bad_url",  # ftp://c.example/news.xml
    }
    assert "gzip" in errors["zipped-news.xml.gz"] and "not <urlset>" in errors["feed.xml"]
    kinds = {r.origin.rsplit("/", 1)[1]: r.error_kind for r in outcome.extra_raws if r.status == "error"}
    assert kinds["down-news.xml"] == "retryable" and kinds["missing-news.xml"] == "permanent"
    [ok] = [r for r in outcome.extra_raws if r.status == "ok"]
    assert ok.origin == feed_server.url("/news.xml")


def test_at_most_max_children_are_fetched_news_and_newest_first(feed_server: FeedServer) -> None:
    children: list[str | tuple[str, str]] = [
        (f"/pages-{n}.xml", f"2024-05-{n + 1:02d}") for n in range(MAX_CHILDREN + 3)
    ]
    children[7:7] = ["/news-undated.xml"]
    for n in range(MAX_CHILDREN + 3):
        feed_server.routes[f"/pages-{n}.xml"] = Route(urlset(), content_type="application/xml")
    _serve_news(feed_server, "/news-undated.xml", "n1")
    _serve_index(feed_server, *children)
    outcome = poll(feed_server.url("/sitemap_index.xml"), dataclasses.replace(FAST_HTTP, total_deadline=10.0))

    fetched = _requested(feed_server)[1:]
    assert len(fetched) == MAX_CHILDREN == len(outcome.extra_raws)
    expected = ["/news-undated.xml"] + [f"/pages-{n}.xml" for n in range(MAX_CHILDREN + 2, 3, -1)]
    assert fetched == expected, "the news sitemap, then the newest pages"
    assert (
        f"{MAX_CHILDREN} followed" in outcome.detail
        and f"listing {MAX_CHILDREN + 4} sitemaps" in outcome.detail
    )
    # The index, once landed and parsed, names the sitemaps left out.
    assert outcome.raw is not None
    [reject] = list(parse_raw(outcome.raw))
    assert isinstance(reject, Reject) and (reject.stage, reject.reason) == ("parse", "sitemap_index_capped")
    for n in range(4):
        assert feed_server.url(f"/pages-{n}.xml") in reject.detail


def test_a_nested_index_is_listed_in_a_typed_reject_and_not_followed(feed_server: FeedServer) -> None:
    _serve_news(feed_server, "/news.xml", "top")
    _serve_news(feed_server, "/deep-news.xml", "deep")
    _serve_index(feed_server, "/deep-news.xml", path="/news-index.xml")
    _serve_index(feed_server, "/news-index.xml", "/news.xml")
    outcome = poll(feed_server.url("/sitemap_index.xml"))

    assert outcome.status == "ok" and not feed_server.hits("/deep-news.xml")
    nested, news = outcome.extra_raws
    assert (nested.origin, nested.status, nested.error_kind, nested.http_status) == (
        feed_server.url("/news-index.xml"),
        "error",
        "permanent",
        200,
    )
    assert (nested.error or "").startswith("sitemap_index_nested: a sitemap index inside the sitemap index")
    assert feed_server.url("/deep-news.xml") in (nested.error or "") and "lists 1 sitemaps" in (
        nested.error or ""
    )
    [reject] = list(parse_raw(nested))
    assert isinstance(reject, Reject) and (reject.stage, reject.reason) == ("fetch", "sitemap_index_nested")
    assert news.status == "ok" and news.origin == feed_server.url("/news.xml")


def test_the_polls_one_deadline_covers_its_children(feed_server: FeedServer) -> None:
    feed_server.routes["/news-slow.xml"] = Route(hang=30)
    _serve_news(feed_server, "/pages.xml", "late")
    _serve_index(feed_server, "/pages.xml", "/news-slow.xml")
    settings = dataclasses.replace(FAST_HTTP, total_deadline=1.0, read_timeout=10.0)
    started = time.monotonic()
    outcome = poll(feed_server.url("/sitemap_index.xml"), settings)
    elapsed = time.monotonic() - started

    assert elapsed < 2.5, elapsed
    assert outcome.status == "ok" and outcome.state.consecutive_failures == 0
    assert _errors(outcome) == {
        "news-slow.xml": "deadline: response not complete within 1s",
        "pages.xml": "deadline: not fetched: the poll's total_deadline of 1s ran out",
    }
    assert not feed_server.hits("/pages.xml")
    assert all(r.error_kind == "retryable" for r in outcome.extra_raws)


def test_credentials_go_to_children_on_the_feeds_own_origin_only(feed_server: FeedServer) -> None:
    other = FeedServer().start()
    try:
        _serve_news(feed_server, "/news.xml", "own")
        _serve_news(other, "/news.xml", "elsewhere")
        _serve_index(feed_server, "/news.xml", other.url("/news.xml"))
        url = feed_server.url("/sitemap_index.xml").replace("http://", "http://reader:s3cret@")
        outcome = poll(url)
        assert outcome.status == "ok" and [r.status for r in outcome.extra_raws] == ["ok", "ok"]
        assert [h.get("Authorization") for h in feed_server.hits("/news.xml")] == [
            "Basic cmVhZGVyOnMzY3JldA=="
        ]
        assert [h.get("Authorization") for h in other.hits("/news.xml")] == [None]
        assert all("s3cret" not in r.origin for r in landed_raws([outcome]))
    finally:
        other.stop()


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
    server.routes["/robots.txt"] = Route(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    server.routes["/2024/06/20/lighthouse"] = Route(fixture("page_lighthouse.html"), content_type=HTML)
    server.routes["/2024/06/19/trawlers"] = Route(fixture("page_trawlers.html"), content_type=HTML)
    server.routes["/private/minutes"] = Route(fixture("page_trawlers.html"), content_type=HTML)


def _config(tmp_path: Path, seeds_dir: Path, server: FeedServer):  # type: ignore[no-untyped-def]
    feeds = [FeedSource("coast", server.url("/news-sitemap.xml"))]  # fetch_articles not set
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
    assert {s.source: s.status for s in report.sources if s.kind == "feed"} == {"coast": "ok"}
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


def test_cycle_follows_an_index_and_fetches_its_news_entries_pages(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer
) -> None:
    _serve_site(feed_server)
    feed_server.routes["/pages-sitemap.xml"] = Route(
        urlset(f"<url><loc>{feed_server.url('/about')}</loc></url>"), content_type="application/xml"
    )
    _serve_index(feed_server, "/pages-sitemap.xml", "/news-sitemap.xml", "/gone-news.xml")
    config = _config(tmp_path, seeds_dir, feed_server)
    config = dataclasses.replace(
        config, feeds=(FeedSource("coast-index", feed_server.url("/sitemap_index.xml")),)
    )
    report = run_cycle(config)
    out = config.output_dir

    assert report.exit_code == EXIT_OK
    assert {s.source: s.status for s in report.sources if s.kind == "feed"} == {"coast-index": "ok"}
    raws = duck_rows(out, "raw", "source, source_kind, origin, status")
    documents = [r for r in raws if (r["source"], r["source_kind"]) == ("coast-index", "feed")]
    assert sorted((r["origin"].rsplit("/", 1)[1], r["status"]) for r in documents) == [
        ("gone-news.xml", "error"),
        ("news-sitemap.xml", "ok"),
        ("pages-sitemap.xml", "ok"),
        ("sitemap_index.xml", "ok"),
    ]
    rows = duck_rows(out, "articles", "source, url, title, text")
    articles = {r["url"].rsplit("/", 1)[1]: r for r in rows if r["source"] == "coast-index"}
    assert sorted(articles) == ["lighthouse", "minutes", "trawlers"]
    assert "volunteer keepers" in articles["lighthouse"]["text"], (
        "the child's entries had their pages fetched"
    )
    assert articles["minutes"]["text"] == ""
    rejects = {
        (r["stage"], r["reason"])
        for r in duck_rows(out, "rejects", "source, stage, reason")
        if r["source"] == "coast-index"
    }
    assert rejects == {
        ("fetch", "HTTP 404"),
        ("parse", "sitemap_not_news"),
        ("article", "robots_disallowed"),
    }
    assert not feed_server.hits("/about")

    # The same index again: nothing is fetched but the index, no run.
    again = run_cycle(config)
    assert again.run_id is None and len(feed_server.hits("/news-sitemap.xml")) == 1


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

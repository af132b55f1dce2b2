"""Feed discovery: a configured URL that serves a web page is searched for the feed it links,
which is fetched in the same poll through the same fetch core, and polled from then on.
Real servers on 127.0.0.1; a real run read back with DuckDB."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.discovery import find_feed_url, is_html_page
from connectors.errors import PERMANENT
from connectors.fetch import HttpSettings
from connectors.http import FeedSource, FetchOutcome, poll_feeds
from connectors.state import FeedState, load_feed_states
from pipeline.lake.store import Lake
from pipeline.run import run_cycle
from tests.conftest import FAST_HTTP, feed_fixture, make_config
from tests.feedserver import FeedServer, Route
from tests.lakeread import duck_rows

T0 = datetime(2024, 6, 21, 12, 0, tzinfo=timezone.utc)
RSS = feed_fixture("rss2.xml")
ATOM = feed_fixture("atom.xml")
HTML = "text/html; charset=utf-8"
SEARCHED = (
    'no_feed_found: no <link rel="alternate"> of type application/rss+xml, application/atom+xml, '
    "application/feed+json or application/json in "
)


def page(*links: str, body: str = "<p>Welcome</p>") -> bytes:
    head = "".join(links)
    return f"<!DOCTYPE html><html><head><title>Site</title>{head}</head><body>{body}</body></html>".encode()


def link(href: str, kind: str = "application/rss+xml", rel: str = "alternate") -> str:
    return f'<link rel="{rel}" type="{kind}" href="{href}">'


def poll(
    source: FeedSource, state: FeedState | None = None, at: datetime = T0, settings: HttpSettings = FAST_HTTP
) -> FetchOutcome:
    [outcome] = poll_feeds([source], {source.url: state or FeedState()}, settings, clock=lambda: at)
    return outcome


def _port(server: FeedServer) -> int:
    return int(server.url("/").rsplit(":", 1)[1].strip("/"))


@pytest.fixture
def internal() -> Iterator[FeedServer]:
    """Another port on 127.0.0.1: an internal service no feed may reach."""
    server = FeedServer().start()
    server.routes["/feed"] = Route(
        b"<rss><channel><item><title>internal secret</title></item></channel></rss>"
    )
    yield server
    server.stop()


# --- finding the link -----------------------------------------------------------------------


def test_rss_is_preferred_then_atom_then_json_feed() -> None:
    at = "https://site.example/news/"
    everything = page(
        link("/feed.json", "application/feed+json"),
        link("/atom.xml", "application/atom+xml"),
        link("/first.rss"),
        link("/second.rss"),
    )
    assert find_feed_url(everything, at) == "https://site.example/first.rss"
    no_rss = page(link("data.json", "application/json"), link("feed.json", "application/feed+json"))
    assert find_feed_url(no_rss, at) == "https://site.example/news/feed.json"
    assert find_feed_url(page(link("atom", "application/atom+xml"), link("j", "application/json")), at) == (
        "https://site.example/news/atom"
    )


@pytest.mark.parametrize(
    ("html", "found"),
    [
        # relative to the page, to <base href>, protocol-relative, feed: URIs
        (page(link("rss.xml")), "https://site.example/news/rss.xml"),
        (page('<base href="https://cdn.example/x/">', link("rss.xml")), "https://cdn.example/x/rss.xml"),
        (page(link("//feeds.example/site")), "https://feeds.example/site"),
        (page(link("feed://feeds.example/site")), "http://feeds.example/site"),
        (page(link("feed:https://feeds.example/site")), "https://feeds.example/site"),
        # rel is a token list and case-insensitive; type may carry parameters
        (
            page(link("/a", "Application/RSS+XML; charset=utf-8", rel="Alternate feed")),
            "https://site.example/a",
        ),
        # not a feed link: another rel, another type, a scheme that is not http(s), the page itself
        (page(link("/a", rel="stylesheet"), link("/b", "text/html"), link("javascript:alert(1)")), None),
        (page(link("https://site.example/news/"), link("#top")), None),
        # only the <head> counts
        (page(body=link("/in-body.rss")), None),
        (b"<html><body><p>no head at all</p></body></html>", None),
        (b"", None),
    ],
)
def test_links_are_resolved_and_only_feed_links_in_the_head_count(html: bytes, found: str | None) -> None:
    assert find_feed_url(html, "https://site.example/news/") == found


def test_the_head_is_read_only_up_to_its_end() -> None:
    late = page(body="<p>x</p>" * 10) + link("/after-the-page.rss").encode()
    assert find_feed_url(late, "https://site.example/") is None
    huge_head = b"<html><head><script>" + b"x" * (2 * 1024 * 1024) + b"</script>" + link("/late.rss").encode()
    assert find_feed_url(huge_head, "https://site.example/") is None  # past HEAD_SCAN_BYTES


@pytest.mark.parametrize(
    ("body", "content_type", "is_page"),
    [
        (page(), HTML, True),
        (page(), None, True),  # sniffed: <!DOCTYPE html>
        (b"  <html><head></head></html>", "application/xml", True),
        (feed_fixture("not_a_feed.html"), HTML, True),
        (b"<p>just a fragment</p>", HTML, True),
        (RSS, HTML, False),  # a feed served as text/html is still a feed
        (ATOM, "text/plain", False),
        (b'<?xml version="1.0"?>\n<!-- a comment -->\n<rdf:RDF xmlns:rdf="x"></rdf:RDF>', HTML, False),
        (feed_fixture("enc_utf16le_bom.xml"), HTML, False),
        (b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"></urlset>', HTML, False),
        (b"<!--" + b"c" * 10_000 + b"--><rss></rss>", HTML, False),  # a prolog longer than the sniff
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', HTML, False),
        (b"<p>a fragment</p>", "application/rss+xml", False),  # left to the parser: not_a_feed
        (b"", HTML, False),
    ],
)
def test_a_page_is_told_from_a_feed(body: bytes, content_type: str | None, is_page: bool) -> None:
    assert is_html_page(body, content_type) is is_page


# --- polling through the fetch core -------------------------------------------------------------


def test_a_site_page_leads_to_its_feed_which_is_polled_directly_from_then_on(feed_server: FeedServer) -> None:
    feed_server.routes["/"] = Route(page(link("/feed.xml")), content_type=HTML)
    feed_server.routes["/feed.xml"] = Route(RSS)
    source = FeedSource("site", feed_server.url("/"))

    first = poll(source)

    assert first.status == "ok" and first.raw is not None and first.raw.body == RSS
    assert first.raw.origin == source.url and first.source.url == source.url  # the identity stays
    assert first.detail.endswith(f"from {feed_server.url('/feed.xml')}, the feed linked by the page")
    assert first.state.url == first.state.discovered_url == feed_server.url("/feed.xml")
    assert len(feed_server.hits("/")) == 1 and len(feed_server.hits("/feed.xml")) == 1
    assert "If-None-Match" not in feed_server.hits("/feed.xml")[0]

    second = poll(source, first.state, T0 + timedelta(hours=1))

    assert second.status == "not_modified", "the feed's own validators are sent to it"
    assert len(feed_server.hits("/")) == 1, "the page is not read again"
    assert len(feed_server.hits("/feed.xml")) == 2 and "If-None-Match" in feed_server.hits("/feed.xml")[1]
    assert second.state.url == feed_server.url("/feed.xml")


def test_a_page_without_a_feed_link_is_a_permanent_error_naming_what_was_looked_for(
    feed_server: FeedServer,
) -> None:
    feed_server.routes["/about"] = Route(
        page(link("/style.css", "text/css", rel="stylesheet")), content_type=HTML
    )
    outcome = poll(FeedSource("site", feed_server.url("/about")))

    assert outcome.status == "error" and outcome.detail == SEARCHED + feed_server.url("/about")
    assert outcome.raw is not None and outcome.raw.error_kind == PERMANENT and outcome.raw.body is None
    assert outcome.state.url is None and outcome.state.consecutive_failures == 1
    assert outcome.state.next_poll_at is not None and not outcome.state.retired


def test_a_discovered_link_to_a_refused_address_is_refused_like_any_hop(
    feed_server: FeedServer, internal: FeedServer
) -> None:
    feed_server.routes["/"] = Route(page(link(internal.url("/feed"))), content_type=HTML)
    only_the_site = dataclasses.replace(FAST_HTTP, allow_hosts=(f"127.0.0.1:{_port(feed_server)}",))

    outcome = poll(FeedSource("site", feed_server.url("/")), settings=only_the_site)

    assert outcome.status == "error" and outcome.detail.startswith("refused_address: 127.0.0.1")
    assert outcome.raw is not None and outcome.raw.error_kind == PERMANENT
    assert feed_server.hits("/") and not internal.requests, "the internal server was never reached"
    assert outcome.state.url is None and outcome.state.discovered_url is None


def test_a_discovered_feed_shares_the_polls_deadline(feed_server: FeedServer) -> None:
    feed_server.routes["/"] = Route(page(link("/slow.xml")), content_type=HTML)
    feed_server.routes["/slow.xml"] = Route(RSS, hang=5.0)
    quick = dataclasses.replace(FAST_HTTP, read_timeout=5.0, total_deadline=1.0)

    outcome = poll(FeedSource("site", feed_server.url("/")), settings=quick)

    assert outcome.status == "error" and outcome.detail.startswith("deadline: ")


def test_a_link_to_another_page_is_not_followed_further(feed_server: FeedServer) -> None:
    feed_server.routes["/"] = Route(page(link("/other")), content_type=HTML)
    feed_server.routes["/other"] = Route(page(link("/feed.xml")), content_type=HTML)
    feed_server.routes["/feed.xml"] = Route(RSS)

    outcome = poll(FeedSource("site", feed_server.url("/")))

    assert outcome.status == "error" and outcome.detail.startswith("no_feed_found: ")
    assert "is a web page, not a feed" in outcome.detail and not feed_server.hits("/feed.xml")


@pytest.mark.parametrize("status", [404, 410])
def test_a_discovered_feed_that_is_gone_sends_the_next_poll_back_to_the_page(
    feed_server: FeedServer, status: int
) -> None:
    feed_server.routes["/"] = Route(page(link("/old.xml")), content_type=HTML)
    feed_server.routes["/old.xml"] = Route(RSS)
    source = FeedSource("site", feed_server.url("/"))
    found = poll(source)
    feed_server.routes["/old.xml"] = Route(b"gone", status=status, content_type="text/plain")
    feed_server.routes["/"] = Route(page(link("/new.xml")), content_type=HTML)
    feed_server.routes["/new.xml"] = Route(feed_fixture("rss2_update.xml"))

    lost = poll(source, found.state, T0 + timedelta(hours=1))

    assert lost.status == "error" and lost.detail == f"HTTP {status}"
    assert lost.state.url is None and lost.state.discovered_url is None and lost.state.etag is None
    assert not lost.state.retired, "the configured page is still there"
    assert len(feed_server.hits("/")) == 1

    again = poll(source, dataclasses.replace(lost.state, next_poll_at=None), T0 + timedelta(hours=2))

    assert again.status == "ok" and again.state.url == feed_server.url("/new.xml")
    assert len(feed_server.hits("/")) == 2 and again.state.consecutive_failures == 0


def test_a_configured_page_that_moved_permanently_is_still_searched(feed_server: FeedServer) -> None:
    feed_server.routes["/old-home"] = Route(status=301, headers={"Location": "/home/"}, content_type=HTML)
    feed_server.routes["/home/"] = Route(page(link("rss.xml")), content_type=HTML)
    feed_server.routes["/home/rss.xml"] = Route(RSS)

    outcome = poll(FeedSource("site", feed_server.url("/old-home")))

    assert outcome.status == "ok", "relative hrefs resolve against the page that answered"
    assert outcome.state.url == feed_server.url("/home/rss.xml") and outcome.state.redirect_target is None


# --- end to end ---------------------------------------------------------------------------


def test_runs_land_a_discovered_feed_and_poll_it_directly_next_time(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/"] = Route(
        page(link("/feeds/atom", "application/atom+xml"), link("/rss")), content_type=HTML
    )
    feed_server.routes["/rss"] = Route(RSS)
    feed_server.routes["/feeds/atom"] = Route(ATOM, content_type="application/atom+xml")
    feed_server.routes["/blank"] = Route(page(), content_type=HTML)
    feeds = [FeedSource("site", feed_server.url("/")), FeedSource("blank", feed_server.url("/blank"))]
    config = make_config(tmp_path, seeds_dir, feeds)

    first = run_cycle(config, clock=lambda: T0)

    status = {s.source: (s.status, s.detail) for s in first.sources}
    assert status["site"][0] == "ok" and status["blank"] == ("error", SEARCHED + feed_server.url("/blank"))
    out = config.output_dir
    titles = {r["title"] for r in duck_rows(out, "articles", "title")}
    assert "Putin and Kim Jong Un sign defence treaty in Pyongyang" in titles, "RSS was preferred"
    sources = {r["source"] for r in duck_rows(out, "articles", "source")}
    assert "site" in sources and "blank" not in sources
    rejects = {
        (r["source"], r["stage"], r["reason"]) for r in duck_rows(out, "rejects", "source, stage, reason")
    }
    assert ("blank", "fetch", "no_feed_found") in rejects
    saved = load_feed_states(Lake(out).state_path("feeds.json"))
    assert saved[feed_server.url("/")].discovered_url == feed_server.url("/rss")

    feed_server.routes["/rss"] = Route(feed_fixture("rss2_update.xml"))
    second = run_cycle(config, clock=lambda: T0 + timedelta(hours=1))

    assert {s.source: s.status for s in second.sources}["site"] == "ok"
    assert len(feed_server.hits("/")) == 1 and len(feed_server.hits("/rss")) == 2
    assert not feed_server.hits("/feeds/atom")
    titles = {r["title"] for r in duck_rows(out, "articles", "title")}
    assert "Russian delegation arrives in Pyongyang for munitions talks" in titles

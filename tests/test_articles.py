"""Full-article fetching: pages, robots.txt, extraction, the join, and whole cycles on real parts."""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from connectors.articles import (
    PAGE_KIND,
    ArticleSettings,
    PageRequest,
    extract_article,
    fetch_pages,
    new_page_requests,
    page_error,
)
from connectors.errors import PERMANENT, Problem
from connectors.http import FeedSource, FetchOutcome
from connectors.state import FeedState
from pipeline.config import ConfigError, parse_config
from pipeline.run import EXIT_OK, run_cycle
from pipeline.steps.pages import JoinArticlePages
from schemas.records import Entry, RawFetch
from tests.conftest import FAST_HTTP, FIXTURES, make_config
from tests.feedserver import FeedServer, Route
from tests.lakeread import duck_rows
from tests.test_netguard import CountingListener

FETCHED = datetime(2024, 6, 21, 12, 0, tzinfo=timezone.utc)
GOOD_PAGE = (FIXTURES / "articles" / "good.html").read_bytes()
NO_TEXT_PAGE = (FIXTURES / "articles" / "no_text.html").read_bytes()
HTML = "text/html; charset=utf-8"
PAGE_HTTP = dataclasses.replace(FAST_HTTP, allow_hosts=())


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    server = CountingListener()
    yield server
    server.close()


def _port(server: FeedServer) -> int:
    return int(server.url("/").rsplit(":", 1)[1].strip("/"))


def _settings(server: FeedServer, **kw: object) -> ArticleSettings:
    return dataclasses.replace(ArticleSettings(allow_hosts=(f"127.0.0.1:{_port(server)}",)), **kw)  # type: ignore[arg-type]


def _fetch(server: FeedServer, paths: list[str], **kw: object) -> list[RawFetch]:
    requests = [PageRequest("wire", server.url(p)) for p in paths]
    # Only the page server's port is opened, through `[articles] allow_hosts`.
    return fetch_pages(requests, _settings(server, **kw), PAGE_HTTP, clock=lambda: FETCHED)


def _reason(page: RawFetch) -> str:
    return (page.error or "").split(":", 1)[0]


# --- fetching ---------------------------------------------------------------


def test_pages_come_back_as_raw_records_with_the_user_agent_sent(feed_server: FeedServer) -> None:
    feed_server.routes["/news/good"] = Route(GOOD_PAGE, content_type=HTML)
    [page] = _fetch(feed_server, ["/news/good"])
    assert page.status == "ok" and page.source_kind == PAGE_KIND and page.body == GOOD_PAGE
    assert page.origin == feed_server.url("/news/good")
    assert feed_server.hits("/news/good")[0]["User-Agent"] == FAST_HTTP.user_agent
    assert feed_server.hits("/robots.txt")[0]["User-Agent"] == FAST_HTTP.user_agent


def test_robots_rules_are_fetched_once_per_host_and_honoured(feed_server: FeedServer) -> None:
    feed_server.routes["/robots.txt"] = Route(
        b"User-agent: *\nDisallow: /private/\n\nUser-agent: newsbeam\nDisallow: /nb-only/\n",
        content_type="text/plain",
    )
    for path in ("/news/a", "/news/b", "/private/c", "/nb-only/d"):
        feed_server.routes[path] = Route(GOOD_PAGE, content_type=HTML)
    feed_server.routes["/news/moved"] = Route(
        status=301, headers={"Location": "/nb-only/e"}, content_type=HTML
    )
    pages = _fetch(feed_server, ["/news/a", "/news/b", "/private/c", "/nb-only/d", "/news/moved"])
    # The group naming newsbeam replaces the `*` group for it (RFC 9309).
    assert [p.status for p in pages] == ["ok", "ok", "ok", "error", "error"]
    assert _reason(pages[3]) == _reason(pages[4]) == "robots_disallowed", "redirect hops obey robots.txt too"
    assert len(feed_server.hits("/robots.txt")) == 1
    assert not feed_server.hits("/nb-only/d") and not feed_server.hits("/nb-only/e")


@pytest.mark.parametrize(("status", "allowed"), [(404, True), (410, True), (500, False), (503, False)])
def test_robots_failures_follow_the_convention(feed_server: FeedServer, status: int, allowed: bool) -> None:
    feed_server.routes["/robots.txt"] = Route(b"", status=status, content_type="text/plain")
    feed_server.routes["/news/a"] = Route(GOOD_PAGE, content_type=HTML)
    [page] = _fetch(feed_server, ["/news/a"])
    assert (page.status == "ok") is allowed
    if not allowed:
        assert _reason(page) == "robots_unavailable" and page.error_kind == "retryable"
        assert not feed_server.hits("/news/a")


def test_a_compressed_bomb_is_cut_off_at_the_size_cap(feed_server: FeedServer) -> None:
    bomb = gzip.compress(b"<p>" + b"a" * (8 * 1024 * 1024))
    assert len(bomb) < 20_000
    feed_server.routes["/bomb"] = Route(bomb, content_type=HTML, headers={"Content-Encoding": "gzip"})
    feed_server.routes["/small"] = Route(
        gzip.compress(GOOD_PAGE), content_type=HTML, headers={"Content-Encoding": "gzip"}
    )
    bombed, small = _fetch(feed_server, ["/bomb", "/small"], max_bytes=1024 * 1024)
    assert _reason(bombed) == "too_large" and bombed.body is None
    assert small.body == GOOD_PAGE


def test_failures_are_typed_records_not_exceptions(
    feed_server: FeedServer, listener: CountingListener
) -> None:
    feed_server.routes["/gone"] = Route(b"", status=410, content_type=HTML)
    feed_server.routes["/busy"] = Route(b"", status=503, content_type=HTML)
    feed_server.routes["/pdf"] = Route(b"%PDF-1.7", content_type="application/pdf")
    feed_server.routes["/loop"] = Route(status=302, headers={"Location": "/loop"}, content_type=HTML)
    feed_server.routes["/away"] = Route(
        status=301, headers={"Location": f"http://0x7f.1:{listener.port}/"}, content_type=HTML
    )
    pages = _fetch(feed_server, ["/gone", "/busy", "/pdf", "/loop", "/away"])
    reasons = [(_reason(p), p.error_kind) for p in pages]
    assert reasons == [
        ("HTTP 410", "permanent"),
        ("HTTP 503", "retryable"),
        ("not_html", "permanent"),
        ("redirects", "permanent"),
        ("refused_address", "permanent"),
    ]
    assert listener.accepts == 0


def test_pages_past_the_run_deadline_are_skipped_with_a_reason(feed_server: FeedServer) -> None:
    feed_server.routes["/slow"] = Route(GOOD_PAGE, content_type=HTML, hang=0.3)
    feed_server.routes["/next"] = Route(GOOD_PAGE, content_type=HTML)
    slow, skipped = _fetch(feed_server, ["/slow", "/next"], run_deadline=0.1, concurrency=1)
    assert _reason(skipped) == "skipped" and skipped.error_kind == "retryable"
    assert not feed_server.hits("/next")


def _feed_outcome(name: str, body: bytes, fetch_articles: bool = True) -> FetchOutcome:
    raw = RawFetch(
        raw_id=f"feed-{name}", source=name, source_kind="feed", origin=f"https://{name}.example/rss",
        fetched_at=FETCHED, status="ok", http_status=200, content_type="application/rss+xml", body=body,
    )  # fmt: skip
    return FetchOutcome(
        FeedSource(name, raw.origin, fetch_articles=fetch_articles), "ok", "", raw, FeedState()
    )


def _rss(*links: str) -> bytes:
    items = "".join(
        f"<item><title>Item {n}</title><link>{link}</link><description>Teaser {n}</description></item>"
        for n, link in enumerate(links)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()
    )


def test_only_new_links_of_feeds_that_ask_for_pages_are_requested() -> None:
    outcomes = [
        _feed_outcome("wire", _rss("https://w.example/a", "https://w.example/b#top", "https://w.example/c")),
        _feed_outcome("plain", _rss("https://p.example/x"), fetch_articles=False),
        dataclasses.replace(
            _feed_outcome("same", _rss("https://s.example/y")), raw=None, status="not_modified"
        ),
    ]
    requests = new_page_requests(outcomes, seen={"https://w.example/b"}, limit=5)
    assert [r.url for r in requests] == ["https://w.example/a", "https://w.example/c"]
    assert [r.url for r in new_page_requests(outcomes, seen=set(), limit=1)] == ["https://w.example/a"]


# --- extraction and the join -------------------------------------------------


def test_extraction_finds_the_main_text_and_the_date() -> None:
    page = extract_article(GOOD_PAGE, "https://wire.example.org/x", FETCHED, 200, want_date=True)
    assert not isinstance(page, Problem)
    assert "Sunan International Airport" in page.text
    assert "Most read" not in page.text and "All rights reserved" not in page.text
    assert page.published == "2024-06-21"
    failed = extract_article(NO_TEXT_PAGE, "https://wire.example.org/y", FETCHED, 200)
    assert isinstance(failed, Problem) and failed.reason == "extraction_failed"


def _entry(url: str, position: int, teaser: str = "A short teaser.") -> Entry:
    return Entry(
        raw_id="feed-raw", source="wire", source_kind="feed", origin="https://wire.example.org/rss",
        fetched_at=FETCHED, position=position, title=f"Title {position}", url=url, html=f"<p>{teaser}</p>",
    )  # fmt: skip


def _page(url: str, body: bytes) -> RawFetch:
    return RawFetch(
        raw_id=f"page-{url}", source="wire", source_kind=PAGE_KIND, origin=url, fetched_at=FETCHED,
        status="ok", http_status=200, content_type=HTML, body=body,
    )  # fmt: skip


def test_join_gives_full_text_or_keeps_the_teaser_with_a_reject() -> None:
    good, empty, refused, plain = (
        f"https://wire.example.org/{n}" for n in ("good", "empty", "refused", "plain")
    )
    entries = [_entry(good, 0), _entry(empty, 1), _entry(refused, 2), _entry(plain, 3)]
    pages = [
        _page(good, GOOD_PAGE),
        _page(empty, NO_TEXT_PAGE),
        page_error(
            PageRequest("wire", refused), FETCHED, "refused_address", "127.0.0.1 is loopback", PERMANENT
        ),
    ]
    with TestPipeline() as p:
        out = (
            p | "Entries" >> beam.Create(entries),
            p | "Pages" >> beam.Create(pages),
        ) | JoinArticlePages(frozenset({good, empty, refused}), ArticleSettings())
        texts = out["entries"] | beam.Map(lambda e: (e.url, "Sunan" in (e.text or ""), e.html))
        assert_that(
            texts,
            equal_to(
                [
                    (good, True, "<p>A short teaser.</p>"),
                    (empty, False, "<p>A short teaser.</p>"),
                    (refused, False, "<p>A short teaser.</p>"),
                    (plain, False, "<p>A short teaser.</p>"),
                ]
            ),
            label="Entries",
        )
        reasons = out["rejects"] | beam.Map(
            lambda r: (r.origin, r.stage, r.reason, r.retryable, bool(r.detail))
        )
        assert_that(
            reasons,
            equal_to(
                [
                    (empty, "article", "extraction_failed", False, True),
                    (refused, "article", "refused_address", False, True),
                ]
            ),
            label="Rejects",
        )
        dates = out["entries"] | beam.Filter(lambda e: e.url == good) | beam.Map(lambda e: e.published)
        assert_that(dates, equal_to(["2024-06-21"]), label="PageDate")


# --- configuration -----------------------------------------------------------


def test_config_keys(tmp_path: Path) -> None:
    config = parse_config(
        {
            "feeds": [{"name": "wire", "url": "https://wire.example/rss", "fetch_articles": True}],
            "articles": {"max_per_run": 5, "allow_hosts": ["10.0.0.0/8", "wiki.corp:8443"]},
        },
        tmp_path,
        "test.toml",
    )
    assert config.feeds[0].fetch_articles is True
    assert config.articles.max_per_run == 5 and config.articles.allow_hosts == (
        "10.0.0.0/8",
        "wiki.corp:8443",
    )
    for bad, key in [
        ({"articles": {"allow_hosts": ["ok.example", "10.0.0.0/99"]}}, "articles.allow_hosts[1]"),
        ({"articles": {"max_per_run": 0}}, "articles.max_per_run"),
        ({"articles": {"colour": 1}}, "articles.colour"),
        ({"feeds": [{"name": "w", "url": "https://w.example/", "fetch_articles": "yes"}]}, "fetch_articles"),
    ]:
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            parse_config(bad, tmp_path, "test.toml")


# --- whole cycles --------------------------------------------------------------

GOOD_HEADLINE = "Russian delegation arrives in Pyongyang for munitions talks"
TITLES = {"good": GOOD_HEADLINE}
TEASERS = {
    "good": "Russian officials land in Pyongyang for talks on shells.",
    "notext": "A paywalled story about rail links between Russia and North Korea.",
    "analysis": "Members-only analysis of the new defence treaty's fine print.",
    "moved": "A story whose page moved to an address we must not reach.",
    "internal": "A story linked straight at an internal address.",
}


def _teaser_feed(server: FeedServer, listener: CountingListener) -> bytes:
    links = {
        "good": server.url("/news/good"),
        "notext": server.url("/news/notext"),
        "analysis": server.url("/private/analysis"),
        "moved": server.url("/news/moved"),
        "internal": f"http://2130706433:{listener.port}/internal",
    }
    items = "".join(
        f"<item><title>{TITLES.get(key, key + ' headline')}</title><link>{links[key]}</link>"
        + ("" if key == "good" else "<pubDate>Thu, 20 Jun 2024 09:00:00 GMT</pubDate>")
        + f"<description>{teaser}</description></item>"
        for key, teaser in TEASERS.items()
    )
    channel = f"<channel><title>Wire</title>{items}</channel>"
    return f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>'.encode()


def _serve_site(server: FeedServer, listener: CountingListener) -> None:
    server.routes["/rss"] = Route(_teaser_feed(server, listener))
    server.routes["/robots.txt"] = Route(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    server.routes["/news/good"] = Route(GOOD_PAGE, content_type=HTML)
    server.routes["/news/notext"] = Route(NO_TEXT_PAGE, content_type=HTML)
    server.routes["/private/analysis"] = Route(GOOD_PAGE, content_type=HTML)
    server.routes["/news/moved"] = Route(
        status=302, headers={"Location": f"http://127.0.0.1:{listener.port}/stolen"}, content_type=HTML
    )


def _article_config(tmp_path: Path, seeds_dir: Path, server: FeedServer, out: str = "data"):  # type: ignore[no-untyped-def]
    config = make_config(
        tmp_path, seeds_dir, [FeedSource("wire", server.url("/rss"), fetch_articles=True)], out=out
    )
    # Feeds and pages may reach the site's port, nothing else on 127.0.0.1.
    http = dataclasses.replace(FAST_HTTP, allow_hosts=(f"127.0.0.1:{_port(server)}",))
    return dataclasses.replace(config, http=http, articles=_settings(server))


def test_cycle_lands_pages_and_articles_get_full_text_or_keep_their_teaser(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer, listener: CountingListener
) -> None:
    _serve_site(feed_server, listener)
    config = _article_config(tmp_path, seeds_dir, feed_server)
    report = run_cycle(config)
    out = config.output_dir
    assert report.exit_code == EXIT_OK

    articles = {r["url"].rsplit("/", 1)[1]: r for r in duck_rows(out, "articles") if r["source"] == "wire"}
    assert sorted(articles) == sorted(TEASERS)
    good = articles["good"]
    assert "Sunan International Airport" in good["text"] and "Most read" not in good["text"]
    assert good["published_at"] == datetime(2024, 6, 21, tzinfo=timezone.utc), "date found on the page"
    assert good["date_source"] == "published"
    for key in ("notext", "analysis", "moved", "internal"):
        assert articles[key]["text"] == TEASERS[key], key

    rejects = {r["origin"].rsplit("/", 1)[1]: r for r in duck_rows(out, "rejects") if r["stage"] == "article"}
    assert {k: r["reason"] for k, r in rejects.items()} == {
        "notext": "extraction_failed",
        "analysis": "robots_disallowed",
        "moved": "refused_address",
        "internal": "refused_address",
    }
    assert all("teaser" in r["detail"] for r in rejects.values())
    assert report.manifest is not None
    assert report.manifest["stats"]["by_source"]["wire"] == {"articles": 5}, "a kept teaser is no lost item"

    raw_pages = duck_rows(out, "raw", "origin, status, error", order="origin")
    raw_pages = [r for r in raw_pages if r["origin"].startswith("http") and "/rss" not in r["origin"]]
    assert len(raw_pages) == 5, "every page, fetched or not, is landed before processing"
    assert not feed_server.hits("/private/analysis")
    assert len(feed_server.hits("/robots.txt")) == 1
    assert listener.accepts == 0

    assert report.manifest["stats"]["reasons"]["rejects"] == {
        "extraction_failed": 1,
        "robots_disallowed": 1,
        "refused_address": 2,
    }

    # The feed has not changed: nothing is fetched again.
    second = run_cycle(config)
    assert second.run_id is None
    assert len(feed_server.hits("/news/good")) == 1

    # A new item: only its page is fetched.
    feed_server.routes["/news/new"] = Route(GOOD_PAGE.replace(b"Friday", b"Saturday"), content_type=HTML)
    body = feed_server.routes["/rss"].body.replace(
        b"</channel>",
        f"<item><title>new headline</title><link>{feed_server.url('/news/new')}</link>"
        "<description>Fresh teaser.</description></item></channel>".encode(),
    )
    feed_server.routes["/rss"] = Route(body)
    run_cycle(dataclasses.replace(config, articles=_settings(feed_server, max_per_run=1)))
    assert len(feed_server.hits("/news/new")) == 1
    assert len(feed_server.hits("/news/good")) == 1 and len(feed_server.hits("/news/notext")) == 1
    assert listener.accepts == 0

    # More new pages than max_per_run: the rest keep their teaser, and say why.
    for n in range(2):
        feed_server.routes[f"/news/later{n}"] = Route(
            GOOD_PAGE.replace(b"Friday", f"day {n}".encode()), content_type=HTML
        )
    body = feed_server.routes["/rss"].body.replace(
        b"</channel>",
        "".join(
            f"<item><title>later {n}</title><link>{feed_server.url(f'/news/later{n}')}</link>"
            f"<description>Later teaser {n}.</description></item>"
            for n in range(2)
        ).encode()
        + b"</channel>",
    )
    feed_server.routes["/rss"] = Route(body)
    fourth = run_cycle(dataclasses.replace(config, articles=_settings(feed_server, max_per_run=1)))
    assert fourth.manifest is not None
    assert fourth.manifest["stats"]["reasons"]["rejects"] == {"skipped": 1}


def test_a_crashed_run_is_finished_from_landed_pages_without_refetching_and_same_rows(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer, listener: CountingListener, monkeypatch
) -> None:
    _serve_site(feed_server, listener)
    straight = _article_config(tmp_path, seeds_dir, feed_server, out="straight")
    run_cycle(straight, clock=lambda: FETCHED)
    assert len(feed_server.hits("/news/good")) == 1

    crashed = _article_config(tmp_path, seeds_dir, feed_server, out="crashed")
    monkeypatch.setattr(
        "pipeline.run.build_graph", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("died"))
    )
    with pytest.raises(RuntimeError):
        run_cycle(crashed, clock=lambda: FETCHED)
    monkeypatch.undo()
    assert len(feed_server.hits("/news/good")) == 2
    run_cycle(crashed, clock=lambda: FETCHED)  # polls the feed again (no state saved); pages are landed
    assert len(feed_server.hits("/news/good")) == 2, "a landed page is never fetched again"
    state = json.loads((crashed.output_dir / "_state" / "article_pages.json").read_text())
    assert feed_server.url("/news/good") in state

    def rows(out: Path) -> tuple[list[dict], list[dict]]:
        return (
            duck_rows(out, "articles", "* EXCLUDE (run_id)", order="article_id"),
            duck_rows(out, "rejects", "* EXCLUDE (run_id)", order="reject_id"),
        )

    assert rows(straight.output_dir) == rows(crashed.output_dir)
    articles, rejects = rows(straight.output_dir)
    good = next(a for a in articles if a["title"] == GOOD_HEADLINE)
    assert good["text"].startswith("A Russian military delegation"), "the page's headline is not repeated"
    assert any(r["reason"] == "robots_disallowed" for r in rejects)

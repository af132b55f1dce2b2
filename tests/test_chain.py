"""One stage chain, two drivers: the same raw batches committed by the batch graph (a run)
and by the streaming job's pane commit give the same tables, article pages joined in
both; and `stream --streaming` fetches the pages of a `fetch_articles` feed."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.articles import PAGE_KIND, ArticleSettings
from connectors.http import FeedSource
from connectors.seeds import read_seed_dir
from connectors.state import FeedState
from pipeline.config import StreamSettings
from pipeline.lake.store import Lake
from pipeline.run import Polled, commit_pending, load_tagger, pipeline_options
from pipeline.streaming.panes import FeedPoll, Pane, commit_pane, seed_memory
from pipeline.streaming.unbounded import run_unbounded
from schemas.ids import sha256_hex
from schemas.records import RawFetch
from tests.conftest import FAST_HTTP, FIXTURES, ROOT, make_config
from tests.feedserver import FeedServer, Route
from tests.lakeread import duck_rows, snapshot_arrow
from tests.streamfeeds import pane_plan

T0 = datetime(2024, 6, 21, 12, 0, tzinfo=timezone.utc)
GOOD_PAGE = (FIXTURES / "articles" / "good.html").read_bytes()
NO_TEXT_PAGE = (FIXTURES / "articles" / "no_text.html").read_bytes()
WIRE = "https://wire.example/news"
TABLES = ("articles", "rejects", "duplicates", "dedup_index")


def wire_feed(base: str, links: list[str]) -> bytes:
    items = "".join(
        f"<item><title>Story {name}</title><link>{base}/{name}</link>"
        f"<description>A short teaser about {name}.</description>"
        "<pubDate>Thu, 20 Jun 2024 09:00:00 GMT</pubDate></item>"
        for name in links
    )
    channel = f"<channel><title>Wire</title>{items}</channel>"
    return f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>'.encode()


def fetched(kind: str, origin: str, body: bytes | None, **kw: Any) -> RawFetch:
    fields: dict[str, Any] = dict(
        raw_id=sha256_hex(origin.encode() + (body or b"")),
        source="wire",
        source_kind=kind,
        origin=origin,
        fetched_at=T0,
        status="ok",
        http_status=200,
        content_type="text/html" if kind == PAGE_KIND else "application/rss+xml",
        body=body,
    )
    fields.update(kw)
    return RawFetch(**fields)


@pytest.fixture
def raws(tmp_path: Path) -> list[RawFetch]:
    """A feed whose entries have a page (extracted), a page without text, a page that
    failed, and no page; a feed that failed; the project's seeds with near and exact
    copies; the fixture feeds (some of them malformed)."""
    feed = fetched("feed", "https://wire.example/rss", wire_feed(WIRE, ["good", "notext", "down", "nopage"]))
    pages = [
        fetched(PAGE_KIND, f"{WIRE}/good", GOOD_PAGE),
        fetched(PAGE_KIND, f"{WIRE}/notext", NO_TEXT_PAGE),
        fetched(
            PAGE_KIND, f"{WIRE}/down", None, status="error", http_status=503,
            error="http_503: Service Unavailable", error_kind="retryable",
        ),
    ]  # fmt: skip
    seeds = tmp_path / "seeds"
    shutil.copytree(ROOT / "seeds", seeds)
    shutil.copyfile(FIXTURES / "near_duplicates.jsonl", seeds / "near.jsonl")
    feeds = [
        fetched("feed", f"https://{p.stem}.example/feed", p.read_bytes(), source=p.stem)
        for p in sorted((FIXTURES / "feeds").glob("*.xml"))
    ]
    down = fetched(
        "feed", "https://down.example/rss", None, source="down", status="error", http_status=None,
        error="timeout: ReadTimeout", error_kind="retryable",
    )  # fmt: skip
    return [feed, *pages, down, *feeds, *read_seed_dir(seeds, T0, max_bytes=200_000)]


def table_rows(out: Path, table: str) -> list[dict[str, Any]]:
    rows = snapshot_arrow(out, table).to_pylist()
    return sorted(rows, key=repr)


def test_a_pane_and_a_run_over_the_same_raw_batches_give_the_same_tables(
    tmp_path: Path, raws: list[RawFetch]
) -> None:
    run_config = make_config(tmp_path, tmp_path / "seeds", out="run")
    stream_config = make_config(tmp_path, tmp_path / "seeds", out="stream")
    # The batch graph: the batches landed, then committed as a run.
    run_lake = Lake(run_config.output_dir)
    batch = run_lake.land_raw(raws, T0)
    with run_lake.lock():
        polled = Polled([], set(), T0, {}, {})
        report = commit_pending(
            run_config, run_lake, load_tagger(run_config), pipeline_options([]), polled, trigger="test"
        )
    # The streaming job: the same batches landed by a poll, committed as its pane.
    stream_lake = Lake(stream_config.output_dir)
    assert stream_lake.land_raw(raws, T0) == batch
    plan = pane_plan(stream_config, tmp_path / "stop", started_day=T0.date().toordinal())
    poll = FeedPoll(
        "https://wire.example/rss", "wire", "ok", "", FeedState(), T0, batch, f"{T0:%Y-%m-%d}", tuple(raws)
    )
    pane = commit_pane(plan, Pane(T0.isoformat(), T0.isoformat(), "early", (poll,)), seed_memory(plan))

    assert pane.run_id == report.run_id
    for table in TABLES:
        ran, streamed = table_rows(run_config.output_dir, table), table_rows(stream_config.output_dir, table)
        assert streamed == ran, table
    # What the comparison covers: pages joined or failed, copies dropped, dead letters.
    articles = {r["url"]: r for r in table_rows(stream_config.output_dir, "articles")}
    assert "Sunan International Airport" in articles[f"{WIRE}/good"]["text"], "the page's text"
    assert articles[f"{WIRE}/notext"]["text"] == "A short teaser about notext.", "the teaser kept"
    rejects = table_rows(stream_config.output_dir, "rejects")
    assert {(r["origin"], r["reason"]) for r in rejects if r["stage"] == "article"} == {
        (f"{WIRE}/notext", "extraction_failed"),
        (f"{WIRE}/down", "http_503"),
    }
    assert {r["stage"] for r in rejects} == {"article", "fetch", "parse"}
    reasons = {r["reason"] for r in table_rows(stream_config.output_dir, "duplicates")}
    assert reasons == {"same_url", "same_content", "near_duplicate"}
    assert len(articles) > 20


def test_a_stream_fetches_and_joins_the_pages_of_a_fetch_articles_feed(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer
) -> None:
    base = feed_server.url("/news")
    feed_server.routes["/rss"] = Route(wire_feed(base, ["good", "notext"]))
    feed_server.routes["/robots.txt"] = Route(b"User-agent: *\nAllow: /\n", content_type="text/plain")
    feed_server.routes["/news/good"] = Route(GOOD_PAGE, content_type="text/html; charset=utf-8")
    feed_server.routes["/news/notext"] = Route(NO_TEXT_PAGE, content_type="text/html; charset=utf-8")
    site = feed_server.url("/").removeprefix("http://").rstrip("/")  # 127.0.0.1:port, nothing else
    config = dataclasses.replace(
        make_config(tmp_path, seeds_dir, [FeedSource("wire", feed_server.url("/rss"), fetch_articles=True)]),
        http=dataclasses.replace(FAST_HTTP, allow_hosts=(site,)),
        articles=ArticleSettings(allow_hosts=(site,)),
        stream=StreamSettings(window_seconds=1.0, poll_interval=0.5),
    )

    report = run_unbounded(config, max_windows=3)

    assert report.run_ids
    out = config.output_dir
    articles = {r["url"].rsplit("/", 1)[1]: r for r in duck_rows(out, "articles") if r["source"] == "wire"}
    assert sorted(articles) == ["good", "notext"]
    assert "Sunan International Airport" in articles["good"]["text"]
    assert articles["notext"]["text"] == "A short teaser about notext."
    rejects = [r for r in duck_rows(out, "rejects") if r["stage"] == "article"]
    assert [r["reason"] for r in rejects] == ["extraction_failed"]
    # Polled again and again, each page was fetched once: committed pages are remembered.
    assert len(feed_server.hits("/news/good")) == 1
    assert len(feed_server.hits("/news/notext")) == 1

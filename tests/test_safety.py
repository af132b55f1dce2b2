"""What an attacker or a careless operator can try: redirects into the internal network,
credentials in URLs, files that are not seeds, numbers that are not numbers, clocks that
were wrong. Real servers on 127.0.0.1, real runs, the lake read back with DuckDB.

(Mistyped flags and crashes: tests/test_cli.py; templated feeds: tests/test_near_dup.py.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from connectors.http import FeedSource, poll_feeds
from connectors.state import FeedState, load_feed_states, save_feed_states
from pipeline.config import ConfigError, load_config
from pipeline.run import EXIT_OK, EXIT_PARTIAL, run_cycle
from tests.conftest import FAST_HTTP, feed_fixture, make_config
from tests.feedserver import FeedServer, Route
from tests.lakeread import duck_rows

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
SECRET_BODY = b"<rss><channel><item><title>internal secret</title></item></channel></rss>"


def _port(server: FeedServer) -> int:
    return int(server.url("/").rsplit(":", 1)[1].strip("/"))


@pytest.fixture
def internal() -> Iterator[FeedServer]:
    """A second server on 127.0.0.1: an internal service no feed may reach."""
    server = FeedServer().start()
    server.routes["/secret"] = Route(SECRET_BODY)
    yield server
    server.stop()


def _only(server: FeedServer) -> object:
    """HTTP settings that open the feed server's port and nothing else on 127.0.0.1."""
    return dataclasses.replace(FAST_HTTP, allow_hosts=(f"127.0.0.1:{_port(server)}",))


def _lake_text(out: Path) -> str:
    """Everything the lake's tables hold, as one string: what any reader of the lake sees."""
    con = duckdb.connect()
    parts = []
    for table in ("raw", "articles", "rejects", "duplicates"):
        if any((out / table).glob("*/*.parquet")):
            rel = con.sql(f"SELECT * FROM read_parquet('{out / table}/**/*.parquet', union_by_name = true)")
            parts.append(repr(rel.fetchall()))
    return "\n".join(parts)


# --- 1. SSRF through a feed ------------------------------------------------------------------


@pytest.mark.parametrize("status", [302, 301, 307])
def test_a_feed_redirecting_to_an_internal_server_is_refused_and_nothing_lands(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer, internal: FeedServer, status: int
) -> None:
    feed_server.routes["/rss"] = Route(
        status=status, headers={"Location": internal.url("/secret")}, content_type="text/html"
    )
    config = dataclasses.replace(
        make_config(tmp_path, seeds_dir, [FeedSource("wire", feed_server.url("/rss"))]),
        http=_only(feed_server),
    )
    report = run_cycle(config, clock=lambda: NOW)

    assert report.exit_code == EXIT_PARTIAL
    [feed] = [s for s in report.sources if s.source == "wire"]
    assert feed.status == "error" and feed.detail.startswith("refused_address: 127.0.0.1")
    assert feed_server.hits("/rss") and not internal.requests, "the internal server was never reached"
    assert b"internal secret".decode() not in _lake_text(config.output_dir)
    rejects = duck_rows(config.output_dir, "rejects", "source, stage, reason")
    assert {"source": "wire", "stage": "fetch", "reason": "refused_address"} in rejects


def test_a_permanent_redirect_to_an_internal_server_never_moves_the_feed(
    feed_server: FeedServer, internal: FeedServer
) -> None:
    feed_server.routes["/rss"] = Route(
        status=301, headers={"Location": internal.url("/secret")}, content_type="text/html"
    )
    source = FeedSource("wire", feed_server.url("/rss"))
    settings = _only(feed_server)
    states: dict[str, FeedState] = {}
    for poll in range(4):  # permanent_redirect_polls is 3
        [outcome] = poll_feeds([source], states, settings, clock=lambda poll=poll: NOW + timedelta(days=poll))
        assert outcome.status == "error" and outcome.detail.startswith("refused_address")
        states = {source.url: dataclasses.replace(outcome.state, next_poll_at=None)}
    state = states[source.url]
    assert state.url is None and state.redirect_target is None, "the feed still lives at its own URL"
    assert len(feed_server.hits("/rss")) == 4 and not internal.requests


def test_metadata_endpoints_stay_closed_whatever_the_allow_list_says(feed_server: FeedServer) -> None:
    feed_server.routes["/rss"] = Route(
        status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}, content_type="text/html"
    )
    settings = dataclasses.replace(FAST_HTTP, allow_hosts=("127.0.0.1", "169.254.0.0/16"))
    [outcome] = poll_feeds([FeedSource("wire", feed_server.url("/rss"))], {}, settings, clock=lambda: NOW)
    assert outcome.status == "error" and "cloud metadata endpoint" in outcome.detail


def test_a_feed_on_a_private_address_needs_allow_hosts(feed_server: FeedServer) -> None:
    feed_server.routes["/rss"] = Route(feed_fixture("rss2.xml"))
    source = FeedSource("wire", feed_server.url("/rss"))
    closed = dataclasses.replace(FAST_HTTP, allow_hosts=())
    [refused] = poll_feeds([source], {}, closed, clock=lambda: NOW)
    assert refused.status == "error" and refused.detail.startswith("refused_address")
    assert not feed_server.requests
    [opened] = poll_feeds([source], {}, _only(feed_server), clock=lambda: NOW)  # type: ignore[arg-type]
    assert opened.status == "ok"


def test_http_allow_hosts_is_read_from_the_config_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "newsbeam.toml"
    path.write_text('[http]\nallow_hosts = ["127.0.0.1:8080", "10.0.0.0/8"]\n', encoding="utf-8")
    assert load_config(path).http.allow_hosts == ("127.0.0.1:8080", "10.0.0.0/8")
    path.write_text('[http]\nallow_hosts = ["not a host!"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"http\.allow_hosts\[0\]"):
        load_config(path)


# --- 3 and 5. Files that are not seeds -------------------------------------------------------


def test_a_symlink_out_of_the_seeds_folder_is_not_read(tmp_path: Path, seeds_dir: Path) -> None:
    outside = tmp_path / "private.txt"
    outside.write_text("Private title\nPRIVATE-CONTENT-7f3a of a file elsewhere.\n", encoding="utf-8")
    (seeds_dir / "leak.txt").symlink_to(outside)
    (seeds_dir / "passwd.txt").symlink_to("/etc/passwd")
    config = make_config(tmp_path, seeds_dir)
    report = run_cycle(config, clock=lambda: NOW)

    statuses = {s.source: (s.status, s.detail) for s in report.sources}
    for name in ("seeds/leak.txt", "seeds/passwd.txt"):
        assert statuses[name][0] == "error" and statuses[name][1].startswith("outside_seeds_dir")
    text = _lake_text(config.output_dir)
    assert "PRIVATE-CONTENT-7f3a" not in text and "root:" not in text
    reasons = {(r["source"], r["reason"]) for r in duck_rows(config.output_dir, "rejects")}
    assert ("seeds/leak.txt", "outside_seeds_dir") in reasons
    assert len(duck_rows(config.output_dir, "articles")) == 1  # the project's seed still lands


def test_a_fifo_in_the_seeds_folder_does_not_block_the_run(tmp_path: Path, seeds_dir: Path) -> None:
    os.mkfifo(seeds_dir / "pipe.txt")
    config = make_config(tmp_path, seeds_dir)
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(run_cycle(config, clock=lambda: NOW)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    if not done:  # unblock the reader so the thread can end, then fail
        with open(seeds_dir / "pipe.txt", "wb"):
            pass
        pytest.fail("the run blocked on a FIFO")
    reasons = {(r["source"], r["reason"]) for r in duck_rows(config.output_dir, "rejects")}
    assert ("seeds/pipe.txt", "not_a_file") in reasons


def test_a_seed_over_the_size_cap_is_a_typed_reject_and_is_not_read(tmp_path: Path, seeds_dir: Path) -> None:
    (seeds_dir / "huge.txt").write_bytes(b"Title\n" + b"word " * 50_000)
    config = dataclasses.replace(make_config(tmp_path, seeds_dir), seeds_max_bytes=100_000)
    report = run_cycle(config, clock=lambda: NOW)
    [huge] = [s for s in report.sources if s.source == "seeds/huge.txt"]
    assert huge.status == "error" and "more than seeds_max_bytes (100000)" in huge.detail
    rejects = duck_rows(config.output_dir, "rejects", "source, reason")
    assert {"source": "seeds/huge.txt", "reason": "too_large"} in rejects
    assert len(duck_rows(config.output_dir, "articles")) == 1


def test_seeds_max_bytes_comes_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "newsbeam.toml"
    path.write_text("seeds_max_bytes = 1000\n", encoding="utf-8")
    assert load_config(path).seeds_max_bytes == 1000
    path.write_text("seeds_max_bytes = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="seeds_max_bytes"):
        load_config(path)


# --- 4. Credentials ----------------------------------------------------------------------------


def test_feed_credentials_are_sent_but_never_stored(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/ok"] = Route(feed_fixture("rss2.xml"))
    feed_server.routes["/bad"] = Route(feed_fixture("truncated.xml"))
    base = feed_server.url("/").replace("http://", "http://reader:s3cr3t-pw@")
    feeds = [FeedSource("ok", base + "ok"), FeedSource("bad", base + "bad")]
    config = make_config(tmp_path, seeds_dir, feeds)
    report = run_cycle(config, clock=lambda: NOW)
    assert report.exit_code == EXIT_OK

    assert feed_server.hits("/ok")[0]["Authorization"] == "Basic cmVhZGVyOnMzY3IzdC1wdw=="
    out = config.output_dir
    origins = {r["origin"] for r in duck_rows(out, "raw", "origin")}
    assert feed_server.url("/ok") in origins
    assert "s3cr3t" not in _lake_text(out)
    assert any(r["origin"] == feed_server.url("/bad") for r in duck_rows(out, "rejects", "origin"))
    state_text = (out / "_state" / "feeds.json").read_text(encoding="utf-8")
    assert "s3cr3t" not in state_text and feed_server.url("/ok") in state_text
    assert "s3cr3t" not in repr(feeds[0])


# --- 6. Numbers that are not numbers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[http]\npoll_interval = nan\n", "http.poll_interval"),
        ("[http]\ntotal_deadline = inf\n", "http.total_deadline"),
        ("[stream]\nwindow_seconds = -inf\n", "stream.window_seconds"),
        ("[dedup]\nthreshold = nan\n", "dedup.threshold"),
        ('[[feeds]]\nname = "a"\nurl = "https://a.example/rss"\npoll_interval = inf\n', "poll_interval"),
    ],
)
def test_non_finite_numbers_are_config_errors_naming_the_key(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "newsbeam.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path)


# --- 9. Dates from file times, schedules from wrong clocks -------------------------------------


def test_a_seed_without_a_date_lands_in_the_runs_partition_whatever_its_mtime(
    tmp_path: Path, seeds_dir: Path
) -> None:
    bodies = {
        "old.txt": "Kim Jong Un met a Russian delegation in Pyongyang.",
        "future.txt": "Seoul and Tokyo held talks on fishing quotas in the Sea of Japan.",
    }
    for name, stamp in (("old.txt", 0), ("future.txt", 4_070_908_800)):  # 1970, 2099
        path = seeds_dir / name
        path.write_text(f"{name} title\n{bodies[name]}\n", encoding="utf-8")
        os.utime(path, (stamp, stamp))
    config = make_config(tmp_path, seeds_dir)
    run_cycle(config, clock=lambda: NOW)
    rows = duck_rows(config.output_dir, "articles", "source, published_date, fetched_at")
    dated = {r["source"]: r for r in rows}
    for name in ("seeds/old.txt", "seeds/future.txt"):
        assert str(dated[name]["published_date"]) == "2026-03-02"
        assert dated[name]["fetched_at"] == NOW
    partitions = sorted(p.name for p in (config.output_dir / "articles").iterdir() if "=" in p.name)
    assert not [p for p in partitions if p.startswith(("published_date=1970", "published_date=2099"))]


def test_a_next_poll_stored_by_a_wrong_clock_does_not_hold_the_feed_back(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    path = tmp_path / "feeds.json"
    url = feed_server.url("/rss")
    wrong = FeedState(next_poll_at="2099-01-01T00:00:00+00:00", last_polled_at="2099-01-01T00:00:00+00:00")
    planned = FeedState(next_poll_at=(NOW + timedelta(hours=2)).isoformat())
    save_feed_states(path, {url: wrong, "https://b.example/rss": planned})

    states = load_feed_states(path, NOW, FAST_HTTP.longest_wait)
    assert states[url].next_poll_at is None and states[url].last_polled_at is None
    assert states["https://b.example/rss"] == planned, "a plausible schedule is kept"
    assert json.loads(path.read_text())[url]["next_poll_at"].startswith("2099"), "loading changes nothing"

    feed_server.routes["/rss"] = Route(feed_fixture("rss2.xml"))
    [outcome] = poll_feeds([FeedSource("wire", url)], states, FAST_HTTP, clock=lambda: NOW)
    assert outcome.status == "ok"

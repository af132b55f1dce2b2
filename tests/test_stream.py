"""`newsbeam stream`: windows committed through the same graph and commit as `run`,
against a real server on 127.0.0.1 whose feeds gain items while the stream runs."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from deltalake import DeltaTable

from connectors.http import FeedSource
from connectors.state import FeedState
from pipeline.config import ConfigError, RunConfig, StreamSettings, parse_config
from pipeline.lake.files import KILL_ENV
from pipeline.lake.store import Lake
from pipeline.run import run_cycle
from pipeline.streaming.windows import WindowReport, due_at, due_feeds, run_stream, stream_options
from schemas.arrow import TABLES
from tests.conftest import ROOT, make_config
from tests.feedserver import Route
from tests.lakeread import snapshot_duck_rows
from tests.streamfeeds import GrowingFeeds

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def test_a_feed_is_due_an_interval_after_its_last_poll_or_when_its_backoff_ends() -> None:
    fresh = FeedState()
    polled = FeedState(last_polled_at=_at(0))
    backing_off = FeedState(last_polled_at=_at(0), next_poll_at=_at(600), consecutive_failures=1)
    feeds = {
        name: FeedSource(name, f"http://127.0.0.1/{name}") for name in ("fresh", "polled", "off", "gone")
    }
    states = {
        feeds["fresh"].url: fresh,
        feeds["polled"].url: polled,
        feeds["off"].url: backing_off,
        feeds["gone"].url: FeedState(retired=True),
    }
    assert due_at(polled, 30) == T0 + timedelta(seconds=30)
    assert due_at(backing_off, 30) == T0 + timedelta(seconds=600), "Retry-After/backoff wins"
    assert due_at(FeedState(retired=True), 30) is None
    names = lambda now: [f.name for f in due_feeds(feeds.values(), states, now, 30)]  # noqa: E731
    assert names(T0 + timedelta(seconds=29)) == ["fresh"]
    assert names(T0 + timedelta(seconds=30)) == ["fresh", "polled"]
    assert names(T0 + timedelta(seconds=600)) == ["fresh", "polled", "off"]


def test_stream_settings_come_from_the_config_and_errors_name_the_key(tmp_path: Path) -> None:
    config = parse_config({"stream": {"window_seconds": 5, "poll_interval": 2.5}}, tmp_path, "x.toml")
    assert config.stream == StreamSettings(window_seconds=5.0, poll_interval=2.5)
    assert parse_config({}, tmp_path, "x.toml").stream == StreamSettings(60.0, 300.0)
    with pytest.raises(ConfigError, match="`stream.window`"):
        parse_config({"stream": {"window": 5}}, tmp_path, "x.toml")
    with pytest.raises(ConfigError, match="`stream.poll_interval` must be positive"):
        parse_config({"stream": {"poll_interval": 0}}, tmp_path, "x.toml")


def test_streaming_flag_is_refused_and_the_default_runner_never_downloads_prism(
    tmp_path: Path, seeds_dir: Path, monkeypatch
) -> None:
    with pytest.raises(ConfigError, match="--streaming"):
        stream_options(["--streaming"])

    def no_prism(*args: object, **kwargs: object) -> None:
        raise AssertionError("the Prism job server (and its binary download) must not be used")

    monkeypatch.setattr("apache_beam.runners.portability.prism_runner.PrismJobServer.__init__", no_prism)
    monkeypatch.setattr("apache_beam.runners.portability.prism_runner.PrismRunner.run_pipeline", no_prism)
    config = dataclasses.replace(make_config(tmp_path, seeds_dir), stream=StreamSettings(0.1, 0.1))
    report = run_stream(config, max_windows=1)
    run = report.windows[0].run
    assert run.runner == "FnApiRunner"
    assert run.manifest is not None and run.manifest["trigger"] == "stream"
    assert len(snapshot_duck_rows(config.output_dir, "articles", "title")) == 1  # the seed


def growing_feeds_config(
    tmp_path: Path, seeds_dir: Path, feed_server, poll: float, window: float
) -> tuple[GrowingFeeds, RunConfig]:
    """Two feeds, north and south, gaining an item every 0.7 s, streamed every `poll` s."""
    growing = GrowingFeeds(feed_server, ["north", "south"], every=0.7)
    feeds = [FeedSource(name, feed_server.url(growing.path(name))) for name in growing.names]
    config = dataclasses.replace(
        make_config(tmp_path, seeds_dir, feeds),
        stream=StreamSettings(window_seconds=window, poll_interval=poll),
    )
    return growing, config


@contextlib.contextmanager
def first_readable(growing: GrowingFeeds, out: Path) -> Iterator[dict[str, float]]:
    """Starts the feeds growing and a reader taking snapshots meanwhile; yields when each
    title first became readable (time.time()), complete once the block is left."""
    seen: dict[str, float] = {}
    done = threading.Event()

    def read_snapshots() -> None:
        while not done.is_set():
            for row in snapshot_duck_rows(out, "articles", "title") if (out / "_runs").exists() else []:
                seen.setdefault(row["title"], time.time())
            done.wait(0.05)

    reader = threading.Thread(target=read_snapshots, daemon=True)
    growing.start()
    reader.start()
    try:
        yield seen
    finally:
        growing.stop()
        time.sleep(0.3)
        done.set()
        reader.join()


def test_three_windows_every_item_once_within_poll_plus_window(
    tmp_path: Path, seeds_dir: Path, feed_server
) -> None:
    """Feeds gain an item every 0.7 s; the stream polls every 0.5 s in 1.5 s windows. A reader
    takes snapshots meanwhile and notes when each item first becomes readable."""
    poll, window = 0.5, 1.5
    growing, config = growing_feeds_config(tmp_path, seeds_dir, feed_server, poll, window)
    out = config.output_dir
    commit_seconds: list[float] = []
    windows: list[WindowReport] = []
    closed = [time.monotonic()]

    def on_window(w: WindowReport) -> None:
        windows.append(w)
        commit_seconds.append(w.run.seconds)
        closed.append(time.monotonic())

    with first_readable(growing, out) as seen:
        report = run_stream(config, max_windows=4, on_window=on_window)

    assert len(report.windows) == 4
    committed = [w for w in report.windows if w.run.run_id]
    assert len(committed) >= 3, "every window polled something new"
    assert all(w.polls >= 2 for w in report.windows), "polls run at the poll interval inside a window"

    rows = snapshot_duck_rows(out, "articles", "title, run_id")
    titles = [r["title"] for r in rows if not r["title"].startswith("La rencontre")]
    assert len(titles) == len(set(titles)), "an item landed twice"
    # Every item published before the last window's final poll is in the lake.
    last_poll = max(datetime.fromisoformat(s.last_polled_at).timestamp() for s in _states(out).values())
    expected = {t for t, at in growing.published.items() if at < last_poll - 0.05}
    assert expected <= set(titles), sorted(expected - set(titles))
    assert len({r["run_id"] for r in rows}) >= 3

    # Latency: publication -> readable in a snapshot. Polling pauses while a window commits,
    # so an item published as a commit starts waits for it, then a window, then its commit.
    latencies = {t: seen[t] - growing.published[t] for t in titles}
    commit = max(commit_seconds)
    # The margin covers a poll round overrunning the window's end and the reader's own query.
    bound = max(poll, commit) + window + commit + 1.5
    worst, median = max(latencies.values()), sorted(latencies.values())[len(latencies) // 2]
    print(
        f"\nstream latency over {len(latencies)} items: median {median:.2f}s, "
        f"max {worst:.2f}s; commit per window max {max(commit_seconds):.2f}s; bound {bound:.2f}s"
    )
    assert worst <= bound, latencies


def _states(out: Path) -> dict[str, FeedState]:
    from connectors.state import load_feed_states

    return load_feed_states(out / "_state" / "feeds.json")


def _micro_batch_window(config: RunConfig) -> None:
    run_stream(config, max_windows=1)


def _streaming_window(config: RunConfig) -> None:
    from pipeline.streaming.unbounded import run_unbounded

    run_unbounded(config, max_windows=1)


@pytest.mark.parametrize(
    ("stream_once", "settings"),
    [(_micro_batch_window, StreamSettings(0.2, 0.1)), (_streaming_window, StreamSettings(1.0, 0.2))],
    ids=["micro-batch", "streaming"],
)
def test_run_and_stream_take_turns_without_duplicating(
    tmp_path: Path, seeds_dir: Path, feed_server, stream_once, settings: StreamSettings
) -> None:
    growing = GrowingFeeds(feed_server, ["east"], every=3600)  # published by hand below
    feeds = [FeedSource("east", feed_server.url(growing.path("east")))]
    config = dataclasses.replace(make_config(tmp_path, seeds_dir, feeds), stream=settings)
    for step in (run_cycle, stream_once, run_cycle, stream_once):
        growing.publish()
        before = len(Lake(config.output_dir).manifests())
        step(config)
        records = Lake(config.output_dir).manifests()
        assert len(records) == before + 1, f"{step.__name__} committed the new item"
        # The window (or pane) is one Delta transaction in each table it wrote.
        for table in ("articles", "dedup_index"):
            seqs = [
                int(h["newsbeam.seq"])
                for h in DeltaTable(str(config.output_dir / TABLES[table].folder)).history()
                if "newsbeam.seq" in h
            ]
            assert seqs.count(records[-1]["seq"]) == 1, (step.__name__, table, seqs)
    run_cycle(config)  # nothing new: a 304 or an unchanged body
    stream_once(config)

    rows = snapshot_duck_rows(config.output_dir, "articles", "title")
    titles = sorted(r["title"] for r in rows if r["title"].startswith("east"))
    assert titles == sorted(growing.published), "each item exactly once"
    dups = snapshot_duck_rows(config.output_dir, "duplicates", "reason")
    assert {d["reason"] for d in dups} <= {"same_url"}


def stream_config(tmp_path: Path, seeds: Path, feeds: dict[str, str], window: float, poll: float) -> Path:
    lines = [
        f'seeds_dir = "{seeds}"',
        f'output_dir = "{tmp_path / "data"}"',
        "[http]",
        "connect_timeout = 2.0",
        "read_timeout = 1.0",
        "total_deadline = 3.0",
        "per_host_concurrency = 8",
        "per_host_min_gap = 0.01",
        'allow_hosts = ["127.0.0.1"]',  # the test's feed server
        "[stream]",
        f"window_seconds = {window}",
        f"poll_interval = {poll}",
    ]
    for name, url in feeds.items():
        lines += ["[[feeds]]", f'name = "{name}"', f'url = "{url}"']
    path = tmp_path / "stream.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def stream_process(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "stream", "--config", str(config), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_commits_the_open_window_and_exits_0(
    tmp_path: Path, seeds_dir: Path, feed_server, sig: signal.Signals
) -> None:
    growing = GrowingFeeds(feed_server, ["west"], every=3600)
    growing.publish()
    config = stream_config(
        tmp_path, seeds_dir, {"west": feed_server.url(growing.path("west"))}, window=120, poll=60
    )
    out = tmp_path / "data"
    proc = stream_process(config)
    try:
        # The window is open for two minutes: the signal, not its end, must close it.
        wait_for(lambda: any((out / "raw").glob("*/*.parquet")), timeout=60)
        assert not Lake(out).manifests(), "nothing committed before the signal"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert f"{sig.name}: committing the open window" in stdout
    assert "stopped after 1 windows" in stdout
    titles = {r["title"] for r in snapshot_duck_rows(out, "articles", "title")}
    assert set(growing.published) <= titles
    assert _states(out)[feed_server.url(growing.path("west"))].etag, "validators saved after the commit"


@pytest.mark.parametrize(
    ("mode", "window"), [((), 0.5), (("--streaming",), 1)], ids=["micro-batch", "streaming"]
)
def test_kill_9_loses_nothing_landed_the_next_start_commits_it(
    tmp_path: Path, seeds_dir: Path, feed_server, mode: tuple[str, ...], window: float
) -> None:
    growing = GrowingFeeds(feed_server, ["kill"], every=3600)
    growing.publish()
    growing.publish()
    url = feed_server.url(growing.path("kill"))
    config = stream_config(tmp_path, seeds_dir, {"kill": url}, window=window, poll=0.2)
    out = tmp_path / "data"
    proc = stream_process(config, *mode, env={KILL_ENV: "landed"})
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert list((out / "raw").glob("*/*.parquet")) and not Lake(out).manifests()
    assert not (out / "_state" / "feeds.json").exists(), "no validators before a commit"

    # The feed no longer carries those items: only the landed batch has them.
    feed_server.routes[growing.path("kill")] = Route(b"", status=503, headers={"Retry-After": "3600"})
    proc = stream_process(config, *mode, "--max-windows", "1")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    titles = sorted(
        r["title"] for r in snapshot_duck_rows(out, "articles", "title") if r["title"].startswith("kill")
    )
    assert titles == sorted(growing.published)
    assert not Lake(out).pending_raw_batches()


def test_cli_window_seconds_must_be_positive(tmp_path: Path, seeds_dir: Path, capsys) -> None:
    from pipeline.cli import main

    config = stream_config(tmp_path, seeds_dir, {}, window=1, poll=1)
    assert main(["stream", "--config", str(config), "--window-seconds", "0"]) == 2
    assert "`--window-seconds` must be positive" in capsys.readouterr().err
    assert not (tmp_path / "data" / "_runs").exists()

"""`newsbeam stream --streaming`: the unbounded Beam job. Windowing, late polls and the
dedup state with TestStream; real runs against a server on 127.0.0.1 whose feeds gain
items while the job runs, read back with DuckDB."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from connectors.http import FeedSource
from connectors.state import FeedState, load_feed_states
from pipeline.config import ConfigError, parse_config
from pipeline.lake.store import Lake
from pipeline.run import run_cycle
from pipeline.streaming.panes import PANE_KEY, CommitPanes, FeedPoll, Pane, PaneReport
from pipeline.streaming.unbounded import WindowPolls, run_unbounded
from pipeline.streaming.windows import due_feeds
from schemas.ids import sha256_hex
from schemas.records import RawFetch
from tests.conftest import make_config
from tests.lakeread import snapshot_duck_rows
from tests.streamfeeds import GrowingFeeds, item_title, pane_plan, rss
from tests.test_stream import first_readable, growing_feeds_config, stream_config, stream_process, wait_for

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def _streaming_pipeline() -> TestPipeline:
    # One executor thread (no step here holds one): the direct runner's stall check then
    # cannot race a bundle that is just finishing.
    return TestPipeline(runner=BundleBasedDirectRunner(), options=PipelineOptions(["--streaming"]))


def _poll(seconds: float, feed: str = "north") -> FeedPoll:
    at = datetime.fromtimestamp(seconds, timezone.utc)
    return FeedPoll(f"http://127.0.0.1/{feed}", feed, "not_modified", "HTTP 304", FeedState(), at)


def test_polls_are_windowed_by_fetch_time_and_late_polls_kept_within_the_allowed_lateness() -> None:
    stream = (
        TestStream()
        .add_elements([window.TimestampedValue(_poll(t), t) for t in (1, 3, 12)])
        .advance_watermark_to(25)  # closes [0, 10) and [10, 20)
        .add_elements([window.TimestampedValue(_poll(5), 5)])  # late, within 20 s of lateness
        .advance_watermark_to(45)
        .add_elements([window.TimestampedValue(_poll(8), 8)])  # later than the lateness: dropped
        .advance_watermark_to_infinity()
    )

    def summary(kv: tuple[str, Pane]) -> tuple[str, str, str, tuple[float, ...]]:
        pane = kv[1]
        return (
            kv[0],
            pane.window_start[17:19],
            pane.timing,
            tuple(p.fetched_at.timestamp() for p in pane.polls),
        )

    with _streaming_pipeline() as p:
        panes = p | stream | WindowPolls(window_seconds=10, allowed_lateness=20) | beam.Map(summary)
        assert_that(
            panes,
            equal_to(
                [
                    (PANE_KEY, "00", "on_time", (1.0, 3.0)),
                    (PANE_KEY, "10", "on_time", (12.0,)),
                    (PANE_KEY, "00", "late", (5.0,)),
                ]
            ),
        )


def _raw(feed: str, body: bytes, fetched_at: datetime, status: str = "ok") -> RawFetch:
    return RawFetch(
        raw_id=sha256_hex(body + feed.encode()),
        source=feed,
        source_kind="feed",
        origin=f"http://127.0.0.1/{feed}.rss",
        fetched_at=fetched_at,
        status=status,
        http_status=200 if status == "ok" else 503,
        content_type="application/rss+xml",
        body=body if status == "ok" else None,
        error_kind=None if status == "ok" else "retryable",
        error=None if status == "ok" else "http_503: Service Unavailable",
    )


def _landed_poll(lake: Lake, raw: RawFetch) -> FeedPoll:
    batch = lake.land_raw([raw], raw.fetched_at)
    state = FeedState(last_polled_at=raw.fetched_at.isoformat())
    status = "ok" if raw.status == "ok" else "error"
    return FeedPoll(
        raw.origin, raw.source, status, "", state, raw.fetched_at, batch, f"{raw.fetched_at:%Y-%m-%d}", (raw,)
    )


def _pane(start: datetime, *polls: FeedPoll) -> tuple[str, Pane]:
    return PANE_KEY, Pane(start.isoformat(), (start + timedelta(seconds=10)).isoformat(), "early", polls)


def test_panes_commit_once_each_deduplicated_across_windows_and_against_the_lake(
    tmp_path: Path, seeds_dir: Path, feed_server
) -> None:
    # An earlier scheduled run committed "east" item 0: the stream must know it.
    growing = GrowingFeeds(feed_server, ["east"], every=3600)
    growing.publish()
    config = make_config(tmp_path, seeds_dir, [FeedSource("east", feed_server.url(growing.path("east")))])
    run_cycle(config)
    lake = Lake(config.output_dir)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    items = [(n, now) for n in range(3)]
    first = _landed_poll(lake, _raw("east", rss("east", items[:2]), now))  # item 0 again, item 1 new
    broken = _landed_poll(lake, _raw("west", b"", now, status="error"))  # a dead letter
    second = _landed_poll(lake, _raw("east", rss("east", items), now + timedelta(seconds=11)))  # 2 new
    stream = (
        TestStream()
        .add_elements([_pane(now, first, broken)])
        .advance_processing_time(10)
        .add_elements([_pane(now + timedelta(seconds=10), second)])
        .add_elements([_pane(now + timedelta(seconds=10), second)])  # a retried pane
        .advance_watermark_to_infinity()
    )

    def summary(r: PaneReport) -> tuple[int, int, int, tuple[str, ...]]:
        return r.rows.get("articles", 0), r.rows.get("duplicates", 0), r.rows.get("rejects", 0), r.failed

    with _streaming_pipeline() as p:
        reports = p | stream | beam.ParDo(CommitPanes(pane_plan(config, tmp_path / "stop")))
        assert_that(
            reports | beam.Map(summary), equal_to([(1, 1, 1, ("west",)), (1, 2, 0, ()), (1, 2, 0, ())])
        )

    titles = sorted(r["title"] for r in snapshot_duck_rows(config.output_dir, "articles", "title"))
    east = [t for t in titles if t.startswith("east")]
    assert east == [item_title("east", n) for n in range(3)], "each item exactly once"
    dups = snapshot_duck_rows(config.output_dir, "duplicates", "reason")
    assert sorted(d["reason"] for d in dups) == ["same_url", "same_url", "same_url"]
    rejects = snapshot_duck_rows(config.output_dir, "rejects", "source, stage, reason")
    assert {(r["source"], r["stage"], r["reason"]) for r in rejects} >= {("west", "fetch", "http_503")}
    manifests = [m for m in lake.manifests() if m.get("trigger") == "stream"]
    assert len(manifests) == 2, "the retried pane committed once"
    assert sorted(b for m in manifests for b in m["raw_batches"]) == sorted(
        p.batch_id for p in (first, broken, second)
    )
    assert not lake.pending_raw_batches()
    assert load_feed_states(lake.state_path("feeds.json"))[first.feed_url].last_polled_at == (
        second.fetched_at.isoformat()
    ), "the newest committed poll's state is saved"


def test_a_feed_has_its_own_poll_interval_and_a_bad_one_is_a_config_error_naming_the_key(
    tmp_path: Path,
) -> None:
    feeds = [
        {"name": "fast", "url": "http://127.0.0.1/fast", "poll_interval": 5},
        {"name": "slow", "url": "http://127.0.0.1/slow"},
    ]
    config = parse_config({"feeds": feeds, "stream": {"poll_interval": 60}}, tmp_path, "x.toml")
    assert [f.poll_interval for f in config.feeds] == [5.0, None]
    polled = FeedState(last_polled_at=T0.isoformat())
    states = {f.url: polled for f in config.feeds}
    due = lambda s: [f.name for f in due_feeds(config.feeds, states, T0 + timedelta(seconds=s), 60)]  # noqa: E731
    assert due(5) == ["fast"]
    assert due(60) == ["fast", "slow"]
    for bad in (0, -1, "5", True):
        with pytest.raises(ConfigError, match=r"feeds\[0\] \(fast\): `poll_interval`"):
            parse_config({"feeds": [{**feeds[0], "poll_interval": bad}]}, tmp_path, "x.toml")


def test_streaming_three_windows_every_item_once_within_poll_plus_window(
    tmp_path: Path, seeds_dir: Path, feed_server, monkeypatch
) -> None:
    """Feeds gain an item every 0.7 s; the job polls each every 0.5 s in 2 s windows.
    A reader takes snapshots meanwhile and notes when each item first becomes readable."""

    def no_prism(*args: object, **kwargs: object) -> None:
        raise AssertionError("the Prism job server (and its binary download) must not be used")

    monkeypatch.setattr("apache_beam.runners.portability.prism_runner.PrismJobServer.__init__", no_prism)
    poll, window_seconds = 0.5, 2.0
    growing, config = growing_feeds_config(tmp_path, seeds_dir, feed_server, poll, window_seconds)
    out = config.output_dir
    with first_readable(growing, out) as seen:
        report = run_unbounded(config, max_windows=4)

    lake = Lake(out)
    panes = [m for m in lake.manifests() if "window" in m]
    assert len(report.run_ids) >= 3 and len(panes) >= 3, "a commit per window pane"
    assert len({m["window"]["start"] for m in panes}) >= 3
    rows = snapshot_duck_rows(out, "articles", "title")
    titles = [r["title"] for r in rows]
    assert len(titles) == len(set(titles)), "an item landed twice"
    states = load_feed_states(lake.state_path("feeds.json"))
    # Every item published on a feed before that feed's last poll is in the lake.
    polled_at = {f.name: states[f.url].last_polled_at for f in config.feeds}
    last_poll = {name: datetime.fromisoformat(at).timestamp() for name, at in polled_at.items()}
    expected = {t for t, at in growing.published.items() if at < last_poll[t.split()[0]] - 0.05}
    assert expected <= set(titles), sorted(expected - set(titles))
    assert not lake.pending_raw_batches(), "every landed batch committed"

    # Items published before the job's first poll wait for its start-up: counted apart.
    first_poll = min(datetime.fromisoformat(m["started_at"]).timestamp() for m in panes)
    latency = {t: seen[t] - growing.published[t] for t in titles}
    steady = sorted(v for t, v in latency.items() if growing.published[t] >= first_poll)
    worst, median = steady[-1], steady[len(steady) // 2]
    # The margin: the trigger's whole seconds, a host gap, the commit, the reader's query,
    # and a busy machine's scheduling.
    bound = poll + window_seconds + 3.0
    print(
        f"\nunbounded stream latency over {len(steady)} items published while it ran: median "
        f"{median:.2f}s, max {worst:.2f}s (bound {bound:.2f}s); all {len(latency)} items, "
        f"with start-up: max {max(latency.values()):.2f}s"
    )
    assert len(steady) >= 6
    assert worst <= bound, steady


def test_sigterm_commits_the_open_windows_and_exits_0(tmp_path: Path, seeds_dir: Path, feed_server) -> None:
    growing = GrowingFeeds(feed_server, ["west"], every=3600)
    growing.publish()
    url = feed_server.url(growing.path("west"))
    config = stream_config(tmp_path, seeds_dir, {"west": url}, window=120, poll=60)
    out = tmp_path / "data"
    proc = stream_process(config, "--streaming")
    try:
        wait_for(lambda: any((out / "raw").glob("*/*.parquet")), timeout=60)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "SIGTERM: committing the open windows" in stdout
    titles = {r["title"] for r in snapshot_duck_rows(out, "articles", "title")}
    assert set(growing.published) <= titles
    assert not Lake(out).pending_raw_batches()
    assert load_feed_states(out / "_state" / "feeds.json")[url].etag, "validators saved after the commit"

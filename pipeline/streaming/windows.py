"""`newsbeam stream`: the scheduled cycle, continuously, as a loop of micro-batch windows.

A window polls each feed when it is due (every `[stream] poll_interval`, later while
the feed backs off or a server asked for Retry-After), lands what it fetched at once,
and when it closes runs the same bounded graph as `newsbeam run` over every landed
batch no manifest lists yet, committed as one run by the same `CommitRun`. Feed
validators, seed fingerprints and fetched pages are saved only after that commit.

So a window is exactly a scheduled run whose polls are spread over its length: the
persistent dedup index, the raw landing and the manifest protocol are shared, and
`run` and `stream` can take turns on one lake without duplicating an article.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
from apache_beam.options.pipeline_options import PipelineOptions

from connectors.http import FeedSource
from connectors.state import FeedState, load_feed_states, save_feed_states, save_seed_state
from pipeline.config import ConfigError, RunConfig
from pipeline.lake.files import kill_point
from pipeline.lake.labels import record_taxonomy
from pipeline.lake.store import Lake
from pipeline.run import (
    Polled,
    RunReport,
    commit_pending,
    load_tagger,
    pipeline_options,
    poll_and_land,
    require_seeds_dir,
)
from pipeline.steps.pages import remember_pages


@dataclass
class WindowReport:
    index: int  # 0 for the first window of this process
    polls: int  # poll rounds in the window (each lands one raw batch, if it fetched anything)
    run: RunReport  # the commit; `run.run_id` is None when there was nothing to commit


@dataclass
class StreamReport:
    windows: list[WindowReport] = field(default_factory=list)
    stopped_by_signal: bool = False


def due_at(state: FeedState, poll_interval: float) -> datetime | None:
    """When the stream polls a feed next: `poll_interval` after its last poll, or later
    when the connectors scheduled it later (backoff, Retry-After, dead); None: never (retired)."""
    if state.retired:
        return None
    times = [datetime.min.replace(tzinfo=timezone.utc)]
    if state.last_polled_at:
        times.append(datetime.fromisoformat(state.last_polled_at) + timedelta(seconds=poll_interval))
    if state.next_poll_at:
        times.append(datetime.fromisoformat(state.next_poll_at))
    return max(times)


def feed_interval(feed: FeedSource, poll_interval: float) -> float:
    """A feed's own `poll_interval` if it has one, else the stream's."""
    return feed.poll_interval if feed.poll_interval is not None else poll_interval


def due_feeds(
    feeds: Iterable[FeedSource], states: dict[str, FeedState], now: datetime, poll_interval: float
) -> list[FeedSource]:
    out = []
    for feed in feeds:
        when = due_at(states.get(feed.url, FeedState()), feed_interval(feed, poll_interval))
        if when is not None and when <= now:
            out.append(feed)
    return out


def seconds_to_next_poll(
    feeds: Iterable[FeedSource], states: dict[str, FeedState], now: datetime, poll_interval: float
) -> float | None:
    times = [due_at(states.get(f.url, FeedState()), feed_interval(f, poll_interval)) for f in feeds]
    pending = [t for t in times if t is not None]
    return max(0.0, min((t - now).total_seconds() for t in pending)) if pending else None


def merge_polls(polls: list[Polled], landed_at: datetime, seed_state: dict[str, str]) -> Polled:
    """One window's poll rounds as one: the last status of each source, every landed source."""
    statuses = {s.source: s for p in polls for s in p.statuses}
    return Polled(
        list(statuses.values()),
        {s for p in polls for s in p.landed_sources},
        polls[0].landed_at if polls else landed_at,
        {url: state for p in polls for url, state in p.feed_states.items()},
        polls[-1].seed_state if polls else seed_state,
    )


def stream_options(beam_args: list[str]) -> PipelineOptions:
    """Each window is a bounded run on a batch runner (FnApiRunner unless told otherwise)."""
    if any(a == "--streaming" or a.startswith("--streaming=") for a in beam_args):
        raise ConfigError(
            "`--streaming`: each stream window is a bounded run on a batch runner; drop the flag"
        )
    return pipeline_options(beam_args)


def run_stream(
    config: RunConfig,
    beam_args: list[str] | None = None,
    max_windows: int | None = None,
    stop: threading.Event | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    on_window: Callable[[WindowReport], None] | None = None,
    kill_at: str | None = None,
) -> StreamReport:
    """Run windows until `stop` is set (the open window is then committed) or after
    `max_windows`. Holds the lake's lock throughout: other writers exit busy meanwhile."""
    options = stream_options(beam_args or [])
    require_seeds_dir(config)
    stop = stop or threading.Event()
    tagger = load_tagger(config)
    settings = config.stream
    # In a stream the schedule's period is the poll interval: backoff starts there.
    http = dataclasses.replace(config.http, poll_interval=settings.poll_interval)
    feeds = list(config.feeds)
    lake = Lake(config.output_dir)
    report = StreamReport()
    with lake.lock():
        record_taxonomy(lake, tagger.taxonomy)
        state_path = lake.state_path("feeds.json")
        committed = load_feed_states(state_path, clock(), max(http.longest_wait, settings.poll_interval))
        while max_windows is None or len(report.windows) < max_windows:
            closes = time.monotonic() + settings.window_seconds
            opened_at = clock()
            live = dict(committed)  # states after this window's polls, saved once committed
            polls: list[Polled] = []
            while True:
                now = clock()
                due = due_feeds(feeds, live, now, settings.poll_interval)
                if due or not polls:  # the first round also reads the seeds
                    polled = poll_and_land(
                        config, lake, due, live, transport, clock, kill_at, read_seeds=not polls, http=http
                    )
                    live.update(polled.feed_states)
                    polls.append(polled)
                left = closes - time.monotonic()
                if stop.is_set() or left <= 0:
                    break
                wait = seconds_to_next_poll(feeds, live, clock(), settings.poll_interval)
                # Rounds at least a host gap apart: the per-host gap holds across rounds too.
                wait = None if wait is None else max(wait, http.per_host_min_gap)
                stop.wait(left if wait is None else min(left, wait))
            merged = merge_polls(polls, opened_at, {})
            closed = time.monotonic()
            run = commit_pending(config, lake, tagger, options, merged, kill_at, trigger="stream")
            run.seconds = time.monotonic() - closed  # the commit alone: the window's processing time
            kill_point(kill_at, "committed")
            committed = live
            save_feed_states(state_path, committed)
            save_seed_state(lake.state_path("seeds.json"), merged.seed_state)
            remember_pages(lake, run.pages, clock, config.articles)
            window = WindowReport(len(report.windows), len(polls), run)
            report.windows.append(window)
            if on_window is not None:
                on_window(window)
            if stop.is_set():
                report.stopped_by_signal = True
                break
    return report


def format_window(window: WindowReport, elapsed: float) -> str:
    run = window.run
    rows = ((run.manifest or {}).get("stats") or {}).get("rows", {})
    status = "partial" if run.failed_sources else "ok"
    what = (
        f"run {run.run_id[:16]}: {rows.get('articles', 0)} articles, {rows.get('duplicates', 0)} "
        f"duplicates, {rows.get('rejects', 0)} rejects"
        if run.run_id
        else "nothing new"
    )
    failed = "".join(f"\n  {s.source}: {s.detail[:100]}" for s in run.failed_sources)
    return f"window {window.index} [{elapsed:.1f}s, {window.polls} polls, {status}] {what}{failed}"

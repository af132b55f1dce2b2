"""`newsbeam stream --streaming`: one unbounded Beam pipeline, committed window by window.

    HoldUntilStop ─┐
    Feeds ─────────┴─ PollFeeds ─ WindowPolls ─ CommitPanes ─ ShowPanes

- `PollFeeds` is keyed by feed URL. Beam state holds the feed's `FeedState`; a
  processing-time timer fires when the feed is due (its own `poll_interval`, later while
  it backs off, is dead or was sent a Retry-After: `pipeline.streaming.windows.due_at`), and a
  per-host gap is kept between polls. Each fetched document is landed in `raw/` (the
  same `Lake.land_raw` as every run) before the poll is emitted, timestamped with its
  fetch time. A feed with `fetch_articles` (and a news sitemap) has the pages of its new
  entries fetched in the same poll and landed in the same batch (`fetch_new_pages`, as a
  run does).
- `WindowPolls`: fixed windows of `[stream] window_seconds` over fetch time. A pane
  fires when the watermark passes the window's end, or early, `window_seconds` of
  processing time after its first poll, whichever is first; polls later than the
  allowed lateness are dropped by Beam, but their batches are landed and the next start
  commits them.
- `CommitPanes` (`pipeline.streaming.panes`; one key, so panes commit one at a time): a
  pane's documents go through the batch graph's stage chain (`pipeline.steps.chain`),
  article pages joined as in a run, and are committed by `Lake.commit` (the commit
  `CommitRun` makes) as one run whose id is a hash of the pane's raw batches: a retried
  pane commits once. Its Beam state is the
  dedup memory (`pipeline.dedup.memory`): seeded from the persistent dedup index and
  learning each committed pane, with band members expiring after `lookback_days`. Feed
  validators are saved only after the commit that covers their poll.
- `HoldUntilStop` keeps the job open until the stop file appears (SIGTERM/SIGINT) or the
  job has run `--max-windows` window lengths; then polling ends, the open windows close and
  commit, the job ends.

Locally the job runs on `LocalStreamingRunner`: Beam's bundle-based direct runner in
streaming mode, never Prism (no binary download), with two executor threads so that
the held step does not stall the rest. That runner holds the watermark until the job
stops, so locally every pane is an early, processing-time one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.direct import executor as direct_executor
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.transforms import trigger, userstate, window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Duration, Timestamp

from connectors.http import FeedSource, landed_raws, poll_feeds
from connectors.state import FeedState, load_feed_states
from pipeline.config import RunConfig
from pipeline.lake.files import STAGING, kill_point
from pipeline.lake.labels import record_taxonomy
from pipeline.lake.store import Lake
from pipeline.run import Polled, RunReport, commit_pending, load_tagger, pipeline_options
from pipeline.steps.pages import fetch_new_pages
from pipeline.streaming.panes import (
    PANE_KEY,
    CommitPanes,
    FeedPoll,
    Pane,
    StreamPlan,
    show_pane,
    stopped,
)
from pipeline.streaming.windows import due_at, feed_interval

TIMINGS = {0: "early", 1: "on_time", 2: "late", 3: "unknown"}


# --- the local runner -------------------------------------------------------


class LocalStreamingRunner(BundleBasedDirectRunner):
    """Beam's bundle-based direct runner, in streaming mode, with two executor threads.

    The direct runner's executor has one thread by default; `HoldUntilStop` occupies a
    thread for the life of the job, so a second one runs everything else. Choosing this
    runner explicitly is what keeps `DirectRunner` from trying Prism and its download.
    """

    WORKERS = 2
    IDLE_WAKE_SECONDS = 0.2
    MONITOR_PAUSE_SECONDS = 0.003

    def run_pipeline(self, pipeline: beam.Pipeline, options: PipelineOptions) -> Any:
        # Idle executor threads look for work (or a shutdown) this often, not every 5 s:
        # a finished job then ends at once. The executor's monitor task resubmits itself
        # at once, forever: a short pause per round keeps an idle job from spinning a core.
        # Both hold for the rest of the process.
        direct_executor._ExecutorService._ExecutorServiceWorker.TIMEOUT = self.IDLE_WAKE_SECONDS
        _pace_monitor(self.MONITOR_PAUSE_SECONDS)
        parallel = direct_executor._ExecutorServiceParallelExecutor
        saved = parallel.NUM_WORKERS
        parallel.NUM_WORKERS = max(saved, self.WORKERS)  # read once, when the executor is built
        try:
            return super().run_pipeline(pipeline, options)
        finally:
            parallel.NUM_WORKERS = saved


def _pace_monitor(pause: float) -> None:
    monitor = direct_executor._ExecutorServiceParallelExecutor._MonitorTask
    if getattr(monitor.call, "paced", False):
        return
    call = monitor.call

    def paced(self: Any, state_sampler: Any) -> None:
        time.sleep(pause)
        call(self, state_sampler)

    paced.paced = True  # type: ignore[attr-defined]
    monitor.call = paced  # type: ignore[method-assign]


def unbounded_options(beam_args: list[str]) -> PipelineOptions:
    """Streaming options; the runner stays unset unless `--runner` names one."""
    options = PipelineOptions(beam_args)
    options.view_as(StandardOptions).streaming = True
    return options


# --- polling ------------------------------------------------------------------


def drain_seconds(window_seconds: float) -> float:
    """How long after the stop the driver waits for the job to commit its open windows."""
    return window_seconds + 45.0


def hold_until_stop(_: Any, plan: StreamPlan) -> Iterator[Any]:
    """Emits nothing; while it runs the job stays open (its input's watermark is held).

    Once it returns the watermark passes every window: the open windows fire their
    on-time panes and commit, and the job ends."""
    stop_at = None if plan.run_seconds is None else time.time() + plan.run_seconds
    while not stopped(plan):
        if stop_at is not None and time.time() >= stop_at:
            Path(plan.stop_file).touch()
        time.sleep(0.1)
    return iter(())


class PollFeeds(beam.DoFn):
    """(feed url, (FeedSource, FeedState)) -> a FeedPoll each time the feed is due."""

    FEED = userstate.ReadModifyWriteStateSpec("feed", PickleCoder())
    DUE = userstate.TimerSpec("due", TimeDomain.REAL_TIME)

    def __init__(self, plan: StreamPlan) -> None:
        self.plan = plan

    def setup(self) -> None:
        self._host_free_at: dict[str, float] = {}  # host -> when its next request may start

    def process(
        self,
        element: tuple[str, tuple[FeedSource, FeedState]],
        feed=beam.DoFn.StateParam(FEED),  # noqa: B008
        due=beam.DoFn.TimerParam(DUE),  # noqa: B008
    ) -> Iterator[Any]:
        source, state = element[1]
        feed.write((source, state))
        self._schedule(due, source, state, polled=False)
        return iter(())

    @userstate.on_timer(DUE)
    def poll(
        self,
        feed=beam.DoFn.StateParam(FEED),  # noqa: B008
        due=beam.DoFn.TimerParam(DUE),  # noqa: B008
    ) -> Iterator[Any]:
        if stopped(self.plan):
            return  # no timer set again: the feed's part of the job ends
        source, state = feed.read()
        interval = feed_interval(source, self.plan.poll_interval)
        self._wait_for_host(state.url or source.url)
        http = dataclasses.replace(self.plan.http, poll_interval=interval)  # backoff starts there
        outcome = poll_feeds([source], {source.url: state}, http)[0]
        fetched_at = outcome.raw.fetched_at if outcome.raw is not None else datetime.now(timezone.utc)
        poll = FeedPoll(source.url, source.name, outcome.status, outcome.detail, outcome.state, fetched_at)
        if outcome.raw is not None:
            lake = Lake(self.plan.output_dir)
            pages = fetch_new_pages([outcome], self.plan.articles, http, lake, _now)
            # The document, a sitemap index's children, and the pages of their new entries.
            raws = landed_raws([outcome]) + pages
            landed_at = outcome.raw.fetched_at  # the fetch's own time: no second clock reading
            batch_id = lake.land_raw(raws, landed_at)
            kill_point(self.plan.kill_at, "landed")
            poll = dataclasses.replace(
                poll, batch_id=batch_id, landed_date=f"{landed_at:%Y-%m-%d}", raws=tuple(raws)
            )
        feed.write((source, outcome.state))
        self._schedule(due, source, outcome.state, polled=outcome.status not in _NOT_POLLED)
        yield window.TimestampedValue(poll, fetched_at.timestamp())

    def _schedule(self, due: Any, source: FeedSource, state: FeedState, polled: bool) -> None:
        interval = feed_interval(source, self.plan.poll_interval)
        when = due_at(state, interval)
        if when is None:
            return  # retired: never again
        at = when.timestamp()
        if not polled and at <= time.time() and state.last_polled_at:
            at = time.time() + interval  # the connectors said "not yet": never spin on it
        due.set(Timestamp.of(max(at, time.time())))

    def _wait_for_host(self, url: str) -> None:
        """Polls start one at a time here; two to one host start a host gap apart."""
        from urllib.parse import urlsplit

        host = urlsplit(url).netloc
        wait = self._host_free_at.get(host, 0.0) - time.time()
        if wait > 0:
            time.sleep(wait)
        self._host_free_at[host] = time.time() + self.plan.http.per_host_min_gap


_NOT_POLLED = ("skipped_backoff", "skipped_dead", "retired")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- windows ------------------------------------------------------------------


def _to_pane(
    kv: tuple[str, Any],
    win=beam.DoFn.WindowParam,  # noqa: B008
    pane_info=beam.DoFn.PaneInfoParam,  # noqa: B008
) -> Iterator[tuple[str, Pane]]:
    polls = tuple(sorted(kv[1], key=lambda p: (p.fetched_at, p.feed_url)))
    yield (
        PANE_KEY,
        Pane(
            window_start=win.start.to_utc_datetime().replace(tzinfo=timezone.utc).isoformat(),
            window_end=win.end.to_utc_datetime().replace(tzinfo=timezone.utc).isoformat(),
            timing=TIMINGS.get(pane_info.timing, "unknown"),
            polls=polls,
        ),
    )


class WindowPolls(beam.PTransform):
    """FeedPolls -> one (PANE_KEY, Pane) per fired pane of each fixed window of fetch time."""

    def __init__(self, window_seconds: float, allowed_lateness: float) -> None:
        super().__init__()
        self.window_seconds, self.allowed_lateness = window_seconds, allowed_lateness

    def expand(self, polls: beam.PCollection) -> beam.PCollection:
        # Beam's processing-time trigger counts whole seconds.
        early_delay = max(1, math.ceil(self.window_seconds))
        return (
            polls
            | "FixedWindows"
            >> beam.WindowInto(
                window.FixedWindows(self.window_seconds),
                trigger=trigger.AfterWatermark(
                    early=trigger.AfterProcessingTime(early_delay), late=trigger.AfterCount(1)
                ),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
                allowed_lateness=Duration.of(self.allowed_lateness),
            )
            | "OneKey" >> beam.Map(lambda p: (PANE_KEY, p))
            | "PaneOfPolls" >> beam.GroupByKey()
            | "ToPane" >> beam.FlatMap(_to_pane)
            # Panes share one dedup memory: state lives per key and window, so one window.
            | "AcrossWindows" >> beam.WindowInto(window.GlobalWindows())
        )


def build_unbounded(p: beam.Pipeline, plan: StreamPlan, feeds: list[tuple[FeedSource, FeedState]]) -> Any:
    held = p | "Open" >> beam.Create([None]) | "HoldUntilStop" >> beam.FlatMap(hold_until_stop, plan=plan)
    sources = p | "Feeds" >> beam.Create([(f.url, (f, s)) for f, s in feeds])
    polls = (held, sources) | "FeedsUntilStop" >> beam.Flatten() | "PollFeeds" >> beam.ParDo(PollFeeds(plan))
    panes = polls | "WindowPolls" >> WindowPolls(plan.window_seconds, plan.allowed_lateness)
    return panes | "CommitPanes" >> beam.ParDo(CommitPanes(plan))


@dataclass
class UnboundedReport:
    run_ids: list[str]  # runs committed by this job, recovery first
    stopped_by_signal: bool = False


def run_unbounded(
    config: RunConfig,
    beam_args: list[str] | None = None,
    max_windows: int | None = None,
    stop: threading.Event | None = None,
    kill_at: str | None = None,
    show: bool = False,
    allowed_lateness: float | None = None,
) -> UnboundedReport:
    """Run the unbounded job until `stop` is set or, with `max_windows`, for that many
    window lengths; the open windows are then committed. Holds the lake's lock throughout."""
    options = unbounded_options(beam_args or [])
    stop = stop or threading.Event()
    tagger = load_tagger(config)
    settings = config.stream
    lake = Lake(config.output_dir)
    with lake.lock():
        record_taxonomy(lake, tagger.taxonomy)
        before = set(lake.manifests_by_id())

        def commit_landed() -> RunReport:
            """Landed batches no manifest lists, committed through the batch graph."""
            polled = Polled([], set(), datetime.now(timezone.utc), {}, {})
            options = pipeline_options([])
            return commit_pending(config, lake, tagger, options, polled, kill_at, trigger="stream")

        # Batches a killed job landed but never committed go first.
        recovered = commit_landed()
        stop_file = lake.root / STAGING / "stream.stop"
        stop_file.unlink(missing_ok=True)
        plan = StreamPlan(
            output_dir=str(lake.root.resolve()),
            http=config.http,
            poll_interval=settings.poll_interval,
            window_seconds=settings.window_seconds,
            allowed_lateness=settings.window_seconds if allowed_lateness is None else allowed_lateness,
            stop_file=str(stop_file.resolve()),
            run_seconds=None if max_windows is None else max_windows * settings.window_seconds,
            tagger=tagger,
            keep_topics=config.keep_topics,
            near_dup=config.near_dup,
            lookback_days=config.lookback_days,
            started_day=datetime.now(timezone.utc).date().toordinal(),
            articles=config.articles,
            kill_at=kill_at,
        )
        longest = max(config.http.longest_wait, config.stream.poll_interval)
        states = load_feed_states(lake.state_path("feeds.json"), datetime.now(timezone.utc), longest)
        feeds = [(f, states.get(f.url, FeedState())) for f in config.feeds]
        runner = None if options.view_as(StandardOptions).runner else LocalStreamingRunner()
        pipeline = beam.Pipeline(runner=runner, options=options)
        reports = build_unbounded(pipeline, plan, feeds)
        if show:
            reports | "ShowPanes" >> beam.Map(show_pane)

        finished = threading.Event()
        failure: list[BaseException] = []

        def relay_stop() -> None:
            while not stop.wait(0.1):
                if finished.is_set():
                    return
            stop_file.touch()

        def run_job() -> None:
            try:
                job.wait_until_finish()
            except BaseException as exc:  # reported by the driver below
                failure.append(exc)
            finally:
                finished.set()

        job = pipeline.run()
        threading.Thread(target=relay_stop, daemon=True).start()
        threading.Thread(target=run_job, daemon=True).start()
        while not finished.wait(0.2):
            if stopped(plan):
                break
        # Stopped: the open windows commit, then the job ends; give it that long.
        if not finished.wait(drain_seconds(plan.window_seconds)):
            job.cancel()
            finished.wait(10.0)  # a commit in progress finishes before the driver commits
        if failure and not stopped(plan):
            raise failure[0]
        if failure:  # the direct runner may report a spurious stall once drained
            logging.getLogger(__name__).warning("the streaming job ended with %r after the stop", failure[0])
        # Whatever the job did not commit is landed: the batch graph commits it now.
        commit_landed()
        committed = [m["run_id"] for m in lake.manifests() if m.get("run_id") and m["run_id"] not in before]
        stop_file.unlink(missing_ok=True)
    if recovered.run_id and recovered.run_id in committed:
        committed.remove(recovered.run_id)
        committed.insert(0, recovered.run_id)
    return UnboundedReport(committed, stopped_by_signal=stop.is_set())

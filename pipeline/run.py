"""One scheduled ingestion cycle: poll, land raw, run the graph, commit, save state.

The order is what makes a crash harmless: fetched documents are landed before
any processing, the manifest is written last by the graph, and feed
validators and seed fingerprints are saved only after that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import apache_beam as beam
import httpx
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from connectors.fetch import HttpSettings
from connectors.http import FeedSource, FetchOutcome, landed_raws, poll_feeds
from connectors.seeds import read_seed_dir, unsupported_seeds
from connectors.state import FeedState, load_feed_states, load_seed_state, save_feed_states, save_seed_state
from pipeline.config import ConfigError, RunConfig
from pipeline.graph import RunPlan, build_graph
from pipeline.lake.files import kill_point
from pipeline.lake.labels import record_taxonomy
from pipeline.lake.storage import parent_name
from pipeline.lake.store import Lake
from pipeline.observe.progress import Progress, Silent
from pipeline.steps.pages import LandedPages, fetch_new_pages, landed_pages, remember_pages
from pipeline.tagging.tagger import Tagger, load_taxonomy
from schemas.ids import stable_id
from schemas.records import RawFetch

LOG = logging.getLogger("newsbeam.run")
DEFAULT_RUNNER = "FnApiRunner"  # batch; never tries the Prism download that DirectRunner may

EXIT_OK = 0
EXIT_PARTIAL = 1


@dataclass
class SourceStatus:
    source: str
    kind: str
    # ok | not_modified | unchanged | error | recovered; feeds not polled this run:
    # skipped_backoff | skipped_dead | retired; seeds not in a seed format: skipped
    status: str
    detail: str = ""


@dataclass
class RunReport:
    output_dir: str
    run_id: str | None
    runner: str
    seconds: float
    sources: list[SourceStatus] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    pages: LandedPages = field(default_factory=LandedPages)  # article pages the run processed

    @property
    def failed_sources(self) -> list[SourceStatus]:
        return [s for s in self.sources if s.status == "error"]

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if self.failed_sources else EXIT_OK


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_RUNNER
    return options


def _seed_statuses(seeds: list[RawFetch], known: dict[str, str]) -> tuple[list[RawFetch], list[SourceStatus]]:
    to_land, statuses = [], []
    for raw in seeds:
        changed = known.get(raw.source) != raw.raw_id
        if changed:
            to_land.append(raw)
        if raw.status != "ok" and changed:
            statuses.append(SourceStatus(raw.source, "seed", "error", raw.error or "error"))
        elif raw.status != "ok":
            # Its reject was written when it first failed: the same failure again is no news,
            # and must not make every later run partial.
            statuses.append(SourceStatus(raw.source, "seed", "unchanged", f"still failing: {raw.error}"))
        else:
            statuses.append(SourceStatus(raw.source, "seed", "ok" if changed else "unchanged"))
    return to_land, statuses


def _feed_status(outcome: FetchOutcome) -> SourceStatus:
    return SourceStatus(outcome.source.name, "feed", outcome.status, outcome.detail)


def run_cycle(
    config: RunConfig,
    beam_args: list[str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    kill_at: str | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Poll every source once and process everything landed but not yet committed.

    `kill_at` (crash tests only) names a point where the process kills itself.
    """
    started = time.monotonic()
    require_seeds_dir(config)
    options = pipeline_options(beam_args or [])
    tagger = load_tagger(config)
    lake = Lake(config.output_dir)
    with lake.lock():
        record_taxonomy(lake, tagger.taxonomy)
        feed_state_path = lake.state_path("feeds.json")
        feed_states = load_feed_states(feed_state_path, clock(), config.http.longest_wait)
        progress = progress or Silent()
        polled = poll_and_land(
            config, lake, list(config.feeds), feed_states, transport, clock, kill_at, progress=progress
        )
        progress.stage("processing and committing")
        report = commit_pending(config, lake, tagger, options, polled, kill_at)
        progress.close()
        kill_point(kill_at, "committed")
        _log_report(report)
        # Only now is every landed item durable: it is safe to remember validators.
        save_feed_states(feed_state_path, {**feed_states, **polled.feed_states})
        save_seed_state(lake.state_path("seeds.json"), polled.seed_state)
        remember_pages(lake, report.pages, clock, config.articles)
    report.seconds = time.monotonic() - started
    return report


def require_seeds_dir(config: RunConfig) -> None:
    """ConfigError for a `seeds_dir` that is not a folder: a typo must not pass for a
    folder with nothing new in it."""
    if not config.seeds_dir.is_dir():
        raise ConfigError(
            f"seeds_dir {config.seeds_dir} is not a folder (create it, or point seeds_dir at one)"
        )


def load_tagger(config: RunConfig) -> Tagger:
    tagger = Tagger(load_taxonomy(config.taxonomy))
    unknown_topics = set(config.keep_topics) - {t.id for t in tagger.taxonomy.topics}
    if unknown_topics:
        raise ConfigError(f"`keep_topics`: unknown topic {sorted(unknown_topics)[0]!r} in the taxonomy")
    return tagger


@dataclass
class Polled:
    """What polling landed, and the state to save once it is committed."""

    statuses: list[SourceStatus]
    landed_sources: set[str]
    landed_at: datetime
    feed_states: dict[str, FeedState]  # feed url -> state after these polls
    seed_state: dict[str, str]  # seed path -> raw id of the version landed


def poll_and_land(
    config: RunConfig,
    lake: Lake,
    feeds: list[FeedSource],
    feed_states: dict[str, FeedState],
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    kill_at: str | None = None,
    read_seeds: bool = True,
    http: HttpSettings | None = None,
    progress: Progress | None = None,
) -> Polled:
    """Read the seeds (unless told not to), poll `feeds`, fetch the new article pages and land
    it all as one raw batch. Call with the lake's lock held; save nothing until committed."""
    known_seeds = load_seed_state(lake.state_path("seeds.json"))
    seeds: list[RawFetch] = []
    statuses: list[SourceStatus] = []
    if read_seeds:
        read = read_seed_dir(config.seeds_dir, clock(), config.seeds_max_bytes)
        seeds, statuses = _seed_statuses(read, known_seeds)
        statuses += [
            SourceStatus(f"seeds/{rel}", "seed", "skipped", "not a seed format: not read")
            for rel in unsupported_seeds(config.seeds_dir)
        ]
    shown = progress or Silent()
    outcomes = poll_feeds(
        feeds,
        feed_states,
        http or config.http,
        transport,
        clock,
        lambda n, of: shown.step("feeds polled", n, of),
    )
    statuses += [_feed_status(o) for o in outcomes]
    pages = fetch_new_pages(
        outcomes, config.articles, config.http, lake, clock, lambda n, of: shown.step("pages fetched", n, of)
    )
    kill_point(kill_at, "polled")

    landed = seeds + landed_raws(outcomes) + pages
    landed_at = clock()
    batch = lake.land_raw(landed, landed_at)
    LOG.info(
        "polled %d feeds, read %d seeds, fetched %d pages; landed batch %s",
        len(outcomes),
        len(seeds),
        len(pages),
        batch,
        extra={"feeds": len(outcomes), "seeds": len(seeds), "pages": len(pages), "batch_id": batch},
    )
    kill_point(kill_at, "landed")
    return Polled(
        statuses,
        {r.source for r in landed},
        landed_at,
        {o.source.url: o.state for o in outcomes},
        {**known_seeds, **{r.source: r.raw_id for r in seeds}},
    )


def commit_pending(
    config: RunConfig,
    lake: Lake,
    tagger: Tagger,
    options: PipelineOptions,
    polled: Polled,
    kill_at: str | None = None,
    **info: Any,
) -> RunReport:
    """Run the graph over every landed batch no manifest lists yet, committed as one run
    (its id from those batches). Call with the lake's lock held."""
    runner = str(options.view_as(StandardOptions).runner)
    statuses = polled.statuses
    pending = lake.pending_raw_batches()
    report = RunReport(str(config.output_dir), None, runner, 0.0, statuses)
    if not pending:
        return report
    report.pages = landed_pages(pending.values())
    run_id = stable_id("run", *sorted(pending))
    failed = len(report.failed_sources)
    plan = make_plan(
        config,
        lake,
        tagger,
        run_id,
        pending,
        info={
            "started_at": polled.landed_at.isoformat(),
            "outcome": "partial" if failed else "ok",
            "sources": {"polled": len(statuses), "failed": failed},
            # what replay selects by, even once vacuum has deleted the raw files
            "raw_landed": {b: parent_name(p).split("=", 1)[1] for b, p in sorted(pending.items())},
            **info,
        },
        kill_at=kill_at,
        page_urls=report.pages.urls,
    )
    run_graph(plan, options)
    if not lake.is_committed(run_id):
        raise RuntimeError(f"the pipeline finished without committing run {run_id}")
    report.run_id = run_id
    report.manifest = lake.manifests_by_id()[run_id]
    _note_recovered(report, pending, polled.landed_sources)
    return report


def make_plan(
    config: RunConfig,
    lake: Lake,
    tagger: Tagger,
    run_id: str,
    batches: Mapping[str, str | Path],
    index_files: Sequence[str | Path] | None = None,
    page_urls: frozenset[str] | None = None,
    **extra: Any,
) -> RunPlan:
    """The graph's plan for processing `batches` as run `run_id`, against the lake's dedup
    index (or `index_files`)."""
    index = lake.committed_files("dedup_index") if index_files is None else index_files
    return RunPlan(
        output_dir=lake.storage.uri,
        run_id=run_id,
        raw_batches={b: str(p) for b, p in batches.items()},
        tagger=tagger,
        index_files=[str(p) for p in index],
        lookback_days=config.lookback_days,
        near_dup=config.near_dup,
        keep_topics=config.keep_topics,
        articles=config.articles,
        page_urls=page_urls if page_urls is not None else landed_pages(batches.values()).urls,
        **extra,
    )


def run_graph(plan: RunPlan, options: PipelineOptions) -> None:
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, plan)
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        # The DaskRunner's result holds a dask.distributed client; release it with the run.
        client = getattr(result, "client", None)
        if client is not None:
            client.close()


def _note_recovered(report: RunReport, pending: dict[str, Any], polled_now: set[str]) -> None:
    """Sources that appear only through batches left by an earlier, interrupted run."""
    assert report.manifest is not None
    known = {s.source for s in report.sources}
    for source in sorted(report.manifest["stats"]["by_source"]):
        if source not in known and source not in polled_now:
            report.sources.append(SourceStatus(source, "-", "recovered", "from an earlier landed batch"))


def _log_report(report: RunReport) -> None:
    for s in report.sources:
        if s.status == "error":
            LOG.warning(
                "%s %s failed: %s", s.kind, s.source, s.detail, extra={"source": s.source, "status": s.status}
            )
    summary = report_json(report)
    LOG.info(
        "run %s committed: %s",
        report.run_id or "(nothing new)",
        summary["totals"],
        extra={"run_id": report.run_id, "totals": summary["totals"], "run_status": summary["status"]},
    )


def report_json(report: RunReport) -> dict[str, Any]:
    """The run summary `--json` prints: the same facts as `format_report`, as data."""
    stats = (report.manifest or {}).get("stats", {})
    by_source: dict[str, dict[str, int]] = stats.get("by_source", {})
    sources = []
    for s in report.sources:
        counts = by_source.get(s.source, {})
        sources.append(
            {
                "source": s.source,
                "kind": s.kind,
                "status": s.status,
                "detail": s.detail,
                **{t: counts.get(t, 0) for t in ("articles", "duplicates", "rejects")},
            }
        )
    totals = {t: sum(c.get(t, 0) for c in by_source.values()) for t in ("articles", "duplicates", "rejects")}
    return {
        "run_id": report.run_id,
        "output_dir": report.output_dir,
        "runner": report.runner,
        "seconds": round(report.seconds, 3),
        "status": "partial" if report.failed_sources else "ok",
        "exit_code": report.exit_code,
        "totals": totals,
        "topics": dict(sorted((stats.get("topics") or {}).items())),
        "sources": sources,
    }


_COLUMNS = "  {:<48} {:<5} {:<15} {:>5} {:>5} {:>5} {:>5}  {}"


_NOT_POLLED = ("skipped_backoff", "skipped_dead", "retired")


def format_report(report: RunReport) -> str:
    """The run summary: each source and its status, item counts, topics, overall status."""
    stats = (report.manifest or {}).get("stats", {})
    by_source: dict[str, dict[str, int]] = stats.get("by_source", {})
    run = report.run_id[:16] if report.run_id else "(nothing new to process)"
    lines = [
        f"newsbeam run {run} -> {report.output_dir}  [{report.runner}, {report.seconds:.1f}s]",
        _COLUMNS.format("SOURCE", "KIND", "STATUS", "READ", "NEW", "DUP", "REJ", "DETAIL"),
    ]
    for s in report.sources:
        counts = by_source.get(s.source, {})
        new, dup, rej = (counts.get(t, 0) for t in ("articles", "duplicates", "rejects"))
        lines.append(
            _COLUMNS.format(s.source[:48], s.kind, s.status, new + dup + rej, new, dup, rej, s.detail[:100])
        )
    total = {t: sum(c.get(t, 0) for c in by_source.values()) for t in ("articles", "duplicates", "rejects")}
    lines.append(
        f"totals: read {sum(total.values())}, rejected {total['rejects']}, "
        f"duplicates dropped {total['duplicates']}, articles written {total['articles']}"
    )
    topics = sorted((stats.get("topics") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    lines.append("topics: " + (", ".join(f"{k} {v}" for k, v in topics) or "none"))
    counts = {k: sum(s.status == k for s in report.sources) for k in _NOT_POLLED}
    if any(counts.values()):
        lines.append("not polled: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    failed = report.failed_sources
    lines.append(
        f"status: partial ({len(failed)} of {len(report.sources)} sources failed)" if failed else "status: ok"
    )
    return "\n".join(lines)

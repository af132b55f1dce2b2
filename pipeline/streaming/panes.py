"""A streaming pane's processing and commit: the records the stream's job hands on, and
`CommitPanes`, which turns each fired pane into one commit.

A pane's raw documents (feed documents and the article pages fetched for their entries)
go through the batch graph's stage chain (`pipeline.steps.chain.run_chain`); only
deduplication draws on the job's dedup memory (`pipeline.dedup.memory`) instead of the
lake's index. The pane is committed by `Lake.commit` as one run whose id is a hash of
its raw batches, so a retried pane commits once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms import userstate

from connectors.articles import ArticleSettings
from connectors.fetch import HttpSettings
from connectors.state import FeedState, load_feed_states, save_feed_states
from pipeline.dedup.decide import day_number, decide, indexed_member, member
from pipeline.dedup.memory import DedupMemory, candidates, prune, remember
from pipeline.dedup.near import NearDupSettings
from pipeline.lake.files import kill_point, stage_partition
from pipeline.lake.store import Lake
from pipeline.steps.chain import run_chain
from pipeline.steps.deduplicate import read_index_members, route_article, signature_scheme
from pipeline.steps.pages import pages_to_remember, remember_pages
from pipeline.tagging.tagger import Tagger
from schemas.ids import stable_id
from schemas.records import Article, Duplicate, IndexEntry, RawFetch

PANE_KEY = "lake"  # every pane commits through one key: one commit at a time


@dataclass(frozen=True)
class FeedPoll:
    """One poll of one feed: its status, the state to save once committed, what it landed."""

    feed_url: str
    feed_name: str
    status: str
    detail: str
    state: FeedState
    fetched_at: datetime
    batch_id: str | None = None  # None: nothing landed (304, unchanged, skipped)
    landed_date: str | None = None
    raws: tuple[RawFetch, ...] = ()


@dataclass(frozen=True)
class Pane:
    window_start: str
    window_end: str
    timing: str
    polls: tuple[FeedPoll, ...]


@dataclass(frozen=True)
class PaneReport:
    window_start: str
    window_end: str
    timing: str
    polls: int
    run_id: str | None  # None: nothing landed in the pane
    rows: dict[str, int]
    failed: tuple[str, ...]  # names of feeds whose poll failed


@dataclass(frozen=True)
class StreamPlan:
    """Everything the unbounded job needs, decided by the driver before it starts."""

    output_dir: str
    http: HttpSettings
    poll_interval: float
    window_seconds: float
    allowed_lateness: float
    stop_file: str
    run_seconds: float | None  # the job stops itself this long after it starts; None: never
    tagger: Tagger
    keep_topics: tuple[str, ...]
    near_dup: NearDupSettings
    lookback_days: int
    started_day: int  # the day signatures of the persistent index are seeded around
    articles: ArticleSettings = ArticleSettings()  # pages of `fetch_articles` feeds and sitemaps
    kill_at: str | None = None


def stopped(plan: StreamPlan) -> bool:
    return Path(plan.stop_file).exists()


def seed_memory(plan: StreamPlan) -> DedupMemory:
    """The persistent dedup index as a memory: exact keys of every committed article,
    signatures of those published within the lookback of the day the stream started."""
    memory = DedupMemory()
    scheme = signature_scheme(plan.near_dup)
    for path in Lake(plan.output_dir).committed_files("dedup_index"):
        for members in read_index_members(str(path), scheme, [plan.started_day], plan.lookback_days):
            remember(memory, members, plan.near_dup)
    return memory


def deduplicate_pane(
    articles: list[Article], memory: DedupMemory, settings: NearDupSettings, lookback_days: int
) -> list[Article | Duplicate | IndexEntry]:
    """The batch graph's decisions for a pane's articles, against each other and against
    the remembered committed articles they share a key with."""
    signed = [(a, member(a, settings)) for a in articles]
    new = [m for _, m in signed]
    drops = decide(new + candidates(memory, new, settings), settings, lookback_days)
    scheme = signature_scheme(settings)
    return [out for s in signed for out in route_article(s, drops, scheme)]


def process_pane(plan: StreamPlan, raws: list[RawFetch], memory: DedupMemory) -> dict[str, list[Any]]:
    """The batch graph's stage chain over a pane's raw documents: the four tables' records."""

    def deduplicate(articles: list[Article]) -> list[Article | Duplicate | IndexEntry]:
        return deduplicate_pane(articles, memory, plan.near_dup, plan.lookback_days)

    return run_chain(raws, deduplicate, plan.tagger, plan.keep_topics, plan.articles.min_chars)


def save_committed_states(lake: Lake, polls: tuple[FeedPoll, ...]) -> None:
    """Each feed's newest polled state joins `_state/feeds.json` (after its commit)."""
    path = lake.state_path("feeds.json")
    states = load_feed_states(path)
    changed = False
    for p in polls:
        if p.state.last_polled_at is None:
            continue
        known = states.get(p.feed_url)
        if known is None or (known.last_polled_at or "") <= p.state.last_polled_at:
            states[p.feed_url] = p.state
            changed = True
    if changed:
        save_feed_states(path, states)


def commit_pane(plan: StreamPlan, pane: Pane, memory: DedupMemory) -> PaneReport:
    """Process and commit one pane as one run; learn its articles; save its feeds' states."""
    lake = Lake(plan.output_dir)
    failed = tuple(sorted({p.feed_name for p in pane.polls if p.status == "error"}))
    landed = {p.batch_id: p for p in pane.polls if p.batch_id is not None}
    report = PaneReport(pane.window_start, pane.window_end, pane.timing, len(pane.polls), None, {}, failed)
    if not landed:
        save_committed_states(lake, pane.polls)
        return report
    run_id = stable_id("run", *sorted(landed))
    committed = lake.manifests_by_id().get(run_id)
    if committed is not None:  # a retried pane: committed once already, learned already
        manifest = committed
    else:
        tables = process_pane(plan, [r for p in landed.values() for r in p.raws], memory)
        staged = []
        for table, records in tables.items():
            by_partition: dict[str, list[Any]] = {}
            for r in records:
                by_partition.setdefault(r.partition_date, []).append(r)
            staged += [
                stage_partition(plan.output_dir, run_id, table, part, rows, plan.kill_at)
                for part, rows in sorted(by_partition.items())
            ]
        manifest = lake.commit(
            run_id,
            sorted(landed),
            staged,
            {
                "started_at": min(p.fetched_at for p in pane.polls).isoformat(),
                "outcome": "partial" if failed else "ok",
                "sources": {"polled": len(pane.polls), "failed": len(failed)},
                "raw_landed": {b: p.landed_date for b, p in sorted(landed.items())},
                "trigger": "stream",
                "window": {"start": pane.window_start, "end": pane.window_end, "pane": pane.timing},
            },
            plan.kill_at,
        )
        kill_point(plan.kill_at, "committed")
        index = tables["dedup_index"]
        learned = (
            indexed_member(
                e.fetched_at, e.article_id, e.content_hash, e.signature, day_number(e.partition_date)
            )
            for e in index
        )
        remember(memory, learned, plan.near_dup)
        if index:
            prune(memory, max(day_number(e.partition_date) for e in index), plan.lookback_days)
    save_committed_states(lake, pane.polls)
    # Committed: the pages this pane processed are not fetched again.
    pages = pages_to_remember(r for p in pane.polls for r in p.raws)
    remember_pages(lake, pages, lambda: datetime.now(timezone.utc), plan.articles)
    return dataclasses.replace(report, run_id=run_id, rows=dict(manifest["stats"]["rows"]))


class CommitPanes(beam.DoFn):
    """(PANE_KEY, Pane) -> PaneReport, one commit per pane; Beam state: the dedup memory."""

    MEMORY = userstate.ReadModifyWriteStateSpec("dedup_memory", PickleCoder())

    def __init__(self, plan: StreamPlan) -> None:
        self.plan = plan

    def process(
        self,
        element: tuple[str, Pane],
        memory_state=beam.DoFn.StateParam(MEMORY),  # noqa: B008
    ) -> Iterator[PaneReport]:
        memory = memory_state.read()
        if memory is None:
            memory = seed_memory(self.plan)
        report = commit_pane(self.plan, element[1], memory)
        memory_state.write(memory)
        yield report


def format_pane(report: PaneReport) -> str:
    rows = report.rows
    what = (
        f"run {report.run_id[:16]}: {rows.get('articles', 0)} articles, {rows.get('duplicates', 0)} "
        f"duplicates, {rows.get('rejects', 0)} rejects"
        if report.run_id
        else "nothing new"
    )
    failed = f"; failed: {', '.join(report.failed)}" if report.failed else ""
    return (
        f"window {report.window_start[11:19]}-{report.window_end[11:19]} [{report.timing}, "
        f"{report.polls} polls] {what}{failed}"
    )


def show_pane(report: PaneReport) -> None:
    print(format_pane(report), flush=True)

"""Wiring of the run graph: read -> parse and clean -> dedup -> tag -> stage -> commit.

Raw documents travel in batches (lists, one per group of `ReadRawBatches`), and
parsing and cleaning run in one step over a batch (`ParseAndClean`): nothing between
them needs a shuffle. Entries whose link has a landed article page leave that step
uncleaned, are joined to their page (a CoGroupByKey) and cleaned after the join.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from connectors.articles import PAGE_KIND, ArticleSettings
from pipeline.dedup.near import NearDupSettings
from pipeline.steps.commit import CommitRun, StageTable
from pipeline.steps.deduplicate import DeduplicateArticles
from pipeline.steps.pages import JoinArticlePages
from pipeline.steps.parse import CleanArticles, ParseAndClean
from pipeline.steps.read import ReadRawBatches
from pipeline.steps.tag import TagTopics
from pipeline.tagging.tagger import Tagger
from schemas.records import RawFetch


@dataclass(frozen=True)
class RunPlan:
    """Everything one run's graph needs, decided by the driver before it starts."""

    output_dir: str  # absolute, reachable by every worker
    run_id: str
    raw_batches: dict[str, str]  # batch id -> landed file
    tagger: Tagger
    index_files: list[str]  # the dedup index of earlier runs
    lookback_days: int  # indexed articles are compared with new ones published this close
    near_dup: NearDupSettings
    keep_topics: tuple[str, ...] = ()  # empty: keep every article
    page_urls: frozenset[str] = frozenset()  # entry links with a landed article page
    articles: ArticleSettings = ArticleSettings()
    info: dict[str, Any] = field(default_factory=dict)  # recorded in the manifest
    kill_at: str | None = None  # crash tests: the named point where the job dies
    stage_only: bool = False  # stage and list the files; the driver swaps them in (replay)


def article_pages(batch: list[RawFetch]) -> Iterator[RawFetch]:
    """The article pages of a batch of raw records (the other documents are parsed)."""
    return (r for r in batch if r.source_kind == PAGE_KIND)


def build_graph(p: beam.Pipeline, plan: RunPlan) -> beam.PCollection:
    """Apply the run to `p` (a Pipeline or TestPipeline); returns the commit's output."""
    batches = p | "ReadRawBatches" >> ReadRawBatches(list(plan.raw_batches.values()))
    fused = batches | "ParseAndClean" >> ParseAndClean(plan.page_urls)
    articles, rejects = fused["articles"], [fused["rejects"]]
    if plan.page_urls:
        pages = batches | "ArticlePages" >> beam.FlatMap(article_pages)
        joined = (fused["entries"], pages) | "JoinArticlePages" >> JoinArticlePages(
            plan.page_urls, plan.articles
        )
        cleaned = joined["entries"] | "CleanArticles" >> CleanArticles()
        articles = (articles, cleaned["articles"]) | "AllArticles" >> beam.Flatten()
        rejects += [joined["rejects"], cleaned["rejects"]]
    deduped = articles | "DeduplicateArticles" >> DeduplicateArticles(
        plan.index_files, plan.lookback_days, plan.near_dup
    )
    tagged = deduped["articles"] | "TagTopics" >> TagTopics(plan.tagger, plan.keep_topics)
    all_rejects = (*rejects, tagged["rejects"]) | "AllRejects" >> beam.Flatten()

    def stage(name: str, records: beam.PCollection) -> beam.PCollection:
        label = "".join(part.title() for part in name.split("_"))
        return records | f"Stage{label}" >> StageTable(name, plan.output_dir, plan.run_id, plan.kill_at)

    staged = (
        stage("articles", tagged["articles"]),
        stage("rejects", all_rejects),
        stage("duplicates", deduped["duplicates"]),
        stage("dedup_index", deduped["index"]),
    )
    # Applied last on purpose: the commit must be the graph's only leaf.
    return staged | "CommitRun" >> CommitRun(
        plan.output_dir, plan.run_id, list(plan.raw_batches), plan.info, plan.kill_at, plan.stage_only
    )

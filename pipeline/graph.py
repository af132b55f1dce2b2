"""Wiring of the run graph: read -> parse -> clean -> dedup -> tag -> stage -> commit."""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from pipeline.deduplicate import DeduplicateArticles
from pipeline.near_dup import NearDupSettings
from pipeline.tagging import Tagger
from pipeline.transforms import (
    CleanArticles,
    CommitRun,
    ParseEntries,
    ReadRawBatches,
    StageTable,
    TagTopics,
)


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


def build_graph(p: beam.Pipeline, plan: RunPlan) -> beam.PCollection:
    """Apply the run to `p` (a Pipeline or TestPipeline); returns the commit's output."""
    raws = p | "ReadRawBatches" >> ReadRawBatches(list(plan.raw_batches.values()))
    parsed = raws | "ParseEntries" >> ParseEntries()
    cleaned = parsed["entries"] | "CleanArticles" >> CleanArticles()
    deduped = cleaned["articles"] | "DeduplicateArticles" >> DeduplicateArticles(
        plan.index_files, plan.lookback_days, plan.near_dup
    )
    tagged = deduped["articles"] | "TagTopics" >> TagTopics(plan.tagger)
    rejects = (parsed["rejects"], cleaned["rejects"]) | "AllRejects" >> beam.Flatten()

    def stage(name: str, records: beam.PCollection) -> beam.PCollection:
        label = "".join(part.title() for part in name.split("_"))
        return records | f"Stage{label}" >> StageTable(name, plan.output_dir, plan.run_id)

    staged = (
        stage("articles", tagged),
        stage("rejects", rejects),
        stage("duplicates", deduped["duplicates"]),
        stage("dedup_index", deduped["index"]),
    )
    # Applied last on purpose: the commit must be the graph's only leaf.
    return staged | "CommitRun" >> CommitRun(plan.output_dir, plan.run_id, list(plan.raw_batches))

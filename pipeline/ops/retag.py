"""Re-tagging stored articles with the current taxonomy (`newsbeam retag`).

Tagging reads only an article's title, text and language, all stored in
`articles/`, so nothing is refetched or re-cleaned. Each affected
`published_date` partition is read whole, re-tagged, staged and swapped in
with `Lake.replace_partitions`: a partition holds rows of one taxonomy
version before the swap and of the new one after it, never a mix.
Deduplication decisions, ids and run ids are unchanged; `keep_topics` is not
applied (re-tagging never drops an article).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa

from pipeline.lake.files import StagedFile, stage_rows
from pipeline.lake.labels import record_taxonomy
from pipeline.lake.store import Lake
from pipeline.observe.progress import Progress, Silent
from pipeline.ops.maintenance import MaintenanceError, by_partition, read_files, require_lake
from pipeline.tagging.tagger import Tagger
from schemas.arrow import TABLES
from schemas.ids import stable_id

ARTICLES = TABLES["articles"]
TAG_COLUMNS = ("entities", "topics", "countries", "taxonomy_version")


def retag_table(rows: pa.Table, tagger: Tagger) -> pa.Table:
    """`rows` (articles) with entities, topics, countries and taxonomy_version recomputed."""
    sources = (
        rows.column("title_source").to_pylist()
        if "title_source" in rows.column_names
        else [None] * rows.num_rows  # files written before the column: every title a headline
    )
    tagged = [
        tagger.tag("" if source == "lead" else title, text, language)
        for title, text, language, source in zip(
            rows.column("title").to_pylist(),
            rows.column("text").to_pylist(),
            rows.column("language").to_pylist(),
            sources,
            strict=True,
        )
    ]
    values: dict[str, list[Any]] = {
        "entities": [[e._asdict() for e in entities] for entities, _, _ in tagged],
        "topics": [[t._asdict() for t in topics] for _, topics, _ in tagged],
        "countries": [list(countries) for _, _, countries in tagged],
        "taxonomy_version": [tagger.taxonomy.version] * rows.num_rows,
    }
    for name in TAG_COLUMNS:
        field = ARTICLES.schema.field(name)
        rows = rows.set_column(rows.schema.get_field_index(name), field, pa.array(values[name], field.type))
    return rows


@dataclass
class RetagResult:
    partitions_read: int = 0
    partitions_replaced: int = 0
    rows: int = 0
    manifest: dict[str, Any] | None = None


def retag(
    lake: Lake,
    tagger: Tagger,
    since: date,
    until: date,
    max_rows_per_file: int = 1_000_000,
    info: dict[str, Any] | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> RetagResult:
    """Re-tag every article published in [since, until] (by partition), in one swap.

    Partitions whose tags come out unchanged are left alone, so re-running with the
    same taxonomy writes nothing. Call with the lock held.
    """
    if since > until:
        raise MaintenanceError(f"--since {since} is after --until {until}")
    require_lake(lake)
    record_taxonomy(lake, tagger.taxonomy, force)
    result = RetagResult()
    shown = progress or Silent()
    replacements: dict[tuple[str, str], list[StagedFile]] = {}
    chosen = {
        partition: rels
        for partition, rels in by_partition(lake, ARTICLES.name).items()
        if since <= date.fromisoformat(partition) <= until
    }
    for partition, rels in chosen.items():
        shown.step("partitions re-tagged", result.partitions_read, len(chosen))
        result.partitions_read += 1
        current = read_files([lake.storage.location(r) for r in rels], ARTICLES)
        retagged = retag_table(current, tagger)
        result.rows += retagged.num_rows
        if retagged.equals(current):
            continue
        token = "retag-" + stable_id("retag", tagger.taxonomy.version, *rels)
        replacements[(ARTICLES.name, partition)] = stage_rows(
            lake.storage.uri, token, ARTICLES, partition, retagged, max_rows_per_file
        )
        result.partitions_replaced += 1
    shown.step("partitions re-tagged", result.partitions_read, len(chosen))
    if replacements:
        details = {"taxonomy_version": tagger.taxonomy.version, "since": str(since), "until": str(until)}
        result.manifest = lake.replace_partitions("retag", replacements, {**details, **(info or {})})
    return result

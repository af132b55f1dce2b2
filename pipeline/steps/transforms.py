"""Beam steps, each a small named PTransform over the pure functions of its stage.

A step that can reject returns a dict of PCollections (e.g. `articles` and
`rejects`), counts rejects per reason, and the graph writes them to the
`rejects` table. The outputs are split by record type with `Filter`s rather
than with a multi-output ParDo: Beam's DaskRunner (2.77) merges the tagged
outputs of a ParDo into one collection, so every consumer would see them all.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from connectors.articles import PAGE_KIND
from connectors.feeds import ParseResult, parse_feed_bytes
from connectors.seeds import parse_seed
from pipeline.lake.files import STAGING, StagedFile, stage_partition, staged_to_json
from pipeline.lake.storage import Storage
from pipeline.lake.store import Lake
from pipeline.steps.clean import clean_entry, make_reject
from pipeline.tagging.tagger import Tagger
from pipeline.tagging.taxonomy import Taxonomy
from schemas.ids import sha256_hex, stable_id
from schemas.records import Article, Entry, RawFetch, Reject, TopicMatch

NAMESPACE = "newsbeam"


def _count(name: str) -> None:
    Metrics.counter(NAMESPACE, name).inc()


def split_by_type(records: beam.PCollection, step: str, **types: type) -> dict[str, beam.PCollection]:
    """One PCollection per record type: split_by_type(x, "Clean", articles=Article, rejects=Reject)."""
    return {
        name: records | f"{step}{name.title()}" >> beam.Filter(lambda r, t=kind: isinstance(r, t))
        for name, kind in types.items()
    }


# --- read ------------------------------------------------------------------

_RAW_FIELDS = [f.name for f in dataclasses.fields(RawFetch)]


def read_raw_batch(path: str) -> Iterator[RawFetch]:
    table = pq.read_table(path, columns=_RAW_FIELDS)
    for row in table.to_pylist():
        yield RawFetch(**row)


RAW_GROUPS = 32  # raw documents are gathered into this many batches (fewer if fewer documents)


def raw_group(raw: RawFetch) -> int:
    """The batch of a raw document: stable in every process, the same for every copy of a fetch."""
    return zlib.crc32(raw.raw_id.encode()) % RAW_GROUPS


def _fetch_key(raw: RawFetch) -> tuple[str, str]:
    return raw.raw_id, raw.fetched_at.isoformat()


def one_per_fetch(raws: Iterable[RawFetch]) -> list[RawFetch]:
    """The documents of one batch, each fetch once (copies landed twice are one), in a
    stable order. Copies of a fetch are the same document; should two differ, the same
    one is kept whatever order they arrive in."""
    kept: dict[tuple[str, str], RawFetch] = {}
    for raw in raws:
        key = _fetch_key(raw)
        other = kept.get(key)
        if other is None or (other != raw and repr(raw) < repr(other)):
            kept[key] = raw
    return [kept[key] for key in sorted(kept)]


class ReadRawBatches(beam.PTransform):
    """Landed raw batch files -> lists of RawFetch (documents and article pages), each
    fetch in exactly one list, once.

    A document landed twice (a run died after landing, the next one fetched the same
    bytes at the same time, e.g. an unchanged seed) is read once: every record is keyed
    by `raw_group`, so the copies of a fetch meet in one group of one GroupByKey. Each
    group is one element, so the steps after it work on many documents per call, and the
    groups spread over workers. Built without `finish_bundle`, which the DaskRunner drops.
    """

    def __init__(self, paths: list[str]) -> None:
        super().__init__()
        self.paths = sorted(paths)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "BatchPaths" >> beam.Create(self.paths)
            | "Reshuffle" >> beam.Reshuffle()
            | "ReadBatch" >> beam.FlatMap(lambda path: ((raw_group(r), r) for r in read_raw_batch(path)))
            | "GroupDocuments" >> beam.GroupByKey()
            | "OnePerFetch" >> beam.Map(lambda kv: one_per_fetch(kv[1]))
        )


# --- parse -----------------------------------------------------------------


def raw_reject(raw: RawFetch, stage: str, reason: str, detail: str, retryable: bool) -> Reject:
    return Reject(
        reject_id=stable_id("reject", raw.raw_id, stage, reason, detail),
        stage=stage,
        reason=reason,
        error_type="FetchError" if stage == "fetch" else "ParseError",
        retryable=retryable,
        source=raw.source,
        origin=raw.origin,
        payload_hash=sha256_hex(raw.body or b""),
        fetched_at=raw.fetched_at,
        detail=detail,
    )


def parse_raw(raw: RawFetch) -> Iterator[Entry | Reject]:
    """Entries of one raw document, and a Reject for each failure or flagged problem."""
    if raw.status != "ok" or raw.body is None:
        stage = "fetch" if raw.source_kind == "feed" else "read"
        reason = (raw.error or "error").split(":", 1)[0].strip() or "error"
        yield raw_reject(raw, stage, reason, raw.error or "", raw.error_kind == "retryable")
        return
    try:
        result: ParseResult = (
            parse_seed(raw) if raw.source_kind == "seed" else parse_feed_bytes(raw, raw.body)
        )
    except Exception as exc:  # a parser bug must cost one document, not the run
        result = ParseResult(problems=[])
        yield raw_reject(raw, "parse", "parser_error", f"{type(exc).__name__}: {exc}"[:500], False)
    for problem in result.problems:
        detail = problem.detail if problem.position is None else f"item {problem.position}: {problem.detail}"
        yield raw_reject(raw, "parse", problem.reason, detail, problem.retryable)
    yield from result.entries


class _ParseDoFn(beam.DoFn):
    def process(self, raw: RawFetch) -> Iterator[Any]:
        for out in parse_raw(raw):
            if isinstance(out, Reject):
                _count(f"rejected.{out.stage}.{out.reason}")
            else:
                _count("entries")
            yield out


class ParseEntries(beam.PTransform):
    """RawFetch -> {"entries": Entry, "rejects": Reject}."""

    def expand(self, raws: beam.PCollection) -> dict[str, beam.PCollection]:
        parsed = raws | "Parse" >> beam.ParDo(_ParseDoFn())
        return split_by_type(parsed, "Parsed", entries=Entry, rejects=Reject)


# --- clean -----------------------------------------------------------------


def clean_or_reject(entry: Entry) -> Article | Reject:
    """The cleaned article, or the Reject saying why not (a cleaner bug included)."""
    try:
        return clean_entry(entry)
    except Exception as exc:  # one bad entry must not fail the run
        return make_reject(
            entry, "clean", "cleaner_error", f"{type(exc).__name__}: {exc}"[:500], type(exc).__name__
        )


class _CleanDoFn(beam.DoFn):
    def process(self, entry: Entry) -> Iterator[Any]:
        result = clean_or_reject(entry)
        _count(f"rejected.clean.{result.reason}" if isinstance(result, Reject) else "articles")
        yield result


class CleanArticles(beam.PTransform):
    """Entry -> {"articles": Article (untagged), "rejects": Reject}."""

    def expand(self, entries: beam.PCollection) -> dict[str, beam.PCollection]:
        cleaned = entries | "Clean" >> beam.ParDo(_CleanDoFn())
        return split_by_type(cleaned, "Cleaned", articles=Article, rejects=Reject)


# --- parse and clean, fused --------------------------------------------------


def parse_and_clean(
    batch: Iterable[RawFetch], page_urls: frozenset[str], counts: Counter[str]
) -> Iterator[Entry | Article | Reject]:
    """`parse_raw` then `clean_or_reject` over a batch of raw documents, as ParseEntries
    then CleanArticles give them: articles and rejects, and the entries whose link has a
    landed article page unchanged (they are cleaned after JoinArticlePages). Article pages
    in the batch are skipped. `counts` gets the counts those two steps count."""
    for raw in batch:
        if raw.source_kind == PAGE_KIND:
            continue
        for out in parse_raw(raw):
            if isinstance(out, Reject):
                counts[f"rejected.{out.stage}.{out.reason}"] += 1
                yield out
                continue
            counts["entries"] += 1
            if out.url is not None and out.url in page_urls:
                yield out
                continue
            result = clean_or_reject(out)
            counts[f"rejected.clean.{result.reason}" if isinstance(result, Reject) else "articles"] += 1
            yield result


class _ParseCleanDoFn(beam.DoFn):
    def __init__(self, page_urls: frozenset[str]) -> None:
        self.page_urls = page_urls

    def process(self, batch: list[RawFetch]) -> Iterator[Entry | Article | Reject]:
        counts: Counter[str] = Counter()
        yield from parse_and_clean(batch, self.page_urls, counts)
        # Once per batch and name, after the batch: the totals ParseEntries and CleanArticles count.
        for name, n in sorted(counts.items()):
            Metrics.counter(NAMESPACE, name).inc(n)


class ParseAndClean(beam.PTransform):
    """Batches of RawFetch -> {"articles": Article (untagged), "rejects": Reject} and, with
    `page_urls`, "entries": the Entry records whose link has a landed page, for the join.

    ParseEntries and CleanArticles fused into one call per batch (nothing between them
    needs a shuffle): the same records, rejects and counters, without a Beam element and
    a split per record in between.
    """

    def __init__(self, page_urls: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.page_urls = frozenset(page_urls)

    def expand(self, batches: beam.PCollection) -> dict[str, beam.PCollection]:
        out = batches | "ParseClean" >> beam.ParDo(_ParseCleanDoFn(self.page_urls))
        types: dict[str, type] = {"articles": Article, "rejects": Reject}
        if self.page_urls:
            types["entries"] = Entry
        return split_by_type(out, "ParsedCleaned", **types)


# --- tag -------------------------------------------------------------------


def off_topic_reject(article: Article, topics: tuple[TopicMatch, ...]) -> Reject:
    """The dead letter for an article outside the topics a lake keeps."""
    found = ",".join(t.id for t in topics) or "none"
    return Reject(
        reject_id=stable_id("reject", article.article_id, "tag", "off_topic"),
        stage="tag",
        reason="off_topic",
        error_type="OffTopic",
        retryable=False,
        source=article.source,
        origin=article.url or article.raw_id,
        payload_hash=article.content_hash,
        fetched_at=article.fetched_at,
        detail=f"article_id={article.article_id} topics={found}",
    )


def tag_article(tagger: Tagger, keep_topics: frozenset[str], article: Article) -> Article | Reject:
    """The article with its entities, topics and countries, or the off-topic Reject."""
    entities, topics, countries = tagger.tag(article.headline, article.text, article.language)
    if keep_topics and not keep_topics & {t.id for t in topics}:
        return off_topic_reject(article, topics)
    return dataclasses.replace(
        article,
        entities=entities,
        topics=topics,
        countries=countries,
        taxonomy_version=tagger.taxonomy.version,
    )


# Taggers built in this process, by taxonomy digest. Some runners unpickle and set up
# a DoFn for every bundle (the DaskRunner: every partition), and building a Tagger
# (folding every alias, then the automaton) costs more than tagging a bundle.
_TAGGERS: dict[str, Tagger] = {}
_TAGGERS_LOCK = threading.Lock()
_TAGGERS_KEPT = 4


def taxonomy_digest(taxonomy: Taxonomy) -> str:
    """A content hash of everything a Tagger is built from."""
    return sha256_hex(repr(taxonomy).encode())


def process_tagger(digest: str, taxonomy: Taxonomy) -> Tagger:
    """This process's Tagger for `taxonomy` (whose digest is `digest`), built once, ready."""
    with _TAGGERS_LOCK:
        tagger = _TAGGERS.get(digest)
        if tagger is None:
            tagger = Tagger(taxonomy)
            tagger.find("")  # builds the automaton here, under the lock, not in a race
            while len(_TAGGERS) >= _TAGGERS_KEPT:
                del _TAGGERS[next(iter(_TAGGERS))]
            _TAGGERS[digest] = tagger
        return tagger


class _TagDoFn(beam.DoFn):
    """Pickled with its taxonomy, not its Tagger: the Tagger comes from the process cache."""

    def __init__(self, tagger: Tagger, keep_topics: tuple[str, ...]) -> None:
        self.taxonomy, self.digest = tagger.taxonomy, taxonomy_digest(tagger.taxonomy)
        self.keep_topics = frozenset(keep_topics)
        self.tagger: Tagger | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "tagger": None}

    def setup(self) -> None:
        self.tagger = process_tagger(self.digest, self.taxonomy)

    def process(self, article: Article) -> Iterator[Article | Reject]:
        assert self.tagger is not None, "set up before processing"
        result = tag_article(self.tagger, self.keep_topics, article)
        if isinstance(result, Reject):
            _count("rejected.tag.off_topic")
        else:
            for topic in result.topics:
                _count(f"topic.{topic.id}")
        yield result


class TagTopics(beam.PTransform):
    """Article -> Article with entities, topics, countries and the taxonomy version.

    With `keep_topics`, an article matching none of them becomes a Reject
    (`off_topic`): {"articles": ..., "rejects": ...}.
    """

    def __init__(self, tagger: Tagger, keep_topics: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.tagger, self.keep_topics = tagger, keep_topics

    def expand(self, articles: beam.PCollection) -> dict[str, beam.PCollection]:
        tagged = articles | "Tag" >> beam.ParDo(_TagDoFn(self.tagger, self.keep_topics))
        return split_by_type(tagged, "Tagged", articles=Article, rejects=Reject)


# --- write and commit ------------------------------------------------------


def _stage(
    kv: tuple[tuple[str, str], Iterable[Any]], output_dir: str, run_id: str, kill_at: str | None
) -> StagedFile:
    (table, partition), records = kv
    return stage_partition(output_dir, run_id, table, partition, list(records), kill_at)


class StageTable(beam.PTransform):
    """Records of one table -> one staged Parquet file per partition."""

    def __init__(self, table: str, output_dir: str, run_id: str, kill_at: str | None = None) -> None:
        super().__init__()
        self.table, self.output_dir, self.run_id, self.kill_at = table, output_dir, run_id, kill_at

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        table = self.table
        return (
            records
            | "KeyByPartition" >> beam.Map(lambda r: ((table, r.partition_date), r))
            | "GroupByPartition" >> beam.GroupByKey()
            | "WriteStaged"
            >> beam.Map(_stage, output_dir=self.output_dir, run_id=self.run_id, kill_at=self.kill_at)
        )


def _commit(
    staged: list[StagedFile],
    output_dir: str,
    run_id: str,
    raw_batches: list[str],
    info: dict[str, Any],
    kill_at: str | None,
    stage_only: bool,
) -> str:
    if stage_only:
        listed = json.dumps(staged_to_json(staged), sort_keys=True).encode()
        Storage(output_dir).write_bytes(f"{STAGING}/{run_id}/staged.json", listed)
    else:
        Lake(output_dir).commit(run_id, raw_batches, staged, info, kill_at)
    return run_id


_MARKER = "commit"  # not a StagedFile: it only makes sure the gather has one group


class CommitRun(beam.PTransform):
    """Every staged file of the run -> moved into the lake, manifest written last.

    This is the graph's single sink: it depends on every output, which is also
    what runners that compute only the final step (Beam's DaskRunner) need.
    With `stage_only` it lists the staged files instead, for a driver that
    swaps them in itself (replay).
    """

    def __init__(
        self,
        output_dir: str,
        run_id: str,
        raw_batches: list[str],
        info: dict[str, Any] | None = None,
        kill_at: str | None = None,
        stage_only: bool = False,
    ) -> None:
        super().__init__()
        self.output_dir, self.run_id, self.raw_batches = output_dir, run_id, sorted(raw_batches)
        self.info, self.kill_at, self.stage_only = dict(info or {}), kill_at, stage_only

    def expand(self, staged: tuple[beam.PCollection, ...]) -> beam.PCollection:
        # Gathered by a GroupByKey, with a marker so that a run staging nothing still
        # commits, rather than by ToList: a global combine's default for an empty input
        # comes through a side input, which the DaskRunner computes as a job of its own.
        marker = staged[0].pipeline | "CommitMarker" >> beam.Create([_MARKER])
        return (
            (*staged, marker)
            | "AllStaged" >> beam.Flatten()
            | "OneKey" >> beam.Map(lambda f: (0, f))
            | "Gather" >> beam.GroupByKey()
            | "StagedFiles" >> beam.Map(lambda kv: [f for f in kv[1] if isinstance(f, StagedFile)])
            | "Commit"
            >> beam.Map(
                _commit,
                output_dir=self.output_dir,
                run_id=self.run_id,
                raw_batches=self.raw_batches,
                info=self.info,
                kill_at=self.kill_at,
                stage_only=self.stage_only,
            )
        )

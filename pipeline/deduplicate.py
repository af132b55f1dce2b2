"""The DeduplicateArticles step: the decisions of `pipeline.dedup` in two keyed shuffles.

Articles themselves are never shuffled: only their small members are. Members
are first gathered into a few batches (keyed by a hash of their order), then
each batch is cut into one payload per key shard, together with the members of
the dedup index entries published within the lookback of some new article
(partitions outside every window are not opened). Each key shard links its
groups on its own; the links are resolved into clusters, which route each
article to the output or to a Duplicate record. Beam handles a few elements per
article, not one per key; keyed throughout, no driver state: the same on every
runner.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from pipeline.dedup import (
    Drops,
    Link,
    Member,
    as_duplicate,
    day_number,
    indexed_member,
    member,
    resolve_links,
    shard_links,
    shard_of,
    shard_payloads,
)
from pipeline.near_dup import NearDupSettings
from pipeline.transforms import split_by_type
from schemas.records import Article, Duplicate, IndexEntry

NAMESPACE = "newsbeam"
_PARTITION = re.compile(r"published_date=(\d{4}-\d{2}-\d{2})")
INDEX_BATCH = 5000  # index members per element


def signature_scheme(settings: NearDupSettings) -> str:
    from rensa import RMinHash

    return (
        f"rensa-rminhash-v{RMinHash.ALGORITHM_VERSION}:perm={settings.num_perm}:"
        f"seed={settings.seed}:shingle={settings.shingle_words}:min_words={settings.min_words}"
    )


def partition_day(path: str) -> int | None:
    """The day of a file's `published_date=` partition, or None if its path names none."""
    found = _PARTITION.findall(path)
    return day_number(found[-1]) if found else None


def in_lookback(day: int | None, new_days: Iterable[int], lookback_days: int) -> bool:
    """Whether a partition may hold an entry some new article is compared with."""
    return day is None or any(abs(day - d) <= lookback_days for d in new_days)


def read_index_members(
    path: str, scheme: str, new_days: list[int], lookback_days: int
) -> Iterator[list[Member]]:
    """Batches of members for the articles an earlier run indexed in one file. A file whose
    partition is outside the lookback of every new article gives members without signatures:
    they still answer exact keys (same URL, same content), never near-duplicate bands."""
    day = partition_day(path)
    columns = ["article_id", "content_hash", "fetched_at", "published_at"]
    if in_lookback(day, new_days, lookback_days):
        Metrics.counter(NAMESPACE, "dedup.index_files_read").inc()
        columns += ["signature", "signature_scheme"]
    else:
        # Outside every new article's window only the exact keys matter: signatures stay unread.
        Metrics.counter(NAMESPACE, "dedup.index_files_exact_only").inc()
    batch: list[Member] = []
    for row in pq.read_table(path, columns=columns).to_pylist():
        sig = row["signature"] if row.get("signature_scheme") == scheme else None
        when = (
            day
            if day is not None
            else day_number((row["published_at"] or row["fetched_at"]).strftime("%Y-%m-%d"))
        )
        batch.append(indexed_member(row["fetched_at"], row["article_id"], row["content_hash"], sig, when))
        if len(batch) == INDEX_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def route_article(
    signed: tuple[Article, Member], drops: Drops, scheme: str
) -> Iterator[Article | Duplicate | IndexEntry]:
    article, (order, _, _, sig, _) = signed
    if order in drops:
        kept_id, reason, sim = drops[order]
        Metrics.counter(NAMESPACE, f"duplicates.{reason}").inc()
        yield as_duplicate(article, kept_id, reason, sim)
        return
    yield article
    yield IndexEntry(
        article_id=article.article_id,
        content_hash=article.content_hash,
        fetched_at=article.fetched_at,
        published_at=article.published_at,
        signature=sig,
        signature_scheme=scheme,
        partition_date=article.partition_date,
    )


class _Route(beam.DoFn):
    """Routes each article by the drops, which arrive pickled (one opaque bytes object is
    cheap for the runner to cache and size) and are unpickled once per worker."""

    def __init__(self, scheme: str):
        self.scheme = scheme
        self._blob: bytes | None = None
        self._drops: Drops = {}

    def process(self, signed: tuple[Article, Member], drops_blob: bytes) -> Iterator[Any]:
        if drops_blob is not self._blob:
            self._blob, self._drops = drops_blob, pickle.loads(drops_blob)
        yield from route_article(signed, self._drops, self.scheme)


def _resolved_blob(link_lists: Iterable[list[Link]]) -> bytes:
    drops = resolve_links(link for links in link_lists for link in links)
    return pickle.dumps(drops, protocol=pickle.HIGHEST_PROTOCOL)


class DeduplicateArticles(beam.PTransform):
    """Drop copies with the same canonical URL, the same normalised content or
    near-duplicate content, within the run and against the lake's dedup index
    (entries published within `lookback_days` before or after each article).

    Returns {"articles": Article, "duplicates": Duplicate, "index": IndexEntry}.
    """

    def __init__(self, index_files: list[str], lookback_days: int, settings: NearDupSettings):
        super().__init__()
        self.index_files = sorted(index_files)
        self.lookback_days = lookback_days
        self.settings = settings
        self.scheme = signature_scheme(settings)

    def expand(self, articles: beam.PCollection) -> dict[str, beam.PCollection]:
        p, settings, scheme, lookback = articles.pipeline, self.settings, self.scheme, self.lookback_days
        shards = settings.shards
        signed = articles | "Sign" >> beam.Map(lambda a: (a, member(a, settings)))
        batches = (
            signed
            | "ByBatch" >> beam.Map(lambda s: (shard_of(s[1][0].encode(), shards), s[1]))
            | "Batch" >> beam.GroupByKey()
            | "BatchMembers" >> beam.Map(lambda kv: list(kv[1]))
        )
        new_days = (
            batches
            | "Days" >> beam.FlatMap(lambda ms: sorted({m[4] for m in ms}))
            | "DistinctDays" >> beam.Distinct()
        )
        index_batches = (
            p
            | "IndexFiles" >> beam.Create(self.index_files)
            | "ReadIndex"
            >> beam.FlatMap(
                read_index_members,
                scheme=scheme,
                new_days=beam.pvalue.AsList(new_days),
                lookback_days=lookback,
            )
        )
        drops = (
            (batches, index_batches)
            | "AllBatches" >> beam.Flatten()
            | "Payloads" >> beam.FlatMap(shard_payloads, settings=settings, shards=shards)
            | "ByShard" >> beam.GroupByKey()
            | "Links" >> beam.Map(lambda kv: shard_links(kv[1], settings, lookback))
            | "AllLinks" >> beam.combiners.ToList()
            | "Resolve" >> beam.Map(_resolved_blob)
        )
        routed = signed | "Route" >> beam.ParDo(_Route(scheme), beam.pvalue.AsSingleton(drops))
        return split_by_type(routed, "Routed", articles=Article, duplicates=Duplicate, index=IndexEntry)

"""The DeduplicateArticles step: the decisions of `pipeline.dedup.decide` in keyed shuffles.

The decisions shuffle only small members. Members are first gathered into a few
batches (keyed by a hash of their order), then each batch is cut into one
payload per key shard, together with the members of the dedup index entries
published within the lookback of some new article (partitions outside every
window are not opened). Each key shard links its groups on its own; the links
are resolved into clusters, whose drops meet the articles, shard by shard, in
one more keyed join that routes each article to the output or to a Duplicate
record. A shard hands on a summary of its links (a spanning forest and each
member's strongest link), so what is gathered to resolve grows with the number
of articles, not with how many of them are alike. Beam handles a few elements
per article, not one per key; keyed throughout, no side inputs, no driver state:
the same on every runner.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from pipeline.dedup.decide import (
    Drops,
    Link,
    LinkStats,
    Member,
    as_duplicate,
    day_number,
    indexed_member,
    member,
    resolve_links,
    shard_of,
    shard_payloads,
    shard_summary,
)
from pipeline.dedup.near import NearDupSettings
from pipeline.steps.common import NAMESPACE, split_by_type
from schemas.records import Article, Duplicate, IndexEntry

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
    yield index_entry(article, sig, scheme)


def index_entry(article: Article, sig: bytes | None, scheme: str) -> IndexEntry:
    """What the dedup index keeps of a written article."""
    return IndexEntry(
        article_id=article.article_id,
        content_hash=article.content_hash,
        fetched_at=article.fetched_at,
        published_at=article.published_at,
        signature=sig,
        signature_scheme=scheme,
        partition_date=article.partition_date,
    )


def link_shard(payloads: Iterable[bytes], settings: NearDupSettings, lookback_days: int) -> list[Link]:
    """One key shard's links, summarised (at most two per member, however similar they are),
    and counted: similarity comparisons made and links handed on."""
    stats = LinkStats()
    links = shard_summary(payloads, settings, lookback_days, stats)
    Metrics.counter(NAMESPACE, "dedup.comparisons").inc(stats.comparisons)
    Metrics.counter(NAMESPACE, "dedup.links").inc(stats.links)
    return links


def drops_by_shard(link_lists: Iterable[list[Link]], shards: int) -> Iterator[tuple[int, bytes]]:
    """The clusters' drops, cut by the shard of each dropped copy's order (the key its
    article is routed under), pickled: one opaque bytes value per shard that has drops."""
    drops = resolve_links(link for links in link_lists for link in links)
    by_shard: dict[int, Drops] = {}
    for order, drop in drops.items():
        by_shard.setdefault(shard_of(order.encode(), shards), {})[order] = drop
    for shard, shard_drops in sorted(by_shard.items()):
        yield shard, pickle.dumps(shard_drops, protocol=pickle.HIGHEST_PROTOCOL)


def route_shard(
    kv: tuple[int, dict[str, Iterable[Any]]], scheme: str
) -> Iterator[Article | Duplicate | IndexEntry]:
    """Routes one shard's articles by that shard's drops (none: every article is kept)."""
    _, joined = kv
    drops: Drops = {}
    for blob in joined["drops"]:
        drops.update(pickle.loads(blob))
    for signed in joined["articles"]:
        yield from route_article(signed, drops, scheme)


def index_reads(kv: tuple[int, dict[str, Iterable[Any]]]) -> Iterator[tuple[str, list[int]]]:
    """Each index file with every day a new article is published on."""
    _, joined = kv
    new_days = sorted(set(joined["days"]))
    for path in sorted(joined["files"]):
        yield path, new_days


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
        # No side inputs: the DaskRunner computes each side input in a job of its own from
        # the start of the graph, so every article would be parsed and cleaned once more
        # per side input. The joins are keyed instead: the index files meet the new days
        # under one key, and each article meets its shard's drops.
        p, settings, scheme, lookback = articles.pipeline, self.settings, self.scheme, self.lookback_days
        shards = settings.shards
        signed = articles | "Sign" >> beam.Map(lambda a: (a, member(a, settings)))
        batches = (
            signed
            | "ByBatch" >> beam.Map(lambda s: (shard_of(s[1][0].encode(), shards), s[1]))
            | "Batch" >> beam.GroupByKey()
            | "BatchMembers" >> beam.Map(lambda kv: list(kv[1]))
        )
        days = batches | "Days" >> beam.FlatMap(lambda ms: [(0, d) for d in sorted({m[4] for m in ms})])
        files = p | "IndexFiles" >> beam.Create(self.index_files) | "KeyFiles" >> beam.Map(lambda f: (0, f))
        index_batches = (
            {"files": files, "days": days}
            | "FilesWithDays" >> beam.CoGroupByKey()
            | "IndexReads" >> beam.FlatMap(index_reads)
            | "SpreadReads" >> beam.Reshuffle()
            | "ReadIndex" >> beam.FlatMap(lambda read: read_index_members(read[0], scheme, read[1], lookback))
        )
        drops = (
            (batches, index_batches)
            | "AllBatches" >> beam.Flatten()
            | "Payloads" >> beam.FlatMap(shard_payloads, settings=settings, shards=shards)
            | "ByShard" >> beam.GroupByKey()
            | "Links" >> beam.Map(lambda kv: link_shard(kv[1], settings, lookback))
            # Without defaults: a global combine's default is injected through a side input.
            | "AllLinks" >> beam.combiners.ToList().without_defaults()
            | "Resolve" >> beam.FlatMap(drops_by_shard, shards=shards)
        )
        keyed = signed | "ByRoute" >> beam.Map(lambda s: (shard_of(s[1][0].encode(), shards), s))
        routed = (
            {"articles": keyed, "drops": drops}
            | "WithDrops" >> beam.CoGroupByKey()
            | "Route" >> beam.FlatMap(route_shard, scheme=scheme)
        )
        return split_by_type(routed, "Routed", articles=Article, duplicates=Duplicate, index=IndexEntry)

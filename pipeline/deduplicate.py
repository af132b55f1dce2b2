"""The DeduplicateArticles step: exact passes, then near duplicates, against the lake's index.

Keyed throughout (article id, content hash, LSH band, pair), with no driver
state, so it behaves the same on every runner.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from pipeline.dedup import Existing, as_duplicate, resolve_group, survivor_order
from pipeline.near_dup import (
    NearDupSettings,
    Order,
    band_keys,
    bucket_candidates,
    cluster,
    signature,
    similarity,
)
from schemas.records import Article, Duplicate, IndexEntry

NAMESPACE = "newsbeam"
_NEW, _INDEXED = 1, 0  # articles of earlier runs sort before every new one


def signature_scheme(settings: NearDupSettings) -> str:
    from rensa import RMinHash

    return (
        f"rensa-rminhash-v{RMinHash.ALGORITHM_VERSION}:perm={settings.num_perm}:"
        f"seed={settings.seed}:shingle={settings.shingle_words}:min_words={settings.min_words}"
    )


def new_order(a: Article) -> Order:
    return (_NEW, *survivor_order(a))


def read_index_keys(path: str) -> Iterator[tuple[str, str]]:
    """(article_id, content_hash) of every article an earlier run committed."""
    table = pq.read_table(path, columns=["article_id", "content_hash"])
    yield from zip(
        table.column("article_id").to_pylist(), table.column("content_hash").to_pylist(), strict=True
    )


def read_index_signatures(path: str, scheme: str) -> Iterator[tuple[str, tuple[Order, bytes]]]:
    """(article_id, (order, signature)) of indexed articles signed with the current scheme."""
    table = pq.read_table(path, columns=["article_id", "fetched_at", "signature", "signature_scheme"])
    for row in table.to_pylist():
        if row["signature"] is not None and row["signature_scheme"] == scheme:
            yield row["article_id"], ((_INDEXED, row["fetched_at"], row["article_id"]), row["signature"])


def _resolve(kv: tuple[str, Iterable[Article | Existing]], reason: str) -> Iterator[Article | Duplicate]:
    survivor, duplicates = resolve_group(kv[1], reason)
    for dup in duplicates:
        Metrics.counter(NAMESPACE, f"duplicates.{dup.reason}").inc()
        yield dup
    if survivor is not None:
        yield survivor


def _split(records: beam.PCollection, step: str, **types: type) -> dict[str, beam.PCollection]:
    return {
        name: records | f"{step}{name.title()}" >> beam.Filter(lambda r, t=kind: isinstance(r, t))
        for name, kind in types.items()
    }


class _ExactPass(beam.PTransform):
    """One exact pass: group by a key, keep the first-seen copy of each group."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__()
        self.key, self.reason = key, reason

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> dict[str, beam.PCollection]:
        articles, existing = inputs
        key = self.key
        resolved = (
            (articles | "Key" >> beam.Map(lambda a: (getattr(a, key), a)), existing)
            | "Flatten" >> beam.Flatten()
            | "Group" >> beam.GroupByKey()
            | "Resolve" >> beam.FlatMap(_resolve, reason=self.reason)
        )
        return _split(resolved, "Only", articles=Article, duplicates=Duplicate)


def _verify_first(kv: tuple[str, dict[str, list[Any]]]) -> Iterator[tuple[str, tuple[Any, bytes]]]:
    sigs = kv[1]["sig"]
    if sigs:
        for pair in kv[1]["pairs"]:
            yield pair[1], (pair, sigs[0][1])


def _verify_second(
    kv: tuple[str, dict[str, list[Any]]], threshold: float
) -> Iterator[tuple[str, str, float, Order, Order]]:
    sigs = kv[1]["sig"]
    if not sigs:
        return
    for (later, earlier, later_order, earlier_order), later_sig in kv[1]["pairs"]:
        sim = similarity(later_sig, sigs[0][1])
        if sim >= threshold:
            yield later, earlier, round(sim, 4), later_order, earlier_order


def _clusters(pairs: list[tuple[str, str, float, Order, Order]]) -> dict[str, tuple[str, float]]:
    order: dict[str, Order] = {}
    for later, earlier, _, later_order, earlier_order in pairs:
        order[later], order[earlier] = later_order, earlier_order
    return cluster(((p[0], p[1], p[2]) for p in pairs), order)


def _route(
    signed: tuple[Article, bytes | None], clusters: dict[str, tuple[str, float]], scheme: str
) -> Iterator[Article | Duplicate | IndexEntry]:
    article, sig = signed
    if article.article_id in clusters:
        root, sim = clusters[article.article_id]
        Metrics.counter(NAMESPACE, "duplicates.near_duplicate").inc()
        yield as_duplicate(article, root, "near_duplicate", sim)
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


class DeduplicateArticles(beam.PTransform):
    """Drop copies: same canonical URL, then same normalised content, then near-duplicate
    content; within the run and against the articles earlier runs indexed.

    Returns {"articles": Article, "duplicates": Duplicate, "index": IndexEntry}.
    """

    def __init__(self, index_files: list[str], recent_index_files: list[str], settings: NearDupSettings):
        super().__init__()
        self.index_files = sorted(index_files)
        self.recent_index_files = sorted(recent_index_files)
        self.settings = settings
        self.scheme = signature_scheme(settings)

    def expand(self, articles: beam.PCollection) -> dict[str, beam.PCollection]:
        p, settings, scheme = articles.pipeline, self.settings, self.scheme
        keys = (
            p
            | "IndexFiles" >> beam.Create(self.index_files)
            | "ReadIndexKeys" >> beam.FlatMap(read_index_keys)
        )
        by_id = (
            articles,
            keys | "ExistingById" >> beam.Map(lambda k: (k[0], Existing(k[0], k[1]))),
        ) | "SameUrl" >> _ExactPass("article_id", "same_url")
        by_hash = (
            by_id["articles"],
            keys | "ExistingByHash" >> beam.Map(lambda k: (k[1], Existing(k[0], k[1]))),
        ) | "SameContent" >> _ExactPass("content_hash", "same_content")

        signed = by_hash["articles"] | "Sign" >> beam.Map(lambda a: (a, signature(a.text, settings)))
        new_sigs = (
            signed
            | "WithSignature" >> beam.Filter(lambda s: s[1] is not None)
            | "ById" >> beam.Map(lambda s: (s[0].article_id, (new_order(s[0]), s[1])))
        )
        old_sigs = (
            p
            | "RecentIndexFiles" >> beam.Create(self.recent_index_files)
            | "ReadIndexSignatures" >> beam.FlatMap(read_index_signatures, scheme=scheme)
        )
        sigs = (new_sigs, old_sigs) | "AllSignatures" >> beam.Flatten()
        candidates = (
            sigs
            | "BandKeys"
            >> beam.FlatMap(lambda kv: [(b, (kv[0], kv[1][0])) for b in band_keys(kv[1][1], settings)])
            | "GroupByBand" >> beam.GroupByKey()
            | "Candidates" >> beam.FlatMap(lambda kv: bucket_candidates(kv[1], settings))
            | "KeyByPair" >> beam.Map(lambda c: ((c[0], c[1]), c))
            | "GroupByPair" >> beam.GroupByKey()
            | "OnePerPair" >> beam.Map(lambda kv: next(iter(kv[1])))
        )
        half = (
            {"pairs": candidates | "ByLater" >> beam.Map(lambda c: (c[0], c)), "sig": sigs}
            | "JoinLater" >> beam.CoGroupByKey()
            | "WithLaterSig" >> beam.FlatMap(_verify_first)
        )
        near_pairs = (
            {"pairs": half, "sig": sigs}
            | "JoinEarlier" >> beam.CoGroupByKey()
            | "Verify" >> beam.FlatMap(_verify_second, threshold=settings.threshold)
        )
        clusters = near_pairs | "AllPairs" >> beam.combiners.ToList() | "Cluster" >> beam.Map(_clusters)
        routed = signed | "Route" >> beam.FlatMap(
            _route, clusters=beam.pvalue.AsSingleton(clusters), scheme=scheme
        )
        near = _split(routed, "Near", articles=Article, duplicates=Duplicate, index=IndexEntry)
        duplicates = (
            by_id["duplicates"],
            by_hash["duplicates"],
            near["duplicates"],
        ) | "AllDuplicates" >> beam.Flatten()
        return {"articles": near["articles"], "duplicates": duplicates, "index": near["index"]}

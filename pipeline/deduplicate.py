"""The DeduplicateArticles step: the decisions of `pipeline.dedup` in one keyed shuffle.

Articles themselves are never shuffled: only their small members are, grouped
by key together with the members of the dedup index of earlier runs. The
links of every group are gathered and resolved into clusters, which route
each article to the output or to a Duplicate record. Keyed throughout, no
driver state: the same on every runner.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from pipeline.dedup import (
    Drops,
    Member,
    as_duplicate,
    group_links,
    indexed_order,
    member,
    member_keys,
    resolve_links,
)
from pipeline.near_dup import NearDupSettings
from pipeline.transforms import split_by_type
from schemas.records import Article, Duplicate, IndexEntry

NAMESPACE = "newsbeam"


def signature_scheme(settings: NearDupSettings) -> str:
    from rensa import RMinHash

    return (
        f"rensa-rminhash-v{RMinHash.ALGORITHM_VERSION}:perm={settings.num_perm}:"
        f"seed={settings.seed}:shingle={settings.shingle_words}:min_words={settings.min_words}"
    )


def read_index_members(path: str, scheme: str, since: str) -> Iterator[Member]:
    """Members for the articles an earlier run indexed; signatures only within the lookback."""
    table = pq.read_table(path, columns=["article_id", "content_hash", "fetched_at", "signature",
                                         "signature_scheme", "published_at"])  # fmt: skip
    for row in table.to_pylist():
        recent = (row["published_at"] or row["fetched_at"]).strftime("%Y-%m-%d") >= since
        sig = row["signature"] if recent and row["signature_scheme"] == scheme else None
        yield indexed_order(row["fetched_at"], row["article_id"]), row["article_id"], row["content_hash"], sig


def _route(
    signed: tuple[Article, Member], drops: Drops, scheme: str
) -> Iterator[Article | Duplicate | IndexEntry]:
    article, (order, _, _, sig) = signed
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


class DeduplicateArticles(beam.PTransform):
    """Drop copies with the same canonical URL, the same normalised content or
    near-duplicate content, within the run and against the lake's dedup index.

    Returns {"articles": Article, "duplicates": Duplicate, "index": IndexEntry}.
    """

    def __init__(self, index_files: list[str], since: str, settings: NearDupSettings):
        super().__init__()
        self.index_files = sorted(index_files)
        self.since = since  # near duplicates are sought among articles published since
        self.settings = settings
        self.scheme = signature_scheme(settings)

    def expand(self, articles: beam.PCollection) -> dict[str, beam.PCollection]:
        p, settings, scheme = articles.pipeline, self.settings, self.scheme
        signed = articles | "Sign" >> beam.Map(lambda a: (a, member(a, settings)))
        new_members = signed | "Members" >> beam.Map(lambda s: s[1])
        old_members = (
            p
            | "IndexFiles" >> beam.Create(self.index_files)
            | "ReadIndex" >> beam.FlatMap(read_index_members, scheme=scheme, since=self.since)
        )
        drops = (
            (new_members, old_members)
            | "AllMembers" >> beam.Flatten()
            | "Keys" >> beam.FlatMap(member_keys, settings=settings)
            | "GroupByKey" >> beam.GroupByKey()
            | "Links" >> beam.FlatMap(group_links, settings=settings)
            | "AllLinks" >> beam.combiners.ToList()
            | "Resolve" >> beam.Map(resolve_links)
        )
        routed = signed | "Route" >> beam.FlatMap(_route, drops=beam.pvalue.AsSingleton(drops), scheme=scheme)
        return split_by_type(routed, "Routed", articles=Article, duplicates=Duplicate, index=IndexEntry)

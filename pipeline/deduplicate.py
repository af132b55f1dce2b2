"""The DeduplicateArticles step: exact and near duplicates in one keyed shuffle.

Articles themselves are never shuffled. Each new article becomes a small
`member` (order, article id, content hash, MinHash signature) emitted under
its keys: its article id, its content hash and one key per LSH band. Earlier
runs' articles join the same groups from the dedup index. Each group yields
the pairs that are duplicates (same key for the exact keys; verified
similarity for bands); the pairs' connected components are clustered, and
every article outside its component's first-seen member becomes a Duplicate
record. Keyed throughout, no driver state: the same on every runner.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timezone

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from pipeline.dedup import as_duplicate
from pipeline.near_dup import NearDupSettings, band_keys, signature, similarity
from schemas.records import Article, Duplicate, IndexEntry

NAMESPACE = "newsbeam"
_NEW, _INDEXED = "1", "0"  # articles of earlier runs sort before every new one
_URL, _CONTENT, _BAND = b"u", b"c", b"b"
# Which link explains a drop best, when an article has several.
_REASON_RANK = {"same_url": 0, "revised": 1, "same_content": 2, "near_duplicate": 3}

# A member: (order, article_id, content_hash, signature or None). `order` is the
# survivor order as one sortable string and also names the copy uniquely.
Member = tuple[str, str, str, bytes | None]
# A link: (later order, earlier order, reason, similarity).
Link = tuple[str, str, str, float]


def signature_scheme(settings: NearDupSettings) -> str:
    from rensa import RMinHash

    return (
        f"rensa-rminhash-v{RMinHash.ALGORITHM_VERSION}:perm={settings.num_perm}:"
        f"seed={settings.seed}:shingle={settings.shingle_words}:min_words={settings.min_words}"
    )


def _stamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%f")


def new_order(a: Article) -> str:
    """First seen first: fetched, then published (undated last), then ids; unique per copy."""
    published = a.published_at or a.fetched_at
    undated = "1" if a.published_at is None else "0"
    parts = (_NEW, _stamp(a.fetched_at), undated, _stamp(published), a.article_id, a.content_hash)
    return "|".join((*parts, a.raw_id, f"{a.position:06d}"))


def indexed_order(fetched_at: datetime, article_id: str) -> str:
    return f"{_INDEXED}|{_stamp(fetched_at)}|{article_id}"


def order_article_id(order: str) -> str:
    parts = order.split("|")
    return parts[4] if parts[0] == _NEW else parts[2]


def member_keys(member: Member, settings: NearDupSettings) -> Iterator[tuple[bytes, Member]]:
    _, article_id, content_hash, sig = member
    yield _URL + article_id.encode(), member
    yield _CONTENT + content_hash.encode(), member
    if sig is not None:
        for key in band_keys(sig, settings):
            yield _BAND + key, member


def group_links(kv: tuple[bytes, Iterable[Member]], settings: NearDupSettings) -> Iterator[Link]:
    """Duplicate links within one key group: every member to the first-seen one for an
    exact key; verified pairs (each member against those before it, capped) for a band."""
    key, members = kv
    ordered = sorted(set(members))
    if len(ordered) < 2:
        return
    kind = key[:1]
    if kind != _BAND:
        first = ordered[0]
        for m in ordered[1:]:
            if m[0].startswith(_INDEXED):
                continue  # earlier runs' articles were settled by earlier runs
            if kind == _URL:
                yield m[0], first[0], "same_url" if m[2] == first[2] else "revised", 1.0
            else:
                yield m[0], first[0], "same_content", 1.0
        return
    for i, later in enumerate(ordered):
        if later[0].startswith(_INDEXED):
            continue
        for earlier in ordered[max(0, i - settings.max_bucket_comparisons) : i]:
            sim = similarity(later[3], earlier[3])  # type: ignore[arg-type]
            if sim >= settings.threshold:
                yield later[0], earlier[0], "near_duplicate", round(sim, 4)


def resolve_links(links: list[Link]) -> dict[str, tuple[str, str, float]]:
    """Connected components of the links; for every copy that is not its component's
    first-seen member: (that member's order, the reason, the similarity) of its best link."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    best: dict[str, tuple[int, float, str]] = {}
    for later, earlier, reason, sim in sorted(links):
        for node in (later, earlier):
            candidate = (_REASON_RANK[reason], -sim, reason)
            if node not in best or candidate < best[node]:
                best[node] = candidate
        a, b = find(later), find(earlier)
        if a != b:
            parent[max(a, b)] = min(a, b)  # orders sort first-seen first
    result = {}
    for node in parent:
        root = find(node)
        if root != node:
            _, neg_sim, reason = best[node]
            result[node] = (root, reason, -neg_sim)
    return result


def read_index_members(path: str, scheme: str, since: str) -> Iterator[Member]:
    """Members for the articles an earlier run indexed; signatures only within the lookback."""
    table = pq.read_table(path, columns=["article_id", "content_hash", "fetched_at", "signature",
                                         "signature_scheme", "published_at"])  # fmt: skip
    for row in table.to_pylist():
        recent = (row["published_at"] or row["fetched_at"]).strftime("%Y-%m-%d") >= since
        sig = row["signature"] if recent and row["signature_scheme"] == scheme else None
        yield indexed_order(row["fetched_at"], row["article_id"]), row["article_id"], row["content_hash"], sig


def _route(
    signed: tuple[Article, str, bytes | None],
    drops: dict[str, tuple[str, str, float]],
    scheme: str,
) -> Iterator[Article | Duplicate | IndexEntry]:
    article, order, sig = signed
    if order in drops:
        root, reason, sim = drops[order]
        Metrics.counter(NAMESPACE, f"duplicates.{reason}").inc()
        yield as_duplicate(article, order_article_id(root), reason, sim)
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
        signed = articles | "Sign" >> beam.Map(lambda a: (a, new_order(a), signature(a.text, settings)))
        new_members = signed | "Members" >> beam.Map(
            lambda s: (s[1], s[0].article_id, s[0].content_hash, s[2])
        )
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
        return {
            name: routed | f"Only{name.title()}" >> beam.Filter(lambda r, t=kind: isinstance(r, t))
            for name, kind in (("articles", Article), ("duplicates", Duplicate), ("index", IndexEntry))
        }

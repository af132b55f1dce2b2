"""Deduplication decisions (pure): who is a copy of whom, and why.

Each article becomes a small member (order, article id, content hash, MinHash
signature) filed under its keys: its article id, its content hash and one key
per LSH band. Members sharing a key are linked (exact keys always; band keys
when the signatures are similar enough); the links' connected components are
clusters, and the first-seen member of each cluster is the article.

First seen: an article committed by an earlier run always wins; among new
copies the earliest fetched, then the earliest published (undated last), then
the smallest ids. `order` encodes that as one sortable string that also names
each copy uniquely, so decisions depend only on the set of copies, never on
input order or on how a runner splits the work.

Reasons recorded for the copies that are not written:
- `same_url`: same canonical URL, same content;
- `revised`: same canonical URL, different content (an edited article);
- `same_content`: same normalised body under another URL;
- `near_duplicate`: estimated similarity of the bodies >= the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone

from pipeline.near_dup import NearDupSettings, band_keys, compact, compact_similarity, signature
from schemas.ids import stable_id
from schemas.records import Article, Duplicate

NEW, INDEXED = "1", "0"  # articles of earlier runs sort before every new one
_URL, _CONTENT, _BAND = b"u", b"c", b"b"
# Which link explains a drop best, when an article has several.
_REASON_RANK = {"same_url": 0, "revised": 1, "same_content": 2, "near_duplicate": 3}

# (order, article_id, content_hash, signature or None)
Member = tuple[str, str, str, bytes | None]
# (later order, earlier order, earlier article_id, reason, similarity)
Link = tuple[str, str, str, str, float]
# for each dropped copy's order: (the article_id its cluster keeps, reason, similarity)
Drops = dict[str, tuple[str, str, float]]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _stamp(when: datetime) -> str:
    """Microseconds since 1970 as 16 hex digits: fixed width, so strings sort as times."""
    micros = (when - _EPOCH) // timedelta(microseconds=1)
    return f"{max(micros, 0):016x}"


def new_order(a: Article) -> str:
    """Fetched, undated flag, published, then an id of this copy: 50 sortable characters."""
    published = a.published_at or a.fetched_at
    undated = "1" if a.published_at is None else "0"
    copy = stable_id(a.article_id, a.content_hash, a.raw_id, str(a.position), length=16)
    return f"{NEW}{_stamp(a.fetched_at)}{undated}{_stamp(published)}{copy}"


def indexed_order(fetched_at: datetime, article_id: str) -> str:
    return f"{INDEXED}{_stamp(fetched_at)}{stable_id(article_id, length=16)}"


def member(a: Article, settings: NearDupSettings) -> Member:
    return new_order(a), a.article_id, a.content_hash, signature(a.text, settings)


def member_keys(m: Member, settings: NearDupSettings) -> Iterator[tuple[bytes, Member]]:
    """A member under each of its keys. Exact keys need no signature; band keys carry the
    compact one (a quarter of the size): what is shuffled is 23 copies per article."""
    order, article_id, content_hash, sig = m
    light: Member = (order, article_id, content_hash, None)
    yield _URL + article_id.encode(), light
    yield _CONTENT + content_hash.encode(), light
    if sig is not None:
        banded: Member = (order, article_id, content_hash, compact(sig))
        for key in band_keys(sig, settings):
            yield _BAND + key, banded


def group_links(kv: tuple[bytes, Iterable[Member]], settings: NearDupSettings) -> Iterator[Link]:
    """Links within one key group: every member to the first-seen one for an exact key;
    verified pairs (each member against up to `max_bucket_comparisons` before it) for a band."""
    key, members = kv
    ordered = sorted(set(members))
    if len(ordered) < 2:
        return
    kind = key[:1]
    if kind != _BAND:
        first = ordered[0]
        for m in ordered[1:]:
            if m[0].startswith(INDEXED):
                continue  # earlier runs' articles were settled by earlier runs
            if kind == _URL:
                yield m[0], first[0], first[1], "same_url" if m[2] == first[2] else "revised", 1.0
            else:
                yield m[0], first[0], first[1], "same_content", 1.0
        return
    for i, later in enumerate(ordered):
        if later[0].startswith(INDEXED) or later[3] is None:
            continue
        for earlier in ordered[max(0, i - settings.max_bucket_comparisons) : i]:
            if earlier[3] is None:
                continue
            sim = compact_similarity(later[3], earlier[3])
            if sim >= settings.threshold:
                yield later[0], earlier[0], earlier[1], "near_duplicate", round(sim, 4)


def resolve_links(links: Iterable[Link]) -> Drops:
    """Clusters of linked copies; every member but the first-seen is dropped, explained by
    its strongest link (exact before near, then higher similarity)."""
    parent: dict[str, str] = {}
    article_ids: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    best: dict[str, tuple[int, float, str]] = {}
    for later, earlier, earlier_id, reason, sim in sorted(links):
        article_ids[earlier] = earlier_id  # a cluster's first-seen member is always an `earlier`
        for node in (later, earlier):
            candidate = (_REASON_RANK[reason], -sim, reason)
            if node not in best or candidate < best[node]:
                best[node] = candidate
        a, b = find(later), find(earlier)
        if a != b:
            parent[max(a, b)] = min(a, b)  # orders sort first-seen first
    drops: Drops = {}
    for node in parent:
        root = find(node)
        if root != node:
            _, neg_sim, reason = best[node]
            drops[node] = (article_ids[root], reason, -neg_sim)
    return drops


def decide(members: Iterable[Member], settings: NearDupSettings) -> Drops:
    """The whole decision in memory: what DeduplicateArticles computes with a shuffle."""
    groups: dict[bytes, list[Member]] = {}
    for m in members:
        for key, keyed in member_keys(m, settings):
            groups.setdefault(key, []).append(keyed)
    return resolve_links(link for kv in groups.items() for link in group_links(kv, settings))


def as_duplicate(copy: Article, of: str, reason: str, similarity: float = 1.0) -> Duplicate:
    return Duplicate(
        article_id=copy.article_id,
        url=copy.url,
        source=copy.source,
        fetched_at=copy.fetched_at,
        duplicate_of=of,
        reason=reason,
        similarity=similarity,
        content_hash=copy.content_hash,
    )

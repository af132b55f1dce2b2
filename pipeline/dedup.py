"""Deduplication decisions (pure): who is a copy of whom, and why.

Each article becomes a small member (order, article id, content hash, MinHash
signature, day) filed under its keys: its article id, its content hash and one
key per LSH band. Members sharing a key are linked (exact keys always; band keys
when the signatures are similar enough); the links' connected components are
clusters, and the first-seen member of each cluster is the article.

Articles of earlier runs (the dedup index) take part only for the new articles
published within `lookback_days` before or after them: each new article sees
the same index entries whatever else its run holds.

Keys are spread over `shards` shards (a stable hash of the key): a shard's
payload holds every member filed under its keys, so each shard's groups are
complete and are linked on their own, with plain dicts.

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

import pickle
import zlib
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone

from pipeline.near_dup import NearDupSettings, band_keys, compact, compact_similarity, signature
from schemas.ids import stable_id
from schemas.records import Article, Duplicate

NEW, INDEXED = "1", "0"  # articles of earlier runs sort before every new one
_URL, _CONTENT, _BAND = b"u", b"c", b"b"
# Which link explains a drop best, when an article has several.
_REASON_RANK = {"same_url": 0, "revised": 1, "same_content": 2, "near_duplicate": 3}

# (order, article_id, content_hash, signature or None, day of its partition date)
Member = tuple[str, str, str, bytes | None, int]
# (later order, earlier order, earlier article_id, reason, similarity)
Link = tuple[str, str, str, str, float]
# for each dropped copy's order: (the article_id its cluster keeps, reason, similarity)
Drops = dict[str, tuple[str, str, float]]

DEFAULT_LOOKBACK_DAYS = 7

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


def day_number(partition_date: str) -> int:
    """A YYYY-MM-DD partition date as a day count, for lookback windows."""
    return date.fromisoformat(partition_date).toordinal()


def member(a: Article, settings: NearDupSettings) -> Member:
    sig = signature(a.text, settings)
    return new_order(a), a.article_id, a.content_hash, sig, day_number(a.partition_date)


def indexed_member(
    fetched_at: datetime, article_id: str, content_hash: str, sig: bytes | None, day: int
) -> Member:
    return indexed_order(fetched_at, article_id), article_id, content_hash, sig, day


def _visible(later: Member, earlier: Member, lookback_days: int) -> bool:
    """Whether a new member is compared with `earlier` for near duplicates: always within the
    run, and with an indexed article only if it was published within the lookback before or
    after it."""
    return earlier[0][0] != INDEXED or abs(later[4] - earlier[4]) <= lookback_days


def member_keys(m: Member, settings: NearDupSettings) -> tuple[Member, list[bytes]]:
    """A member as filed, and its keys. Only band keys need a signature, and it is the compact
    one (a quarter of the size); exact keys ignore it."""
    order, article_id, content_hash, sig, day = m
    keys = [_URL + article_id.encode(), _CONTENT + content_hash.encode()]
    if sig is None:
        return m, keys
    return (order, article_id, content_hash, compact(sig), day), keys + [
        _BAND + k for k in band_keys(sig, settings)
    ]


def group_links(
    kv: tuple[bytes, Iterable[Member]], settings: NearDupSettings, lookback_days: int
) -> Iterator[Link]:
    """Links within one key group: every new member to the first-seen member it may see for
    an exact key; verified pairs (each new member against up to `max_bucket_comparisons`
    members before it that it may see) for a band."""
    key, members = kv
    ordered = sorted(set(members))
    if len(ordered) < 2:
        return
    kind = key[:1]
    if kind != _BAND:
        for m in ordered:
            if m[0][0] == INDEXED:
                continue  # earlier runs' articles were settled by earlier runs
            # Exact keys see the whole index: a URL or a text seen once is known for good.
            first = ordered[0]
            if first is m:
                continue
            if kind == _URL:
                yield m[0], first[0], first[1], "same_url" if m[2] == first[2] else "revised", 1.0
            else:
                yield m[0], first[0], first[1], "same_content", 1.0
        return
    cap = settings.max_bucket_comparisons
    for i, later in enumerate(ordered):
        if later[0][0] == INDEXED or later[3] is None:
            continue
        compared = 0
        for j in range(i - 1, -1, -1):
            if compared == cap:
                break
            earlier = ordered[j]
            if earlier[3] is None or not _visible(later, earlier, lookback_days):
                continue
            compared += 1
            sim = compact_similarity(later[3], earlier[3])
            if sim >= settings.threshold:
                yield later[0], earlier[0], earlier[1], "near_duplicate", round(sim, 4)


def shard_of(key: bytes, shards: int) -> int:
    """A stable shard for a key (the same in every process, unlike hash())."""
    return zlib.crc32(key) % shards


def shard_payloads(
    members: Iterable[Member], settings: NearDupSettings, shards: int
) -> Iterator[tuple[int, bytes]]:
    """A batch of members as one payload per shard: each member whose keys fall in that shard
    once, with those keys. Pickled: one opaque value per shard is cheap for the runner."""
    by_shard: dict[int, list[tuple[Member, list[bytes]]]] = {}
    for m in members:
        filed, keys = member_keys(m, settings)
        mine: dict[int, list[bytes]] = {}
        for key in keys:
            mine.setdefault(zlib.crc32(key) % shards, []).append(key)
        for shard, shard_keys in mine.items():
            by_shard.setdefault(shard, []).append((filed, shard_keys))
    for shard, pairs in sorted(by_shard.items()):
        yield shard, pickle.dumps(pairs, protocol=pickle.HIGHEST_PROTOCOL)


def shard_links(payloads: Iterable[bytes], settings: NearDupSettings, lookback_days: int) -> list[Link]:
    """Every link of one shard: its key groups gathered from all payloads, linked apart."""
    groups: dict[bytes, list[Member]] = {}
    for payload in payloads:
        for m, keys in pickle.loads(payload):
            for key in keys:
                groups.setdefault(key, []).append(m)
    links: set[Link] = set()
    for kv in groups.items():
        if len(kv[1]) > 1:
            links.update(group_links(kv, settings, lookback_days))
    return sorted(links)


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


def decide(
    members: Iterable[Member], settings: NearDupSettings, lookback_days: int = DEFAULT_LOOKBACK_DAYS
) -> Drops:
    """The whole decision in memory: what DeduplicateArticles computes with shuffles."""
    payloads: dict[int, list[bytes]] = {}
    for shard, payload in shard_payloads(members, settings, settings.shards):
        payloads.setdefault(shard, []).append(payload)
    return resolve_links(link for p in payloads.values() for link in shard_links(p, settings, lookback_days))


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

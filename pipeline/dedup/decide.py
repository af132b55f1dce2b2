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

A band bucket can hold thousands of near copies of one template (market
bulletins, weather reports): each new member is compared with at most
`max_bucket_comparisons` members before it, a diagonal at a time, and a shard
hands on only a summary of its links (a spanning forest and each member's
strongest link) that resolves exactly as all of them do. Time and memory grow
with the number of articles, however alike they are.

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
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import partial

import numpy as np

from pipeline.dedup.near import (
    NearDupSettings,
    agreement_similarity,
    band_keys,
    compact,
    equal_bytes,
    least_agreement,
    signature,
)
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


@dataclass
class LinkStats:
    """What linking did: similarity comparisons made (pairs of compact signatures compared)
    and links handed on. For tests and the step's counters."""

    comparisons: int = 0
    links: int = 0


_NO_PAIRS = np.zeros(0, dtype=np.int64)


def _band_pairs(
    ordered: list[Member], settings: NearDupSettings, lookback_days: int, stats: LinkStats | None
) -> tuple[list[Member], np.ndarray, np.ndarray, np.ndarray]:
    """The verified pairs of one band bucket (members sorted by order), as arrays: the later
    and the earlier member of each pair (positions in the signed members returned first) and
    how many bytes of their compact signatures are equal.

    Each new member is compared with the `max_bucket_comparisons` signed members nearest
    before it that it may see: every member of the run, and an indexed article only if it
    was published within `lookback_days` before or after it. The cap is what keeps this
    linear: a bucket of n near copies of one template (bulletins, weather reports, tables)
    would otherwise be n²/2 comparisons, while a cluster is found anyway through the
    members in between. It is large enough that the copies of an ordinary story all meet.

    Indexed members sort before new ones, so a new member's nearest earlier members are
    the new ones before it, then (only for the first `cap` new members) indexed ones.
    Comparisons are made a diagonal at a time (every member against the one `d` before it),
    in a few array operations per bucket rather than one per pair."""
    signed = [m for m in ordered if m[3] is not None]
    n_indexed = sum(1 for m in signed if m[0][0] == INDEXED)
    n_new = len(signed) - n_indexed
    if n_new == 0 or len(signed) < 2:
        return signed, _NO_PAIRS, _NO_PAIRS, _NO_PAIRS
    joined = b"".join(m[3] for m in signed)  # type: ignore[misc]
    sigs = np.frombuffer(joined, dtype=np.uint8).reshape(len(signed), -1)
    length = sigs.shape[1]
    least = least_agreement(length, settings.threshold)
    cap = settings.max_bucket_comparisons
    later: list[np.ndarray] = []
    earlier: list[np.ndarray] = []
    equal: list[np.ndarray] = []
    compared = 0
    # New against new: the diagonal d pairs each new member with the new member d before it.
    for d in range(1, min(cap, n_new - 1) + 1):
        counts = equal_bytes(sigs[n_indexed + d :], sigs[n_indexed : len(signed) - d])
        compared += len(counts)
        hits = np.flatnonzero(counts >= least)
        later.append(hits + (n_indexed + d))
        earlier.append(hits + n_indexed)
        equal.append(counts[hits])
    # New against indexed: the first `cap` new members see fewer than `cap` new ones before them.
    if n_indexed:
        days = np.array([m[4] for m in signed[:n_indexed]], dtype=np.int64)
        visible_on: dict[int, np.ndarray] = {}
        for k in range(min(cap, n_new)):
            position = n_indexed + k
            day = signed[position][4]
            if day not in visible_on:
                visible_on[day] = np.flatnonzero(np.abs(days - day) <= lookback_days)
            candidates = visible_on[day][-(cap - k) :]
            if not len(candidates):
                continue
            counts = equal_bytes(sigs[candidates], sigs[position][None, :])
            compared += len(counts)
            hits = counts >= least
            earlier.append(candidates[hits])
            later.append(np.full(int(np.count_nonzero(hits)), position, dtype=np.int64))
            equal.append(counts[hits])
    if stats is not None:
        stats.comparisons += compared
    if not later:
        return signed, _NO_PAIRS, _NO_PAIRS, _NO_PAIRS
    return (
        signed,
        np.concatenate(later).astype(np.int64),
        np.concatenate(earlier).astype(np.int64),
        np.concatenate(equal).astype(np.int64),
    )


def _band_link(signed: list[Member], later: int, earlier: int, equal: int) -> Link:
    a, b = signed[later], signed[earlier]
    sim = agreement_similarity(equal, len(b[3]))  # type: ignore[arg-type]
    return a[0], b[0], b[1], "near_duplicate", round(sim, 4)


def _exact_links(key: bytes, ordered: list[Member]) -> Iterator[Link]:
    """Every new member to the first-seen member of an exact key."""
    kind = key[:1]
    first = ordered[0]
    for m in ordered[1:]:
        if m[0][0] == INDEXED:
            continue  # earlier runs' articles were settled by earlier runs
        # Exact keys see the whole index: a URL or a text seen once is known for good.
        if kind == _URL:
            yield m[0], first[0], first[1], "same_url" if m[2] == first[2] else "revised", 1.0
        else:
            yield m[0], first[0], first[1], "same_content", 1.0


def group_links(
    kv: tuple[bytes, Iterable[Member]],
    settings: NearDupSettings,
    lookback_days: int,
    stats: LinkStats | None = None,
) -> Iterator[Link]:
    """Links within one key group: every new member to the first-seen member it may see for
    an exact key; verified pairs (each new member against up to `max_bucket_comparisons`
    members before it that it may see, see `_band_pairs`) for a band.

    This is every link, the definition; `group_summary` is what the step hands on."""
    key, members = kv
    ordered = sorted(set(members))
    if len(ordered) < 2:
        return
    if key[:1] != _BAND:
        yield from _exact_links(key, ordered)
        return
    signed, later, earlier, equal = _band_pairs(ordered, settings, lookback_days, stats)
    for a, b, e in zip(later.tolist(), earlier.tolist(), equal.tolist(), strict=True):
        yield _band_link(signed, a, b, e)


def _spanning_forest(nodes: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Edges (by index) of a spanning forest of the graph with edges u[i]–v[i]: in rounds, each
    component's root (its smallest node) is hooked to the smallest root it has an edge to,
    through the first such edge; then every node points at its root again. Each hook joins
    two components, so the hooks are a spanning forest; each edge is looked at a few times."""
    edges = len(u)
    parent = np.arange(nodes, dtype=np.int64)
    ids = np.arange(edges, dtype=np.int64)
    chosen: list[np.ndarray] = []
    none = np.int64(nodes) * edges
    while len(ids):
        ru, rv = parent[u], parent[v]
        apart = ru != rv
        u, v, ids, ru, rv = u[apart], v[apart], ids[apart], ru[apart], rv[apart]
        if not len(ids):
            break
        hook = np.full(nodes, none, dtype=np.int64)
        np.minimum.at(hook, np.maximum(ru, rv), np.minimum(ru, rv) * edges + ids)
        roots = np.flatnonzero(hook < none)
        parent[roots] = hook[roots] // edges
        chosen.append(hook[roots] % edges)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return np.concatenate(chosen) if chosen else _NO_PAIRS


def _strongest(nodes: int, later: np.ndarray, earlier: np.ndarray, equal: np.ndarray) -> np.ndarray:
    """For each node with an edge, its edge (by index) of most equal bytes, the first on a tie."""
    edges = len(later)
    ids = np.arange(edges, dtype=np.int64)
    score = np.full(nodes, -1, dtype=np.int64)
    key = equal * edges + (edges - 1 - ids)
    np.maximum.at(score, later, key)
    np.maximum.at(score, earlier, key)
    return edges - 1 - score[score >= 0] % edges


def group_summary(
    kv: tuple[bytes, Iterable[Member]],
    settings: NearDupSettings,
    lookback_days: int,
    stats: LinkStats | None = None,
) -> list[Link]:
    """Of a group's links, the few that `resolve_links` resolves exactly as all of them: a
    spanning forest (the same clusters) and each member's strongest link (the same reason
    and similarity). At most two per member, however many pairs are similar: a bucket of
    near copies of one template has up to `max_bucket_comparisons` links per member."""
    key, members = kv
    ordered = sorted(set(members))
    if len(ordered) < 2:
        return []
    if key[:1] != _BAND:
        return list(_exact_links(key, ordered))  # one per member already
    signed, later, earlier, equal = _band_pairs(ordered, settings, lookback_days, stats)
    if not len(later):
        return []
    kept = np.union1d(
        _spanning_forest(len(signed), later, earlier), _strongest(len(signed), later, earlier, equal)
    )
    return [
        _band_link(signed, a, b, e)
        for a, b, e in zip(later[kept].tolist(), earlier[kept].tolist(), equal[kept].tolist(), strict=True)
    ]


def _root(parent: dict[str, str], x: str) -> str:
    """The root of `x` in a union-find forest (path halving)."""
    parent.setdefault(x, x)
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def summarize_links(links: Iterable[Link]) -> list[Link]:
    """The few links that `resolve_links` resolves exactly as all of `links`: a spanning forest
    of them and each member's strongest link (sorted, so the same links give the same few)."""
    parent: dict[str, str] = {}

    find = partial(_root, parent)

    forest: list[Link] = []
    best: dict[str, tuple[int, float, Link]] = {}
    for link in sorted(links):
        later, earlier, _, reason, sim = link
        candidate = (_REASON_RANK[reason], -sim, link)
        for node in (later, earlier):
            if node not in best or candidate < best[node]:
                best[node] = candidate
        a, b = find(later), find(earlier)
        if a != b:
            parent[max(a, b)] = min(a, b)
            forest.append(link)
    return sorted(set(forest).union(link for _, _, link in best.values()))


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


def _shard_groups(payloads: Iterable[bytes]) -> dict[bytes, list[Member]]:
    groups: dict[bytes, list[Member]] = {}
    for payload in payloads:
        for m, keys in pickle.loads(payload):
            for key in keys:
                groups.setdefault(key, []).append(m)
    return groups


def shard_links(payloads: Iterable[bytes], settings: NearDupSettings, lookback_days: int) -> list[Link]:
    """Every link of one shard: its key groups gathered from all payloads, linked apart. The
    definition `shard_summary` is checked against; the step hands on the summary."""
    links: set[Link] = set()
    for kv in _shard_groups(payloads).items():
        if len(kv[1]) > 1:
            links.update(group_links(kv, settings, lookback_days))
    return sorted(links)


def shard_summary(
    payloads: Iterable[bytes],
    settings: NearDupSettings,
    lookback_days: int,
    stats: LinkStats | None = None,
) -> list[Link]:
    """What one shard hands on: the links of its groups, summarised group by group and then
    across them (`summarize_links`), so at most two per member of the shard. Resolved with
    the other shards' summaries it gives exactly what all the links give."""
    links: list[Link] = []
    for kv in _shard_groups(payloads).items():
        if len(kv[1]) > 1:
            links.extend(group_summary(kv, settings, lookback_days, stats))
    summary = summarize_links(links)
    if stats is not None:
        stats.links += len(summary)
    return summary


def resolve_links(links: Iterable[Link]) -> Drops:
    """Clusters of linked copies; every member but the first-seen is dropped, explained by
    its strongest link (exact before near, then higher similarity)."""
    parent: dict[str, str] = {}
    article_ids: dict[str, str] = {}

    find = partial(_root, parent)

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
    return resolve_links(
        link for p in payloads.values() for link in shard_summary(p, settings, lookback_days)
    )


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

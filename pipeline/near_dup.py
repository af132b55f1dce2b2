"""Near-duplicate detection (pure): MinHash signatures, LSH band keys, clustering.

Similarity is the Jaccard index of the sets of word shingles of the article
body (the title is left out: syndicated copies change headlines), estimated
from MinHash signatures (rensa's RMinHash). Candidates are pairs sharing an
LSH band; a pair is a near duplicate when the estimated similarity reaches
the threshold. Clusters are the connected components of those pairs, and the
first-seen member of each is the article that survives.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from rensa import RMinHash

from pipeline.clean import fold_text

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class NearDupSettings:
    threshold: float = 0.75
    shingle_words: int = 1
    num_perm: int = 128
    bands: int = 21
    min_words: int = 50
    seed: int = 20261127
    max_bucket_comparisons: int = 64  # per member: a bucket of n copies costs O(n·64), not O(n²)

    @property
    def rows(self) -> int:
        return self.num_perm // self.bands

    def validate(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if self.shingle_words < 1 or self.min_words < 1:
            raise ValueError("shingle_words and min_words must be positive")
        if not 1 <= self.bands <= self.num_perm:
            raise ValueError("bands must be between 1 and num_perm")


def shingles(text: str, size: int) -> list[str]:
    words = _WORD.findall(fold_text(text))
    if size == 1:
        return words
    return [" ".join(words[i : i + size]) for i in range(max(1, len(words) - size + 1))]


def signature(text: str, settings: NearDupSettings) -> bytes | None:
    """The MinHash signature of a body as bytes, or None if it is too short to judge."""
    tokens = shingles(text, settings.shingle_words)
    if len(tokens) < settings.min_words:
        return None
    minhash = RMinHash(num_perm=settings.num_perm, seed=settings.seed)
    minhash.update(tokens)
    return np.asarray(minhash.digest(), dtype="<u4").tobytes()


def similarity(a: bytes, b: bytes) -> float:
    """Estimated Jaccard similarity: the share of equal MinHash values."""
    return float(np.mean(np.frombuffer(a, dtype="<u4") == np.frombuffer(b, dtype="<u4")))


def band_keys(sig: bytes, settings: NearDupSettings) -> list[bytes]:
    width = settings.rows * 4
    return [
        band.to_bytes(2, "big")
        + hashlib.blake2b(sig[band * width : (band + 1) * width], digest_size=10).digest()
        for band in range(settings.bands)
    ]


Order = tuple  # a survivor order; earlier runs' articles sort before every new one


def bucket_candidates(
    members: Iterable[tuple[str, Order]], settings: NearDupSettings
) -> list[tuple[str, str, Order, Order]]:
    """Candidate pairs (later id, earlier id, later order, earlier order) of one LSH bucket.

    Each member is paired with at most `max_bucket_comparisons` members before it,
    so a bucket of n near-identical copies costs O(n) pairs, not O(n²); the
    components that `cluster` builds stay connected through those pairs.
    """
    ordered = sorted(set(members), key=lambda m: (m[1], m[0]))
    pairs = []
    for i, (later, later_order) in enumerate(ordered):
        for earlier, earlier_order in ordered[max(0, i - settings.max_bucket_comparisons) : i]:
            if earlier != later:
                pairs.append((later, earlier, later_order, earlier_order))
    return pairs


def cluster(pairs: Iterable[tuple[str, str, float]], order: dict[str, Order]) -> dict[str, tuple[str, float]]:
    """Connected components of near-duplicate pairs.

    Returns, for every member that is not its component's first-seen member,
    (that first-seen member's id, its strongest similarity to another member).
    `order` gives each id's survivor order.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    best: dict[str, float] = {}
    for later, earlier, sim in pairs:
        best[later] = max(best.get(later, 0.0), sim)
        best[earlier] = max(best.get(earlier, 0.0), sim)
        a, b = find(later), find(earlier)
        if a != b:
            first, second = sorted((a, b), key=lambda x: (order[x], x))
            parent[second] = first
    return {x: (find(x), best.get(x, 0.0)) for x in list(parent) if find(x) != x}

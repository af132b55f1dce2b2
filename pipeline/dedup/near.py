"""Near-duplicate detection (pure): MinHash signatures, LSH band keys, clustering.

Similarity is the Jaccard index of the sets of word shingles of the article
body (the title is left out: syndicated copies change headlines), estimated
from MinHash signatures (rensa's RMinHash). Candidates are pairs sharing an
LSH band; a pair is a near duplicate when the estimated similarity reaches
the threshold (see `pipeline.steps.deduplicate` for the grouping and clustering).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rensa import RMinHash

from pipeline.steps.clean import fold_text

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class NearDupSettings:
    threshold: float = 0.75
    shingle_words: int = 1
    num_perm: int = 128
    bands: int = 21
    min_words: int = 50
    seed: int = 20261127
    # Each new member of a band bucket is compared with at most this many members before it
    # (see pipeline.dedup.decide.group_links): a bucket of near copies of one template then costs
    # time linear in its size. Large enough that ordinary buckets (a story and its copies)
    # are compared in full.
    max_bucket_comparisons: int = 64
    shards: int = 4  # batches and key shards of the dedup shuffle: about two per worker

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
        if self.shards < 1:
            raise ValueError("shards must be positive")
        if self.max_bucket_comparisons < 1:
            raise ValueError("max_bucket_comparisons must be positive")


# ASCII word characters (what \w matches below 128) kept, every other byte made a space.
_ASCII_WORDS = bytes(c if chr(c).isalnum() or c == ord("_") else ord(" ") for c in range(128)) + b" " * 128


def words_of(text: str) -> list[str]:
    """The words (runs of \w) of case- and accent-folded text. Most folded text is ASCII,
    where one byte translation and a split find the same words several times faster."""
    folded = fold_text(text)
    if folded.isascii():
        return folded.encode("ascii").translate(_ASCII_WORDS).decode("ascii").split()
    return _WORD.findall(folded)


def shingles(text: str, size: int) -> list[str]:
    words = words_of(text)
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


def compact(sig: bytes) -> bytes:
    """The low byte of each MinHash value: a quarter of the size, for shuffling."""
    return np.frombuffer(sig, dtype="<u4").astype(np.uint8).tobytes()


def compact_similarity(a: bytes, b: bytes) -> float:
    """Jaccard estimate from compact signatures; unrelated values collide with probability
    1/256, which this corrects for (b-bit MinHash, b = 8)."""
    equal = np.count_nonzero(np.frombuffer(a, dtype=np.uint8) == np.frombuffer(b, dtype=np.uint8))
    return agreement_similarity(int(equal), len(a))


def agreement_similarity(equal: int, length: int) -> float:
    """`compact_similarity` of two compact signatures of `length` bytes, `equal` of them equal."""
    agree = equal / length
    return max(0.0, (agree - 1 / 256) / (1 - 1 / 256))


def equal_bytes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row by row, how many bytes of two equally shaped uint8 matrices of compact signatures
    are equal: many `compact_similarity` comparisons in one step."""
    return np.add.reduce((a == b).view(np.uint8), axis=1, dtype=np.uint16)


@lru_cache(maxsize=16)
def least_agreement(length: int, threshold: float) -> int:
    """The fewest equal bytes of two compact signatures whose similarity reaches `threshold`
    (length + 1 if none does): a pair is a near duplicate when `equal_bytes` reaches it."""
    return next((e for e in range(length + 1) if agreement_similarity(e, length) >= threshold), length + 1)


@lru_cache(maxsize=8)
def _band_mix(rows: int) -> np.ndarray:
    """Odd 64-bit multipliers mixing a band's MinHash values into one 64-bit key. Two different
    bands colliding only costs a comparison: every band candidate is verified by similarity."""
    return np.random.default_rng(20261127).integers(1, 2**63, size=rows, dtype=np.uint64) | np.uint64(1)


def band_keys(sig: bytes, settings: NearDupSettings) -> list[bytes]:
    """One key per band: the band's number and a 64-bit hash of its MinHash values."""
    bands, rows = settings.bands, settings.rows
    values = np.frombuffer(sig, dtype="<u4")[: bands * rows].astype(np.uint64).reshape(bands, rows)
    mixed = (values * _band_mix(rows)).sum(axis=1, dtype=np.uint64).astype("<u8").tobytes()
    return [band.to_bytes(1, "big") + mixed[band * 8 : band * 8 + 8] for band in range(bands)]

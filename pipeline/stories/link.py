"""Do two story signatures report the same story? A score and a threshold (pure).

`evidence(a, b, rarity)` lists what two signatures share; `same_story(a, b, rarity)`
adds it up into points:

    event  = W_LEXICAL · lexical overlap: the cosine of the rarity-weighted lead terms
                         when both articles are in one language, otherwise
                         min(1, Σ rarity of the shared transliterated names / NAMES_FULL)
           + W_NUMBERS · min(1, Σ rarity of the shared numbers / NUMBERS_FULL)
           + W_DAYS    · (1 if they name a common event day, else 0)
    points = W_ENTITIES · cosine of the salience-weighted taxonomy entities + event
           − GAP_COST · days between the publication dates (UNDATED_COST if either is undated)

Two articles are never linked (0 points) when published more than MAX_GAP days apart,
or when their event evidence is under MIN_EVENT: sharing the taxonomy's entities
(mostly countries) on the same day is not a story. They are linked when
`same_story(...) >= THRESHOLD`. Every weight is 1 (not fitted: weights fitted on half
of the labelled pairs did not carry over to the other half); THRESHOLD was chosen on
the dev half (bench/stories_baseline.py).

Names count only across languages: within one language the lead terms already hold
them, and counting both made same-language pairs of one subject look alike.

"Rarity" is an inverse document frequency, ln((N + 1) / (df + 1)), over a reference set
of signatures (`Rarity.of`): a name or number that every article on a subject carries
counts for less than one only the reports of one event carry. The pipeline takes the
signatures it links against as the reference set (see pipeline/stories/__init__.py).
Without one (`rarity=None`) every name, number and term counts `DEFAULT_RARITY`.

For many comparisons, `weigh` each signature once and call `score(a, b)`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from pipeline.stories.signals import StorySignature

__all__ = [
    "MAX_GAP",
    "MIN_EVENT",
    "THRESHOLD",
    "Evidence",
    "Rarity",
    "Weighed",
    "compare",
    "evidence",
    "linked",
    "points",
    "same_story",
    "score",
    "weigh",
]

MAX_GAP = 3  # days between publication dates beyond which nothing is linked
W_ENTITIES = 1.0
W_LEXICAL = 1.0
W_NUMBERS = 1.0
W_DAYS = 1.0
NAMES_FULL = 20.0  # Σ rarity of shared names that counts in full (about 4 rare names)
NUMBERS_FULL = 10.0  # about 2 rare numbers
GAP_COST = 0.25  # points per day between the publication dates
UNDATED_COST = 0.5  # when either article has no publication date
MIN_EVENT = 0.2  # event evidence needed at all: one rare shared name, or lead terms at cosine 0.2
DEFAULT_RARITY = 3.0
THRESHOLD = 0.7


@dataclass(frozen=True)
class Rarity:
    """Document frequencies of names, numbers and terms over a reference set."""

    documents: int
    frequency: Mapping[str, int]  # "n:<name key>", "#:<number>", "t:<language>:<term>"

    @classmethod
    def of(cls, signatures: Iterable[StorySignature]) -> Rarity:
        counts: Counter[str] = Counter()
        n = 0
        for s in signatures:
            n += 1
            counts.update("n:" + k for k in s.names)
            counts.update("#:" + k for k in s.numbers)
            counts.update(f"t:{s.language}:{t}" for t, _ in s.terms)
        return cls(n, dict(counts))

    def of_key(self, key: str) -> float:
        return math.log((self.documents + 1) / (self.frequency.get(key, 0) + 1))


class Evidence(NamedTuple):
    gap: int | None  # days between publication dates; None when either is undated
    entities: float  # cosine of salience-weighted entity ids, 0..1
    names: float  # Σ rarity of shared name keys (0 within one language: see `terms`)
    numbers: float  # Σ rarity of shared numbers
    days: int  # shared event days
    terms: float  # cosine of rarity-weighted lead terms (0 across languages)


class Weighed(NamedTuple):
    """A signature with its rarities looked up once (`weigh`): what comparisons read."""

    language: str | None
    day: int | None
    entities: dict[str, float]
    entity_norm: float
    names: dict[str, float]  # name key -> rarity
    numbers: dict[str, float]  # number -> rarity
    days: frozenset[int]
    terms: dict[str, float]  # term -> tf weight x rarity
    term_norm: float


def weigh(signature: StorySignature, rarity: Rarity | None = None) -> Weighed:
    """`signature` ready for `compare`: once per article and reference set, not per pair."""
    if rarity is None:
        names = dict.fromkeys(signature.names, DEFAULT_RARITY)
        numbers = dict.fromkeys(signature.numbers, DEFAULT_RARITY)
        terms = {t: w * DEFAULT_RARITY for t, w in signature.terms}
    else:
        rare = rarity.of_key
        names = {k: rare("n:" + k) for k in signature.names}
        numbers = {k: rare("#:" + k) for k in signature.numbers}
        prefix = f"t:{signature.language}:"
        terms = {t: w * rare(prefix + t) for t, w in signature.terms}
    entities = dict(signature.entities)
    return Weighed(
        signature.language,
        signature.day,
        entities,
        math.sqrt(sum(w * w for w in entities.values())),
        names,
        numbers,
        signature.days,
        terms,
        math.sqrt(sum(w * w for w in terms.values())),
    )


def _dot(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    get = b.get
    return sum(w * get(k, 0.0) for k, w in a.items())


def compare(a: Weighed, b: Weighed) -> Evidence:
    """What two weighed signatures share."""
    gap = abs(a.day - b.day) if a.day is not None and b.day is not None else None
    names = terms = 0.0
    if a.language is not None and a.language == b.language:
        if a.term_norm and b.term_norm:
            terms = _dot(a.terms, b.terms) / (a.term_norm * b.term_norm)
    else:
        names = sum(a.names[k] for k in a.names.keys() & b.names.keys())
    entities = 0.0
    if a.entity_norm and b.entity_norm:
        entities = _dot(a.entities, b.entities) / (a.entity_norm * b.entity_norm)
    return Evidence(
        gap=gap,
        entities=entities,
        names=names,
        numbers=sum(a.numbers[k] for k in a.numbers.keys() & b.numbers.keys()),
        days=len(a.days & b.days),
        terms=terms,
    )


def evidence(a: StorySignature, b: StorySignature, rarity: Rarity | None = None) -> Evidence:
    """What two signatures share, rarity counted over `rarity`'s reference set."""
    return compare(weigh(a, rarity), weigh(b, rarity))


def points(e: Evidence) -> float:
    """The score of `evidence`; see the module docstring."""
    if e.gap is not None and e.gap > MAX_GAP:
        return 0.0
    event = (
        W_LEXICAL * (e.terms + min(1.0, e.names / NAMES_FULL))  # one of the two is 0
        + W_NUMBERS * min(1.0, e.numbers / NUMBERS_FULL)
        + W_DAYS * (1.0 if e.days else 0.0)
    )
    if event < MIN_EVENT:
        return 0.0
    score = W_ENTITIES * e.entities + event - (UNDATED_COST if e.gap is None else GAP_COST * e.gap)
    return max(0.0, score)


def score(a: Weighed, b: Weighed) -> float:
    """`same_story` of two weighed signatures: the pipeline's per-pair call."""
    if a.day is not None and b.day is not None and abs(a.day - b.day) > MAX_GAP:
        return 0.0
    return points(compare(a, b))


def same_story(a: StorySignature, b: StorySignature, rarity: Rarity | None = None) -> float:
    """Points for "a and b report the same story"; linked when >= THRESHOLD."""
    return score(weigh(a, rarity), weigh(b, rarity))


def linked(a: StorySignature, b: StorySignature, rarity: Rarity | None = None) -> bool:
    """The decision: `same_story(a, b, rarity) >= THRESHOLD`."""
    return same_story(a, b, rarity) >= THRESHOLD

"""How much an article is about a relation between two parties, and a calibrated score.

A bilateral topic rule (two groups: one party each, e.g. `country:KP` and
`country:RU`, and relation cues) fires on any paragraph that names both with a
cue. Real press names both far more often than it reports their relation:
lists of states ("sanctions on Russia, Iran and North Korea"), a capital's
comment at the end of a story about something else, columns that name both
once. `features` describes an article where such a rule fired:

- `title_pair`: the title names both parties;
- `lead_relation`: a sentence of the title or lead paragraph names both, with a
  cue, and not only as items of one list of states;
- `relation_sentences`: how many sentences do so anywhere (log scale);
- `pair_share`: the share of paragraphs (with a party in them) naming both;
- `list_share`: the share of sentences naming both where one of them is named
  only as an item of a coordinated list of three or more states;
- `mentions`: how often the less named party is named (log scale).

`Calibration.score` turns them into a probability with a logistic layer whose
weights are data in the taxonomy (fitted on the dev splits by
`python -m pipeline.tagging.calibrate`); the topic is kept when the score reaches the
calibration's threshold.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

FEATURES = ("title_pair", "lead_relation", "relation_sentences", "pair_share", "list_share", "mentions")

# The salience gate's features (`gate_features`), for topics without a calibration.
GATE_FEATURES = ("weight", "passages", "share", "title", "lead", "first", "length")

# What may stand between two items of a list of states: punctuation and/or a
# conjunction, then perhaps an article, in the taxonomy's languages.
_CONJUNCTIONS = (
    "and|or|as well as|et|ou|y|e|o|i|oraz|lub|und|oder|sowie|и|или|а также|та|і|й|або|và|hoặc|cùng"
)
_ARTICLES = "the|la|le|les|l'|l’|el|los|las|der|die|das|den|dem|il|lo|gli|o|a|os|as"
_LIST_GAP = re.compile(
    rf"\s*(?:[,;/、，]\s*(?:(?:{_CONJUNCTIONS})\s+)?|(?:{_CONJUNCTIONS})\s+|[和与及或やと및와과]\s*)"
    rf"(?:(?:{_ARTICLES})(?:\s+|(?<=['’])))?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Calibration:
    """A logistic layer over `FEATURES`: score = 1 / (1 + e^-(bias + Σ weight·feature))."""

    bias: float
    weights: Mapping[str, float]
    threshold: float

    def score(self, features: Mapping[str, float]) -> float:
        z = self.bias + sum(self.weights.get(name, 0.0) * value for name, value in features.items())
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


# (start, end, party): party 0 or 1 is the group of the rule a hit answers for, -1 another
# state. Plain tuples: an article has dozens and a dataclass costs 10× to build.
Mention = tuple[int, int, int]
_START, _END, _PARTY = 0, 1, 2


def _list_runs(document: str, states: Sequence[Mention]) -> list[tuple[int, int]]:
    """Index ranges of `states` (sorted) that form lists of three or more: consecutive
    names separated only by punctuation or a conjunction."""
    runs: list[tuple[int, int]] = []
    first = 0
    for i in range(1, len(states) + 1):
        joined = i < len(states) and _LIST_GAP.fullmatch(document[states[i - 1][_END] : states[i][_START]])
        if not joined:
            if i - first >= 3:
                runs.append((first, i))
            first = i
    return runs


def features(
    document: str,
    lead_end: int,
    title_end: int,
    paragraph_ends: Sequence[int],
    sentence_ends: Sequence[int],
    parties: Sequence[Mention],
    states: Sequence[Mention],
    cues: Sequence[int],
) -> tuple[dict[str, float], list[int]]:
    """The article's features for one bilateral rule. `parties`: the hits answering for
    each group (party 0 or 1), `states`: every country name (for lists; a party's
    country name too, with its party), `cues`: where the rule's cues start; positions in
    `document` (title, newline, text); ends as the tagger's passages give them. Also
    returns the numbers of the sentences that state the relation (the evidence)."""
    by_sentence: dict[int, set[int]] = {}
    by_paragraph: dict[int, set[int]] = {}
    for start, _, party in parties:
        by_sentence.setdefault(bisect_right(sentence_ends, start), set()).add(party)
        by_paragraph.setdefault(bisect_right(paragraph_ends, start), set()).add(party)
    cue_sentences = {bisect_right(sentence_ends, at) for at in cues}
    # Sentences where a party is named outside every list of states: the two are
    # then not mere items of one list there.
    ordered = sorted(states)
    lists = [
        (ordered[first][_START], ordered[stop - 1][_END]) for first, stop in _list_runs(document, ordered)
    ]
    free: dict[int, set[int]] = {}
    for start, _, party in parties:
        if not any(low <= start < high for low, high in lists):
            free.setdefault(bisect_right(sentence_ends, start), set()).add(party)
    pair_sentences = [n for n, named in by_sentence.items() if len(named) == 2]
    # A party named in that sentence only as an item of a list: no relation is stated there.
    listed = [n for n in pair_sentences if free.get(n, set()) != {0, 1}]
    relations = [n for n in pair_sentences if n in cue_sentences and n not in listed]
    lead_sentences = bisect_right(sentence_ends, lead_end - 1)
    counts = [sum(m[_PARTY] == p for m in parties) for p in (0, 1)]
    title_parties = {m[_PARTY] for m in parties if m[_START] < title_end}
    paragraphs_with_a_party = len(by_paragraph) or 1
    return {
        "title_pair": float(title_parties == {0, 1}),
        "lead_relation": float(any(n <= lead_sentences for n in relations)),
        "relation_sentences": math.log1p(len(relations)),
        "pair_share": sum(len(named) == 2 for named in by_paragraph.values()) / paragraphs_with_a_party,
        "list_share": len(listed) / len(pair_sentences) if pair_sentences else 0.0,
        "mentions": math.log1p(min(counts)),
    }, sorted(relations)


def gate_features(
    weight: int,
    passages: int,
    paragraphs: int,
    text_paragraphs: int,
    title: bool,
    lead: bool,
    first: float,
    length: int,
) -> dict[str, float]:
    """`GATE_FEATURES` of a topic whose rule fired in an article, from what the tagger's pass
    already knows: `weight`, the supporting passages' weight (2 in the title or lead
    paragraph, 1 elsewhere); `passages`, how many they are; `paragraphs`, how many of the
    text's `text_paragraphs` hold one; `title`, `lead`: one is in the title, in the lead
    paragraph; `first`: where the rule is first met, as a share of the document;
    `length`: the document's, in characters."""
    return {
        "weight": math.log(weight),
        "passages": math.log(passages),
        "share": min(1.0, paragraphs / text_paragraphs),
        "title": float(title),
        "lead": float(lead),
        "first": first,
        "length": math.log1p(length / 1000),
    }

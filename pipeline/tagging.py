"""Entity and topic tagging driven by a taxonomy (see pipeline/taxonomy.py).

Aliases, cues and ignore phrases are matched with one Aho-Corasick automaton,
in one pass over the case- and accent-folded article (title included).
Hyphens and apostrophes fold to spaces, so "Kim Jong-un" and "Kim Jong Un" are
one alias. Word boundaries are enforced for scripts that separate words with
spaces; for Chinese, Japanese and Korean aliases they are not, since particles
attach to names (러시아와, 북한은). An alias ending in `*` is a stem: any word
characters may follow it (России, Россией).
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

import ahocorasick_rs

from pipeline.taxonomy import (
    DEFAULT_TAXONOMY,
    Taxonomy,
    TaxonomyError,
    TopicRule,
    load_taxonomy,
    parse_taxonomy,
)
from schemas.records import EntityMention, TopicMatch

__all__ = [
    "DEFAULT_TAXONOMY",
    "Hit",
    "Tagger",
    "TaxonomyError",
    "fold",
    "fold_with_offsets",
    "load_taxonomy",
    "parse_taxonomy",
]

# --- folding ---------------------------------------------------------------


@cache
def _fold_char(c: str) -> str:
    """Lowercase, accents dropped, and every character that is not a letter or a
    digit (punctuation, dashes, apostrophes, line breaks) a space: aliases then
    match on word boundaries by their padding alone (see Tagger._add)."""
    if c.isascii():
        return c.lower() if c.isalnum() else " "
    decomposed = unicodedata.normalize("NFKD", c.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # Recompose what decomposition split without accents (Hangul syllables into jamo).
    folded = unicodedata.normalize("NFC", stripped)
    return "".join(ch if ch.isalnum() else " " for ch in folded) or " "


_FOLDING_BLOCKS = [
    (0x0000, 0x052F),  # Latin-1 to Cyrillic Supplement, combining marks
    (0x1E00, 0x1FFF),  # Latin Extended Additional (Vietnamese), Greek Extended
    (0x2000, 0x24FF),  # punctuation, letterlike and number forms, enclosed alphanumerics
    (0x3000, 0x33FF),  # CJK symbols, kana, compatibility jamo, enclosed CJK
    (0xF900, 0xFB4F),  # CJK compatibility ideographs, Latin ligatures
    (0xFE30, 0xFFEF),  # CJK compatibility forms, halfwidth and fullwidth forms
]


def _chars_to_fold() -> re.Pattern[str]:
    """A character class of every character whose folding is more than lowercasing.

    Folding then costs one C-level lower() plus a callback per such character
    (accented letters, dashes, fullwidth forms), not a Python call per character.
    Only the blocks where folding does more are scanned (Latin, Greek, Cyrillic,
    punctuation, kana, compatibility and fullwidth forms); elsewhere (Hangul
    syllables, CJK ideographs, emoji) folding is lowercasing.
    """
    special = []
    for first, last in _FOLDING_BLOCKS:
        for cp in range(first, last + 1):
            if _fold_char(chr(cp)) != chr(cp):
                special.append(chr(cp))
    return re.compile("[" + "".join(re.escape(c) for c in special) + "]")


_TO_FOLD = _chars_to_fold()


def _fold_match(m: re.Match[str]) -> str:
    return _fold_char(m.group())


def fold_with_offsets(text: str) -> tuple[str, list[int] | None]:
    """Folded text and, for each folded character, the index of its source character
    (None when folding kept every character's length, the common case)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        folded = _TO_FOLD.sub(_fold_match, lowered)
        if len(folded) == len(text):
            return folded, None
    parts = [_fold_char(c) for c in text]
    offsets: list[int] = []
    for i, part in enumerate(parts):
        offsets.extend([i] * len(part))
    return "".join(parts), offsets


def fold(text: str) -> str:
    return fold_with_offsets(text)[0]


def _is_unspaced_script(text: str) -> bool:
    for c in text:
        name = unicodedata.name(c, "")
        if name.startswith(("CJK", "HANGUL", "HIRAGANA", "KATAKANA")):
            return True
    return False


# --- matching --------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    key: str  # entity id, "cue:<topic>", "exclude:<topic>" or "ignore"
    stem: bool
    bounded: bool  # word boundaries required: the automaton key is padded with spaces
    kind: str = "full"  # "full" | "weak" | "exact"
    exact: str = ""  # exact aliases: the form as written
    language: str = ""  # exact aliases: the only language they count in
    entity: bool = True  # an entity alias or an ignore phrase, not a cue


class Hit(NamedTuple):
    key: str
    start: int  # in the source text
    end: int
    weak: bool = False
    entity: bool = True  # False for cues and exclusion cues


def _build_automaton(patterns: dict[str, list[_Pattern]]) -> tuple[Any, list[tuple[_Pattern, ...]]]:
    folded = list(patterns)
    return ahocorasick_rs.AhoCorasick(folded), [tuple(patterns[f]) for f in folded]


def _is_entity_key(key: str) -> bool:
    return not key.startswith(("cue:", "exclude:"))


class Tagger:
    """Tags text with the entities and topics of one taxonomy (pure; picklable)."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self.entities = {e.id: e for e in taxonomy.entities}
        patterns: dict[str, list[_Pattern]] = defaultdict(list)
        for entity in taxonomy.entities:
            for alias in entity.aliases:
                self._add(patterns, alias.text, entity.id, alias.kind, alias.language)
        for topic in taxonomy.topics:
            for cue in topic.cues:
                self._add(patterns, cue, f"cue:{topic.id}")
            for cue in topic.exclude:
                self._add(patterns, cue, f"exclude:{topic.id}")
        for phrase in taxonomy.ignore:
            self._add(patterns, phrase, "ignore")
        self._patterns = dict(patterns)
        self._selectors = {  # what a hit on an entity answers for in a topic rule
            e.id: (e.id, f"country:{e.country}") if e.country else (e.id,) for e in taxonomy.entities
        }
        self._automaton: Any = None
        self._items: list[tuple[_Pattern, ...]] = []

    @staticmethod
    def _add(
        patterns: dict[str, list[_Pattern]], alias: str, key: str, kind: str = "full", language: str = ""
    ) -> None:
        stem = alias.endswith("*")
        written = alias.rstrip("*").strip()
        # Not collapsed: "ЧВК «Вагнер»" folds to two spaces in the alias as in the text.
        folded = fold(written).strip()
        if not folded:
            return
        exact = kind == "exact"
        bounded = not _is_unspaced_script(folded)
        pattern = _Pattern(
            key,
            stem,
            bounded,
            kind,
            written if exact else "",
            language if exact else "",
            _is_entity_key(key),
        )
        # Folded text has a space wherever a word ends, and is searched with one
        # more at each end: " alias " only matches a whole word (" stem" a word's
        # start). Unspaced scripts are matched anywhere.
        padded = f" {folded}" + ("" if stem else " ") if bounded else folded
        if pattern not in patterns[padded]:
            patterns[padded].append(pattern)

    def __getstate__(self) -> dict[str, Any]:
        # The automaton is rebuilt lazily on each worker rather than pickled.
        return {"taxonomy": self.taxonomy}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["taxonomy"])  # type: ignore[misc]

    def find(self, text: str, language: str | None = None) -> list[Hit]:
        """Every alias, cue and exclusion cue in `text`, after overlaps, ignore
        phrases and weak aliases are resolved. Spans index into `text`."""
        if self._automaton is None:
            self._automaton, self._items = _build_automaton(self._patterns)
        folded, offsets = fold_with_offsets(text)
        padded = f" {folded} "
        hits: list[Hit] = []
        items_of = self._items
        for index, match_start, match_end in self._automaton.find_matches_as_indexes(
            padded, overlapping=True
        ):
            for p in items_of[index]:
                # Back to `folded` coordinates: drop the padding and the leading space.
                if p.bounded:
                    start = match_start
                    stop = padded.find(" ", match_end) - 1 if p.stem else match_end - 2
                else:
                    start, stop = match_start - 1, match_end - 1
                    if p.stem:
                        while stop < len(folded) and folded[stop].isalnum():
                            stop += 1
                if offsets is None:
                    hit = Hit(p.key, start, stop, p.kind == "weak", p.entity)
                else:
                    hit = Hit(p.key, offsets[start], offsets[stop - 1] + 1, p.kind == "weak", p.entity)
                if p.kind == "exact" and not _exact_ok(p, text, hit, language):
                    continue
                hits.append(hit)
        kept = [h for h in _drop_overlaps(hits) if h.key != "ignore"]
        return _resolve_weak(kept)

    def tag(
        self, title: str, text: str, language: str | None = None
    ) -> tuple[tuple[EntityMention, ...], tuple[TopicMatch, ...], tuple[str, ...]]:
        document = f"{title}\n{text}"
        hits = self.find(document, language)
        text_start = len(title) + 1
        counts: dict[str, int] = defaultdict(int)
        first: dict[str, int | None] = {}
        for h in hits:
            if not h.entity:
                continue
            counts[h.key] += 1
            if first.get(h.key) is None:
                first[h.key] = h.start - text_start if h.start >= text_start else None
        entities = tuple(
            EntityMention(eid, self.entities[eid].type, counts[eid], first[eid])
            for eid in sorted(counts, key=lambda e: (_position(first[e]), e))
        )
        countries = tuple(sorted({c for eid in counts if (c := self.entities[eid].country)}))
        # Most rules cannot fire anywhere in a given article: check the whole
        # document first, and split it into passages only for rules that can.
        whole = self._index(hits)
        rules = self.taxonomy.topics
        candidates = [rule for rule in rules if _satisfied(rule, whole, vetoes=False) is not None]
        passages: dict[str, list[dict[str, Hit]]] = {}
        topics: list[TopicMatch] = []
        lead_end = _lead_end(title, text)
        for rule in candidates:
            if rule.scope not in passages:
                passages[rule.scope] = (
                    [whole]
                    if rule.scope == "document"
                    else [self._index(p) for p in _passages(rule.scope, document, hits)]
                )
            match = self._topic(rule, document, passages[rule.scope], lead_end)
            if match is not None:
                topics.append(match)
        return entities, tuple(topics), countries

    def _index(self, hits: list[Hit]) -> dict[str, Hit]:
        """First hit per entity id, per `country:XX` and per cue key in one passage."""
        index: dict[str, Hit] = {}
        selectors = self._selectors
        for h in hits:
            for key in selectors.get(h.key, (h.key,)):
                if key not in index:
                    index[key] = h
        return index

    def _topic(
        self, rule: TopicRule, document: str, passages: list[dict[str, Hit]], lead_end: int
    ) -> TopicMatch | None:
        """The rule's match when its supporting passages weigh enough: a passage in
        the title or lead paragraph weighs 2, any other 1. A topic named in one
        passage deep in the story is a passing mention, not what it is about."""
        cue_key = f"cue:{rule.id}" if rule.cues else None
        supporting = [
            evidence
            for index in passages
            if (cue_key is None or cue_key in index) and (evidence := _satisfied(rule, index)) is not None
        ]
        weight = sum(2 if min(h.start for h in ev) < lead_end else 1 for ev in supporting)
        if not supporting or weight < rule.min_weight:
            return None
        score = round(min(1.0, weight / (2 * rule.min_weight + 2)), 3)
        evidence = tuple(dict.fromkeys(document[h.start : h.end] for h in supporting[0]))
        return TopicMatch(rule.id, score, evidence)


def _lead_end(title: str, text: str) -> int:
    """Where the lead (first non-blank) paragraph ends in the tagged document."""
    end = len(title) + 1
    for line in text.split("\n"):
        end += len(line) + 1
        if line.strip():
            break
    return end


def _satisfied(rule: TopicRule, index: dict[str, Hit], vetoes: bool = True) -> list[Hit] | None:
    """The hits that make `rule` fire in one passage's index, or None."""
    if vetoes and f"exclude:{rule.id}" in index:
        return None
    evidence: list[Hit] = []
    for group in rule.all_of:
        hit = next((index[s] for s in group if s in index), None)
        if hit is None:
            return None
        evidence.append(hit)
    if rule.cues:
        cue = index.get(f"cue:{rule.id}")
        if cue is None:
            return None
        evidence.append(cue)
    return evidence


_WORD_BEFORE = re.compile(r"(\w+) $")


def _exact_ok(p: _Pattern, text: str, hit: Hit, language: str | None) -> bool:
    if language != p.language:
        return False
    span = text[hit.start : hit.end]
    if not (span.startswith(p.exact) if p.stem else span == p.exact):
        return False
    if p.exact.istitle() and not p.exact.isupper():
        # After a capitalised word inside a sentence, a capitalised form ends a longer
        # name: Vietnamese "Nguyễn Thị Nga", "Thúy Nga" are people, not Russia.
        # ("Tổng thống Nga Vladimir Putin" shows why the word after cannot count.)
        before = text[max(0, hit.start - 40) : hit.start]
        word = _WORD_BEFORE.search(before)
        if word and word.group(1)[0].isupper():
            preceding = before[: word.start()].rstrip()
            if preceding and preceding[-1] not in '.!?:\n"“«(':
                return False
    return True


def _position(value: int | None) -> int:
    return -1 if value is None else value


_SENTENCE_END = re.compile(r"[.!?。！？](?=\s|$)|\n")


def _passages(scope: str, document: str, hits: list[Hit]) -> list[list[Hit]]:
    """The hits of each passage of `document` (hits are in document order)."""
    if scope == "document":
        return [hits]
    ends = [m.end() for m in re.finditer(r"\n", document)] if scope == "paragraph" else []
    if scope == "sentence":
        ends = [m.end() for m in _SENTENCE_END.finditer(document)]
    grouped: dict[int, list[Hit]] = defaultdict(list)
    for h in hits:
        grouped[bisect_right(ends, h.start)].append(h)
    return list(grouped.values())


def _drop_overlaps(hits: list[Hit]) -> list[Hit]:
    """Longest match wins where aliases (and ignore phrases) overlap ("Corée du Nord"
    over "Corée", "FC Seoul" over "Seoul"); cues are kept as they are."""
    hits.sort(key=lambda h: (h.start, -(h.end - h.start), h.key))
    kept: list[Hit] = []
    taken_until = -1
    last_span = (-1, -1)
    for h in hits:
        if not h.entity:
            kept.append(h)
            continue
        if h.start >= taken_until:
            kept.append(h)
            taken_until = h.end
            last_span = (h.start, h.end)
        elif (h.start, h.end) == last_span:
            kept.append(h)  # the same span may name two entities; keep both
    return kept


def _resolve_weak(hits: list[Hit]) -> list[Hit]:
    """A weak alias counts for an entity the article also names in full, and only
    when exactly one of the entities sharing that span is so named."""
    strong = [h for h in hits if h.entity and not h.weak]
    if len(strong) == len(hits):
        return hits
    named = {h.key for h in strong}
    strong_spans = {(h.start, h.end) for h in strong}
    by_span: dict[tuple[int, int], list[Hit]] = defaultdict(list)
    for h in hits:
        if h.weak:
            by_span[(h.start, h.end)].append(h)
    resolved = {
        span: candidates[0]
        for span, group in by_span.items()
        if span not in strong_spans and len(candidates := [h for h in group if h.key in named]) == 1
    }
    return [h for h in hits if not h.weak or resolved.get((h.start, h.end)) is h]

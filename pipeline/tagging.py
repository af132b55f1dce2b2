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
from typing import Any

import ahocorasick

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

_AS_SPACE = set("-‐‑‒–—'’‘`´·_\t")


def _fold_char(c: str) -> str:
    if c in _AS_SPACE:
        return " "
    if c.isascii():
        return c.lower()
    decomposed = unicodedata.normalize("NFKD", c.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # Recompose what decomposition split without accents (Hangul syllables into jamo).
    return unicodedata.normalize("NFC", stripped) or " "


# A translate table that grows as characters are first seen: str.translate then
# folds a whole article in C instead of one Python call per character.
_FOLD_TABLE: dict[int, str] = {}


def _learn(text: str) -> None:
    for c in set(text):
        if ord(c) not in _FOLD_TABLE:
            _FOLD_TABLE[ord(c)] = _fold_char(c)


def fold_with_offsets(text: str) -> tuple[str, list[int] | None]:
    """Folded text and, for each folded character, the index of its source character
    (None when folding kept every character's length, the common case)."""
    _learn(text)
    folded = text.translate(_FOLD_TABLE)
    if len(folded) == len(text):  # no character folds to nothing, so none widened
        return folded, None
    offsets: list[int] = []
    for i, c in enumerate(text):
        offsets.extend([i] * len(_FOLD_TABLE[ord(c)]))
    return folded, offsets


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
    bounded: bool
    kind: str = "full"  # "full" | "weak" | "exact"
    exact: str = ""  # exact aliases: the form as written
    language: str = ""  # exact aliases: the only language they count in


@dataclass(frozen=True)
class Hit:
    key: str
    start: int  # in the source text
    end: int
    weak: bool = False


def _build_automaton(patterns: dict[str, list[_Pattern]]) -> Any:
    automaton = ahocorasick.Automaton()
    for folded, items in patterns.items():
        automaton.add_word(folded, (len(folded), tuple(items)))
    automaton.make_automaton()
    return automaton


def _is_entity(key: str) -> bool:
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
        self._automaton: Any = None

    @staticmethod
    def _add(
        patterns: dict[str, list[_Pattern]], alias: str, key: str, kind: str = "full", language: str = ""
    ) -> None:
        stem = alias.endswith("*")
        written = alias.rstrip("*").strip()
        folded = " ".join(fold(written).split())
        exact = kind == "exact"
        pattern = _Pattern(
            key,
            stem,
            not _is_unspaced_script(folded),
            kind,
            written if exact else "",
            language if exact else "",
        )
        if folded and pattern not in patterns[folded]:
            patterns[folded].append(pattern)

    def __getstate__(self) -> dict[str, Any]:
        # The automaton is rebuilt lazily on each worker rather than pickled.
        return {"taxonomy": self.taxonomy}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["taxonomy"])  # type: ignore[misc]

    def find(self, text: str, language: str | None = None) -> list[Hit]:
        """Every alias, cue and exclusion cue in `text`, after overlaps, ignore
        phrases and weak aliases are resolved. Spans index into `text`."""
        if self._automaton is None:
            self._automaton = _build_automaton(self._patterns)
        folded, offsets = fold_with_offsets(text)
        hits: list[Hit] = []
        n = len(folded)
        for end, (length, items) in self._automaton.iter(folded):
            start = end - length + 1
            left_ok = start == 0 or not folded[start - 1].isalnum()
            for p in items:
                if p.bounded:
                    if not left_ok:
                        continue
                    if not p.stem and end + 1 < n and folded[end + 1].isalnum():
                        continue
                stop = end + 1
                if p.stem:
                    while stop < n and folded[stop].isalnum():
                        stop += 1
                if offsets is None:
                    hit = Hit(p.key, start, stop, p.kind == "weak")
                else:
                    hit = Hit(p.key, offsets[start], offsets[stop - 1] + 1, p.kind == "weak")
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
        units = _units(document)
        text_start = len(title) + 1
        counts: dict[str, int] = defaultdict(int)
        first: dict[str, int | None] = {}
        for h in hits:
            if not _is_entity(h.key):
                continue
            counts[h.key] += 1
            if first.get(h.key) is None:
                first[h.key] = h.start - text_start if h.start >= text_start else None
        entities = tuple(
            EntityMention(eid, self.entities[eid].type, counts[eid], first[eid])
            for eid in sorted(counts, key=lambda e: (_position(first[e]), e))
        )
        countries = tuple(sorted({c for eid in counts if (c := self.entities[eid].country)}))
        unit_hits = _hits_by_unit(document, units, hits)
        passages = {
            scope: [(unit, self._index(unit_hits)) for unit, unit_hits in _scopes(scope, unit_hits)]
            for scope in {rule.scope for rule in self.taxonomy.topics}
        }
        topics = tuple(
            match
            for rule in self.taxonomy.topics
            if (match := self._topic(rule, passages[rule.scope])) is not None
        )
        return entities, topics, countries

    def _index(self, hits: list[Hit]) -> dict[str, Hit]:
        """First hit per entity id, per `country:XX` and per cue key in one passage."""
        index: dict[str, Hit] = {}
        for h in hits:
            index.setdefault(h.key, h)
            entity = self.entities.get(h.key)
            if entity is not None and entity.country:
                index.setdefault(f"country:{entity.country}", h)
        return index

    def _topic(self, rule: TopicRule, passages: list[tuple[str, dict[str, Hit]]]) -> TopicMatch | None:
        supporting: list[tuple[str, list[Hit]]] = []
        cue_key, exclude_key = f"cue:{rule.id}", f"exclude:{rule.id}"
        for unit, index in passages:
            if (rule.cues and cue_key not in index) or exclude_key in index:
                continue
            evidence: list[Hit] = []
            for group in rule.all_of:
                hit = next((index[s] for s in group if s in index), None)
                if hit is None:
                    break
                evidence.append(hit)
            else:
                if rule.cues:
                    evidence.append(index[cue_key])
                supporting.append((unit, evidence))
        if not supporting:
            return None
        # One supporting passage is evidence; more passages make it the story's subject.
        score = round(min(1.0, 0.4 + 0.2 * len(supporting)), 3)
        unit, evidence_hits = supporting[0]
        evidence = tuple(dict.fromkeys(unit[h.start : h.end] for h in evidence_hits))
        return TopicMatch(rule.id, score, evidence)


def _exact_ok(p: _Pattern, text: str, hit: Hit, language: str | None) -> bool:
    if language != p.language:
        return False
    span = text[hit.start : hit.end]
    return span.startswith(p.exact) if p.stem else span == p.exact


def _position(value: int | None) -> int:
    return -1 if value is None else value


def _units(document: str) -> list[tuple[int, int]]:
    """(start, end) of the title and each non-blank paragraph in `document`."""
    units: list[tuple[int, int]] = []
    start = 0
    for line in document.split("\n"):
        end = start + len(line)
        if line.strip() or not units:
            units.append((start, end))
        start = end + 1
    return units


def _hits_by_unit(
    document: str, units: list[tuple[int, int]], hits: list[Hit]
) -> list[tuple[str, list[Hit]]]:
    """Each unit's text with its hits, offsets shifted to the unit."""
    starts = [s for s, _ in units]
    grouped: list[list[Hit]] = [[] for _ in units]
    for h in hits:
        i = bisect_right(starts, h.start) - 1
        if i >= 0 and h.end <= units[i][1]:
            grouped[i].append(_shift(h, -units[i][0]))
    return [(document[s:e], grouped[i]) for i, (s, e) in enumerate(units)]


_SENTENCE_END = re.compile(r"[.!?。！？](?=\s|$)")


def _scopes(scope: str, unit_hits: list[tuple[str, list[Hit]]]) -> list[tuple[str, list[Hit]]]:
    if scope == "document":
        joined: list[Hit] = []
        offset = 0
        for unit, hits in unit_hits:
            joined.extend(_shift(h, offset) for h in hits)
            offset += len(unit) + 1
        return [("\n".join(u for u, _ in unit_hits), joined)]
    if scope == "paragraph":
        return unit_hits
    sentences: list[tuple[str, list[Hit]]] = []
    for unit, hits in unit_hits:
        start = 0
        ends = [m.end() for m in _SENTENCE_END.finditer(unit)]
        if not ends or ends[-1] < len(unit):
            ends.append(len(unit))
        for end in ends:
            inside = [_shift(h, -start) for h in hits if start <= h.start < end]
            sentences.append((unit[start:end], inside))
            start = end
    return sentences


def _shift(hit: Hit, delta: int) -> Hit:
    return Hit(hit.key, hit.start + delta, hit.end + delta, hit.weak)


def _drop_overlaps(hits: list[Hit]) -> list[Hit]:
    """Longest match wins where aliases (and ignore phrases) overlap ("Corée du Nord"
    over "Corée", "FC Seoul" over "Seoul"); cues are kept as they are."""
    hits.sort(key=lambda h: (h.start, -(h.end - h.start), h.key))
    kept: list[Hit] = []
    taken_until = -1
    last_span = (-1, -1)
    for h in hits:
        if not _is_entity(h.key):
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
    named = {h.key for h in hits if not h.weak and _is_entity(h.key)}
    strong_spans = {(h.start, h.end) for h in hits if not h.weak and _is_entity(h.key)}
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

"""Entity and topic tagging driven by a taxonomy data file.

Aliases are matched with one Aho-Corasick automaton over case- and
accent-folded text (hyphens and apostrophes read as spaces, so "Kim Jong-un"
and "Kim Jong Un" are one alias). Word boundaries are enforced for scripts
that separate words with spaces; for Chinese, Japanese and Korean aliases
they are not, since particles attach to names (러시아와, 북한은). An alias
ending in `*` is a stem: any word characters may follow it (России, Россией).

A topic rule names groups of selectors (an entity id or `country:XX`); it
fires in a paragraph where every group has a match and, when the rule lists
cue words, at least one cue occurs too.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import ahocorasick

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from schemas.records import EntityMention, TopicMatch

ENTITY_TYPES = {"person", "place", "organisation", "country", "event"}
SCOPES = {"sentence", "paragraph", "document"}


class TaxonomyError(ValueError):
    pass


@dataclass(frozen=True)
class EntityDef:
    id: str
    type: str
    country: str | None
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class TopicRule:
    id: str
    label: str
    all_of: tuple[tuple[str, ...], ...]
    cues: tuple[str, ...] = ()
    scope: str = "paragraph"


@dataclass(frozen=True)
class Taxonomy:
    version: str
    entities: tuple[EntityDef, ...]
    topics: tuple[TopicRule, ...]
    source: str = field(default="", compare=False)


def _need(table: dict[str, Any], key: str, where: str, kind: type) -> Any:
    if key not in table:
        raise TaxonomyError(f"{where}: missing key `{key}`")
    value = table[key]
    if not isinstance(value, kind):
        raise TaxonomyError(f"{where}: `{key}` must be a {kind.__name__}")
    return value


def parse_taxonomy(data: dict[str, Any], source: str = "<taxonomy>") -> Taxonomy:
    version = _need(data, "version", source, str)
    entities: list[EntityDef] = []
    seen: set[str] = set()
    for n, table in enumerate(data.get("entities", [])):
        where = f"{source}: entities[{n}]"
        eid = _need(table, "id", where, str)
        where = f"{source}: entity {eid!r}"
        if eid in seen:
            raise TaxonomyError(f"{where}: duplicate id")
        seen.add(eid)
        etype = _need(table, "type", where, str)
        if etype not in ENTITY_TYPES:
            raise TaxonomyError(f"{where}: type must be one of {sorted(ENTITY_TYPES)}")
        aliases_by_lang = _need(table, "aliases", where, dict)
        aliases = tuple(a for lang in sorted(aliases_by_lang) for a in aliases_by_lang[lang])
        if not aliases or not all(isinstance(a, str) and a.strip() for a in aliases):
            raise TaxonomyError(f"{where}: `aliases` needs non-empty strings")
        entities.append(EntityDef(eid, etype, table.get("country"), aliases))
    topics: list[TopicRule] = []
    for n, table in enumerate(data.get("topics", [])):
        tid = _need(table, "id", f"{source}: topics[{n}]", str)
        where = f"{source}: topic {tid!r}"
        groups = _need(table, "all_of", where, list)
        for group in groups:
            if not isinstance(group, list) or not group:
                raise TaxonomyError(f"{where}: `all_of` must be a list of non-empty lists")
            for selector in group:
                if not selector.startswith("country:") and selector not in seen:
                    raise TaxonomyError(f"{where}: unknown entity {selector!r} in `all_of`")
        cues = table.get("cues", {})
        cue_list = (
            tuple(c for lang in sorted(cues) for c in cues[lang]) if isinstance(cues, dict) else tuple(cues)
        )
        scope = table.get("scope", "paragraph")
        if scope not in SCOPES:
            raise TaxonomyError(f"{where}: scope must be one of {sorted(SCOPES)}")
        topics.append(
            TopicRule(tid, table.get("label", tid), tuple(tuple(g) for g in groups), cue_list, scope)
        )
    return Taxonomy(version, tuple(entities), tuple(topics), source)


DEFAULT_TAXONOMY = Path(__file__).with_name("taxonomy.toml")


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    path = path or DEFAULT_TAXONOMY
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TaxonomyError(f"{path}: {exc}") from exc
    return parse_taxonomy(data, str(path))


# --- folding ---------------------------------------------------------------

_AS_SPACE = set("-‐‑‒–—'’‘`´·_") | {"\n", "\t"}


@lru_cache(maxsize=65536)
def _fold_char(c: str) -> str:
    if c in _AS_SPACE:
        return " "
    if c.isascii():
        return c.lower()
    decomposed = unicodedata.normalize("NFKD", c.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # Recompose what decomposition split without accents (Hangul syllables into jamo).
    return unicodedata.normalize("NFC", stripped) or " "


def fold_with_offsets(text: str) -> tuple[str, list[int] | None]:
    """Folded text and, for each folded character, the index of its source character
    (None when folding kept every character's length, the common case)."""
    parts = list(map(_fold_char, text))
    folded = "".join(parts)
    if len(folded) == len(text):
        return folded, None
    offsets: list[int] = []
    for i, part in enumerate(parts):
        offsets.extend([i] * len(part))
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
    key: str  # entity id, or "cue:<topic>"
    stem: bool
    bounded: bool


@dataclass(frozen=True)
class Hit:
    key: str
    start: int  # in the source text
    end: int


def _build_automaton(patterns: dict[str, list[_Pattern]]) -> Any:
    automaton = ahocorasick.Automaton()
    for folded, items in patterns.items():
        automaton.add_word(folded, (len(folded), tuple(items)))
    automaton.make_automaton()
    return automaton


class Tagger:
    """Tags text with the entities and topics of one taxonomy (pure; picklable)."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self.entities = {e.id: e for e in taxonomy.entities}
        patterns: dict[str, list[_Pattern]] = defaultdict(list)
        for entity in taxonomy.entities:
            for alias in entity.aliases:
                self._add(patterns, alias, entity.id)
        for topic in taxonomy.topics:
            for cue in topic.cues:
                self._add(patterns, cue, f"cue:{topic.id}")
        self._patterns = dict(patterns)
        self._automaton: Any = None

    @staticmethod
    def _add(patterns: dict[str, list[_Pattern]], alias: str, key: str) -> None:
        stem = alias.endswith("*")
        folded = " ".join(fold(alias.rstrip("*")).split())
        pattern = _Pattern(key, stem, not _is_unspaced_script(folded))
        if folded and pattern not in patterns[folded]:
            patterns[folded].append(pattern)

    def __getstate__(self) -> dict[str, Any]:
        # The automaton is rebuilt lazily on each worker rather than pickled.
        return {"taxonomy": self.taxonomy}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["taxonomy"])  # type: ignore[misc]

    def find(self, text: str) -> list[Hit]:
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
                    hits.append(Hit(p.key, start, stop))
                else:
                    hits.append(Hit(p.key, offsets[start], offsets[stop - 1] + 1))
        return _drop_overlaps(hits)

    def tag(
        self, title: str, text: str
    ) -> tuple[tuple[EntityMention, ...], tuple[TopicMatch, ...], tuple[str, ...]]:
        units = [title, *[p for p in text.split("\n") if p.strip()]]
        title_len = len(title) + 1
        counts: dict[str, int] = defaultdict(int)
        first: dict[str, int | None] = {}
        unit_hits: list[tuple[str, list[Hit]]] = []
        position = -title_len  # offsets are into `text`; title hits have none
        for unit in units:
            hits = self.find(unit)
            unit_hits.append((unit, hits))
            for h in hits:
                if h.key.startswith("cue:"):
                    continue
                counts[h.key] += 1
                if h.key not in first or first[h.key] is None:
                    first[h.key] = position + h.start if position >= 0 else None
            position += len(unit) + 1
        entities = tuple(
            EntityMention(eid, self.entities[eid].type, counts[eid], first[eid])
            for eid in sorted(counts, key=lambda e: (_position(first[e]), e))
        )
        countries = tuple(sorted({c for eid in counts if (c := self.entities[eid].country)}))
        passages = {
            scope: [(unit, self._index(hits)) for unit, hits in _scopes(scope, unit_hits)]
            for scope in {rule.scope for rule in self.taxonomy.topics}
        }
        topics = tuple(
            match
            for rule in self.taxonomy.topics
            if (match := self._topic(rule, passages[rule.scope])) is not None
        )
        return entities, topics, countries

    def _index(self, hits: list[Hit]) -> dict[str, Hit]:
        """First hit per entity id, per `country:XX` and per `cue:<topic>` in one passage."""
        index: dict[str, Hit] = {}
        for h in hits:
            index.setdefault(h.key, h)
            entity = self.entities.get(h.key)
            if entity is not None and entity.country:
                index.setdefault(f"country:{entity.country}", h)
        return index

    def _topic(self, rule: TopicRule, passages: list[tuple[str, dict[str, Hit]]]) -> TopicMatch | None:
        supporting: list[tuple[str, list[Hit]]] = []
        cue_key = f"cue:{rule.id}"
        for unit, index in passages:
            if rule.cues and cue_key not in index:
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


def _position(value: int | None) -> int:
    return -1 if value is None else value


_SENTENCE_END = re.compile(r"[.!?。！？](?=\s|$)")


def _scopes(scope: str, unit_hits: list[tuple[str, list[Hit]]]) -> list[tuple[str, list[Hit]]]:
    if scope == "document":
        return [("\n".join(u for u, _ in unit_hits), [h for _, hs in unit_hits for h in hs])]
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
    return Hit(hit.key, hit.start + delta, hit.end + delta)


def _drop_overlaps(hits: list[Hit]) -> list[Hit]:
    """Longest match wins where aliases overlap ("Corée du Nord" over "Corée")."""
    hits.sort(key=lambda h: (h.start, -(h.end - h.start), h.key))
    kept: list[Hit] = []
    taken_until = -1
    for h in hits:
        if h.key.startswith("cue:"):
            kept.append(h)
            continue
        if h.start >= taken_until:
            kept.append(h)
            taken_until = h.end
        elif kept and (h.start, h.end) == next(
            ((k.start, k.end) for k in reversed(kept) if not k.key.startswith("cue:")), (-1, -1)
        ):
            kept.append(h)  # the same span may name two entities; keep both
    return kept

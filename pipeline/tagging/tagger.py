"""Entity and topic tagging driven by a taxonomy (see pipeline/tagging/taxonomy.py).

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
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, partial, reduce
from operator import itemgetter, or_
from typing import Any, NamedTuple

import ahocorasick_rs
import numpy as np

from pipeline.tagging.salience import Mention, features, gate_features
from pipeline.tagging.taxonomy import (
    DEFAULT_TAXONOMY,
    SCOPES,
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


def _chars_to_fold() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Character classes of every character whose folding is more than lowercasing,
    and of those among them that fold to more or fewer than one character.

    Folding then costs one C-level lower() plus a callback per such character
    (accented letters, dashes, fullwidth forms), not a Python call per character.
    Only the blocks where folding does more are scanned (Latin, Greek, Cyrillic,
    punctuation, kana, compatibility and fullwidth forms); elsewhere (Hangul
    syllables, CJK ideographs, emoji) folding is lowercasing.
    """
    special, resizing = [], []
    for first, last in _FOLDING_BLOCKS:
        for cp in range(first, last + 1):
            c = chr(cp)
            folded = _fold_char(c)
            if folded != c:
                special.append(c)
            if len(folded) != 1 or len(c.lower()) != 1:  # ß -> ss, ﬁ -> fi, İ.lower() -> i + dot
                resizing.append(c)
    return _char_class(special), _char_class(resizing)


def _char_class(chars: list[str]) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(c) for c in chars) + "]")


_TO_FOLD, _RESIZING = _chars_to_fold()


def _fold_match(m: re.Match[str]) -> str:
    return _fold_char(m.group())


def _fold_run(text: str) -> str:
    """Folding of text holding no character of `_RESIZING`: as long as the text."""
    return _TO_FOLD.sub(_fold_match, text.lower())


# Where the fold table has no one-unit answer: a lone surrogate, which no valid
# UTF-16 holds, so decoding the folded units fails.
_NO_UNIT = 0xD800


@cache
def _fold_table() -> np.ndarray[Any, np.dtype[np.uint16]]:
    """What each UTF-16 code unit folds to, where folding is one character to one
    character within the Basic Multilingual Plane; `_NO_UNIT` elsewhere (ß, İ,
    surrogates of characters beyond it). Built once per process (~0.1 s)."""
    table = np.full(0x10000, _NO_UNIT, dtype=np.uint16)
    for unit in range(0x10000):
        c = chr(unit)
        if 0xD800 <= unit <= 0xDFFF or _RESIZING.match(c):
            continue
        folded = _fold_run(c)
        if len(folded) == 1 and ord(folded) <= 0xFFFF:
            table[unit] = ord(folded)
    return table


def fold_with_offsets(text: str) -> tuple[str, list[int] | None]:
    """Folded text and, for each folded character, the index of its source character
    (None when folding kept every character's length, the common case)."""
    # The common case in a few C passes: a table lookup per UTF-16 unit, 4× faster
    # than lower() and a regex. A character the table cannot fold makes the decode
    # fail, and the text is folded the slower ways below.
    units = np.frombuffer(text.encode("utf-16-le"), dtype=np.uint16)
    try:
        return _fold_table().take(units).tobytes().decode("utf-16-le"), None
    except UnicodeDecodeError:
        pass
    lowered = text.lower()
    if len(lowered) == len(text):
        folded = _TO_FOLD.sub(_fold_match, lowered)
        if len(folded) == len(text):
            return folded, None
    # A German ß (-> ss) or a ligature: the runs between such characters still
    # fold the fast way, and only the offsets around them shift.
    parts: list[str] = []
    offsets: list[int] = []
    done = 0
    for m in _RESIZING.finditer(text):
        at = m.start()
        parts.append(_fold_run(text[done:at]))
        offsets.extend(range(done, at))
        part = _fold_char(m.group())
        parts.append(part)
        offsets.extend([at] * len(part))
        done = at + 1
    parts.append(_fold_run(text[done:]))
    offsets.extend(range(done, len(text)))
    return "".join(parts), offsets


def fold(text: str) -> str:
    return fold_with_offsets(text)[0]


def is_unspaced_script(text: str) -> bool:
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


# Internally a hit is a plain tuple, which sorts in C in the order overlaps are
# resolved in (leftmost, then longest, then by key):
#   (start, -length, key, end, weak, mask)
# `mask` has a bit for each selector of a topic rule the hit answers for (_Rules).
# Entity hits (aliases and ignore phrases) and cue hits are kept apart: only the
# former take part in overlaps, counts and weak aliases, and there are fewer of them.
_START, _KEY, _END, _WEAK, _MASK = 0, 2, 3, 4, 5
_by_start = itemgetter(_START)
_CUE_SEPARATOR = "|"


class _Key(NamedTuple):
    """What one automaton key stands for: the entity hits it makes without a check
    (key, weak, mask), its exact aliases (checked against the source), and the one
    cue hit (key, mask) that answers for the cues of every topic sharing the key."""

    bounded: bool
    stem: bool
    entities: tuple[tuple[str, bool, int], ...]
    exact: tuple[_Pattern, ...]
    cue: tuple[str, int] | None


# How a key's span in the folded text follows from its match [s, e) in the padded
# text: a word " alias " is [s, e - 2); a stem " stem" runs to the next space; an
# unspaced-script alias is [s - 1, e - 1). _SLOW: worked out match by match.
_SLOW, _WORD, _STEM, _UNSPACED = 0, 1, 2, 3


def _span_kind(key: _Key) -> int:
    if key.exact:
        return _SLOW
    if key.bounded:
        return _STEM if key.stem else _WORD
    return _SLOW if key.stem else _UNSPACED


def _unshadowed(patterns: dict[str, list[_Pattern]]) -> dict[str, list[_Pattern]]:
    """The automaton keys and their patterns, less each pattern a stem shadows.

    Where a word-bounded key starts with a stem of the same entity or cue
    (" российск" after " росси", " minister " after " minist", " xi jinping "
    after " xi jinping") and holds no further space, every match of it is a
    match of the stem on the same span: it would only make a second, identical
    hit (and count a mention twice). Keys left with no pattern go.
    """
    stems = {text: ps for text, ps in patterns.items() if ps[0].bounded and ps[0].stem}
    out = {}
    for text, ps in patterns.items():
        if not ps[0].bounded:
            out[text] = ps
            continue
        is_stem = ps[0].stem
        tail = text if is_stem else text[:-1]
        shadowing = [
            s
            for n in range(2, len(tail) + (not is_stem))  # a stem may spell a word whole
            if " " not in tail[n:]
            for s in stems.get(tail[:n], ())
        ]
        kept = [p for p in ps if not any(_shadows(s, p) for s in shadowing)]
        if kept:
            out[text] = kept
    return out


def _shadows(stem: _Pattern, p: _Pattern) -> bool:
    """Whether a hit of `stem` makes one of `p` (on the same span) redundant."""
    if p.kind == "exact" or stem.kind == "exact" or stem.key != p.key:
        return False
    return stem.kind == "full" or p.kind == "weak"


def _is_entity_key(key: str) -> bool:
    return not key.startswith(("cue:", "exclude:"))


class _Rule(NamedTuple):
    rule: TopicRule
    required: tuple[int, ...]  # masks a passage must all meet: each group's, the cue's
    exclude: int  # a passage with any of these bits does not count
    groups: tuple[tuple[int, ...], ...]  # each group's selector bits, in the group's order
    cue: int


class _Rules:
    """Topic rules compiled to bit masks: every selector a rule reads (an entity id,
    `country:XX`, `cue:<topic>`, `exclude:<topic>`) gets a bit, each hit carries the
    bits of what it answers for, and a passage satisfies a rule when the OR of its
    hits' masks meets every group, has the cue and not the exclusion."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        selectors: dict[str, int] = {}

        def bit(selector: str) -> int:
            return 1 << selectors.setdefault(selector, len(selectors))

        self.rules: list[_Rule] = []
        for rule in taxonomy.topics:
            groups = tuple(tuple(bit(s) for s in group) for group in rule.all_of)
            cue = bit(f"cue:{rule.id}") if rule.cues else 0
            required = tuple(_or(g) for g in groups) + ((cue,) if cue else ())
            exclude = bit(f"exclude:{rule.id}") if rule.exclude else 0
            self.rules.append(_Rule(rule, required, exclude, groups, cue))
        self.selectors = selectors
        self.document_scope = any(rule.scope == "document" for rule in taxonomy.topics)
        # Passage masks repeat across articles: which rules a mask may meet and
        # which it does are worked out once per mask, then looked up (in C).
        self.scopes = _Memo(self._scopes_of)  # mask -> scopes of the rules it may meet
        self.satisfied = {  # scope -> mask -> numbers of that scope's rules it satisfies
            scope: _Memo(partial(self._satisfied_by, scope)) for scope in SCOPES
        }

    def mask(self, keys: Iterable[str]) -> int:
        """The bits a hit answering for `keys` sets (keys no rule reads set none)."""
        return _or(1 << self.selectors[k] for k in keys if k in self.selectors)

    def _scopes_of(self, mask: int) -> tuple[str, ...]:
        """The scopes of the rules whose groups and cue a document or passage with
        `mask` holds (exclusion cues aside): the only rules that may fire in it."""
        return tuple(dict.fromkeys(r.rule.scope for r in self.rules if _meets(mask, r.required)))

    def _satisfied_by(self, scope: str, mask: int) -> tuple[int, ...]:
        """The numbers of the rules of `scope` that a passage with `mask` satisfies."""
        return tuple(
            n
            for n, r in enumerate(self.rules)
            if r.rule.scope == scope and not mask & r.exclude and _meets(mask, r.required)
        )


class _Memo(dict[int, Any]):
    """Values computed on first lookup by `compute`; emptied when it holds
    `_MEMO_SIZE` of them, which bounds a long-lived worker's memory (under 1 MB)."""

    def __init__(self, compute: Callable[[int], Any]) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, key: int) -> Any:
        if len(self) >= _MEMO_SIZE:
            self.clear()
        value = self[key] = self.compute(key)
        return value


_MEMO_SIZE = 10_000


def _or(masks: Iterable[int]) -> int:
    out = 0
    for m in masks:
        out |= m
    return out


def _meets(mask: int, required: tuple[int, ...]) -> bool:
    # A loop: all() over a generator costs more than the test itself here.
    for m in required:  # noqa: SIM110
        if not mask & m:
            return False
    return True


class Tagger:
    """Tags text with the entities and topics of one taxonomy (pure; picklable)."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self.entities = {e.id: e for e in taxonomy.entities}
        self._types = {e.id: e.type for e in taxonomy.entities}
        self._countries = {e.id: e.country for e in taxonomy.entities}
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
        self._rules = _Rules(taxonomy)
        self._selectors = {  # what a hit on an entity answers for in a topic rule
            e.id: (e.id, f"country:{e.country}") if e.country else (e.id,) for e in taxonomy.entities
        }
        self._automaton: Any = None
        self._keys: list[_Key] = []
        self._span_kinds: list[int] = []
        self._entity_rows: list[tuple[tuple[str, bool, int], ...]] = []  # _Key.entities, by key
        self._cue_rows: list[tuple[str, int] | None] = []  # _Key.cue, by key
        self._cue_keys: dict[str, tuple[str, ...]] = {}  # a cue hit's key -> the cue keys

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
        bounded = not is_unspaced_script(folded)
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

    def _build(self) -> None:
        """The automaton and what each of its keys stands for (once per worker)."""
        keys, texts = [], []
        for text, patterns in _unshadowed(self._patterns).items():
            entities = tuple(
                (p.key, p.kind == "weak", self._mask(p.key))
                for p in patterns
                if p.entity and p.kind != "exact"
            )
            exact = tuple(p for p in patterns if p.kind == "exact")
            cues = sorted(p.key for p in patterns if not p.entity)
            cue = None
            if cues:
                merged = _CUE_SEPARATOR.join(cues)
                self._cue_keys[merged] = tuple(cues)
                cue = (merged, self._rules.mask(cues))
            keys.append(_Key(patterns[0].bounded, patterns[0].stem, entities, exact, cue))
            texts.append(text)
        self._keys = keys
        # Most keys have no exact form to check: their spans follow from the match
        # alone (see _span_kind), and their hits are made in comprehensions (_scan).
        self._span_kinds = [_span_kind(k) for k in keys]
        self._entity_rows = [k.entities for k in keys]
        self._cue_rows = [k.cue for k in keys]
        self._automaton = ahocorasick_rs.AhoCorasick(texts)

    def _mask(self, key: str) -> int:
        return self._rules.mask(self._selectors.get(key, (key,)))

    def __getstate__(self) -> dict[str, Any]:
        # The automaton is rebuilt lazily on each worker rather than pickled.
        return {"taxonomy": self.taxonomy}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["taxonomy"])  # type: ignore[misc]

    def find(self, text: str, language: str | None = None) -> list[Hit]:
        """Every alias, cue and exclusion cue in `text`, after overlaps, ignore
        phrases and weak aliases are resolved. Spans index into `text`."""
        entities, cues = self._scan(text, language)
        # Sorted as plain tuples (start, -length, key, ...), then made Hits.
        rows = [(s, n, key, e, weak, True) for s, n, key, e, weak, _ in entities]
        cue_keys = self._cue_keys
        rows += [(s, n, key, e, False, False) for s, n, cue, e, _, _ in cues for key in cue_keys[cue]]
        rows.sort()
        return [_new(Hit, (key, s, e, weak, entity)) for s, _, key, e, weak, entity in rows]

    def _scan(self, text: str, language: str | None) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Entity hits (overlaps, ignore phrases and weak aliases resolved) and cue
        hits, each sorted."""
        if self._automaton is None:
            self._build()
        folded, offsets = fold_with_offsets(text)
        padded = f" {folded} "
        matches = self._automaton.find_matches_as_indexes(padded, overlapping=True)
        if offsets is None:
            kinds, rows, cue_rows = self._span_kinds, self._entity_rows, self._cue_rows
            spans = [
                (i, s, e - 2)
                if kind == _WORD
                else (i, s, padded.find(" ", e) - 1)
                if kind == _STEM
                else (i, s - 1, e - 1)
                for i, s, e in matches
                if (kind := kinds[i])
            ]
            entities = [(s, s - t, k, t, w, m) for i, s, t in spans for k, w, m in rows[i]]
            cues = [(s, s - t, c[0], t, False, c[1]) for i, s, t in spans if (c := cue_rows[i])]
            # What the comprehensions left: matches of _SLOW keys (rarely any).
            matches = [match for match in matches if not kinds[match[0]]] if len(spans) < len(matches) else []
        else:
            entities, cues = [], []
        length = len(folded)
        keys = self._keys
        for index, match_start, match_end in matches:
            bounded, stem, plain_hits, exact, cue = keys[index]
            # Back to `folded` coordinates: drop the padding and the leading space.
            if bounded:
                start = match_start
                stop = padded.find(" ", match_end) - 1 if stem else match_end - 2
            else:
                start, stop = match_start - 1, match_end - 1
                if stem:
                    while stop < length and folded[stop].isalnum():
                        stop += 1
            if offsets is not None:
                start, stop = offsets[start], offsets[stop - 1] + 1
            if cue is not None:
                cues.append((start, start - stop, cue[0], stop, False, cue[1]))
            for key, weak, mask in plain_hits:
                entities.append((start, start - stop, key, stop, weak, mask))
            for p in exact:
                if _exact_ok(p, text, start, stop, language):
                    entities.append((start, start - stop, p.key, stop, False, self._mask(p.key)))
        entities.sort()
        cues.sort()
        return _resolve_weak(_drop_overlaps(entities)), cues

    def tag(
        self, title: str, text: str, language: str | None = None
    ) -> tuple[tuple[EntityMention, ...], tuple[TopicMatch, ...], tuple[str, ...]]:
        return self._tag(title, text, language, None)

    def gate_salience(
        self, title: str, text: str, language: str | None = None
    ) -> dict[str, dict[str, float]]:
        """The salience gate's features (pipeline/tagging/salience.py) of every topic without a
        calibration whose rule fires in an article (its passages weigh `min_weight`), gated
        or not: what gates are fitted on."""
        features: dict[str, dict[str, float]] = {}
        self._tag(title, text, language, features)
        return features

    def _tag(
        self, title: str, text: str, language: str | None, collect: dict[str, dict[str, float]] | None
    ) -> tuple[tuple[EntityMention, ...], tuple[TopicMatch, ...], tuple[str, ...]]:
        """Tags an article; with `collect`, records the gate features of each topic without
        a calibration in it and gates none."""
        document = f"{title}\n{text}"
        hits, cues = self._scan(document, language)
        entities, countries = self._entities(hits, len(title) + 1)
        rules = self._rules
        lead_end = _lead_end(title, text)
        support: dict[int, list[int]] = {}  # rule number -> the numbers of its passages
        found: dict[int, _Passages] = {}  # rule number -> the passages they number
        # Entity and cue hits in one list by start (sorting merges two runs). The
        # sort is stable and no bit is both an entity's and a cue's, so each
        # passage's first hit answering for a bit is as in either list.
        every = hits + cues
        every.sort(key=_by_start)
        paragraphs = _Passages(every, _line_ends(document), len(document), lead_end)
        # Most rules cannot fire anywhere in a given article. A sentence's hits
        # are some of its paragraph's: a paragraph or sentence rule may fire only
        # where a paragraph's mask meets it, a document rule where the whole does.
        by_paragraph = dict(
            zip(paragraphs.masks, map(rules.scopes.__getitem__, paragraphs.masks.values()), strict=True)
        )
        scopes = {scope for paragraph_scopes in by_paragraph.values() for scope in paragraph_scopes}
        if rules.document_scope and "document" in rules.scopes[reduce(or_, paragraphs.masks.values(), 0)]:
            scopes.add("document")
        for scope in scopes:
            if scope == "paragraph":
                passages = paragraphs
            elif scope == "sentence":
                # Sentences are split only from the first to the last paragraph
                # that could meet a sentence rule.
                could = [n for n, paragraph_scopes in by_paragraph.items() if scope in paragraph_scopes]
                low, high = paragraphs.span(could[0])[0], paragraphs.span(could[-1])[1]
                ends = _sentence_ends(document, paragraphs.ends, low, high)
                hits_within = every[paragraphs.ranges[could[0]][0] : paragraphs.ranges[could[-1]][1]]
                passages = _Passages(hits_within, ends, len(document), lead_end)
            else:
                passages = _Passages(every, [], len(document), lead_end)
            satisfied = rules.satisfied[scope]
            for number, mask in passages.masks.items():
                for n in satisfied[mask]:
                    if n in support:
                        support[n].append(number)
                    else:
                        support[n] = [number]
                        found[n] = passages
        topics = []
        for n in sorted(support):
            compiled = rules.rules[n]
            passages, numbers = found[n], support[n]
            # Passages in the title or lead paragraph (numbered below `leads`) weigh 2.
            weight = len(numbers) + bisect_left(numbers, passages.leads)
            fired = _topic(compiled, weight, document, passages, numbers[0], lead_end)
            if fired is None:
                continue
            match, reached = fired
            rule = compiled.rule
            if rule.calibration is not None:
                calibrated = self._calibrated(compiled, match, document, len(title), lead_end, hits, cues)
                if calibrated is not None:
                    topics.append(calibrated)
                continue
            if collect is not None:  # the features the gate is fitted on; no gate
                collect[rule.id] = _gate_features(numbers, weight, passages, paragraphs, len(title), reached)
            elif rule.gate is not None:
                # Kept when the gate's score (pipeline/tagging/salience.py) reaches its threshold.
                score = rule.gate.score(
                    _gate_features(numbers, weight, passages, paragraphs, len(title), reached)
                )
                if score < rule.gate.threshold:
                    continue
                match = _new(TopicMatch, (match.id, round(score, 3), match.evidence))
            topics.append(match)
        return entities, tuple(topics), countries

    def _calibrated(
        self,
        compiled: _Rule,
        match: TopicMatch,
        document: str,
        title_end: int,
        lead_end: int,
        hits: list[tuple[Any, ...]],
        cues: list[tuple[Any, ...]],
    ) -> TopicMatch | None:
        """A bilateral rule's match scored by its calibration (pipeline/tagging/salience.py): None
        below the threshold; else the score, and the sentences stating the relation as evidence."""
        calibration = compiled.rule.calibration
        assert calibration is not None
        found, relations = self._salience(compiled, document, title_end, lead_end, hits, cues)
        score = calibration.score(found)
        if score < calibration.threshold:
            return None
        return _new(TopicMatch, (match.id, round(score, 3), tuple(relations[:3]) or match.evidence))

    def salience(self, title: str, text: str, topic: str, language: str | None = None) -> dict[str, float]:
        """The salience features (pipeline/tagging/salience.py) of bilateral `topic`'s pair in an
        article, whether or not its rule fires: what calibrations are fitted on."""
        compiled = next((r for r in self._rules.rules if r.rule.id == topic), None)
        if compiled is None or len(compiled.groups) != 2:
            raise ValueError(f"{topic!r} is not a bilateral topic of this taxonomy")
        document = f"{title}\n{text}"
        hits, cues = self._scan(document, language)
        return self._salience(compiled, document, len(title), _lead_end(title, text), hits, cues)[0]

    def _salience(
        self,
        compiled: _Rule,
        document: str,
        title_end: int,
        lead_end: int,
        hits: list[tuple[Any, ...]],
        cues: list[tuple[Any, ...]],
    ) -> tuple[dict[str, float], list[str]]:
        """The rule's salience features in the document, and the sentences stating the relation."""
        first, second = (_or(group) for group in compiled.groups)
        parties: list[Mention] = []
        states: list[Mention] = []
        types = self._types
        for h in hits:
            party = 0 if h[_MASK] & first else 1 if h[_MASK] & second else -1
            if party >= 0:
                parties.append((h[_START], h[_END], party))
            if types[h[_KEY]] == "country":
                states.append((h[_START], h[_END], party))
        cue_starts = [c[_START] for c in cues if c[_MASK] & compiled.cue]
        paragraph_ends = _line_ends(document)
        sentence_ends = _sentence_ends(document, paragraph_ends, 0, len(document))
        found, relations = features(
            document, lead_end, title_end, paragraph_ends, sentence_ends, parties, states, cue_starts
        )

        def sentence(k: int) -> str:
            end = sentence_ends[k] if k < len(sentence_ends) else len(document)
            return document[sentence_ends[k - 1] if k else 0 : end].strip()

        return found, [sentence(k) for k in relations]

    def _entities(
        self, hits: list[tuple[Any, ...]], text_start: int
    ) -> tuple[tuple[EntityMention, ...], tuple[str, ...]]:
        """The entities the hits name, in order of first mention in the text (those
        only the title names first), and their countries."""
        counts: dict[str, int] = {}
        for h in hits:
            counts[h[_KEY]] = counts.get(h[_KEY], 0) + 1
        in_text = hits[bisect_left(hits, (text_start,)) :]
        # Hits are sorted by start: the last value written for a key is its first.
        first = {h[_KEY]: h[_START] - text_start for h in reversed(in_text)}
        order = sorted([(first.get(key, -1), key) for key in counts])
        types, country = self._types, self._countries
        mention = EntityMention
        entities = tuple([_new(mention, (key, types[key], counts[key], first.get(key))) for _, key in order])
        countries = set(map(country.__getitem__, counts))
        countries.discard(None)
        return entities, tuple(sorted(countries))


class _Passages:
    """A document's passages (sentences, paragraphs, or the whole document: each
    ends at one of `ends`, the last at the document's `length`) that hold hits:
    the OR of their hits' masks and where their hits are, by passage number, and
    which passages are in the lead."""

    def __init__(self, hits: list[tuple[Any, ...]], ends: list[int], length: int, lead_end: int) -> None:
        self.ends = ends
        self.length = length
        self.hits = hits
        masks: dict[int, int] = {}
        ranges: dict[int, tuple[int, int]] = {}
        # Hits are sorted by start: one walk over them, a bisect only where a
        # hit starts a later passage than the one before it.
        number, first, mask, bound = 0, 0, 0, -1
        for i, h in enumerate(hits):
            if h[_START] >= bound:
                if i:
                    masks[number], ranges[number] = mask, (first, i)
                number = bisect_right(ends, h[_START])
                bound = ends[number] if number < len(ends) else length
                first, mask = i, 0
            mask |= h[_MASK]
        if hits:
            masks[number], ranges[number] = mask, (first, len(hits))
        self.masks = masks  # in passage order
        self.ranges = ranges
        # Passages never straddle the lead's end (a line end): those numbered
        # below `leads` start before it and are in the lead.
        self.leads = bisect_left(ends, lead_end) + 1

    def span(self, number: int) -> tuple[int, int]:
        """Where passage `number` starts and ends in the document."""
        ends = self.ends
        return (ends[number - 1] if number else 0), (ends[number] if number < len(ends) else self.length)

    def hits_of(self, number: int) -> list[tuple[Any, ...]]:
        """The passage's hits, in order."""
        first, stop = self.ranges[number]
        return self.hits[first:stop]


def _gate_features(
    numbers: list[int], weight: int, passages: _Passages, lines: _Passages, title_end: int, reached: int
) -> dict[str, float]:
    """The salience gate's features (pipeline/tagging/salience.py) of a rule that fired in
    the passages `numbers` of `passages` (weighing `weight`) and was first met at
    `reached`; `lines` are the document's paragraphs (the title the first)."""
    span = passages.span
    first = span(numbers[0])[0]
    line_ends = lines.ends
    if passages is lines:
        held = len(numbers) - (numbers[0] == 0)  # the title is no paragraph of the text
    else:
        held = len({bisect_right(line_ends, span(k)[0]) for k in numbers} - {0})
    in_leads = numbers[: bisect_left(numbers, passages.leads)]
    length = passages.length
    return gate_features(
        weight,
        len(numbers),
        held,
        len(line_ends) or 1,
        first < title_end,
        any(span(k)[0] >= title_end for k in in_leads),
        reached / length if length else 0.0,
        length,
    )


def _topic(
    compiled: _Rule, weight: int, document: str, passages: _Passages, first: int, lead_end: int
) -> tuple[TopicMatch, int] | None:
    """The rule's match when its supporting passages weigh enough (`weight`, the
    passages' sum: a passage in the title or lead paragraph weighs 2, any other 1)
    and `first` the first of them, and where its evidence there is complete. A topic
    named in one passage deep in the story is a passing mention, not what it is about."""
    rule = compiled.rule
    document_scope = rule.scope == "document"
    if weight < rule.min_weight and not document_scope:
        return None
    evidence = _evidence(compiled, passages.masks[first], passages.hits_of(first))
    if document_scope:  # one passage: it weighs as its earliest evidence
        weight = 2 if min(h[_START] for h in evidence) < lead_end else 1
        if weight < rule.min_weight:
            return None
    spans = tuple(dict.fromkeys([document[h[_START] : h[_END]] for h in evidence]))
    reached = max([h[_START] for h in evidence])
    return _new(TopicMatch, (rule.id, _score(weight, rule.min_weight), spans)), reached


@cache
def _score(weight: int, min_weight: int) -> float:
    # Cached: round() to 3 digits costs more than the rest of a topic's scoring.
    return round(min(1.0, weight / (2 * min_weight + 2)), 3)


# Records are named tuples built with tuple.__new__: their own __new__ is a
# Python function and would double the cost of building one.
_new = tuple.__new__


def _evidence(compiled: _Rule, mask: int, hits: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The hits that make a rule fire in a passage (its `mask` and `hits`) known to
    satisfy it: for each group, the first hit of the group's first selector the
    passage has, then the first cue."""
    wanted = []
    for bits in compiled.groups:
        for b in bits:  # the group's first selector the passage has
            if mask & b:
                break
        wanted.append(b)
    if compiled.cue:
        wanted.append(compiled.cue)
    evidence = []
    for b in wanted:
        for h in hits:  # the passage's first hit answering for it
            if h[_MASK] & b:
                break
        evidence.append(h)
    return evidence


def _lead_end(title: str, text: str) -> int:
    """Where the lead (first non-blank) paragraph ends in the tagged document."""
    start = 0
    end = text.find("\n")
    while end >= 0 and not text[start:end].strip():
        start, end = end + 1, text.find("\n", end + 1)
    return len(title) + 1 + (len(text) if end < 0 else end) + 1


_WORD_BEFORE = re.compile(r"(\w+) $")


def _exact_ok(p: _Pattern, text: str, start: int, end: int, language: str | None) -> bool:
    if language != p.language:
        return False
    span = text[start:end]
    if not (span.startswith(p.exact) if p.stem else span == p.exact):
        return False
    if p.exact.istitle() and not p.exact.isupper():
        # After a capitalised word inside a sentence, a capitalised form ends a longer
        # name: Vietnamese "Nguyễn Thị Nga", "Thúy Nga" are people, not Russia.
        # ("Tổng thống Nga Vladimir Putin" shows why the word after cannot count.)
        before = text[max(0, start - 40) : start]
        word = _WORD_BEFORE.search(before)
        if word and word.group(1)[0].isupper():
            preceding = before[: word.start()].rstrip()
            if preceding and preceding[-1] not in '.!?:\n"“«(':
                return False
    return True


_TERMINATORS = ".!?。！？"


def _sentence_ends(document: str, line_ends: list[int], low: int, high: int) -> list[int]:
    """Where each sentence ends: after a line's newline (`line_ends`), or, between
    `low` and `high`, after a terminator followed by white space or the end
    (str.find per terminator beats a regex 5×)."""
    ends = list(line_ends)
    last = len(document) - 1
    for terminator in _TERMINATORS:
        at = document.find(terminator, low, high)
        while at >= 0:
            if at == last or document[at + 1].isspace():
                ends.append(at + 1)
            at = document.find(terminator, at + 1, high)
    ends.sort()
    return ends


def _line_ends(document: str) -> list[int]:
    """Where each line of `document` ends (after its newline)."""
    ends = []
    at = document.find("\n")
    while at >= 0:
        ends.append(at + 1)
        at = document.find("\n", at + 1)
    return ends


def _drop_overlaps(hits: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Longest match wins where aliases (and ignore phrases) overlap ("Corée du Nord"
    over "Corée", "FC Seoul" over "Seoul"). `hits` are sorted; ignore phrases are
    dropped once they have shadowed what they cover."""
    kept = []
    taken_from = taken_until = -1
    for h in hits:
        if h[_START] >= taken_until:
            taken_from, taken_until = h[_START], h[_END]
            if h[_KEY] != "ignore":
                kept.append(h)
        elif (
            h[_START] == taken_from
            and h[_END] == taken_until
            and h[_KEY] != "ignore"
            and (not kept or kept[-1][_KEY] != h[_KEY] or kept[-1][_START] != taken_from)
        ):
            # The same span may name two entities: keep both, but each once (an
            # exact alias may spell a full one; sorted, repeats are adjacent).
            kept.append(h)
    return kept


def _resolve_weak(hits: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """A weak alias counts for an entity the article also names in full, and only
    when exactly one of the entities sharing that span is so named."""
    weak = [h for h in hits if h[_WEAK]]
    if not weak:
        return hits
    strong = [h for h in hits if not h[_WEAK]]
    named = {h[_KEY] for h in strong}
    strong_spans = {(h[_START], h[_END]) for h in strong}
    by_span: dict[tuple[int, int], list[tuple[Any, ...]]] = defaultdict(list)
    for h in weak:
        by_span[(h[_START], h[_END])].append(h)
    resolved = {
        span: candidates[0]
        for span, group in by_span.items()
        if span not in strong_spans and len(candidates := [h for h in group if h[_KEY] in named]) == 1
    }
    return [h for h in hits if not h[_WEAK] or resolved.get((h[_START], h[_END])) is h]

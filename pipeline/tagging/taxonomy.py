"""The taxonomy data file: entities with aliases per language, and topic rules.

Entities carry three kinds of alias, each a table keyed by language:

- `aliases`: matched everywhere, case- and accent-folded.
- `weak_aliases`: ambiguous short forms (a bare "Kim"); they count only in an
  article that also names the entity by a full alias, and only when exactly one
  entity claiming that form is named so.
- `exact_aliases`: forms that collide once accents are folded (Vietnamese
  "Nga", Russia, against "ngà", "ngã"); matched case- and accent-sensitively,
  and only in articles written in the alias's language.

`ignore` lists phrases (per language) that shadow the aliases they overlap,
then yield nothing ("FC Seoul" is not the city).

An entity may name its Wikidata item (`wikidata = "Q423"`); it tags nothing, and goes
into the lake's label tables (pipeline/lake/labels.py) with the entity's label in each
language (`labels`).

A topic rule names groups of selectors (an entity id or `country:XX`); it
fires in a passage (sentence, paragraph or document) where every group has a
match and, when the rule lists `cues`, a cue occurs too, and no `exclude` cue
does. A bilateral rule (two groups) may carry a `calibration`: the article's
salience features for the pair (pipeline/tagging/salience.py) scored by a logistic
layer, the topic kept when the score reaches its threshold.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.tagging.salience import FEATURES, GATE_FEATURES, Calibration

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENTITY_TYPES = {"person", "place", "organisation", "country", "event", "weapon"}
SCOPES = {"sentence", "paragraph", "document"}
DEFAULT_TAXONOMY = Path(__file__).with_name("taxonomy.toml")
WIKIDATA_ID = re.compile(r"Q[1-9][0-9]*")


class TaxonomyError(ValueError):
    pass


@dataclass(frozen=True)
class Alias:
    text: str
    language: str
    kind: str = "full"  # "full" | "weak" | "exact"


@dataclass(frozen=True)
class EntityDef:
    id: str
    type: str
    country: str | None
    aliases: tuple[Alias, ...]
    label: str = ""
    # Out of the repr so that the digest of a taxonomy naming no Wikidata item is what it
    # was before the key existed (see `digest`).
    wikidata: str | None = field(default=None, repr=False)

    def labels(self, languages: Iterable[str]) -> dict[str, str]:
        """The entity's name in each of `languages`: English is its `label`; another
        language its first alias there (a stem's `*` dropped); its `label` (or id) when it
        has none there."""
        fallback = self.label or self.id
        first: dict[str, str] = {}
        for alias in self.aliases:
            if alias.kind == "full":
                first.setdefault(alias.language, alias.text.removesuffix("*").strip())
        if self.label:
            first["en"] = self.label
        return {lang: first.get(lang) or fallback for lang in languages}


@dataclass(frozen=True)
class TopicRule:
    id: str
    label: str
    all_of: tuple[tuple[str, ...], ...]
    cues: tuple[str, ...] = ()
    scope: str = "paragraph"
    exclude: tuple[str, ...] = ()
    min_weight: int = 2  # see Tagger._topic: the lead, or two passages
    calibration: Calibration | None = None  # bilateral rules: kept when the score reaches its threshold
    # Rules without a calibration: kept when the gate's score reaches its threshold. Out of
    # the repr, as `EntityDef.wikidata` (see `digest`).
    gate: Calibration | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Taxonomy:
    version: str
    entities: tuple[EntityDef, ...]
    topics: tuple[TopicRule, ...]
    ignore: tuple[str, ...] = ()
    source: str = field(default="", compare=False)
    # The gate of topics with neither a calibration nor a `gate` of their own (out of the repr).
    gate: Calibration | None = field(default=None, repr=False)

    def alias_count(self) -> int:
        return sum(len(e.aliases) for e in self.entities)

    def languages(self) -> tuple[str, ...]:
        """Every language an entity has aliases in, and English (the language of `label`)."""
        return tuple(
            sorted({"en", *(a.language for e in self.entities for a in e.aliases if a.kind == "full")})
        )


def _need(table: dict[str, Any], key: str, where: str, kind: type) -> Any:
    if key not in table:
        raise TaxonomyError(f"{where}: missing key `{key}`")
    value = table[key]
    if not isinstance(value, kind):
        raise TaxonomyError(f"{where}: `{key}` must be a {kind.__name__}")
    return value


def _strings_by_language(table: dict[str, Any], key: str, where: str) -> list[tuple[str, str]]:
    """[(language, text)] from a `{lang: [str, ...]}` table, validated."""
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise TaxonomyError(f"{where}: `{key}` must be a table of lists keyed by language")
    pairs: list[tuple[str, str]] = []
    for lang in sorted(value):
        items = value[lang]
        if not isinstance(items, list) or not all(isinstance(a, str) and a.strip() for a in items):
            raise TaxonomyError(f"{where}: `{key}.{lang}` must be a list of non-empty strings")
        pairs.extend((lang, a) for a in items)
    return pairs


_ENTITY_KEYS = {"id", "type", "country", "label", "wikidata", "aliases", "weak_aliases", "exact_aliases"}
_TOPIC_KEYS = {"id", "label", "all_of", "cues", "scope", "exclude", "min_weight", "calibration", "gate"}


def _identified(table: Any, section: str, kind: str, n: int, source: str, known: set[str]) -> tuple[str, str]:
    """The `id` of the n-th table of `section` and the name errors give it ("entity 'x'");
    other keys must be `known`."""
    at = f"{source}: {section}[{n}]"
    if not isinstance(table, dict):
        raise TaxonomyError(f"{at} must be a table")
    ident = _need(table, "id", at, str)
    where = f"{source}: {kind} {ident!r}"
    unknown = set(table) - known
    if unknown:
        raise TaxonomyError(f"{where}: unknown key `{sorted(unknown)[0]}`")
    return ident, where


def _entity(table: Any, n: int, source: str) -> EntityDef:
    eid, where = _identified(table, "entities", "entity", n, source, _ENTITY_KEYS)
    etype = _need(table, "type", where, str)
    if etype not in ENTITY_TYPES:
        raise TaxonomyError(f"{where}: type must be one of {sorted(ENTITY_TYPES)}")
    _need(table, "aliases", where, dict)
    aliases = [Alias(a, lang) for lang, a in _strings_by_language(table, "aliases", where)]
    if not aliases:
        raise TaxonomyError(f"{where}: `aliases` needs non-empty strings")
    aliases += [Alias(a, lang, "weak") for lang, a in _strings_by_language(table, "weak_aliases", where)]
    aliases += [Alias(a, lang, "exact") for lang, a in _strings_by_language(table, "exact_aliases", where)]
    country = table.get("country")
    if country is not None and not (isinstance(country, str) and len(country) == 2 and country.isupper()):
        raise TaxonomyError(f'{where}: `country` must be an ISO 3166-1 alpha-2 code such as "KP"')
    wikidata = table.get("wikidata")
    if wikidata is not None and not (isinstance(wikidata, str) and WIKIDATA_ID.fullmatch(wikidata)):
        raise TaxonomyError(
            f'{where}: `wikidata` must be a Wikidata item id such as "Q423", got {wikidata!r}'
        )
    return EntityDef(eid, etype, country, tuple(aliases), str(table.get("label", "")), wikidata)


def _topic(table: Any, n: int, source: str, entity_ids: set[str], gate: Calibration | None) -> TopicRule:
    tid, where = _identified(table, "topics", "topic", n, source, _TOPIC_KEYS)
    groups = _need(table, "all_of", where, list)
    for group in groups:
        if not isinstance(group, list) or not group:
            raise TaxonomyError(f"{where}: `all_of` must be a list of non-empty lists")
        for selector in group:
            if not isinstance(selector, str):
                raise TaxonomyError(f"{where}: selectors in `all_of` must be strings")
            if not selector.startswith("country:") and selector not in entity_ids:
                raise TaxonomyError(f"{where}: unknown entity {selector!r} in `all_of`")
    cues = tuple(c for _, c in _strings_by_language(table, "cues", where))
    exclude = tuple(c for _, c in _strings_by_language(table, "exclude", where))
    scope = table.get("scope", "paragraph")
    if scope not in SCOPES:
        raise TaxonomyError(f"{where}: scope must be one of {sorted(SCOPES)}")
    label = table.get("label", tid)
    min_weight = table.get("min_weight", 2)
    if not isinstance(min_weight, int) or isinstance(min_weight, bool) or min_weight < 1:
        raise TaxonomyError(f"{where}: `min_weight` must be a positive integer")
    calibration = None
    if "calibration" in table:
        calibration = _calibration(table["calibration"], where, len(groups))
    if "gate" not in table:
        own_gate = None if calibration else gate
    elif table["gate"] is False:
        own_gate = None
    elif calibration is not None:
        raise TaxonomyError(f"{where}: a calibrated topic takes no `gate`")
    else:
        own_gate = _logistic(table["gate"], f"{where}: `gate`", GATE_FEATURES)
    all_of = tuple(tuple(g) for g in groups)
    return TopicRule(tid, label, all_of, cues, scope, exclude, min_weight, calibration, own_gate)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TaxonomyError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _calibration(table: Any, where: str, groups: int) -> Calibration:
    """`calibration = { bias = …, threshold = …, weights = { feature = … } }`: the logistic
    layer of a bilateral rule (two groups), see pipeline/tagging/salience.py."""
    if groups != 2:
        raise TaxonomyError(f"{where}: `calibration` needs a bilateral rule (two groups in `all_of`)")
    return _logistic(table, f"{where}: `calibration`", FEATURES)


def _logistic(table: Any, where: str, features: tuple[str, ...]) -> Calibration:
    """A `{ bias = …, threshold = …, weights = { feature = … } }` table (`where` names it)."""
    if not isinstance(table, dict) or set(table) != {"bias", "threshold", "weights"}:
        raise TaxonomyError(f"{where} must be a table of `bias`, `threshold` and `weights`")
    weights = table["weights"]
    if not isinstance(weights, dict) or not set(weights) <= set(features):
        raise TaxonomyError(f"{where}: `weights` keys must be among {list(features)}")
    threshold = _number(table["threshold"], f"{where}: `threshold`")
    if not 0.0 < threshold < 1.0:
        raise TaxonomyError(f"{where}: `threshold` must be between 0 and 1")
    return Calibration(
        bias=_number(table["bias"], f"{where}: `bias`"),
        weights={k: _number(v, f"{where}: `weights.{k}`") for k, v in sorted(weights.items())},
        threshold=threshold,
    )


def parse_taxonomy(data: dict[str, Any], source: str = "<taxonomy>") -> Taxonomy:
    version = _need(data, "version", source, str)
    entities: list[EntityDef] = []
    seen: set[str] = set()
    for n, table in enumerate(data.get("entities", [])):
        entity = _entity(table, n, source)
        if entity.id in seen:
            raise TaxonomyError(f"{source}: entity {entity.id!r}: duplicate id")
        seen.add(entity.id)
        entities.append(entity)
    gate = _logistic(data["gate"], f"{source}: `gate`", GATE_FEATURES) if "gate" in data else None
    topics: list[TopicRule] = []
    topic_ids: set[str] = set()
    for n, table in enumerate(data.get("topics", [])):
        topic = _topic(table, n, source, seen, gate)
        if topic.id in topic_ids:
            raise TaxonomyError(f"{source}: topic {topic.id!r}: duplicate id")
        topic_ids.add(topic.id)
        topics.append(topic)
    ignore = tuple(p for _, p in _strings_by_language(data, "ignore", source))
    return Taxonomy(version, tuple(entities), tuple(topics), ignore, source, gate)


def digest(taxonomy: Taxonomy) -> str:
    """A hash of the rules themselves (not of the file's comments or layout). Wikidata ids
    and salience gates count when an entity names one or a topic has one (a taxonomy with
    neither hashes as it did before they existed)."""
    text = repr(replace(taxonomy, source=""))
    wikidata = [(e.id, e.wikidata) for e in taxonomy.entities if e.wikidata]
    if wikidata:
        text += repr(wikidata)
    gates = [(t.id, t.gate) for t in taxonomy.topics if t.gate]
    if gates:
        text += repr(gates)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def record_version(path: Path, taxonomy: Taxonomy, force: bool = False) -> None:
    """Remember which rules `taxonomy.version` names in the lake's `path` (JSON), or raise
    TaxonomyError when that version string was used before for other rules: stored rows
    name the taxonomy they were tagged with by version, and `retag` relies on it. With
    `force` (a re-tag of every stored row under the new rules) the version is rebound."""
    known: dict[str, str] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    ours, seen = digest(taxonomy), known.get(taxonomy.version)
    if seen == ours:
        return
    if seen is not None and not force:
        raise TaxonomyError(
            f"{taxonomy.source}: version {taxonomy.version!r} was used for other rules in this lake; "
            "change `version` whenever the entities or topics change (or `retag --force`)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**known, taxonomy.version: ours}, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    path = path or DEFAULT_TAXONOMY
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TaxonomyError(f"{path}: {exc}") from exc
    return parse_taxonomy(data, str(path))

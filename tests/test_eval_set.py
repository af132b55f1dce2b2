"""Validates the hand-labelled topic-tagging evaluation set in tests/eval/tagging/.

`python -m tests.test_eval_set` prints the counts table that README.md in that folder carries;
a test below keeps the two in step.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

SET_DIR = Path(__file__).parent / "eval" / "tagging"

LANGUAGES = ("en", "fr", "de", "es", "it", "pt", "pl", "ru", "uk", "ko", "ja", "zh", "vi")
TOPICS = (
    "nk-russia",
    "korean-peninsula-security",
    "nk-missiles-nuclear",
    "russia-ukraine-war",
    "sanctions",
    "china-russia",
    "inter-korean",
    "nk-china",
    "nk-troops-russia",
    "arms-transfers",
    "nk-leadership",
    "us-nk",
    "japan-nk",
    "nk-cyber",
    "nk-human-rights",
    "russia-far-east",
)
ENTITIES = frozenset(
    (
        "north-korea",
        "south-korea",
        "russia",
        "china",
        "ukraine",
        "united-states",
        "japan",
        "pyongyang",
        "moscow",
        "seoul",
        "vladivostok",
        "kim-jong-un",
        "kim-yo-jong",
        "kim-ju-ae",
        "vladimir-putin",
        "sergei-shoigu",
        "sergei-lavrov",
        "choe-son-hui",
        "xi-jinping",
        "volodymyr-zelensky",
    )
)
KINDS = ("positive", "hard_negative")
SPLITS = ("dev", "test")
FIELDS = {"id", "language", "split", "title", "text", "topics", "kind", "note"}
OPTIONAL_FIELDS = {"entities", "not_entities"}

MIN_ARTICLES = 300
MIN_PER_LANGUAGE = 15
MIN_HARD_NEGATIVE_SHARE = 0.35
# topic -> (minimum positives, minimum distinct languages among them)
DEFAULT_MINIMUM = (12, 4)
TOPIC_MINIMUM = {"nk-russia": (60, 8)}
# Length of the body: words for space-delimited scripts; Korean counts eojeol (space units that carry
# particles, so fewer per sentence); Chinese and Japanese count non-space characters.
LENGTH_BOUNDS = {"ko": (60, 250), "zh": (120, 600), "ja": (120, 600)}
DEFAULT_LENGTH = (80, 250)
PARAGRAPHS = (2, 5)

Record = dict[str, Any]


def load_set(directory: Path = SET_DIR) -> dict[str, list[str]]:
    """Raw lines per language file, so that JSON errors are reported by the validator."""
    return {
        path.stem: path.read_text(encoding="utf-8").splitlines() for path in sorted(directory.glob("*.jsonl"))
    }


def body_length(language: str, text: str) -> int:
    if language in ("zh", "ja"):
        return len(re.sub(r"\s", "", text))
    return len(text.split())


def record_problems(language: str, line_no: int, record: Any) -> list[str]:
    where = f"{language}.jsonl:{line_no}"
    if not isinstance(record, dict):
        return [f"{where}: not a JSON object"]
    problems = []
    missing = FIELDS - record.keys()
    unknown = record.keys() - FIELDS - OPTIONAL_FIELDS
    if missing:
        problems.append(f"{where}: missing fields {sorted(missing)}")
    if unknown:
        problems.append(f"{where}: unknown fields {sorted(unknown)}")
    if missing:
        return problems
    if record["language"] != language:
        problems.append(f"{where}: language {record['language']!r} in {language}.jsonl")
    if not re.fullmatch(rf"{re.escape(language)}-\d{{3}}", str(record["id"])):
        problems.append(f"{where}: id {record['id']!r} is not {language}-NNN")
    if record["split"] not in SPLITS:
        problems.append(f"{where}: split {record['split']!r}")
    if record["kind"] not in KINDS:
        problems.append(f"{where}: kind {record['kind']!r}")
    for field in ("title", "text", "note"):
        if not isinstance(record[field], str) or not record[field].strip():
            problems.append(f"{where}: empty {field}")
    topics = record["topics"]
    if not isinstance(topics, list) or topics != sorted(set(topics)):
        problems.append(f"{where}: topics must be a sorted list without repeats")
    elif unknown_topics := set(topics) - set(TOPICS):
        problems.append(f"{where}: unknown topics {sorted(unknown_topics)}")
    if record["kind"] == "positive" and not topics:
        problems.append(f"{where}: a positive article needs at least one topic")
    if record["kind"] == "hard_negative" and "nk-russia" in topics:
        problems.append(f"{where}: a hard negative must not be about nk-russia")
    entities = record.get("entities", [])
    not_entities = record.get("not_entities", [])
    for field, ids in (("entities", entities), ("not_entities", not_entities)):
        if not isinstance(ids, list) or set(ids) - ENTITIES:
            problems.append(f"{where}: {field} must list known entity ids, got {ids!r}")
    if isinstance(entities, list) and isinstance(not_entities, list) and set(entities) & set(not_entities):
        problems.append(f"{where}: ids both in entities and not_entities")
    if isinstance(record["text"], str):
        paragraphs = [p for p in record["text"].split("\n\n") if p.strip()]
        if not PARAGRAPHS[0] <= len(paragraphs) <= PARAGRAPHS[1]:
            problems.append(f"{where}: {len(paragraphs)} paragraphs")
        low, high = LENGTH_BOUNDS.get(language, DEFAULT_LENGTH)
        if not low <= (n := body_length(language, record["text"])) <= high:
            problems.append(f"{where}: length {n} outside {low}-{high}")
    return problems


def set_problems(files: dict[str, list[str]]) -> list[str]:
    """Every way the set can be broken, as readable messages; empty means the set is usable."""
    problems: list[str] = []
    if unknown := set(files) - set(LANGUAGES):
        problems.append(f"files for unknown languages {sorted(unknown)}")
    records: list[Record] = []
    for language, lines in files.items():
        for line_no, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{language}.jsonl:{line_no}: invalid JSON ({exc.msg})")
                continue
            found = record_problems(language, line_no, record)
            problems += found
            if not found:
                records.append(record)
    ids = Counter(r["id"] for r in records)
    problems += [f"duplicate id {i}" for i, n in ids.items() if n > 1]

    if len(records) < MIN_ARTICLES:
        problems.append(f"{len(records)} valid articles, need {MIN_ARTICLES}")
    per_language = Counter(r["language"] for r in records)
    for language in LANGUAGES:
        if per_language[language] < MIN_PER_LANGUAGE:
            problems.append(f"{language}: {per_language[language]} articles, need {MIN_PER_LANGUAGE}")
        for split in SPLITS:
            if not any(r["language"] == language and r["split"] == split for r in records):
                problems.append(f"{language}: no {split} articles")
    negatives = sum(r["kind"] == "hard_negative" for r in records)
    if records and negatives / len(records) < MIN_HARD_NEGATIVE_SHARE:
        problems.append(f"hard negatives are {negatives}/{len(records)}, need {MIN_HARD_NEGATIVE_SHARE:.0%}")

    positives: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        for topic in r["topics"]:
            positives[topic].append(r)
    for topic in TOPICS:
        need, need_languages = TOPIC_MINIMUM.get(topic, DEFAULT_MINIMUM)
        found = positives[topic]
        languages = {r["language"] for r in found}
        if len(found) < need or len(languages) < need_languages:
            problems.append(
                f"{topic}: {len(found)} positives in {len(languages)} languages, "
                f"need {need} in {need_languages}"
            )
        for split in SPLITS:
            if not any(r["split"] == split for r in found):
                problems.append(f"{topic}: no positives in the {split} split")
    return problems


def count_table(files: dict[str, list[str]]) -> str:
    """Markdown tables of articles per language and positives per topic, by split."""
    records = [json.loads(line) for lines in files.values() for line in lines]
    rows = ["| language | articles | positive | hard negative | dev | test |", "|---|---|---|---|---|---|"]
    for language in LANGUAGES:
        mine = [r for r in records if r["language"] == language]
        kinds = Counter(r["kind"] for r in mine)
        splits = Counter(r["split"] for r in mine)
        rows.append(
            f"| {language} | {len(mine)} | {kinds['positive']} | {kinds['hard_negative']} "
            f"| {splits['dev']} | {splits['test']} |"
        )
    kinds = Counter(r["kind"] for r in records)
    splits = Counter(r["split"] for r in records)
    rows.append(
        f"| **all** | {len(records)} | {kinds['positive']} | {kinds['hard_negative']} "
        f"| {splits['dev']} | {splits['test']} |"
    )
    rows += ["", "| topic | positives | languages | dev | test |", "|---|---|---|---|---|"]
    for topic in TOPICS:
        found = [r for r in records if topic in r["topics"]]
        splits = Counter(r["split"] for r in found)
        languages = len({r["language"] for r in found})
        rows.append(f"| {topic} | {len(found)} | {languages} | {splits['dev']} | {splits['test']} |")
    return "\n".join(rows)


@pytest.fixture(scope="module")
def files() -> dict[str, list[str]]:
    return load_set()


def test_the_set_is_valid(files: dict[str, list[str]]) -> None:
    assert set(files) == set(LANGUAGES)
    assert set_problems(files) == []


def test_readme_counts_match_the_set(files: dict[str, list[str]]) -> None:
    readme = (SET_DIR / "README.md").read_text(encoding="utf-8")
    assert count_table(files) in readme, "regenerate the tables with: python -m tests.test_eval_set"


def _mutate(files: dict[str, list[str]], index: int, changes: dict[str, Any]) -> dict[str, list[str]]:
    """A copy of the set with fields of one English record replaced."""
    broken = copy.deepcopy(files)
    record = json.loads(broken["en"][index])
    record.update(changes)
    broken["en"][index] = json.dumps(record, ensure_ascii=False)
    return broken


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"topics": ["nk-korea"]}, "unknown topics"),
        ({"topics": ["sanctions", "nk-russia"]}, "sorted list"),
        ({"language": "fr"}, "language 'fr' in en.jsonl"),
        ({"id": "en-002"}, "duplicate id en-002"),
        ({"split": "train"}, "split 'train'"),
        ({"entities": ["kim-jong-il"]}, "known entity ids"),
        ({"text": "Too short.\n\nReally."}, "length"),
        ({"kind": "positive", "topics": []}, "needs at least one topic"),
    ],
)
def test_validator_catches_a_broken_record(
    files: dict[str, list[str]], changes: dict[str, Any], expected: str
) -> None:
    problems = set_problems(_mutate(files, 0, changes))
    assert any(expected in p for p in problems), problems


def test_validator_catches_broken_json_and_thin_coverage(files: dict[str, list[str]]) -> None:
    broken = copy.deepcopy(files)
    broken["en"][3] = broken["en"][3][:-1]
    assert any("en.jsonl:4: invalid JSON" in p for p in set_problems(broken))

    without_vietnamese = {k: v for k, v in files.items() if k != "vi"}
    assert "vi: 0 articles, need 15" in set_problems(without_vietnamese)

    only_negatives = {k: [line for line in v if '"hard_negative"' in line] for k, v in files.items()}
    assert any(p.startswith("us-nk: 0 positives") for p in set_problems(only_negatives))

    only_positives = {k: [line for line in v if '"positive"' in line] for k, v in files.items()}
    assert any(p.startswith("hard negatives are 0/") for p in set_problems(only_positives))

    all_dev = {k: [line.replace('"split": "test"', '"split": "dev"') for line in v] for k, v in files.items()}
    assert "nk-cyber: no positives in the test split" in set_problems(all_dev)


if __name__ == "__main__":
    print(count_table(load_set()))

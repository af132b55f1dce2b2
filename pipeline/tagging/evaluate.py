"""Tagging quality on labelled evaluation sets.

Two sets: the written one (tests/eval/tagging/*.jsonl: articles written for the
project, with their labels), and the real one (tests/eval/real/labels.jsonl:
labels only, for real published articles whose texts stay outside the project,
in `../shared/realnews` by default, joined by id). Each labelled article lists
every topic it is about (the written set also entities it surely names and, for
hard negatives, entities it must not be tagged with). `evaluate` tags every
article and counts, per topic and per language, true positives, false positives
and false negatives.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.tagging.tagger import Tagger

_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_EVAL_SET = _ROOT / "tests" / "eval" / "tagging"
REAL_LABELS = _ROOT / "tests" / "eval" / "real" / "labels.jsonl"
DEFAULT_REAL_TEXTS = _ROOT.parent / "shared" / "realnews"
SPLITS = ("dev", "test", "all")


@dataclass(frozen=True)
class LabelledArticle:
    id: str
    language: str
    split: str
    title: str
    text: str
    topics: frozenset[str]
    entities: frozenset[str] = frozenset()
    not_entities: frozenset[str] = frozenset()


def load_eval_set(folder: Path = DEFAULT_EVAL_SET, split: str = "all") -> list[LabelledArticle]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    articles: list[LabelledArticle] = []
    for path in sorted(folder.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                article = LabelledArticle(
                    id=row["id"],
                    language=row["language"],
                    split=row["split"],
                    title=row["title"],
                    # Paragraphs are blank-line separated in the set; articles carry one per line.
                    text="\n".join(p.strip() for p in row["text"].split("\n\n") if p.strip()),
                    topics=frozenset(row["topics"]),
                    entities=frozenset(row.get("entities", ())),
                    not_entities=frozenset(row.get("not_entities", ())),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: bad labelled article: {exc}") from exc
            if split in ("all", article.split):
                articles.append(article)
    return articles


def read_real_records(texts: Path, wanted: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """The records of the real-article collection (`texts/*.jsonl`: `id`, `language`,
    `title`, `text` with paragraphs separated by a blank line, `published`, ...) by id:
    all of them, or those `wanted`. ValueError when the folder or a wanted id is missing."""
    if not texts.is_dir():
        raise ValueError(f"{texts}: no such folder of real articles (give it with --texts)")
    ids = None if wanted is None else set(wanted)
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(texts.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                if ids is None or record.get("id") in ids:
                    found[record["id"]] = record
    missing = sorted((ids or set()) - found.keys())
    if missing:
        raise ValueError(f"{len(missing)} labelled articles have no text in {texts}, e.g. {missing[0]!r}")
    return found


def text_lines(text: str | None) -> str:
    """A collection text as the tagger reads an article: one paragraph per line."""
    return "\n".join(p.strip() for p in (text or "").split("\n\n") if p.strip())


def load_real_set(
    texts: Path = DEFAULT_REAL_TEXTS, split: str = "all", labels: Path = REAL_LABELS
) -> list[LabelledArticle]:
    """The real set: `labels` joined by id with the records of `texts/*.jsonl`. Raises
    ValueError when a labelled id has no text."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    wanted: dict[str, dict[str, object]] = {}
    for n, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row.get("topics"), list) or row.get("split") not in ("dev", "test"):
                raise ValueError(f"{labels}:{n}: a label needs `topics` (a list) and `split` (dev or test)")
            if split in ("all", row["split"]):
                wanted[row["id"]] = row
    records = read_real_records(texts, wanted)
    return [
        LabelledArticle(
            id=i,
            language=records[i]["language"],
            split=str(wanted[i]["split"]),
            title=records[i].get("title") or "",
            text=text_lines(records[i]["text"]),
            topics=frozenset(wanted[i]["topics"]),  # type: ignore[arg-type]
        )
        for i in sorted(wanted)
    ]


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, gold: bool, predicted: bool) -> None:
        self.tp += gold and predicted
        self.fp += predicted and not gold
        self.fn += gold and not predicted


@dataclass(frozen=True)
class Mistake:
    article_id: str
    kind: str  # "false_positive" | "false_negative" | "forbidden_entity" | "missed_entity"
    label: str
    evidence: tuple[str, ...] = ()


@dataclass
class Report:
    articles: int = 0
    by_topic: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    by_language: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    entities: Counts = field(default_factory=Counts)  # recall of labelled entities; fp = forbidden ones
    articles_by_language: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    mistakes: list[Mistake] = field(default_factory=list)

    def micro(self) -> Counts:
        total = Counts()
        for c in self.by_topic.values():
            total.tp, total.fp, total.fn = total.tp + c.tp, total.fp + c.fp, total.fn + c.fn
        return total


def evaluate(tagger: Tagger, articles: Iterable[LabelledArticle]) -> Report:
    topic_ids = [t.id for t in tagger.taxonomy.topics]
    report = Report()
    for article in articles:
        report.articles += 1
        report.articles_by_language[article.language] += 1
        entities, topics, _ = tagger.tag(article.title, article.text, article.language)
        found = {t.id: t for t in topics}
        for topic in topic_ids:
            gold, predicted = topic in article.topics, topic in found
            report.by_topic[topic].add(gold, predicted)
            report.by_language[article.language].add(gold, predicted)
            if gold != predicted:
                kind = "false_positive" if predicted else "false_negative"
                evidence = found[topic].evidence if predicted else ()
                report.mistakes.append(Mistake(article.id, kind, topic, evidence))
        named = {e.id for e in entities}
        for entity in sorted(article.entities):
            report.entities.add(True, entity in named)
            if entity not in named:
                report.mistakes.append(Mistake(article.id, "missed_entity", entity))
        for entity in sorted(article.not_entities & named):
            report.entities.fp += 1
            report.mistakes.append(Mistake(article.id, "forbidden_entity", entity))
    return report


def format_report(report: Report, show_mistakes: bool = False) -> str:
    def row(name: str, c: Counts) -> str:
        support = c.tp + c.fn
        return (
            f"| {name} | {support} | {c.tp} | {c.fp} | {c.fn} | "
            f"{c.precision:.3f} | {c.recall:.3f} | {c.f1:.3f} |"
        )

    header = "| {} | gold | tp | fp | fn | precision | recall | F1 |\n|---|---|---|---|---|---|---|---|"
    lines = [f"{report.articles} labelled articles", "", header.format("topic")]
    lines += [row(topic, c) for topic, c in sorted(report.by_topic.items())]
    lines.append(row("**all topics (micro)**", report.micro()))
    lines += [
        "",
        header.format("language").replace("| gold |", "| articles | gold |").replace("|---|", "|---|---|", 1),
    ]
    lines += [
        row(lang, c).replace(f"| {lang} |", f"| {lang} | {report.articles_by_language[lang]} |", 1)
        for lang, c in sorted(report.by_language.items())
    ]
    e = report.entities
    lines += [
        "",
        f"entities: {e.tp} of {e.tp + e.fn} labelled mentions found (recall {e.recall:.3f}); "
        f"{e.fp} forbidden entities tagged",
    ]
    if show_mistakes:
        lines += ["", "mistakes:"]
        lines += [
            f"  {m.article_id}: {m.kind} {m.label}" + (f" {list(m.evidence)}" if m.evidence else "")
            for m in report.mistakes
        ]
    return "\n".join(lines)

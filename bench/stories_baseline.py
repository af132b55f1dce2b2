"""Baseline for linking reports of the same story across languages.

    python -m bench.stories_baseline [--texts DIR] [--pairs FILE] [--window DAYS]

Reads the labelled pairs (tests/eval/stories/pairs.jsonl: ids and labels only),
joins them with the real article texts (../shared/realnews by default; texts stay
outside the project), tags every article once with the project's tagger (title +
text, paragraphs one per line, as pipeline/tagging/evaluate.py does), and scores
each pair:

  (a) entities      Jaccard of the sets of taxonomy entity ids found in the two articles
  (b) entities+date (a), set to 0 when both articles have `published` more than
                    --window days apart
  (c) names         Jaccard of transliterated capitalised words; only when `anyascii`
                    or `unidecode` is importable (nothing is installed for it)

For each variant and threshold it prints precision/recall of "linked" (score >=
threshold) against `same_story`, separately for same-language and cross-language
pairs, and the share of `same_topic` and `unrelated` pairs that get linked.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

from pipeline.tagging.tagger import Tagger, load_taxonomy

_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAIRS = _ROOT / "tests" / "eval" / "stories" / "pairs.jsonl"
DEFAULT_TEXTS = _ROOT.parent / "shared" / "realnews"
THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
_CAPITALISED = re.compile(r"\b[A-Z][a-z]{2,}\b")


def load_pairs(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_articles(texts: Path, wanted: set[str]) -> dict[str, dict[str, str | None]]:
    found: dict[str, dict[str, str | None]] = {}
    for path in sorted(texts.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("id") in wanted:
                found[record["id"]] = record
    missing = wanted - found.keys()
    if missing:
        raise SystemExit(f"{len(missing)} labelled ids have no text in {texts}, e.g. {sorted(missing)[0]!r}")
    return found


def body(record: dict[str, str | None]) -> str:
    return "\n".join(p.strip() for p in (record.get("text") or "").split("\n\n") if p.strip())


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def days_apart(a: str | None, b: str | None) -> int | None:
    if not a or not b:
        return None
    try:
        return abs((date.fromisoformat(a[:10]) - date.fromisoformat(b[:10])).days)
    except ValueError:
        return None


def transliterator() -> Callable[[str], str] | None:
    for module, name in (("anyascii", "anyascii"), ("unidecode", "unidecode")):
        try:
            return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
        except ImportError:
            continue
    return None


def rates(scored: list[tuple[dict[str, str], float]], threshold: float) -> dict[str, str]:
    def pr(rows: list[tuple[dict[str, str], float]]) -> tuple[str, str]:
        linked = [r for r, s in rows if s >= threshold]
        gold = [r for r, _ in rows if r["label"] == "same_story"]
        tp = sum(r["label"] == "same_story" for r in linked)
        precision = f"{tp / len(linked):.2f}" if linked else "-"
        recall = f"{tp / len(gold):.2f}" if gold else "-"
        return precision, recall

    def linked_rate(*labels: str) -> str:
        rows = [s for r, s in scored if r["label"] in labels]
        return f"{sum(s >= threshold for s in rows) / len(rows):.2f}" if rows else "-"

    same = [(r, s) for r, s in scored if r["lang_a"] == r["lang_b"]]
    cross = [(r, s) for r, s in scored if r["lang_a"] != r["lang_b"]]
    p_same, r_same = pr(same)
    p_cross, r_cross = pr(cross)
    return {
        "P same": p_same,
        "R same": r_same,
        "P cross": p_cross,
        "R cross": r_cross,
        "topic linked": linked_rate("same_topic"),
        "unrelated linked": linked_rate("unrelated"),
        "different linked": linked_rate("same_topic", "unrelated"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--window", type=int, default=3, help="date rule: max days apart (default 3)")
    args = parser.parse_args(argv)

    pairs = load_pairs(args.pairs)
    articles = load_articles(args.texts, {p["a"] for p in pairs} | {p["b"] for p in pairs})
    tagger = Tagger(load_taxonomy())
    entities: dict[str, set[str]] = {}
    for article_id, record in articles.items():
        found, _, _ = tagger.tag(record.get("title") or "", body(record), record.get("language"))
        entities[article_id] = {e.id for e in found}

    def date_ok(p: dict[str, str]) -> bool:
        gap = days_apart(articles[p["a"]].get("published"), articles[p["b"]].get("published"))
        return gap is None or gap <= args.window

    variants: dict[str, Callable[[dict[str, str]], float]] = {
        "(a) entities": lambda p: jaccard(entities[p["a"]], entities[p["b"]]),
        "(b) entities+date": lambda p: jaccard(entities[p["a"]], entities[p["b"]]) if date_ok(p) else 0.0,
    }
    translit = transliterator()
    if translit is not None:
        names = {
            i: set(_CAPITALISED.findall(translit(f"{r.get('title') or ''}\n{body(r)}")))
            for i, r in articles.items()
        }
        variants["(c) names"] = lambda p: jaccard(names[p["a"]], names[p["b"]])

    counts: dict[str, int] = {}
    for p in pairs:
        kind = "same-language" if p["lang_a"] == p["lang_b"] else "cross-language"
        counts[f"{p['label']} {kind}"] = counts.get(f"{p['label']} {kind}", 0) + 1
    print(
        f"{len(pairs)} pairs, {len(articles)} articles; "
        + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    )
    untagged = sum(not e for e in entities.values())
    print(f"articles with no taxonomy entity: {untagged}/{len(entities)}; date window {args.window} days")
    if translit is None:
        print("(c) names: skipped (neither anyascii nor unidecode is installed)")
    print()
    columns = [
        "variant",
        "threshold",
        "P same",
        "R same",
        "P cross",
        "R cross",
        "topic linked",
        "unrelated linked",
        "different linked",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for name, score in variants.items():
        scored = [(p, score(p)) for p in pairs]
        for threshold in THRESHOLDS:
            row = rates(scored, threshold)
            print(f"| {name} | {threshold:.2f} | " + " | ".join(row[c] for c in columns[2:]) + " |")


if __name__ == "__main__":
    main()

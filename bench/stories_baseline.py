"""Baselines and the story-signature rule for linking reports of the same story across languages.

    python -m bench.stories_baseline [--texts DIR] [--pairs FILE] [--window DAYS] [--cost] [--explain]

Reads the labelled pairs (tests/eval/stories/pairs.jsonl: ids and labels only),
joins them with the real article texts (../shared/realnews by default; texts stay
outside the project), tags every article once with the project's tagger (title +
text, paragraphs one per line, as pipeline/tagging/evaluate.py does), and scores
each pair:

  (a) entities      Jaccard of the sets of taxonomy entity ids found in the two articles
  (b) entities+date (a), set to 0 when both articles have `published` more than
                    --window days apart
  (c) names         Jaccard of capitalised words transliterated with `anyascii`
  (d) signature     pipeline.stories: `same_story` points of the two story signatures
                    (entities, names, numbers, event days, lead terms, publication gap),
                    with the rarity of names/numbers/terms counted over the articles of
                    the pairs; `link.THRESHOLD` is marked with *

The pairs are split into a dev and a test half (`split_pairs`: by candidate group,
pairs that share an article within a group stay together); the rule's weights were set
a priori and its threshold chosen on dev. For each split, variant and threshold it
prints precision/recall of "linked" (score >= threshold) against `same_story`,
separately for same-language and cross-language pairs, and the share of `same_topic`,
`unrelated` and both ("different") that get linked, with counts. `--cost` times the
signature (µs per article) and the comparison (µs per pair); `--explain` lists the
pairs rule (d) gets wrong, with their evidence (ids and figures only).
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

from anyascii import anyascii

from pipeline.stories.evaluate import (
    DEFAULT_PAIRS,
    DEFAULT_TEXTS,
    SPLITS,
    body,
    figures,
    load_pairs,
    rule_scores,
    split_pairs,
    story_signatures,
)
from pipeline.stories.link import THRESHOLD, Rarity, compare, score, weigh
from pipeline.stories.signals import signature
from pipeline.tagging.evaluate import read_real_records
from pipeline.tagging.tagger import Tagger, load_taxonomy

THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
RULE_THRESHOLDS = tuple(sorted({0.4, 0.5, 0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5, THRESHOLD}))
_CAPITALISED = re.compile(r"\b[A-Z][a-z]{2,}\b")


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def days_apart(a: str | None, b: str | None) -> int | None:
    if not a or not b:
        return None
    try:
        return abs((date.fromisoformat(a[:10]) - date.fromisoformat(b[:10])).days)
    except ValueError:
        return None


def rates(scored: Sequence[tuple[dict[str, str], float]], threshold: float) -> dict[str, str]:
    def precision(linked: int, wrong: int) -> str:
        return f"{linked / (linked + wrong):.2f}" if linked + wrong else "-"

    def share(k: int, n: int) -> str:
        return f"{k / n:.2f} ({k}/{n})" if n else "-"

    f = figures(scored, threshold)
    return {
        "P same": precision(f.same_linked, f.false_same),
        "R same": share(f.same_linked, f.same_total),
        "P cross": precision(f.cross_linked, f.false_cross),
        "R cross": share(f.cross_linked, f.cross_total),
        "topic linked": share(f.topic_linked, f.topic_total),
        "unrelated linked": share(f.unrelated_linked, f.unrelated_total),
        "different linked": share(f.different_linked, f.different_total),
    }


def _median_us(runs: int, count: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--window", type=int, default=3, help="date rule: max days apart (default 3)")
    parser.add_argument("--cost", action="store_true", help="time signatures and comparisons (5 runs)")
    parser.add_argument("--explain", action="store_true", help="list the pairs rule (d) gets wrong")
    args = parser.parse_args(argv)

    pairs = load_pairs(args.pairs)
    articles = read_real_records(args.texts, {p["a"] for p in pairs} | {p["b"] for p in pairs})
    tagger = Tagger(load_taxonomy())
    tagged: dict[str, tuple[object, ...]] = {}
    start = time.perf_counter()
    for article_id, record in articles.items():
        found, _, _ = tagger.tag(record.get("title") or "", body(record), record.get("language"))
        tagged[article_id] = found
    tag_us = (time.perf_counter() - start) / len(articles) * 1e6
    entities = {i: {e.id for e in found} for i, found in tagged.items()}  # type: ignore[attr-defined]
    signatures = story_signatures(articles, tagged)
    rule = dict(zip(((p["a"], p["b"]) for p in pairs), rule_scores(pairs, signatures), strict=True))

    def date_ok(p: dict[str, str]) -> bool:
        gap = days_apart(articles[p["a"]].get("published"), articles[p["b"]].get("published"))
        return gap is None or gap <= args.window

    variants: dict[str, Callable[[dict[str, str]], float]] = {
        "(a) entities": lambda p: jaccard(entities[p["a"]], entities[p["b"]]),
        "(b) entities+date": lambda p: jaccard(entities[p["a"]], entities[p["b"]]) if date_ok(p) else 0.0,
    }
    latin = {i: anyascii(f"{r.get('title') or ''}\n{body(r)}") for i, r in articles.items()}
    names = {i: set(_CAPITALISED.findall(text)) for i, text in latin.items()}
    variants["(c) names"] = lambda p: jaccard(names[p["a"]], names[p["b"]])
    variants["(d) signature"] = lambda p: rule[(p["a"], p["b"])]

    split = split_pairs(pairs)
    counts: dict[str, int] = {}
    for p in pairs:
        kind = "same-language" if p["lang_a"] == p["lang_b"] else "cross-language"
        counts[f"{p['label']} {kind}"] = counts.get(f"{p['label']} {kind}", 0) + 1
    print(
        f"{len(pairs)} pairs, {len(articles)} articles; "
        + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    )
    print(f"split: dev {split.count('dev')} pairs, test {split.count('test')} pairs (split_pairs)")
    untagged = sum(not e for e in entities.values())
    print(f"articles with no taxonomy entity: {untagged}/{len(entities)}; date window {args.window} days")
    print(f"(d) signature: threshold {THRESHOLD} (marked *)")
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
    for name in SPLITS:
        chosen = [p for p, h in zip(pairs, split, strict=True) if name in ("all", h)]
        print(f"\n### {name} ({len(chosen)} pairs)\n")
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for variant, scorer in variants.items():
            scored = [(p, scorer(p)) for p in chosen]
            for threshold in RULE_THRESHOLDS if variant.startswith("(d)") else THRESHOLDS:
                row = rates(scored, threshold)
                mark = "*" if variant.startswith("(d)") and threshold == THRESHOLD else ""
                print(
                    f"| {variant} | {threshold:.2f}{mark} | " + " | ".join(row[c] for c in columns[2:]) + " |"
                )

    if args.cost:
        records = [
            (r.get("title") or "", body(r), r.get("language"), r.get("published"), tagged[i])
            for i, r in articles.items()
        ]
        sig_us = _median_us(5, len(records), lambda: [signature(*r) for r in records])
        rarity_us = _median_us(5, len(signatures), lambda: Rarity.of(signatures.values()))
        rarity = Rarity.of(signatures[i] for i in sorted(signatures))
        weigh_us = _median_us(5, len(signatures), lambda: [weigh(s, rarity) for s in signatures.values()])
        weighed = {i: weigh(s, rarity) for i, s in signatures.items()}
        # every pair of the labelled set, 10 times; and all pairs of articles (most are skipped
        # on the publication gap, as a lookback window's would be)
        labelled = [(weighed[p["a"]], weighed[p["b"]]) for p in pairs] * 10
        pair_us = _median_us(5, len(labelled), lambda: [score(a, b) for a, b in labelled])
        ordered = [weighed[i] for i in sorted(weighed)]
        every = [(a, b) for n, a in enumerate(ordered) for b in ordered[n + 1 :]]
        every_us = _median_us(5, len(every), lambda: [score(a, b) for a, b in every])
        print(
            f"\ncost (median of 5 runs): signature {sig_us:.0f} µs/article; rarity table {rarity_us:.1f}"
            f" + weighing {weigh_us:.1f} µs/article; comparison {pair_us:.1f} µs/pair (labelled pairs),"
            f" {every_us:.2f} µs/pair (all {len(every)} pairs of the {len(ordered)} articles);"
            f" tagging (one run, for scale) {tag_us:.0f} µs/article"
        )

    if args.explain:
        rarity = Rarity.of(signatures[i] for i in sorted(signatures))
        weighed = {i: weigh(s, rarity) for i, s in signatures.items()}
        print(f"\npairs rule (d) gets wrong at {THRESHOLD}:")
        for p, half in zip(pairs, split, strict=True):
            points = rule[(p["a"], p["b"])]
            if (points >= THRESHOLD) == (p["label"] == "same_story"):
                continue
            e = compare(weighed[p["a"]], weighed[p["b"]])
            print(
                f"  {'linked' if points >= THRESHOLD else 'missed'} {points:.2f} {half} {p['label']} "
                f"{p['lang_a']}-{p['lang_b']} {p['a']} {p['b']} gap={e.gap} entities={e.entities:.2f} "
                f"names={e.names:.1f} numbers={e.numbers:.1f} days={e.days} terms={e.terms:.2f} "
                f"({p['candidate']})"
            )


if __name__ == "__main__":
    main()

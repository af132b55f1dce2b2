"""Tagging alone: the Aho-Corasick tagger against a naive per-alias regex loop.

    python -m bench.tagging [--articles 2000] [--repeat 5]

Articles are ~2.5 KB of generated multilingual news text (bench/corpus.py)
with taxonomy aliases sprinkled in. The taxonomy is the default one; if it has
fewer than 2,000 aliases, synthetic entities are added until it does (the
table says how many). Times are single-core CPU seconds (process_time); the
table shows the median of the repeats and the best one (on a shared machine
the spread between them is wide).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

from bench.corpus import paragraph
from pipeline.tagging.tagger import Tagger, fold
from pipeline.tagging.taxonomy import Alias, EntityDef, Taxonomy, load_taxonomy

MIN_ALIASES = 2_000


def padded_taxonomy(taxonomy: Taxonomy, rnd: random.Random) -> tuple[Taxonomy, int]:
    """The taxonomy with synthetic entities added up to MIN_ALIASES aliases."""
    missing = MIN_ALIASES - taxonomy.alias_count()
    if missing <= 0:
        return taxonomy, 0
    syllables = ["ka", "lo", "mi", "ner", "tov", "zan", "rik", "bu", "shen", "dar", "vel", "ost"]
    extra = []
    for n in range(0, missing, 4):
        names = tuple(
            Alias(" ".join("".join(rnd.choices(syllables, k=3)).title() for _ in range(2)), "en")
            for _ in range(4)
        )
        extra.append(EntityDef(f"synthetic-{n}", "person", None, names))
    return replace(taxonomy, entities=taxonomy.entities + tuple(extra)), 4 * len(extra)


def corpus(taxonomy: Taxonomy, articles: int, rnd: random.Random) -> list[tuple[str, str]]:
    aliases = [a.text.rstrip("*") for e in taxonomy.entities for a in e.aliases if a.kind == "full"]
    docs = []
    for n in range(articles):
        paras = [f"{paragraph(rnd)} {rnd.choice(aliases)}." for _ in range(6)]
        docs.append((f"Story {n}: {rnd.choice(aliases)}", "\n".join(paras)))
    return docs


class NaiveRegexTagger:
    """One compiled regex per alias, each searched over the folded article."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.patterns = [
            (entity.id, re.compile(r"(?<!\w)" + re.escape(fold(a.text.rstrip("*"))) + r"(?!\w)"))
            for entity in taxonomy.entities
            for a in entity.aliases
        ]

    def tag(self, title: str, text: str) -> set[str]:
        folded = fold(f"{title}\n{text}")
        return {eid for eid, pattern in self.patterns if pattern.search(folded)}


def measure(fn: Callable[[str, str], object], docs: list[tuple[str, str]]) -> float:
    """CPU seconds per article."""
    start = time.process_time()
    for title, text in docs:
        fn(title, text)
    return (time.process_time() - start) / len(docs)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tagging")
    parser.add_argument("--articles", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    rnd = random.Random(11)
    taxonomy, synthetic = padded_taxonomy(load_taxonomy(), rnd)
    docs = corpus(taxonomy, args.articles, rnd)
    size = statistics.mean(len(t) + len(x) for t, x in docs)
    tagger, naive = Tagger(taxonomy), NaiveRegexTagger(taxonomy)
    tagger.tag(*docs[0])  # builds the automaton once, as each worker does
    found = sum(len(tagger.tag(t, x)[0]) for t, x in docs[:50])
    print(
        f"{args.articles} articles of {size:,.0f} chars; {taxonomy.alias_count()} aliases "
        f"({synthetic} synthetic), {len(taxonomy.entities)} entities, {len(taxonomy.topics)} topics; "
        f"{found / 50:.1f} entities per article"
    )
    # The naive loop is ~300x slower: it runs over the first 50 articles only.
    variants: list[tuple[str, Callable[[str, str], object], list[tuple[str, str]]]] = [
        ("naive per-alias regex loop, entities only (baseline)", naive.tag, docs[:50]),
        ("Tagger.find: automaton, entities + cues", lambda t, x: tagger.find(f"{t}\n{x}"), docs),
        ("Tagger.tag: entities, countries, topics", tagger.tag, docs),
    ]
    runs: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for _ in range(args.repeat):
        for name, fn, subset in variants:
            runs[name].append(measure(fn, subset))
    base = statistics.median(runs[variants[0][0]])
    print(
        f"\n| variant | articles | ms/article (median of {args.repeat}) | best | articles/s per core "
        "(median) | speed-up |"
    )
    print("|---|---|---|---|---|---|")
    for name, _, subset in variants:
        seconds = statistics.median(runs[name])
        best = min(runs[name])
        print(
            f"| {name} | {len(subset)} | {1000 * seconds:.3f} | {1000 * best:.3f} | {1 / seconds:,.0f} "
            f"| {base / seconds:.1f}× |"
        )


if __name__ == "__main__":
    main()

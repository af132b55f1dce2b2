"""Story linking measured on labelled pairs of real articles (`newsbeam eval --stories`).

The pairs (tests/eval/stories/pairs.jsonl: ids, labels `same_story`, `same_topic` or
`unrelated`, a reason in our words) are joined by id with the real article texts, which
stay outside the project (`../shared/realnews` beside it by default). Every article is
tagged and condensed to its story signature (`pipeline.stories.signals`), each pair is
scored (`pipeline.stories.link.same_story`, rarity counted over the pairs' articles) and
linked at `link.THRESHOLD`. The pairs are split in a dev and a test half by candidate
group (`split_pairs`); the threshold was chosen on dev.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.stories.assign import NewArticle, assign_stories
from pipeline.stories.link import THRESHOLD, Rarity, score, weigh
from pipeline.stories.signals import StorySignature, signature
from pipeline.tagging.evaluate import DEFAULT_REAL_TEXTS, read_real_records, text_lines
from pipeline.tagging.tagger import Tagger, load_taxonomy

_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PAIRS = _ROOT / "tests" / "eval" / "stories" / "pairs.jsonl"
DEFAULT_TEXTS = DEFAULT_REAL_TEXTS
SPLITS = ("dev", "test", "all")


def load_pairs(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def body(record: dict[str, str | None]) -> str:
    return text_lines(record.get("text"))


def split_pairs(pairs: Sequence[dict[str, str]]) -> list[str]:
    """ "dev" or "test" for each pair, deterministically.

    Pairs of one `candidate` group that share an article form a component (related
    pairs stay together); each group's components, ordered by a hash of their smallest
    pair, go one by one to the half that has fewer pairs so far (dev on a tie)."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def root(x: tuple[str, str]) -> tuple[str, str]:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for p in pairs:
        parent[root((p["candidate"], p["a"]))] = root((p["candidate"], p["b"]))
    components: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        components[root((p["candidate"], p["a"]))].append(i)

    def order(key: tuple[str, str]) -> str:
        smallest = min("|".join(sorted((pairs[i]["a"], pairs[i]["b"]))) for i in components[key])
        return hashlib.sha1(smallest.encode()).hexdigest()

    split = [""] * len(pairs)
    for group in sorted({p["candidate"] for p in pairs}):
        sizes = {"dev": 0, "test": 0}
        for key in sorted((k for k in components if k[0] == group), key=order):
            half = "dev" if sizes["dev"] <= sizes["test"] else "test"
            sizes[half] += len(components[key])
            for i in components[key]:
                split[i] = half
    return split


@dataclass(frozen=True)
class Figures:
    """Linked pairs at one threshold, with counts."""

    same_linked: int  # same_story pairs linked, same language
    same_total: int
    cross_linked: int
    cross_total: int
    topic_linked: int
    topic_total: int
    unrelated_linked: int
    unrelated_total: int
    false_same: int  # different-story pairs linked, same language
    false_cross: int

    @property
    def recall_same(self) -> float:
        return self.same_linked / self.same_total if self.same_total else 0.0

    @property
    def recall_cross(self) -> float:
        return self.cross_linked / self.cross_total if self.cross_total else 0.0

    @property
    def different_linked(self) -> int:
        return self.topic_linked + self.unrelated_linked

    @property
    def different_total(self) -> int:
        return self.topic_total + self.unrelated_total

    @property
    def different_rate(self) -> float:
        return self.different_linked / self.different_total if self.different_total else 0.0


def figures(scored: Sequence[tuple[dict[str, str], float]], threshold: float) -> Figures:
    def count(label: str, same: bool | None = None) -> tuple[int, int]:
        rows = [
            s
            for p, s in scored
            if p["label"] == label and (same is None or (p["lang_a"] == p["lang_b"]) == same)
        ]
        return sum(s >= threshold for s in rows), len(rows)

    false_same = sum(
        s >= threshold and p["label"] != "same_story" and p["lang_a"] == p["lang_b"] for p, s in scored
    )
    false_all = sum(s >= threshold and p["label"] != "same_story" for p, s in scored)
    return Figures(
        *count("same_story", True),
        *count("same_story", False),
        *count("same_topic"),
        *count("unrelated"),
        false_same,
        false_all - false_same,
    )


def story_signatures(
    articles: dict[str, dict[str, str | None]], entities: dict[str, tuple[object, ...]]
) -> dict[str, StorySignature]:
    return {
        i: signature(r.get("title") or "", body(r), r.get("language"), r.get("published"), entities[i])
        for i, r in articles.items()
    }


def rule_scores(pairs: Sequence[dict[str, str]], signatures: dict[str, StorySignature]) -> list[float]:
    """Rule (d) for each pair, rarity counted over the signatures given (in id order)."""
    rarity = Rarity.of(signatures[i] for i in sorted(signatures))
    weighed = {i: weigh(s, rarity) for i, s in signatures.items()}
    return [score(weighed[p["a"]], weighed[p["b"]]) for p in pairs]


def rule_figures(texts: Path = DEFAULT_TEXTS, pairs_file: Path = DEFAULT_PAIRS) -> dict[str, Figures]:
    """Rule (d) at `THRESHOLD` on the dev and test halves and on all pairs."""
    return linking_figures(texts, pairs_file)[0]


def linking_figures(
    texts: Path = DEFAULT_TEXTS, pairs_file: Path = DEFAULT_PAIRS
) -> tuple[dict[str, Figures], dict[str, Figures]]:
    """Per split: the pair rule at `THRESHOLD`, and the stories `assign_stories` makes of
    the pairs' articles taken in publication order (a pair counts as linked when both
    articles end in one story)."""
    pairs = load_pairs(pairs_file)
    articles = read_real_records(texts, {p["a"] for p in pairs} | {p["b"] for p in pairs})
    tagger = Tagger(load_taxonomy())
    tagged = {i: tagger.tag(r.get("title") or "", body(r), r.get("language"))[0] for i, r in articles.items()}
    signatures = story_signatures(articles, tagged)
    scores = rule_scores(pairs, signatures)
    when = {i: str(r.get("published") or "") for i, r in articles.items()}
    new = [NewArticle(i, (when[i], i), signatures[i]) for i in sorted(articles)]
    story, _ = assign_stories(new, [])
    together = [float(story[p["a"]] == story[p["b"]]) for p in pairs]
    split = split_pairs(pairs)

    def per_split(values: list[float], cut: float) -> dict[str, Figures]:
        rows = list(zip(pairs, values, split, strict=True))
        return {name: figures([(p, v) for p, v, h in rows if name in ("all", h)], cut) for name in SPLITS}

    return per_split(scores, THRESHOLD), per_split(together, 1.0)


def format_report(pairs: dict[str, Figures], stories: dict[str, Figures]) -> str:
    """Pair precision and recall, same-language and cross-language, per split: of the pair
    rule, and of the stories built from the pairs' articles."""

    def share(k: int, n: int) -> str:
        return f"{k / n:.3f} ({k}/{n})" if n else "-"

    lines = [
        f"story linking (pipeline/stories/): pairs linked by the rule at {THRESHOLD}, and pairs whose",
        "articles end in one story when assign_stories takes them in publication order",
        "",
        "| split | linked by | P same-language | R same-language | P cross-language | R cross-language "
        "| different-story pairs linked |",
        "|---|---|---|---|---|---|---|",
    ]
    for what, by_split in (("pair rule", pairs), ("one story", stories)):
        for name, f in by_split.items():
            lines.append(
                f"| {name} | {what} | {share(f.same_linked, f.same_linked + f.false_same)} "
                f"| {share(f.same_linked, f.same_total)} "
                f"| {share(f.cross_linked, f.cross_linked + f.false_cross)} "
                f"| {share(f.cross_linked, f.cross_total)} "
                f"| {share(f.different_linked, f.different_total)} |"
            )
    return "\n".join(lines)

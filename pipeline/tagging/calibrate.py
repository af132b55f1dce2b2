"""Fit a bilateral topic's calibration, or the salience gate, on the dev splits and print
it as taxonomy data.

    python -m pipeline.tagging.calibrate [--topic nk-russia] [--texts DIR] [--l2 1.0]
    python -m pipeline.tagging.calibrate --gate [--texts DIR] [--l2 1.0]

The articles: the dev splits of the written set and of the real set (texts from
`--texts`, ../shared/realnews by default). A calibration's examples: every dev
article on which the topic's rule fires without a calibration, its salience
features (pipeline/tagging/salience.py) and whether it carries the topic. A logistic
layer is fitted by Newton's method with an L2 penalty; the threshold is the one that
maximises the topic's F1 over all the dev articles (those the rule misses count
as misses).

The gate is one layer for every topic without a calibration (each has too few
examples of its own): its examples are every (article, topic) where such a topic's
rule fires without a gate, with the gate's features. Its threshold is the one that
maximises the mean of two micro-F1s over those topics, on the written dev split and
on the real dev split: the real press supplies the passing mentions, the written set
keeps the short reports that are about the topic. The test splits are never read.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from pipeline.tagging.evaluate import DEFAULT_REAL_TEXTS, LabelledArticle, load_eval_set, load_real_set
from pipeline.tagging.salience import FEATURES, GATE_FEATURES
from pipeline.tagging.tagger import Tagger, load_taxonomy
from pipeline.tagging.taxonomy import Taxonomy


def without_calibration(taxonomy: Taxonomy, topic: str) -> Taxonomy:
    topics = tuple(dataclasses.replace(t, calibration=None) if t.id == topic else t for t in taxonomy.topics)
    return dataclasses.replace(taxonomy, topics=topics)


def without_gates(taxonomy: Taxonomy) -> Taxonomy:
    topics = tuple(dataclasses.replace(t, gate=None) for t in taxonomy.topics)
    return dataclasses.replace(taxonomy, topics=topics, gate=None)


def examples(
    tagger: Tagger, topic: str, articles: list[LabelledArticle]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Features and labels of the articles the uncalibrated rule fires on, and how many
    articles carry the topic but are not among them."""
    rows, labels, missed = [], [], 0
    for a in articles:
        gold = topic in a.topics
        fired = topic in {t.id for t in tagger.tag(a.title, a.text, a.language)[1]}
        if fired:
            found = tagger.salience(a.title, a.text, topic, a.language)
            rows.append([found[name] for name in FEATURES])
            labels.append(float(gold))
        elif gold:
            missed += 1
    return np.array(rows, dtype=float).reshape(-1, len(FEATURES)), np.array(labels), missed


def fit(x: np.ndarray, y: np.ndarray, l2: float, steps: int = 50) -> tuple[float, np.ndarray]:
    """Bias and weights of an L2-penalised logistic regression (the bias is not penalised)."""
    design = np.hstack([np.ones((len(x), 1)), x])
    theta = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-design @ theta))
        gradient = design.T @ (p - y) + penalty * theta
        hessian = (design.T * (p * (1 - p))) @ design + np.diag(penalty) + 1e-9 * np.eye(len(theta))
        theta -= np.linalg.solve(hessian, gradient)
    return float(theta[0]), theta[1:]


def _f1(kept: np.ndarray, y: np.ndarray, missed: int) -> float:
    tp = float(np.sum(kept & (y == 1)))
    fp = float(np.sum(kept & (y == 0)))
    fn = float(np.sum(~kept & (y == 1))) + missed
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


_GRID = np.round(np.arange(0.05, 0.96, 0.01), 2)


def _middle_of_best(values: list[float]) -> tuple[float, float]:
    """The threshold in the middle of the best run of `_GRID`, and the best value."""
    best = max(values)
    plateau = [t for t, v in zip(_GRID, values, strict=True) if v == best]
    return float(plateau[len(plateau) // 2]), best


def best_threshold(scores: np.ndarray, y: np.ndarray, missed: int) -> tuple[float, float]:
    """The threshold with the best F1 (the middle of the best run of thresholds), and that F1."""
    return _middle_of_best([_f1(scores >= t, y, missed) for t in _GRID])


def best_mean_threshold(
    scores: np.ndarray, y: np.ndarray, sets: np.ndarray, missed: dict[str, int]
) -> tuple[float, float]:
    """The threshold with the best mean over the sets (`sets` names each example's) of their
    micro-F1, `missed[name]` counting the set's misses; the middle of the best run."""
    names = sorted(missed)
    means = [
        sum(_f1(scores[sets == n] >= t, y[sets == n], missed[n]) for n in names) / len(names) for t in _GRID
    ]
    return _middle_of_best(means)


def gate_examples(
    tagger: Tagger, sets: dict[str, list[LabelledArticle]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """The gate's features, labels, set names and topics of every (article, topic) where a
    topic without a calibration fires ungated, and per set how many labels it misses."""
    gated = [t.id for t in tagger.taxonomy.topics if t.calibration is None]
    rows, labels, names, topics = [], [], [], []
    missed = dict.fromkeys(sets, 0)
    for name, articles in sets.items():
        for a in articles:
            found = tagger.gate_salience(a.title, a.text, a.language)
            for topic in gated:
                if topic in found:
                    rows.append([found[topic][f] for f in GATE_FEATURES])
                    labels.append(float(topic in a.topics))
                    names.append(name)
                    topics.append(topic)
                elif topic in a.topics:
                    missed[name] += 1
    x = np.array(rows, dtype=float).reshape(-1, len(GATE_FEATURES))
    return x, np.array(labels), np.array(names), np.array(topics), missed


def fit_gate(texts: Path, l2: float) -> None:
    tagger = Tagger(without_gates(load_taxonomy()))
    sets = {"written": load_eval_set(split="dev"), "real": load_real_set(texts, split="dev")}
    x, y, names, topics, missed = gate_examples(tagger, sets)
    bias, weights = fit(x, y, l2)
    scores = 1.0 / (1.0 + np.exp(-(bias + x @ weights)))
    threshold, _ = best_mean_threshold(scores, y, names, missed)
    kept = scores >= threshold
    print(f"# gate: {len(y)} (article, topic) pairs where a topic without a calibration fires on dev")
    for name in sorted(missed):
        on = names == name
        before = _f1(np.ones(int(on.sum()), dtype=bool), y[on], missed[name])
        after = _f1(kept[on], y[on], missed[name])
        carry = int(y[on].sum())
        print(
            f"#   {name} dev: {int(on.sum())} ({carry} carry the topic), micro-F1 {before:.3f} -> {after:.3f}"
        )
    for topic in sorted(set(topics)):
        changes = []
        for name in sorted(missed):
            on = (names == name) & (topics == topic)
            if on.any() and (kept[on] != 1).any():
                cut, lost = int((~kept[on]).sum()), int((~kept[on] & (y[on] == 1)).sum())
                changes.append(f"{name} cuts {cut} ({lost} carrying it)")
        if changes:
            print(f"#   {topic}: {'; '.join(changes)}")
    pairs = ", ".join(f"{name} = {w:.3f}" for name, w in zip(GATE_FEATURES, weights, strict=True))
    print(f"gate = {{ bias = {bias:.3f}, threshold = {threshold:.2f}, weights = {{ {pairs} }} }}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.tagging.calibrate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--topic", default="nk-russia")
    parser.add_argument("--gate", action="store_true", help="fit the gate of topics without a calibration")
    parser.add_argument("--texts", type=Path, default=DEFAULT_REAL_TEXTS)
    parser.add_argument("--l2", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.gate:
        fit_gate(args.texts, args.l2)
        return
    tagger = Tagger(without_calibration(load_taxonomy(), args.topic))
    articles = load_eval_set(split="dev") + load_real_set(args.texts, split="dev")
    x, y, missed = examples(tagger, args.topic, articles)
    bias, weights = fit(x, y, args.l2)
    scores = 1.0 / (1.0 + np.exp(-(bias + x @ weights)))
    threshold, f1 = best_threshold(scores, y, missed)
    uncalibrated = 2 * y.sum() / (2 * y.sum() + (1 - y).sum() + missed) if y.sum() else 0.0
    print(
        f"# {args.topic}: {len(articles)} dev articles, the rule fires on {len(y)} "
        f"({int(y.sum())} carry the topic), misses {missed}; dev F1 {uncalibrated:.3f} -> {f1:.3f}"
    )
    pairs = ", ".join(f"{name} = {w:.3f}" for name, w in zip(FEATURES, weights, strict=True))
    print(f"calibration = {{ bias = {bias:.3f}, threshold = {threshold:.2f}, weights = {{ {pairs} }} }}")


if __name__ == "__main__":
    main()

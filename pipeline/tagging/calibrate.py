"""Fit a bilateral topic's calibration on the dev splits and print it as taxonomy data.

    python -m pipeline.tagging.calibrate [--topic nk-russia] [--texts DIR] [--l2 1.0]

The articles: the dev splits of the written set and of the real set (texts from
`--texts`, ../shared/realnews by default). The examples: every dev article on
which the topic's rule fires without a calibration, its salience features
(pipeline/tagging/salience.py) and whether it carries the topic. A logistic layer is
fitted by Newton's method with an L2 penalty; the threshold is the one that
maximises the topic's F1 over all the dev articles (those the rule misses count
as misses). The test splits are never read.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from pipeline.tagging.evaluate import DEFAULT_REAL_TEXTS, LabelledArticle, load_eval_set, load_real_set
from pipeline.tagging.salience import FEATURES
from pipeline.tagging.tagger import Tagger, load_taxonomy
from pipeline.tagging.taxonomy import Taxonomy


def without_calibration(taxonomy: Taxonomy, topic: str) -> Taxonomy:
    topics = tuple(dataclasses.replace(t, calibration=None) if t.id == topic else t for t in taxonomy.topics)
    return dataclasses.replace(taxonomy, topics=topics)


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


def best_threshold(scores: np.ndarray, y: np.ndarray, missed: int) -> tuple[float, float]:
    """The threshold with the best F1 (the middle of the best run of thresholds), and that F1."""
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    f1s = []
    for t in grid:
        kept = scores >= t
        tp = float(np.sum(kept & (y == 1)))
        fp = float(np.sum(kept & (y == 0)))
        fn = float(np.sum(~kept & (y == 1))) + missed
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    best = max(f1s)
    plateau = [t for t, f in zip(grid, f1s, strict=True) if f == best]
    return float(plateau[len(plateau) // 2]), best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.tagging.calibrate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--topic", default="nk-russia")
    parser.add_argument("--texts", type=Path, default=DEFAULT_REAL_TEXTS)
    parser.add_argument("--l2", type=float, default=1.0)
    args = parser.parse_args(argv)
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

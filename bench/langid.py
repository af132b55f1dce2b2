"""Language detection on real articles: today's `detect_language` (the title and the first
600 characters of the cleaned body) against the same detection on a shorter prefix, and
both against the whole text.

    python -m bench.langid [--texts DIR] [--chars 450] [--repeat 5] [--sweep 300,400,500]

Reads the real set (`../shared/realnews` beside the project; only figures are printed) and
turns every record into a feed item that carries the article as HTML paragraphs, cleaned by
`clean_or_reject` as a run cleans it. Then it prints:

- detection alone over the cleaned titles and texts, and the whole clean step
  (`clean_or_reject`) with today's detection or the candidate: articles per CPU second,
  median of `--repeat` runs;
- how often each gives the whole text's label, per language, and how many labels of the
  written eval set (`tests/eval/tagging`) the candidate changes;
- with `--sweep`, the agreement and speed of other prefix lengths, and the closest call:
  the smallest gap between the two best log-scores over all articles (a small gap is a
  label that a few more or fewer characters could turn).

Times are CPU seconds of this process. The variants take turns on chunks of 100 articles
(ABBA), so that the load of other work on the machine falls on both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import numpy as np
import py3langid
from py3langid.langid import MODEL_FILE, LanguageIdentifier

import pipeline.steps.clean as clean
from pipeline.steps.parse import clean_or_reject
from pipeline.tagging.evaluate import DEFAULT_REAL_TEXTS
from schemas.records import Article, Entry

EVAL_SET = Path(__file__).resolve().parent.parent / "tests" / "eval" / "tagging"
FETCHED = datetime(2026, 12, 8, tzinfo=timezone.utc)
WHOLE = sys.maxsize  # text[:WHOLE] is the whole text
TODAY = 600  # the prefix detect_language reads (checked below)
CHUNK = 100

Detector = Callable[[str, str, str | None], str | None]
Article2 = tuple[str, str]  # cleaned (title, text)


def prefix_detector(
    chars: int, classify: Callable[[str], tuple[str, float]] = py3langid.classify
) -> Detector:
    """detect_language on the title and the first `chars` characters of the text."""

    def detect(title: str, text: str, hint: str | None) -> str | None:
        sample = f"{title}\n{text[:chars]}".strip()
        if len(sample) >= 20:
            return str(classify(sample)[0])
        return clean.detect_language("", "", hint)

    return detect


def float32_classify() -> Callable[[str], tuple[str, float]]:
    """py3langid's classify with its model table (`nb_ptc`, float16, 28 MB) held as float32
    (57 MB): numpy then multiplies without casting the gathered rows on every call. The
    scores are the same (a float16 widens exactly); this reaches into py3langid's internals."""
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    identifier.nb_ptc = np.asarray(identifier.nb_ptc, dtype=np.float32)
    return identifier.classify


def entry(n: int, title: str, text: str) -> Entry:
    """A feed item carrying the article as HTML paragraphs."""
    html = "".join(f"<p>{escape(p)}</p>" for p in text.split("\n\n"))
    return Entry(
        raw_id=f"raw-{n}", source="realnews", source_kind="feed", origin="bench", fetched_at=FETCHED,
        position=n, title=escape(title), url=f"https://bench.example.org/{n}", html=html,
    )  # fmt: skip


def load(folder: Path) -> tuple[list[str], list[Entry]]:
    languages, entries = [], []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                languages.append(record["language"])
                entries.append(entry(len(entries), record.get("title") or "", record["text"]))
    return languages, entries


def cleaned(entries: list[Entry]) -> list[Article2]:
    articles = [clean_or_reject(e) for e in entries]
    assert all(isinstance(a, Article) for a in articles)
    return [(a.title, a.text) for a in articles if isinstance(a, Article)]


def labels(detect: Detector, articles: list[Article2]) -> list[str | None]:
    return [detect(title, text, None) for title, text in articles]


@contextmanager
def detection(detect: Detector) -> Iterator[None]:
    """clean_entry calling `detect` instead of detect_language."""
    saved = clean.detect_language
    clean.detect_language = detect
    try:
        yield
    finally:
        clean.detect_language = saved


def detecting(detect: Detector) -> Callable[[list[Article2]], object]:
    return lambda chunk: labels(detect, chunk)


def cleaning(detect: Detector) -> Callable[[list[Entry]], object]:
    def work(chunk: list[Entry]) -> None:
        with detection(detect):
            for e in chunk:
                clean_or_reject(e)

    return work


def interleaved(variants: dict[str, Callable[[list], object]], items: list, repeat: int) -> dict[str, float]:
    """Median over `repeat` runs of each variant's CPU seconds over all `items`; the variants
    take turns chunk by chunk, their order reversed on every other chunk."""
    runs: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    for _ in range(repeat):
        total = dict.fromkeys(variants, 0.0)
        for k in range(0, len(items), CHUNK):
            chunk = items[k : k + CHUNK]
            for name, work in order if k // CHUNK % 2 == 0 else order[::-1]:
                started = time.process_time()
                work(chunk)
                total[name] += time.process_time() - started
        for name, seconds in total.items():
            runs[name].append(seconds)
    return {name: statistics.median(times) for name, times in runs.items()}


def closest_call(articles: list[Article2], chars: int) -> float:
    gaps = []
    for title, text in articles:
        (_, first), (_, second), *_ = py3langid.rank(f"{title}\n{text[:chars]}".strip())
        gaps.append(first - second)
    return min(gaps)


def agreement(got: list[str | None], whole: list[str | None], rows: list[int]) -> str:
    same = sum(got[i] == whole[i] for i in rows)
    return f"{same} ({same / len(rows):.2%})"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.langid")
    parser.add_argument("--texts", type=Path, default=DEFAULT_REAL_TEXTS, help="the real set's folder")
    parser.add_argument("--chars", type=int, default=450, help="the candidate's prefix of the body")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sweep", default="", help="other prefix lengths to compare, e.g. 300,400,500")
    args = parser.parse_args()
    today, candidate, whole_text = clean.detect_language, prefix_detector(args.chars), prefix_detector(WHOLE)
    wide = float32_classify()

    languages, entries = load(args.texts)
    articles = cleaned(entries)
    n = len(articles)
    assert labels(today, articles) == labels(prefix_detector(TODAY), articles), "detect_language changed"
    by_language = {lang: [i for i, x in enumerate(languages) if x == lang] for lang in sorted(set(languages))}
    by_language["all"] = list(range(n))
    print(f"{n} real articles ({args.texts}); candidate: title + first {args.chars} characters")
    print(f"CPU seconds, median of {args.repeat} runs, the variants taking turns every {CHUNK} articles\n")

    detectors = {
        f"today (`detect_language`, {TODAY} chars)": today,
        f"candidate ({args.chars} chars)": candidate,
        f"{TODAY} chars, float32 table": prefix_detector(TODAY, wide),
        f"{args.chars} chars, float32 table": prefix_detector(args.chars, wide),
    }
    same = [
        labels(prefix_detector(chars, wide), articles) == labels(prefix_detector(chars), articles)
        for chars in (TODAY, args.chars)
    ]
    det = interleaved({name: detecting(d) for name, d in detectors.items()}, articles, args.repeat)
    whole_s = interleaved({"whole": detecting(whole_text)}, articles, 1)["whole"]
    step = interleaved({name: cleaning(d) for name, d in detectors.items()}, entries, args.repeat)

    base_det, base_step = det[next(iter(det))], step[next(iter(step))]
    print(
        "| variant | detection µs/article | detection articles/s | detection speed-up "
        "| clean_or_reject µs/article | clean_or_reject articles/s | clean step saved |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| whole text (1 run) | {whole_s / n * 1e6:,.0f} | {n / whole_s:,.0f} | | | | |")
    for name in detectors:
        d, c = det[name], step[name]
        print(
            f"| {name} | {d / n * 1e6:,.0f} | {n / d:,.0f} | {base_det / d:.2f}x "
            f"| {c / n * 1e6:,.0f} | {n / c:,.0f} | {1 - c / base_step:.1%} |"
        )
    print(
        f"\nDetection today is {base_det / base_step:.0%} of the clean step. Saved detection time as a share "
        "of today's clean step: "
        + ", ".join(f"{name} {(base_det - det[name]) / base_step:.1%}" for name in list(detectors)[1:])
        + f". The float32 table gives the float16 table's label to every article: {all(same)}."
    )

    whole = labels(whole_text, articles)
    got_today, got_candidate = labels(today, articles), labels(candidate, articles)
    print("\nSame label as the whole text, by language (the real set's `language` field)\n")
    print("| language | articles | today = whole | candidate = whole | candidate = today |")
    print("|---|---:|---:|---:|---:|")
    for lang, rows_of in by_language.items():
        cells = [
            agreement(a, b, rows_of)
            for a, b in ((got_today, whole), (got_candidate, whole), (got_candidate, got_today))
        ]
        print(f"| {'**all**' if lang == 'all' else lang} | {len(rows_of)} | {' | '.join(cells)} |")
    other = Counter((lang, label) for lang, label in zip(languages, whole, strict=True) if lang != label)
    print(f"\nThe whole text's label differs from the collection's `language` for: {dict(other)}")

    written = [
        (record.get("title") or "", record["text"])
        for path in sorted(EVAL_SET.glob("*.jsonl"))
        for record in map(json.loads, filter(str.strip, path.read_text(encoding="utf-8").splitlines()))
    ]
    eval_articles = cleaned([entry(i, title, text) for i, (title, text) in enumerate(written)])
    e_whole, e_today, e_candidate = (labels(d, eval_articles) for d in (whole_text, today, candidate))
    changed = sum(a != b for a, b in zip(e_candidate, e_today, strict=True))
    off = sum(a != b for a, b in zip(e_candidate, e_whole, strict=True))
    print(
        f"\nWritten eval set ({len(eval_articles)} articles): the candidate's label differs from "
        f"today's for {changed}, from the whole text's for {off}"
    )

    if args.sweep:
        print("\n| prefix chars | articles/s | same as whole | lowest language | closest call |")
        print("|---:|---:|---:|---|---:|")
        for chars in sorted({*map(int, args.sweep.split(",")), args.chars, TODAY, WHOLE}):
            detect = prefix_detector(chars)
            seconds = interleaved({"x": detecting(detect)}, articles, args.repeat)["x"]
            got = labels(detect, articles)
            per = {
                lang: sum(got[i] == whole[i] for i in rows_of) / len(rows_of)
                for lang, rows_of in by_language.items()
            }
            low = min((lang for lang in per if lang != "all"), key=lambda lang: per[lang])
            name = "whole" if chars == WHOLE else chars
            print(
                f"| {name} | {n / seconds:,.0f} | {per['all']:.2%} | {low} {per[low]:.2%} | "
                f"{closest_call(articles, chars):.1f} |"
            )


if __name__ == "__main__":
    main()

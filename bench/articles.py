"""Cost of full-article extraction: per page, and the import it needs.

    python -m bench.articles [--pages 200] [--repeat 5]

Pages are generated news pages (navigation, sidebar, five to twenty
paragraphs, footer). `extract_article` (trafilatura, plus htmldate for the
date) is compared with the baseline measured in the same run: the plain HTML
to text conversion the cleaner applies to every feed teaser (selectolax).
Imports are timed in fresh processes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

from connectors.articles import extract_article
from pipeline.steps.clean import html_to_text, normalize_text

WORDS = [
    "delegation",
    "ministry",
    "talks",
    "treaty",
    "shells",
    "border",
    "minister",
    "officials",
    "summit",
    "agency",
    "analysts",
    "statement",
    "reported",
    "visit",
    "sanctions",
    "missile",
    "railway",
    "agreement",
    "capital",
    "envoy",
    "security",
    "council",
]


def make_page(rng: random.Random, n: int) -> bytes:
    paragraphs = "".join(
        "<p>" + " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 70))) + ".</p>"
        for _ in range(rng.randint(5, 20))
    )
    links = "".join(
        f'<li><a href="/s/{i}">{rng.choice(WORDS)} {rng.choice(WORDS)}</a></li>' for i in range(12)
    )
    return (
        f"<!DOCTYPE html><html><head><title>Story {n}</title>"
        f'<meta property="article:published_time" content="2024-06-{1 + n % 28:02d}T08:00:00Z"></head>'
        f"<body><header><nav><ul>{links}</ul></nav></header><aside><ul>{links}</ul></aside>"
        f"<main><article><h1>Story {n}</h1>{paragraphs}</article></main>"
        f"<footer><ul>{links}</ul><p>All rights reserved.</p></footer></body></html>"
    ).encode()


def per_page_ms(pages: list[bytes], fn: object) -> float:
    started = time.perf_counter()
    for page in pages:
        fn(page)  # type: ignore[operator]
    return (time.perf_counter() - started) / len(pages) * 1000


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.articles")
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(7)
    pages = [make_page(rng, n) for n in range(args.pages)]
    kb = statistics.mean(len(p) for p in pages) / 1024
    fetched = datetime(2024, 7, 1, tzinfo=timezone.utc)
    extract_article(pages[0], "https://example.org/0", fetched, 200)  # imports out of the timing

    variants = {
        "baseline: html_to_text (teaser cleaning)": lambda p: normalize_text(html_to_text(p.decode())),
        "extract_article (trafilatura)": lambda p: extract_article(p, "https://example.org/x", fetched, 200),
        "extract_article + date (htmldate)": lambda p: extract_article(
            p, "https://example.org/x", fetched, 200, want_date=True
        ),
    }
    print(f"{args.pages} generated pages of {kb:.0f} KB on average; median of {args.repeat} runs")
    print(f"{'variant':<44} {'ms/page':>8} {'× baseline':>11}")
    baseline = None
    for name, fn in variants.items():
        median = statistics.median(per_page_ms(pages, fn) for _ in range(args.repeat))
        baseline = baseline or median
        print(f"{name:<44} {median:>8.2f} {median / baseline:>11.1f}", flush=True)

    print(f"\n{'import (fresh process)':<44} {'seconds':>8} {'× baseline':>11}")
    imports = {
        "baseline: selectolax.lexbor": "selectolax.lexbor",
        "trafilatura": "trafilatura",
        "htmldate": "htmldate",
    }
    base_import = None
    for name, module in imports.items():
        median = statistics.median(import_seconds(module) for _ in range(args.repeat))
        base_import = base_import or median
        print(f"{name:<44} {median:>8.3f} {median / base_import:>11.1f}", flush=True)


if __name__ == "__main__":
    main()

"""`newsbeam run` over a feed of near-copies of one template against distinct articles.

    python -m bench.templated [--items 8000] [--repeat 3]

Two seed folders of RSS files are generated: `templated`, every item the same market
bulletin with a few figures and names changed (the near duplicates a bucket of
MinHash LSH fills up with), and `distinct`, the bench corpus of distinct articles
(bench/corpus.py). Each run is `newsbeam run` in a fresh process, on a config with no
[[feeds]] (seeds only) and a fresh output dir; the table shows the medians of the
repeats, wall seconds and peak RSS (of the run and its children), and the ratio
templated / distinct.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from bench.corpus import write_corpus

NEWSBEAM = Path(sys.executable).with_name("newsbeam")
_START = datetime(2024, 6, 1, tzinfo=timezone.utc)
_TOTALS = re.compile(r"duplicates dropped (?P<duplicates>\d+), articles written (?P<articles>\d+)")

# One bulletin: the boilerplate a desk reuses, {slots} changed per issue.
TEMPLATE = (
    "Market bulletin for {day}. The benchmark index closed at {index} points on {weekday}, "
    "{move} {change} percent from the previous session, as trading volume reached {volume} "
    "million shares across the main board. Exporters led the session after the currency "
    "traded at {fx} per dollar in late afternoon dealing, while financial stocks were mixed "
    "ahead of the central bank meeting scheduled for next week. Shares of {company} "
    "{verb} {stock} percent after the company reported quarterly results, and {other} "
    "ended the day {move2} {stock2} percent. Foreign investors were net {side} of local "
    "equities for the {streak} consecutive session, according to exchange data compiled "
    "at the close. The yield on the ten year government bond stood at {yield_} percent. "
    "Brent crude futures were quoted at {oil} dollars a barrel and gold traded at {gold} "
    "dollars an ounce in Asian hours. Analysts said the market would watch inflation data "
    "due on Friday, the outlook for interest rates and earnings from large technology "
    "companies for further direction. This bulletin is compiled automatically from exchange "
    "data and wire reports and is published after every trading session. Figures are "
    "provisional and may be revised. Past performance is no guide to future returns, and "
    "nothing in this bulletin is investment advice."
)
COMPANIES = [
    "Hanseong Motors", "Daebok Chemical", "Orient Shipping", "Pacific Steel", "Norda Telecom",
    "Kumsan Electronics", "Baekje Bank", "Taeyang Energy", "Seoul Pharma", "Eastgate Retail",
]  # fmt: skip
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def bulletin(rnd: random.Random, n: int) -> str:
    """Issue `n` of the bulletin: about 210 words (150 distinct), some 30 of them changed."""
    company, other = rnd.sample(COMPANIES, 2)
    return TEMPLATE.format(
        day=(_START + timedelta(days=n)).strftime("%d %B %Y"),
        index=f"{rnd.uniform(2300, 2900):.2f}",
        weekday=rnd.choice(WEEKDAYS),
        move=rnd.choice(["up", "down"]),
        change=f"{rnd.uniform(0, 3):.2f}",
        volume=rnd.randint(300, 900),
        fx=f"{rnd.uniform(1250, 1450):.1f}",
        company=company,
        verb=rnd.choice(["rose", "fell", "jumped", "slipped"]),
        stock=f"{rnd.uniform(0, 9):.1f}",
        other=other,
        move2=rnd.choice(["up", "down"]),
        stock2=f"{rnd.uniform(0, 9):.1f}",
        side=rnd.choice(["buyers", "sellers"]),
        streak=rnd.choice(["second", "third", "fourth", "fifth", "sixth"]),
        yield_=f"{rnd.uniform(2.5, 4.5):.3f}",
        oil=f"{rnd.uniform(60, 95):.2f}",
        gold=f"{rnd.uniform(1900, 2500):.1f}",
    )


def write_templated(folder: Path, items: int, per_feed: int = 100, seed: int = 11) -> None:
    """`items` bulletins as RSS files: distinct URLs and texts, all near copies of one another."""
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(0, items, per_feed):
        out = []
        for n in range(f, min(f + per_feed, items)):
            published = format_datetime(_START + timedelta(minutes=7 * n))
            out.append(
                f"<item><title>Market bulletin no. {n}</title>"
                f"<link>https://markets.example.org/bulletin/{n}</link>"
                f"<guid>bulletin-{n}</guid><pubDate>{published}</pubDate>"
                f"<description><![CDATA[<p>{escape(bulletin(rnd, n))}</p>]]></description></item>"
            )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>Markets desk {f // per_feed}</title>{''.join(out)}</channel></rss>"
        )
        (folder / f"feed-{f // per_feed:05d}.xml").write_text(xml, encoding="utf-8")


def run_once(seeds: Path, out: Path, config: Path) -> dict[str, float]:
    """One `newsbeam run` in a fresh process: wall seconds, peak RSS of it and its children
    (wait4 gives this child's own usage, not that of earlier runs), articles kept/dropped."""
    cmd = [str(NEWSBEAM), "run", "--seeds", str(seeds), "--output", str(out), "--config", str(config)]
    started = time.perf_counter()
    # One pipe, read to its end, then the child reaped by wait4 (not by Popen, which would
    # lose its resource usage).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with proc.stdout:  # type: ignore[union-attr]
        output = proc.stdout.read().decode()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output}")
    totals = _TOTALS.search(output)
    if totals is None:
        raise SystemExit(f"no totals in the report of {' '.join(cmd)}:\n{output}")
    return {
        "seconds": seconds,
        "peak_mib": usage.ru_maxrss / 1024,
        "articles": int(totals["articles"]),
        "duplicates": int(totals["duplicates"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.templated")
    parser.add_argument("--items", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="newsbeam-templated-") as tmp:
        root = Path(tmp)
        config = root / "seeds-only.toml"
        config.write_text('# seeds only: no [[feeds]]\nseeds_dir = "seeds"\noutput_dir = "data"\n')
        sets = {"templated": root / "templated", "distinct": root / "distinct"}
        write_templated(sets["templated"], args.items)
        write_corpus(sets["distinct"], args.items)
        print(f"{args.items} items per set, median of {args.repeat} runs of `newsbeam run`", flush=True)
        medians: dict[str, dict[str, float]] = {}
        for name, seeds in sets.items():
            runs = [run_once(seeds, root / f"out-{name}-{i}", config) for i in range(args.repeat)]
            for r in runs:
                print(
                    f"  {name}: {r['seconds']:.1f}s, {r['peak_mib']:.0f} MiB, "
                    f"{r['articles']:.0f} kept, {r['duplicates']:.0f} dropped",
                    flush=True,
                )
            medians[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}

    print(f"{'set':<12} {'items':>6} {'kept':>6} {'dropped':>8} {'seconds':>8} {'peak MiB':>9}")
    for name, m in medians.items():
        print(
            f"{name:<12} {args.items:>6} {m['articles']:>6.0f} {m['duplicates']:>8.0f} "
            f"{m['seconds']:>8.1f} {m['peak_mib']:>9.0f}"
        )
    t, d = medians["templated"], medians["distinct"]
    print(
        f"{'ratio t/d':<12} {'':>6} {'':>6} {'':>8} "
        f"{t['seconds'] / d['seconds']:>8.2f} {t['peak_mib'] / d['peak_mib']:>9.2f}"
    )


if __name__ == "__main__":
    main()

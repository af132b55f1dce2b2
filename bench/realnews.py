"""`newsbeam run` on real published articles, against the plain script a user would write.

    python -m bench.realnews [--texts DIR] [--repeat 3] [--copies 1]

The articles of the real-news collection (`../shared/realnews` by default; 2,989 articles
in 9 languages) are written as local RSS files in a temporary folder (their texts never
enter the project), `--copies` times each with another link and a marker word, so that
bigger runs are not mere duplicates. Two variants, each run `--repeat` times in a fresh
process over a fresh output folder:

- `script`: what a data engineer would write instead: feedparser, selectolax for the
  HTML, py3langid, a datasketch MinHash LSH for near copies, countries by one regular
  expression over the taxonomy's country names and topics as "both countries anywhere in
  the text", one pyarrow Parquet file;
- `run`: `newsbeam run` (FnApiRunner) with the built-in defaults over the same files.

The table shows medians: wall seconds, CPU seconds of the process and its children,
input articles per CPU second, peak memory, and CPU x script (the run's CPU time over
the script's, measured in the same invocation).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from pipeline.tagging.evaluate import DEFAULT_REAL_TEXTS, read_real_records

PER_FEED = 100
KEYS = ("seconds", "cpu", "peak", "out")


def rss_item(record: dict[str, Any], copy: int) -> str:
    paragraphs = [p for p in record["text"].split("\n\n") if p.strip()]
    if copy:  # another article, not a copy: a marker word in every paragraph
        paragraphs = [f"{p} (r{copy}p{n})" for n, p in enumerate(paragraphs)]
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    link = record.get("url") or f"https://realnews.invalid/{record['id']}"
    published = ""
    if record.get("published"):
        try:
            when = datetime.fromisoformat(str(record["published"]).replace("Z", "+00:00"))
            published = f"<pubDate>{format_datetime(when)}</pubDate>" if when.tzinfo else ""
        except ValueError:
            published = ""
    title = f"<title>{escape(record['title'])}</title>" if record.get("title") else ""
    suffix = f"#copy{copy}" if copy else ""
    return (
        f"<item>{title}<link>{escape(link + suffix)}</link><guid>{escape(record['id'])}{suffix}</guid>"
        f"{published}<description><![CDATA[{body}]]></description></item>"
    )


def write_real_feeds(texts: Path, folder: Path, copies: int = 1) -> int:
    """The collection as RSS files of at most PER_FEED items, one publication per file;
    returns the number of items written."""
    folder.mkdir(parents=True, exist_ok=True)
    by_source: dict[str, list[dict[str, Any]]] = {}
    for _, record in sorted(read_real_records(texts).items()):
        by_source.setdefault(str(record.get("source") or "unknown"), []).append(record)
    items, files = 0, 0
    for source, records in sorted(by_source.items()):
        entries = [rss_item(r, c) for c in range(copies) for r in records]
        for start in range(0, len(entries), PER_FEED):
            chunk = entries[start : start + PER_FEED]
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
                f"<title>{escape(source)}</title>{''.join(chunk)}</channel></rss>"
            )
            (folder / f"feed-{files:05d}.xml").write_text(xml, encoding="utf-8")
            items += len(chunk)
            files += 1
    return items


# --- the plain script ----------------------------------------------------------


def country_tagger() -> tuple[re.Pattern[str], dict[str, str], list[tuple[str, list[set[str]]]]]:
    """One regular expression over every country name of the taxonomy (all languages), the
    country of each name, and each topic's groups as the countries they name: topics by
    "both countries anywhere in the text", as a user would write it."""
    from pipeline.tagging.tagger import load_taxonomy

    taxonomy = load_taxonomy()
    country_of: dict[str, str] = {}
    for entity in taxonomy.entities:
        if entity.type == "country" and entity.country:
            for alias in entity.aliases:
                name = alias.text.rstrip("*").strip()
                if name:
                    country_of.setdefault(name, entity.country)
    names = sorted(country_of, key=len, reverse=True)
    # Names as the taxonomy writes them: case-insensitive matching costs 8x here.
    regex = re.compile("|".join(map(re.escape, names)))
    topics = []
    for topic in taxonomy.topics:
        groups = [
            {s.removeprefix("country:") for s in group if s.startswith("country:")} for group in topic.all_of
        ]
        if all(groups):
            topics.append((topic.id, groups))
    return regex, country_of, topics


def plain_script(feeds: Path, out: Path) -> int:
    """Parse, extract, detect the language, drop near copies, tag, write: no Beam."""
    import feedparser
    import py3langid
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasketch import MinHash, MinHashLSH
    from selectolax.lexbor import LexborHTMLParser

    regex, country_of, topics = country_tagger()
    lsh = MinHashLSH(threshold=0.8, num_perm=64)
    rows: list[dict[str, Any]] = []
    seen = 0
    for path in sorted(feeds.glob("*.xml")):
        for entry in feedparser.parse(path.read_bytes()).entries:
            seen += 1
            html = entry.get("summary", "")
            text = LexborHTMLParser(html).text(separator="\n").strip() if html else ""
            if not text:
                continue
            language = py3langid.classify(text)[0]
            words = text.split()
            minhash = MinHash(num_perm=64)
            minhash.update_batch([" ".join(words[i : i + 5]).encode() for i in range(max(1, len(words) - 4))])
            key = entry.get("id") or entry.get("link") or str(seen)
            if lsh.query(minhash):
                continue
            lsh.insert(key, minhash)
            document = f"{entry.get('title', '')}\n{text}"
            countries = {country_of[m.group(0)] for m in regex.finditer(document)}
            tagged = [t for t, groups in topics if all(countries & g for g in groups)]
            rows.append(
                {
                    "id": key,
                    "title": entry.get("title"),
                    "link": entry.get("link"),
                    "published": entry.get("published"),
                    "language": language,
                    "text": text,
                    "countries": sorted(countries),
                    "topics": tagged,
                }
            )
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out / "articles.parquet")
    return len(rows)


def newsbeam_run(feeds: Path, out: Path) -> int:
    from connectors.fetch import HttpSettings
    from pipeline.config import RunConfig
    from pipeline.run import run_cycle

    config = RunConfig(seeds_dir=feeds, output_dir=out, taxonomy=None, feeds=(), http=HttpSettings())
    report = run_cycle(config, [])
    assert report.manifest is not None
    return int(report.manifest["stats"]["rows"].get("articles", 0))


def one(variant: str, feeds: Path, out: Path) -> dict[str, float]:
    started = time.perf_counter()
    written = plain_script(feeds, out) if variant == "script" else newsbeam_run(feeds, out)
    seconds = time.perf_counter() - started
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    peak = max(u.ru_maxrss for u in usage) / 1024
    return {
        "out": written,
        "seconds": seconds,
        "cpu": sum(u.ru_utime + u.ru_stime for u in usage),
        "peak": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.realnews")
    parser.add_argument("--texts", type=Path, default=DEFAULT_REAL_TEXTS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--one", nargs=3, metavar=("VARIANT", "FEEDS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        variant, feeds, out = args.one
        print(json.dumps(one(variant, Path(feeds), Path(out))))
        return
    with tempfile.TemporaryDirectory(prefix="newsbeam-realnews-") as tmp:
        feeds = Path(tmp) / "feeds"
        items = write_real_feeds(args.texts, feeds, args.copies)
        print(
            f"{items} real articles in {len(list(feeds.iterdir()))} RSS files; median of {args.repeat} runs"
        )
        results: dict[str, list[dict[str, float]]] = {"script": [], "run": []}
        for n in range(args.repeat):
            for variant in results:  # alternating: load changes hit both alike
                cmd = [
                    sys.executable,
                    "-m",
                    "bench.realnews",
                    "--one",
                    variant,
                    str(feeds),
                    f"{tmp}/{variant}-{n}",
                ]
                done = subprocess.run(cmd, check=True, capture_output=True, text=True)
                results[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
    base_cpu = statistics.median(r["cpu"] for r in results["script"])
    print("| variant | seconds | CPU s | articles per CPU s | rows written | peak MiB | CPU x script |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant, label in (("script", "plain script (baseline)"), ("run", "newsbeam run, FnApiRunner")):
        med = {
            k: statistics.median(r[k] for r in results[variant]) for k in ("seconds", "cpu", "peak", "out")
        }
        print(
            f"| {label} | {med['seconds']:.2f} | {med['cpu']:.2f} | {items / med['cpu']:.0f} | "
            f"{med['out']:.0f} | {med['peak']:.0f} | {med['cpu'] / base_cpu:.2f} |"
        )


if __name__ == "__main__":
    main()

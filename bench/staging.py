"""Staging's Arrow conversion: the row-wise conversion it replaced (a dict per record and
per nested value, `records_to_table_by_rows`: the baseline) against `records_to_table`
(column by column), alone and followed by writing the partition's one Parquet file.

    python -m bench.staging [--records 10000] [--repeat 5]

Generates `--records` records for each of three tables: articles as a run writes them
(~2 KB of multilingual text, about a dozen entities, a few topics with their evidence,
countries; some without a url or a publication time), rejects, and dedup index entries
(a 512-byte MinHash signature each, some unsigned). Per table, four variants:

- `rows` (baseline) and `columns`: the conversion alone;
- `rows + write` and `columns + write`: the conversion and `pq.write_table` with the
  project's PARQUET_OPTIONS (zstd) into one file, as `stage_partition` writes it (without
  its fsync and SHA-256, which are the same on both sides).

Both conversions are checked to give the same table before anything is timed. Seconds
are wall seconds, the median of `--repeat` rounds; in each round the variants take turns
table by table, in reversed order every other round, so that other load on the machine
falls on all alike. `x baseline` is a variant's seconds over its baseline's in the same
run (below 1 is faster): `rows` for the conversions, `rows + write` for the writes.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bench.corpus import SENTENCES, paragraph
from pipeline.lake.files import PARQUET_OPTIONS
from schemas.arrow import TABLES, records_to_table, records_to_table_by_rows
from schemas.ids import stable_id
from schemas.records import Article, EntityMention, IndexEntry, Reject, TopicMatch

T0 = datetime(2024, 6, 1, tzinfo=timezone.utc)
RUN_ID = stable_id("bench-staging-run")
PARAGRAPHS = 5  # about 2 KB of text
ENTITY_TYPES = ("person", "place", "org", "event")
TOPICS = ("korea.military", "russia.diplomacy", "markets.asia", "eu.sanctions", "weather.floods")
COUNTRIES = ("KP", "KR", "RU", "CN", "JP", "UA", "FR", "DE")
REJECTS = [  # (stage, reason, error type, retryable)
    ("fetch", "timeout", "Timeout", True),
    ("parse", "bad_xml", "ParseError", False),
    ("clean", "empty_article", "InvalidContent", False),
    ("tag", "off_topic", "OffTopic", False),
]

Convert = Callable[..., pa.Table]
CONVERSIONS: dict[str, Convert] = {"rows": records_to_table_by_rows, "columns": records_to_table}


def article(rnd: random.Random, n: int) -> Article:
    fetched = T0 + timedelta(minutes=7 * n)
    published = None if n % 20 == 0 else fetched - timedelta(minutes=rnd.randrange(600))
    text = "\n\n".join(paragraph(rnd) for _ in range(PARAGRAPHS))
    entities = tuple(
        EntityMention(
            f"Q{rnd.randrange(5000)}",
            rnd.choice(ENTITY_TYPES),
            rnd.randint(1, 6),
            None if rnd.random() < 0.2 else rnd.randrange(len(text)),  # None: in the title only
        )
        for _ in range(rnd.randint(6, 18))
    )
    topics = tuple(
        TopicMatch(topic, round(rnd.random(), 3), tuple(rnd.sample(SENTENCES[0].split(), rnd.randint(0, 3))))
        for topic in rnd.sample(TOPICS, rnd.randint(0, 4))
    )
    url = None if n % 25 == 0 else f"https://bench.example.org/{n}"
    return Article(
        article_id=stable_id("article", str(n)), url=url, canonical_url=url, source=f"feed-{n % 40}",
        source_kind="feed", title=f"Story {n}: {rnd.choice(SENTENCES)[:80]}", text=text, language="en",
        published_at=published, fetched_at=fetched, date_source="published" if published else "fetched",
        content_hash=stable_id("content", str(n), length=64), guid=f"bench-{n}",
        raw_id=stable_id("raw", str(n // 50)), publisher=rnd.choice([None, "Yonhap", "ТАСС", "Le Monde"]),
        entities=entities, topics=topics, countries=tuple(rnd.sample(COUNTRIES, rnd.randint(0, 3))),
        taxonomy_version="2026.12.4", title_source="headline", position=n % 50,
    )  # fmt: skip


def reject(rnd: random.Random, n: int) -> Reject:
    stage, reason, error_type, retryable = rnd.choice(REJECTS)
    return Reject(
        reject_id=stable_id("reject", str(n)), stage=stage, reason=reason, error_type=error_type,
        retryable=retryable, source=f"feed-{n % 40}", origin=f"https://bench.example.org/feed/{n % 40}",
        payload_hash=stable_id("payload", str(n), length=64), fetched_at=T0 + timedelta(minutes=n),
        detail=f"article_id={stable_id('article', str(n))} {rnd.choice(SENTENCES)[:60]}",
    )  # fmt: skip


def index_entry(rnd: random.Random, n: int) -> IndexEntry:
    fetched = T0 + timedelta(minutes=7 * n)
    published = None if n % 20 == 0 else fetched - timedelta(minutes=rnd.randrange(600))
    signed = n % 30 != 0  # an article too short to sign has no signature
    return IndexEntry(
        article_id=stable_id("article", str(n)), content_hash=stable_id("content", str(n), length=64),
        fetched_at=fetched, published_at=published, signature=rnd.randbytes(512) if signed else None,
        signature_scheme="rensa-rminhash-v1:perm=128:seed=42:shingle=3:min_words=40" if signed else "",
        partition_date=f"{published or fetched:%Y-%m-%d}",
    )  # fmt: skip


MAKERS: dict[str, Callable[[random.Random, int], Any]] = {
    "articles": article,
    "rejects": reject,
    "dedup_index": index_entry,
}


def records(table: str, n: int) -> list[Any]:
    rnd = random.Random(f"bench.staging:{table}")
    return [MAKERS[table](rnd, i) for i in range(n)]


def variants(table: str, items: list[Any], out: Path) -> dict[str, Callable[[], object]]:
    """The four timed variants over one table's records (closures, ready to call)."""
    spec = TABLES[table]

    def convert(fn: Convert) -> Callable[[], object]:
        return lambda: fn(items, spec, run_id=RUN_ID)

    def write(fn: Convert) -> Callable[[], object]:
        return lambda: pq.write_table(
            fn(items, spec, run_id=RUN_ID), out / f"{table}.parquet", **PARQUET_OPTIONS
        )

    return {
        **{name: convert(fn) for name, fn in CONVERSIONS.items()},
        **{f"{name} + write": write(fn) for name, fn in CONVERSIONS.items()},
    }


def check_same(table: str, items: list[Any]) -> None:
    rows, columns = (fn(items, TABLES[table], run_id=RUN_ID) for fn in CONVERSIONS.values())
    assert columns.equals(rows, check_metadata=True), f"{table}: the conversions differ"


def timed_rounds(
    work: dict[tuple[str, str], Callable[[], object]], repeat: int
) -> dict[tuple[str, str], float]:
    """Median wall seconds per variant over `repeat` rounds, taking turns (ABBA)."""
    runs: dict[tuple[str, str], list[float]] = {key: [] for key in work}
    order = list(work.items())
    for n in range(repeat):
        for key, fn in order if n % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            fn()
            runs[key].append(time.perf_counter() - started)
        print(f"  ... round {n + 1} of {repeat} done", flush=True)
    return {key: statistics.median(times) for key, times in runs.items()}


def baseline_of(variant: str) -> str:
    return "rows + write" if variant.endswith("+ write") else "rows"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.staging")
    parser.add_argument("--records", type=int, default=10_000, help="records per table")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    data = {table: records(table, args.records) for table in MAKERS}
    for table, items in data.items():
        check_same(table, items)
    texts = [a.text for a in data["articles"]]
    entities = sum(len(a.entities) for a in data["articles"]) / args.records
    topics = sum(len(a.topics) for a in data["articles"]) / args.records
    print(
        f"{args.records:,} records per table; articles: {sum(map(len, texts)) / len(texts):,.0f} characters "
        f"of text, {entities:.1f} entities and {topics:.1f} topics each; Python {platform.python_version()}, "
        f"pyarrow {pa.__version__}; wall seconds, median of {args.repeat} rounds"
    )
    with tempfile.TemporaryDirectory(prefix="newsbeam-bench-staging-") as tmp:
        work = {
            (table, variant): fn
            for table, items in data.items()
            for variant, fn in variants(table, items, Path(tmp)).items()
        }
        seconds = timed_rounds(work, args.repeat)
        sizes = {table: (Path(tmp) / f"{table}.parquet").stat().st_size for table in data}

    print("\n| table | variant | seconds | records/s | x baseline |")
    print("|---|---|---:|---:|---:|")
    for (table, variant), s in seconds.items():
        base = seconds[(table, baseline_of(variant))]
        name = f"{variant} (baseline)" if variant == baseline_of(variant) else variant
        print(f"| {table} | {name} | {s:.3f} | {args.records / s:,.0f} | {s / base:.2f}x |")
    for variant in dict.fromkeys(variant for _, variant in seconds):
        total = sum(seconds[(table, variant)] for table in data)
        base = sum(seconds[(table, baseline_of(variant))] for table in data)
        rate = len(data) * args.records / total
        name = f"{variant} (baseline)" if variant == baseline_of(variant) else variant
        print(f"| **all three** | {name} | {total:.3f} | {rate:,.0f} | {total / base:.2f}x |")
    print("\nParquet file per table: " + ", ".join(f"{t} {size / 1e6:.1f} MB" for t, size in sizes.items()))


if __name__ == "__main__":
    main()

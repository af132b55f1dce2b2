"""Lake benchmark: what the commit protocol costs next to the write, and compaction speed.

    python -m bench.lake [--articles 100000] [--partitions 30] [--files-per-partition 10] [--repeat 3]

- write: the run's articles staged as one Parquet file per date partition (zstd, fsync,
  SHA-256) - the baseline the commit is measured against;
- commit: `Lake.commit` of those files (hard link, rename and directory fsyncs per file,
  then the manifest);
- compact: `compact` of the same rows spread over `--files-per-partition` files per
  partition, as rows/s, against a plain pyarrow read + write of the same files.

Each measurement is the median of `--repeat` runs in fresh directories.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lake.store import PARQUET_OPTIONS, Lake, stage_arrow
from pipeline.ops.maintenance import compact
from schemas.arrow import ARTICLE_SCHEMA
from schemas.ids import stable_id

WORDS = [
    "Kim",
    "Jong",
    "Un",
    "met",
    "Russian",
    "officials",
    "in",
    "Pyongyang",
    "to",
    "discuss",
    "trade",
    "rail",
    "links",
]


def articles(n: int, partitions: int, seed: str) -> dict[str, pa.Table]:
    """`n` distinct article rows spread evenly over `partitions` days, by partition."""
    day0 = datetime(2024, 6, 1, 12, tzinfo=timezone.utc)
    out: dict[str, list[dict[str, object]]] = {}
    for i in range(n):
        day = day0 + timedelta(days=i % partitions)
        body = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(120)) + f" ({seed} {i})"
        row = {
            "article_id": stable_id(seed, str(i)),
            "url": f"https://bench.example/{seed}/{i}",
            "canonical_url": f"https://bench.example/{seed}/{i}",
            "source": f"feed-{i % 7}",
            "source_kind": "feed",
            "title": f"Story {i}",
            "text": body,
            "language": "en",
            "published_at": day,
            "fetched_at": day,
            "date_source": "published",
            "content_hash": stable_id("c", seed, str(i)),
            "raw_id": stable_id("raw", seed, str(i // 50)),
            "topics": [],
            "entities": [],
            "countries": ["KP"],
            "run_id": stable_id("run", seed),
            "schema_version": 1,
        }
        out.setdefault(f"{day:%Y-%m-%d}", []).append(row)
    return {p: pa.Table.from_pylist(rows, schema=ARTICLE_SCHEMA) for p, rows in out.items()}


def commit_once(tables: dict[str, pa.Table], root: Path) -> tuple[float, float]:
    lake = Lake(root)
    run_id = stable_id("bench", str(root))
    started = time.perf_counter()
    staged = [stage_arrow(root, run_id, "articles", p, t) for p, t in sorted(tables.items())]
    written = time.perf_counter()
    with lake.lock():
        lake.commit(run_id, [], staged)
    committed = time.perf_counter()
    return written - started, committed - written


def compact_once(tables: dict[str, pa.Table], files: int, root: Path) -> tuple[float, float, int]:
    lake = Lake(root)
    for f in range(files):
        run_id = stable_id("bench", str(f))
        staged = [
            stage_arrow(root, run_id, "articles", p, t.slice(f * len(t) // files, len(t) // files))
            for p, t in sorted(tables.items())
        ]
        lake.commit(run_id, [], staged)
    sources = [lake.root / rel for rel in sorted(lake.live_files("articles"))]
    started = time.perf_counter()
    plain = root / "plain"
    plain.mkdir()
    for n in range(0, len(sources), files):  # one partition's files at a time
        merged = pa.concat_tables(pq.read_table(p) for p in sources[n : n + files])
        pq.write_table(merged, plain / f"{n}.parquet", **PARQUET_OPTIONS)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    with lake.lock():
        result = compact(lake)
    return baseline, time.perf_counter() - started, result.rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lake")
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=30)
    parser.add_argument("--files-per-partition", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    tables = articles(args.articles, args.partitions, "bench")
    writes, commits, plains, compacts = [], [], [], []
    rows = 0
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-lake-") as tmp:
            write, commit = commit_once(tables, Path(tmp) / "a")
            writes.append(write)
            commits.append(commit)
            plain, compacted, rows = compact_once(tables, args.files_per_partition, Path(tmp) / "b")
            plains.append(plain)
            compacts.append(compacted)
            shutil.rmtree(tmp, ignore_errors=True)
    w, c = statistics.median(writes), statistics.median(commits)
    p, k = statistics.median(plains), statistics.median(compacts)
    print(f"lake: {args.articles:,} articles in {args.partitions} partitions, median of {args.repeat} runs")
    print(f"  {'step':<44} {'seconds':>8} {'rows/s':>10} {'vs baseline':>12}")
    label = "write: stage 1 file per partition (baseline)"
    print(f"  {label:<44} {w:>8.3f} {args.articles / w:>10,.0f} {1:>11.2f}x")
    print(f"  {'commit: link, rename, fsync, manifest':<44} {c:>8.3f} {'':>10} {c / w:>11.3f}x")
    print(f"  {'plain read+write of the files (baseline)':<44} {p:>8.3f} {rows / p:>10,.0f} {1:>11.2f}x")
    label = f"compact {args.files_per_partition} files/partition -> 1"
    print(f"  {label:<44} {k:>8.3f} {rows / k:>10,.0f} {k / p:>11.2f}x")


if __name__ == "__main__":
    main()

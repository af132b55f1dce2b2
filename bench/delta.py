"""Delta Lake benchmark: committing worker-written Parquet with one Delta transaction, against `Lake.commit`.

    python -m bench.delta [--articles 100000] [--partitions 30] [--repeat 3] [--commits 10000]

1. Commit cost of `--articles` articles (the real ARTICLE_SCHEMA, bench/lake.py's rows) in
   `--partitions` date partitions, one file per partition:
   (a) today: `stage_arrow` per partition, then `Lake.commit` (lock, links, renames, fsyncs, manifest);
   (b) Delta: "workers" write the same files straight into the table's partition folders
       (`write_parquet_durable`, stats JSON from the Parquet footer), then one
       `create_write_transaction` with an app transaction per run, the new log entry fsynced;
   (c) reference: `write_deltalake` of the Arrow table (it writes its own files).
   Then a reader, in a fresh process, opens the current version and counts rows
   (DuckDB, polars, pyarrow), against today's snapshot readers.
2. Idempotence: the same run committed again (checked by `transaction_version`) adds nothing.
3. Log growth: `--commits` commits of one tiny file each (checkpoint every 100 commits), and as many
   tiny `Lake.commit`s; at 1,000 / 3,000 / 10,000 commits: open the latest version, list its files
   (with the checkpoints and with the same commit JSONs only), one more commit, checkpoint write.
4. Typed dates: the partition column `published_date` as pyarrow, DuckDB, polars and pandas read it.

Seconds are medians of `--repeat` runs; ratios are against today's commit measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from bench.lake import articles
from connectors.state import fsync_dir
from pipeline.lake.store import Lake, part_name, stage_arrow, write_parquet_durable
from schemas.arrow import ARTICLE_SCHEMA, TABLES
from schemas.ids import stable_id

TABLE = TABLES["articles"]
PARTITION = TABLE.partition_column  # published_date
# The Delta table's schema: the file columns, then the partition column (not stored in the files).
DELTA_SCHEMA = pa.schema([*ARTICLE_SCHEMA, pa.field(PARTITION, pa.date32(), nullable=False)])
# Columns with min/max in each file's stats: short ones a query filters on (not url, title, text).
STATS_MIN_MAX = (
    "article_id",
    "source",
    "source_kind",
    "language",
    "published_at",
    "fetched_at",
    "date_source",
    "run_id",
    "schema_version",
)
CHECKPOINT_INTERVAL = 100
ROOT = Path(__file__).resolve().parents[1]
ABORT = 134  # SIGABRT: "terminate called without an active exception" at interpreter exit


# --- the Delta commit path under test -------------------------------------------------


@dataclass(frozen=True)
class WorkerFile:
    """What a worker hands to the commit step: a written file, relative to the table root."""

    path: str
    partition: str
    size: int
    mtime_ms: int
    stats: str


def _stat_value(value: Any) -> Any:
    if isinstance(value, datetime):  # Delta stats: ISO 8601, UTC; microseconds kept
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def delta_stats(path: Path) -> str:
    """The Delta `stats` JSON of one Parquet file, from its footer: numRecords, nullCount of
    the top-level scalar columns, minValues/maxValues of STATS_MIN_MAX."""
    meta = pq.read_metadata(path)
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            name = column.path_in_schema
            if "." in name:  # a list or struct leaf: no stats at the top level
                continue
            s = column.statistics
            if s is None or not s.has_null_count:
                continue
            nulls[name] = nulls.get(name, 0) + s.null_count
            if name in STATS_MIN_MAX and s.has_min_max:
                lo, hi = _stat_value(s.min), _stat_value(s.max)
                mins[name] = lo if name not in mins else min(mins[name], lo)
                maxs[name] = hi if name not in maxs else max(maxs[name], hi)
    stats = {"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}
    return json.dumps(stats, separators=(",", ":"))


def worker_write(
    table_root: Path, run_id: str, partition: str, arrow: pa.Table, shard: int = 0
) -> WorkerFile:
    """A worker's part: the partition's file, durable, under its final name in the table's folder."""
    rel = f"{PARTITION}={partition}/{part_name(run_id, TABLE.name, partition, shard)}"
    write_parquet_durable(arrow, table_root / rel)
    st = (table_root / rel).stat()
    return WorkerFile(rel, partition, st.st_size, st.st_mtime_ns // 1_000_000, delta_stats(table_root / rel))


def create_delta_table(table_root: Path, configuration: dict[str, str] | None = None) -> None:
    from deltalake import DeltaTable

    DeltaTable.create(str(table_root), DELTA_SCHEMA, partition_by=[PARTITION], configuration=configuration)


def app_id(run_id: str) -> str:
    return f"newsbeam-run-{run_id}"


def delta_commit(
    table_root: Path, run_id: str, files: list[WorkerFile], checkpoints: bool = True
) -> int | None:
    """Commit a run's files with one Delta transaction; the new version, or None when the run
    is already committed. One writer at a time (the lake's lock), as today."""
    from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, Transaction
    from deltalake.transaction import AddAction

    table = DeltaTable(str(table_root))
    if table.transaction_version(app_id(run_id)) is not None:
        return None
    actions = []
    for f in sorted(files, key=lambda f: f.path):
        # delta-rs checks none of this: a missing file, an absolute path or a wrong
        # partition value commits fine and breaks (or silently mislabels) every reader.
        if f.path.startswith("/") or "://" in f.path:
            raise ValueError(f"AddAction paths are relative to the table root: {f.path}")
        if (table_root / f.path).stat().st_size != f.size:
            raise ValueError(f"{f.path}: size differs from the worker's")
        actions.append(AddAction(f.path, f.size, {PARTITION: f.partition}, f.mtime_ms, True, f.stats))
    version = table.version() + 1  # the lock holder is the only writer: no retry moves it
    now_ms = int(time.time() * 1000)
    table.create_write_transaction(
        actions,
        mode="append",
        schema=DELTA_SCHEMA,  # not applied nor checked by an append: schema changes go through `alter`
        partition_by=[PARTITION],
        commit_properties=CommitProperties(
            custom_metadata={"run_id": run_id},
            app_transactions=[Transaction(app_id(run_id), 1, now_ms)],
        ),
        post_commithook_properties=PostCommitHookProperties(create_checkpoint=checkpoints),
    )
    # delta-rs 1.6.0 on a local path fsyncs nothing (temp file, link, no fsync): make the commit durable.
    log = table_root / "_delta_log"
    fd = os.open(log / f"{version:020d}.json", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(log)
    return version


def delta_rows(table_root: Path) -> int:
    """Rows of the current version, read through plain pyarrow over `file_uris()` (the reads
    through deltalake's own pyarrow filesystem can abort the process at exit)."""
    from deltalake import DeltaTable

    return int(pds.dataset(DeltaTable(str(table_root)).file_uris(), format="parquet").count_rows())


# --- readers, each in a fresh process -------------------------------------------------


def _read(kind: str, path: str) -> dict[str, Any]:
    """Open the current version of the table at `path` and count its rows (imports excluded)."""
    import duckdb
    import polars as pl
    from deltalake import DeltaTable

    from pipeline.ops.maintenance import duckdb_source, snapshot_connection, snapshot_dataset

    started = time.perf_counter()
    if kind == "delta-duckdb":
        dataset = DeltaTable(path).to_pyarrow_dataset()
        con = duckdb.connect()
        con.register("articles", dataset)
        rows = con.execute("SELECT count(*) FROM articles").fetchone()[0]
    elif kind == "delta-polars":
        rows = pl.scan_delta(path).select(pl.len()).collect().item()
    elif kind == "delta-pyarrow":
        rows = DeltaTable(path).to_pyarrow_dataset().count_rows()
    elif kind == "today-duckdb":
        rows = (
            duckdb.connect()
            .execute(f"SELECT count(*) FROM {duckdb_source(Lake(path), 'articles')}")
            .fetchone()[0]
        )
    elif kind == "today-sql":
        rows = snapshot_connection(Lake(path)).execute("SELECT count(*) FROM articles").fetchone()[0]
    elif kind == "today-polars":
        files = [str(p) for p in Lake(path).snapshot_files("articles")]
        rows = pl.scan_parquet(files, hive_partitioning=True).select(pl.len()).collect().item()
    elif kind == "today-pyarrow":
        rows = snapshot_dataset(Lake(path), "articles").count_rows()
    elif kind == "dtypes":
        return _dtypes(path)
    else:
        raise SystemExit(f"unknown reader {kind}")
    return {"seconds": time.perf_counter() - started, "rows": int(rows)}


def _dtypes(path: str) -> dict[str, Any]:
    import duckdb
    import polars as pl
    from deltalake import DeltaTable

    table = DeltaTable(path)
    dataset = table.to_pyarrow_dataset()
    con = duckdb.connect()
    con.register("articles", dataset)
    out: dict[str, Any] = {
        "pyarrow": str(dataset.schema.field(PARTITION).type),
        "duckdb": con.execute(f"SELECT typeof({PARTITION}) FROM articles LIMIT 1").fetchone()[0],
        "polars": str(pl.scan_delta(path).collect_schema()[PARTITION]),
        "polars (value)": repr(pl.scan_delta(path).select(pl.col(PARTITION).min()).collect().item()),
    }
    try:
        import pandas as pd

        frame = table.to_pandas(columns=[PARTITION])
        out["pandas to_pandas()"] = f"{frame[PARTITION].dtype} ({type(frame[PARTITION].iloc[0]).__name__})"
        typed = table.to_pyarrow_table(columns=[PARTITION]).to_pandas(types_mapper=pd.ArrowDtype)
        out["pandas types_mapper=ArrowDtype"] = str(typed[PARTITION].dtype)
    except ImportError:
        out["pandas"] = "not installed"
    out["published_at (pyarrow)"] = str(dataset.schema.field("published_at").type)
    out["published_at (polars)"] = str(pl.scan_delta(path).collect_schema()["published_at"])
    return out


def read_in_child(kind: str, path: Path) -> tuple[dict[str, Any], bool]:
    """(the child's result, whether it aborted at exit after printing it)."""
    cmd = [sys.executable, "-m", "bench.delta", "--read", kind, str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines or done.returncode not in (0, ABORT, -6):
        raise RuntimeError(f"{kind} on {path}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return json.loads(lines[-1]), done.returncode != 0


# --- 1. commit cost ---------------------------------------------------------------------


def with_partition(tables: dict[str, pa.Table]) -> pa.Table:
    parts = []
    for p, t in sorted(tables.items()):
        column = pa.array([date.fromisoformat(p)] * t.num_rows, pa.date32())
        parts.append(t.append_column(DELTA_SCHEMA.field(PARTITION), column))
    return pa.concat_tables(parts)


def commit_today(tables: dict[str, pa.Table], root: Path) -> dict[str, float]:
    lake = Lake(root)
    run_id = stable_id("bench-delta", str(root))
    started = time.perf_counter()
    staged = [stage_arrow(root, run_id, "articles", p, t) for p, t in sorted(tables.items())]
    written = time.perf_counter()
    with lake.lock():
        lake.commit(run_id, [], staged)
    done = time.perf_counter()
    manifest = lake.manifest_path(run_id).stat().st_size
    return {"write": written - started, "commit": done - written, "files": len(staged), "record": manifest}


def commit_delta(tables: dict[str, pa.Table], table_root: Path, run_id: str) -> dict[str, Any]:
    create_delta_table(table_root)  # once per table, not per run
    started = time.perf_counter()
    files = [worker_write(table_root, run_id, p, t) for p, t in sorted(tables.items())]
    written = time.perf_counter()
    version = delta_commit(table_root, run_id, files)
    done = time.perf_counter()
    record = (table_root / "_delta_log" / f"{version:020d}.json").stat().st_size
    return {"write": written - started, "commit": done - written, "files": len(files), "record": record}


def write_reference(table: pa.Table, table_root: Path, run_id: str) -> dict[str, Any]:
    from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake

    started = time.perf_counter()
    write_deltalake(
        str(table_root),
        table,
        partition_by=[PARTITION],
        mode="append",
        writer_properties=WriterProperties(compression="ZSTD"),
        commit_properties=CommitProperties(app_transactions=[Transaction(app_id(run_id), 1)]),
    )
    done = time.perf_counter()
    dt = DeltaTable(str(table_root))
    record = (table_root / "_delta_log" / f"{dt.version():020d}.json").stat().st_size
    return {"write": 0.0, "commit": done - started, "files": len(dt.file_uris()), "record": record}


TODAY_READERS = [("DuckDB", "today-duckdb"), ("polars", "today-polars"), ("pyarrow", "today-pyarrow")]
DELTA_READERS = [("DuckDB", "delta-duckdb"), ("polars", "delta-polars"), ("pyarrow", "delta-pyarrow")]


def part_commit(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path]:
    tables = articles(args.articles, args.partitions, "bench")
    whole = with_partition(tables)
    runs: dict[str, list[dict[str, Any]]] = {"a": [], "b": [], "c": []}
    reads: dict[str, list[float]] = {}
    aborts: dict[str, int] = {}
    last: dict[str, Path] = {}
    for n in range(args.repeat):
        rep = tmp / f"commit-{n}"
        run_id = stable_id("bench-delta-run", str(n))
        last = {"a": rep / "a", "b": rep / "b" / TABLE.folder, "c": rep / "c" / TABLE.folder}
        runs["a"].append(commit_today(tables, last["a"]))
        runs["b"].append(commit_delta(tables, last["b"], run_id))
        runs["c"].append(write_reference(whole, last["c"], run_id))
        for variant, readers in (
            ("a", [*TODAY_READERS, ("newsbeam sql", "today-sql")]),
            ("b", DELTA_READERS),
            ("c", DELTA_READERS),
        ):
            for _, kind in readers:
                result, aborted = read_in_child(kind, last[variant])
                if result["rows"] != args.articles:
                    raise RuntimeError(f"{kind} on ({variant}) counted {result['rows']} rows")
                reads.setdefault(f"{variant}:{kind}", []).append(result["seconds"])
                aborts[kind] = aborts.get(kind, 0) + aborted
        if n < args.repeat - 1:
            shutil.rmtree(rep)

    def med(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[variant])

    base_commit, base_total = med("a", "commit"), med("a", "write") + med("a", "commit")
    print(
        f"\n1. Commit of {args.articles:,} articles in {args.partitions} partitions "
        f"(median of {args.repeat}; the Parquet writes are the same zstd + fsync files for (a) and (b))"
    )
    print(
        f"  {'variant':<58} {'commit s':>9} {'x today':>8} {'+writes s':>10} {'x today':>8} "
        f"{'files':>6} {'record KiB':>10}"
    )
    labels = {
        "a": "(a) today: stage_arrow, then Lake.commit",
        "b": "(b) Delta: worker files, create_write_transaction",
        "c": "(c) Delta: write_deltalake of the Arrow table (reference)",
    }
    for v in "abc":
        commit, total = med(v, "commit"), med(v, "write") + med(v, "commit")
        files, record = int(med(v, "files")), med(v, "record") / 1024
        commit_cell = f"{commit:>9.3f} {commit / base_commit:>7.2f}x" if v != "c" else f"{'-':>9} {'-':>8}"
        print(
            f"  {labels[v]:<58} {commit_cell} {total:>10.3f} {total / base_total:>7.2f}x "
            f"{files:>6} {record:>10.1f}"
        )
    print("  (c) writes its own files: its whole time is in '+writes'")
    print("  record: the size of the manifest (a) / of the commit's JSON in _delta_log (b, c)")

    print(
        "\n   Reader in a fresh process: open the current version, count rows "
        f"(seconds, median of {args.repeat}, imports excluded)"
    )
    print(
        f"  {'reader':<14} {'(a) today':>10} {'(b) Delta':>10} {'x today':>8} "
        f"{'(c) Delta':>10} {'x today':>8}"
    )
    for (label, today), (_, delta) in zip(TODAY_READERS, DELTA_READERS, strict=True):
        a = statistics.median(reads[f"a:{today}"])
        b = statistics.median(reads[f"b:{delta}"])
        c = statistics.median(reads[f"c:{delta}"])
        print(f"  {label:<14} {a:>10.3f} {b:>10.3f} {b / a:>7.2f}x {c:>10.3f} {c / a:>7.2f}x")
    sql = statistics.median(reads["a:today-sql"])
    print(f"  {'newsbeam sql':<14} {sql:>10.3f}  (snapshot_connection: every table's view, taxonomy labels)")
    print("  (a) DuckDB, polars, pyarrow over Lake.snapshot_files ('newsbeam sql' builds every view);")
    print("  (b), (c) DuckDB and pyarrow over DeltaTable(...).to_pyarrow_dataset(), polars scan_delta")
    total_aborts = {k: v for k, v in aborts.items() if v}
    if total_aborts:
        listed = ", ".join(
            f"{k} {v}/{args.repeat * (2 if k.startswith('delta') else 1)}" for k, v in total_aborts.items()
        )
        print(f"  reader processes that aborted at exit after answering (SIGABRT): {listed}")
    else:
        print("  no reader process aborted at exit")
    return last["b"], last["c"]


# --- 2. idempotence ---------------------------------------------------------------------


def part_idempotence(tmp: Path) -> None:
    from deltalake import CommitProperties, DeltaTable, Transaction
    from deltalake.exceptions import CommitFailedError
    from deltalake.transaction import AddAction

    tables = articles(3_000, 3, "idem")
    root = tmp / "idem" / TABLE.folder
    create_delta_table(root)
    run_id = stable_id("bench-delta-idem")
    files = [worker_write(root, run_id, p, t) for p, t in sorted(tables.items())]
    first = delta_commit(root, run_id, files)
    rows_first = delta_rows(root)
    again = delta_commit(root, run_id, files)
    table = DeltaTable(str(root))
    outcome = "skipped" if again is None else f"committed again as version {again}"
    print(
        f"\n2. Idempotence: run committed at version {first} ({rows_first:,} rows); the same run again: "
        f"{outcome} (transaction_version={table.transaction_version(app_id(run_id))}); "
        f"table at version {table.version()}, {delta_rows(root):,} rows"
    )
    # Without the check: the same AddActions again, then two writers with the same app id.
    actions = [AddAction(f.path, f.size, {PARTITION: f.partition}, f.mtime_ms, True, f.stats) for f in files]
    table.create_write_transaction(actions, mode="append", schema=DELTA_SCHEMA, partition_by=[PARTITION])
    unchecked = DeltaTable(str(root))
    print(
        f"   unchecked re-commit of the same paths: version {unchecked.version()}, {delta_rows(root):,} rows "
        f"(an add of a live path replaces it: deterministic names are a second guard)"
    )
    one, two = DeltaTable(str(root)), DeltaTable(str(root))
    extra = articles(10, 1, "idem-race")
    race = stable_id("bench-delta-race")
    props = CommitProperties(app_transactions=[Transaction(app_id(race), 1)])
    for n, (writer, (p, t)) in enumerate(zip((one, two), [*extra.items()] * 2, strict=True)):
        f = worker_write(root, race, p, t, shard=n + 1)
        add = AddAction(f.path, f.size, {PARTITION: p}, f.mtime_ms, True, f.stats)
        try:
            writer.create_write_transaction(
                [add], mode="append", schema=DELTA_SCHEMA, partition_by=[PARTITION], commit_properties=props
            )
            outcome = "committed"
        except CommitFailedError as exc:
            outcome = f"rejected ({str(exc).splitlines()[0]})"
        print(f"   concurrent writer {n + 1} with the same app id, same read version: {outcome}")


# --- 3. log growth ------------------------------------------------------------------------


def _timed(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def _tiny(i: int, partitions: int) -> tuple[str, pa.Table]:
    day = datetime(2024, 6, 1, 12, tzinfo=timezone.utc) + timedelta(days=i % partitions)
    row = {
        "article_id": stable_id("tiny", str(i)),
        "url": f"https://bench.example/tiny/{i}",
        "canonical_url": f"https://bench.example/tiny/{i}",
        "source": f"feed-{i % 7}",
        "source_kind": "feed",
        "title": f"Tiny {i}",
        "text": f"Kim Jong Un met Russian officials in Pyongyang ({i})",
        "language": "en",
        "published_at": day,
        "fetched_at": day,
        "date_source": "published",
        "content_hash": stable_id("tiny-c", str(i)),
        "raw_id": stable_id("tiny-raw", str(i)),
        "topics": [],
        "entities": [],
        "countries": ["KP"],
        "run_id": stable_id("tiny-run", str(i)),
        "schema_version": 2,
    }
    return f"{day:%Y-%m-%d}", pa.Table.from_pylist([row], schema=ARTICLE_SCHEMA)


def part_log_growth(args: argparse.Namespace, tmp: Path) -> None:
    marks = sorted({m for m in (1_000, 3_000, 10_000) if m < args.commits} | {args.commits})
    delta_root = tmp / "log" / "delta" / TABLE.folder
    lake_root = tmp / "log" / "lake"
    create_delta_table(delta_root, {"delta.checkpointInterval": str(CHECKPOINT_INTERVAL)})
    lake = Lake(lake_root)
    rows = []
    delta_commits: list[float] = []
    lake_commits: list[float] = []
    done = 0
    started = time.perf_counter()
    for mark in marks:
        while done < mark:
            partition, tiny = _tiny(done, args.partitions)
            run_id = stable_id("tiny-run", str(done))
            t0 = time.perf_counter()
            f = worker_write(delta_root, run_id, partition, tiny)
            delta_commit(delta_root, run_id, [f])
            delta_commits.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            staged = stage_arrow(lake_root, run_id, "articles", partition, tiny)
            if mark - done <= 20:  # a run as it is today: a fresh Lake, the lock (and its recovery)
                fresh = Lake(lake_root)
                with fresh.lock():
                    fresh.commit(run_id, [], [staged])
            else:  # building the history faster: one Lake object, its parsed-manifest cache
                lake.commit(run_id, [], [staged])
            lake_commits.append(time.perf_counter() - t0)
            done += 1
        rows.append(measure_log(args, tmp, delta_root, lake_root, mark, delta_commits, lake_commits))
        print(f"  ... {mark:,} commits measured, {time.perf_counter() - started:.0f} s so far", flush=True)
    print_log_growth(args, rows)


def measure_log(
    args: argparse.Namespace,
    tmp: Path,
    delta_root: Path,
    lake_root: Path,
    mark: int,
    delta_commits: list[float],
    lake_commits: list[float],
) -> dict[str, Any]:
    from deltalake import DeltaTable

    # The same commit JSONs without the checkpoints: what a reader replays with none.
    bare = tmp / "log" / f"bare-{mark}" / TABLE.folder
    (bare / "_delta_log").mkdir(parents=True)
    for name in os.listdir(delta_root / "_delta_log"):
        if name.endswith(".json"):
            os.link(delta_root / "_delta_log" / name, bare / "_delta_log" / name)
    r = {"commits": mark}
    r["open_ck"] = _timed(lambda: DeltaTable(str(delta_root)).version(), args.repeat)
    r["list_ck"] = _timed(lambda: len(DeltaTable(str(delta_root)).file_uris()), args.repeat)
    r["open_bare"] = _timed(lambda: DeltaTable(str(bare)).version(), args.repeat)
    r["list_bare"] = _timed(lambda: len(DeltaTable(str(bare)).file_uris()), args.repeat)
    assert len(DeltaTable(str(bare)).file_uris()) == len(DeltaTable(str(delta_root)).file_uris()) == mark
    r["manifests"] = _timed(lambda: len(Lake(lake_root).manifests()), args.repeat)
    r["snapshot"] = _timed(lambda: len(Lake(lake_root).snapshot_files("articles")), args.repeat)
    assert len(Lake(lake_root).snapshot_files("articles")) == mark
    window = min(20, mark)
    r["commit_ck"] = statistics.median(delta_commits[-window:])
    r["commit_today"] = statistics.median(lake_commits[-window:])
    # One more commit with no checkpoint to start from (on the bare copy), then a checkpoint write.
    partition, tiny = _tiny(10**9 + mark, args.partitions)
    run_id = stable_id("tiny-bare", str(mark))
    t0 = time.perf_counter()
    f = worker_write(bare, run_id, partition, tiny)
    delta_commit(bare, run_id, [f], checkpoints=False)
    r["commit_bare"] = time.perf_counter() - t0
    bare_table = DeltaTable(str(bare))
    t0 = time.perf_counter()
    bare_table.create_checkpoint()
    r["checkpoint"] = time.perf_counter() - t0
    checkpoints = sorted((delta_root / "_delta_log").glob("*.checkpoint.parquet"))
    r["log_mib"] = _du(delta_root / "_delta_log") / 2**20
    r["ckpt_kib"] = checkpoints[-1].stat().st_size / 1024 if checkpoints else 0.0
    r["manifests_mib"] = _du(lake_root / "_manifests") / 2**20
    shutil.rmtree(bare.parent)
    return r


def print_log_growth(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    print(
        f"\n3. Log growth: tiny commits (1 file, 1 row each, {args.partitions} partitions, a txn per run), "
        f"checkpoint every {CHECKPOINT_INTERVAL}; reader side, seconds (median of {args.repeat})"
    )
    print(
        f"  {'commits':>8} {'open ckpt':>10} {'list ckpt':>10} {'open none':>10} {'list none':>10} "
        f"{'manifests()':>12} {'snapshot_files':>15} {'list ckpt x today':>18}"
    )
    for r in rows:
        print(
            f"  {r['commits']:>8,} {r['open_ck']:>10.3f} {r['list_ck']:>10.3f} {r['open_bare']:>10.3f} "
            f"{r['list_bare']:>10.3f} {r['manifests']:>12.3f} {r['snapshot']:>15.3f} "
            f"{r['list_ck'] / r['snapshot']:>17.2f}x"
        )
    print("  open = DeltaTable(path).version(); list = DeltaTable(path).file_uris(); 'none' = the same")
    print(
        "  commit JSONs without checkpoints; manifests() / snapshot_files('articles'): a fresh Lake (today)"
    )
    print(
        "\n   Writer side: one run = its tiny file written + its commit "
        "(Delta: fresh open, transaction_version check, commit, fsync), seconds"
    )
    print(
        f"  {'commits':>8} {'Delta ckpt':>11} {'Delta none':>11} {'today':>8} {'ckpt x today':>13} "
        f"{'checkpoint write':>17} {'ckpt KiB':>9} {'log MiB':>8} {'manifests MiB':>14}"
    )
    for r in rows:
        print(
            f"  {r['commits']:>8,} {r['commit_ck']:>11.3f} {r['commit_bare']:>11.3f} "
            f"{r['commit_today']:>8.3f} {r['commit_ck'] / r['commit_today']:>12.2f}x "
            f"{r['checkpoint']:>17.3f} {r['ckpt_kib']:>9.0f} {r['log_mib']:>8.1f} {r['manifests_mib']:>14.1f}"
        )
    print(
        "  Delta ckpt / today: median of the last 20 commits before the mark (today: fresh Lake + lock each);"
    )
    print("  Delta none: one commit on the checkpoint-less copy; checkpoint write: that copy, all its files")


# --- 4. typed dates ---------------------------------------------------------------------


def part_dtypes(b: Path, c: Path) -> None:
    print(f"\n4. Typed dates: `{PARTITION}` (Delta partition column) as each reader returns it")
    left, _ = read_in_child("dtypes", b)
    right, _ = read_in_child("dtypes", c)
    print(f"  {'reader':<32} {'(b) create_write_transaction':<30} {'(c) write_deltalake':<30}")
    for key in left:
        print(f"  {key:<32} {left[key]:<30} {right.get(key, '-'):<30}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.delta")
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--skip-log", action="store_true", help="leave out part 3 (log growth)")
    parser.add_argument("--read", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        print(json.dumps(_read(*args.read)), flush=True)
        return

    import deltalake

    print(
        f"bench.delta: deltalake {deltalake.__version__}, pyarrow {pa.__version__}, "
        f"{os.cpu_count()} cores, {datetime.now(timezone.utc):%Y-%m-%d}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-delta-") as name:
        tmp = Path(name)
        b, c = part_commit(args, tmp)
        part_idempotence(tmp)
        if not args.skip_log:
            part_log_growth(args, tmp)
        part_dtypes(b, c)


if __name__ == "__main__":
    main()

"""Lake benchmark: today's commit (Delta tables) against the manifest commit it replaced.

    python -m bench.lake [--articles 100000] [--partitions 30] [--repeat 5]
                         [--files-per-partition 10] [--skip-compact] [--commits 0]

Both sides commit the same files: `--articles` rows of the real ARTICLE_SCHEMA in
`--partitions` date partitions, one Parquet file per partition, written by `stage_arrow`
(zstd, fsync, SHA-256) under `_staging/<run>/`, as workers write them.

- baseline, the manifest commit newsbeam used before Delta tables (`bench/legacy_lake.py`,
  frozen from d51834d): per file a hard-linked `_files/` name and a rename into the
  table folder, directory fsyncs, then `_manifests/<run>.json`;
- Delta, today's `Lake.commit` (`pipeline/lake/store.py`): the commit's staged list, the
  renames, one Delta transaction for the table (each file's stats from its footer, the
  log entry fsynced), then the ledger row (`_runs/`, a Delta table too).

1. Commit: `write` (staging the files), `lock` (taking the lock, with its recovery) and
   `commit` timed apart, for a run into a new lake (the Delta side creates its tables
   then) and for a second run into the same lake; then the files the table folder holds
   and the files the log / manifests add elsewhere.
2. Readers of the version just committed (fresh objects each call, in this process):
   listing its files (baseline `snapshot_files`; Delta `DeltaTable(path).file_uris()`, and
   today's `Lake.snapshot_files`), and DuckDB `count(*)` over `read_parquet(<the list>)`.
3. Compaction: today's `compact` (a Delta swap) against a plain pyarrow read + write.
4. With `--commits N`: the log's growth over N tiny commits (1 file, 1 row) on each side,
   measured at 1,000 / 3,000 / 10,000 / N: reader open and list times (with the
   checkpoints Delta writes every 100 commits, and without them), and a commit's time in a
   long-lived process and in a fresh one (as `newsbeam run` commits).

Seconds are medians of `--repeat` runs in fresh directories (readers: of 5 calls each per
run); ratios (`x base`) are against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bench.legacy_lake import LegacyLake
from pipeline.lake.files import PARQUET_OPTIONS, StagedFile, stage_arrow
from pipeline.lake.store import Lake
from pipeline.ops.maintenance import compact
from schemas.arrow import ARTICLE_SCHEMA
from schemas.ids import stable_id

SIDES = ("base", "delta")
LABELS = {"base": "manifest commit (baseline)", "delta": "Delta commit (Lake.commit)"}
TABLE = "articles"  # its folder under the lake root is `articles/` on both sides
READS = 5  # calls per reader per run
FRESH = 5  # log growth: the commits before each mark made as a fresh process makes them
WINDOW = 100  # log growth: the long-lived commits before each mark that are summarised

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


def tiny(i: int, partitions: int) -> tuple[str, pa.Table]:
    """The `i`th tiny run's only article: (its partition, a one-row table)."""
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
        "schema_version": 1,
    }
    return f"{day:%Y-%m-%d}", pa.Table.from_pylist([row], schema=ARTICLE_SCHEMA)


def new_lake(side: str, root: Path) -> LegacyLake | Lake:
    return LegacyLake(root) if side == "base" else Lake(root)


def median_time(fn: Callable[[], Any], calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --- 1. commit ------------------------------------------------------------------------------


def stage(root: Path, run_id: str, tables: dict[str, pa.Table]) -> list[StagedFile]:
    return [stage_arrow(root, run_id, TABLE, p, t) for p, t in sorted(tables.items())]


def commit_run(side: str, root: Path, run_id: str, tables: dict[str, pa.Table]) -> dict[str, float]:
    """A run's files written, then committed under the lock (a fresh lake object, as a run has)."""
    started = time.perf_counter()
    staged = stage(root, run_id, tables)
    written = time.perf_counter()
    lake = new_lake(side, root)
    with lake.lock():
        locked = time.perf_counter()
        lake.commit(run_id, [], staged)
        committed = time.perf_counter()
    return {"write": written - started, "lock": locked - written, "commit": committed - locked}


def inventory(root: Path) -> dict[str, list[int]]:
    """The lake's files by kind: [count, bytes] (a hard-linked second name counts no bytes)."""
    kinds: dict[str, list[int]] = {}
    for folder, _, names in os.walk(root):
        rel_folder = Path(folder).relative_to(root).as_posix()
        for name in names:
            rel = f"{rel_folder}/{name}" if rel_folder != "." else name
            if rel == ".lock":  # both sides' lock file
                continue
            st = (Path(folder) / name).stat()
            if rel.startswith("_staging/"):
                kind = "staging"
            elif rel.startswith(f"{TABLE}/_delta_log/"):
                kind = "table log"
            elif rel.startswith(f"{TABLE}/"):
                kind = "data"
            elif rel.startswith("_files/"):
                kind = "_files links"
            elif rel.startswith("_manifests/"):
                kind = "manifests"
            elif rel.startswith("_runs/"):
                kind = "ledger"
            else:
                kind = "other"
            counts = kinds.setdefault(kind, [0, 0])
            counts[0] += 1
            counts[1] += 0 if kind == "_files links" else st.st_size
    return kinds


def list_base(root: Path) -> list[str]:
    return [str(p) for p in LegacyLake(root).snapshot_files(TABLE)]


def list_delta(root: Path) -> list[str]:
    from deltalake import DeltaTable

    return list(DeltaTable(str(root / TABLE)).file_uris())


def list_today(root: Path) -> list[str]:
    return [str(p) for p in Lake(root).snapshot_files(TABLE)]


def duckdb_count(files: list[str]) -> int:
    import duckdb

    con = duckdb.connect()
    try:
        row = con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0])


# (label, baseline reader, Delta reader): each opens the current version from scratch.
READERS: list[tuple[str, Callable[[Path], Any], Callable[[Path], Any]]] = [
    ("list files: snapshot_files / DeltaTable.file_uris()", list_base, list_delta),
    ("list files: snapshot_files / today's Lake.snapshot_files", list_base, list_today),
    (
        "DuckDB count(*) over read_parquet(list), list included",
        lambda root: duckdb_count(list_base(root)),
        lambda root: duckdb_count(list_delta(root)),
    ),
]


def read_all(root: Path, side: str, expect_files: int, expect_rows: int) -> list[float]:
    """Seconds of each reader on `root`, after checking what each returns."""
    out = []
    for _, base, delta in READERS:
        reader = base if side == "base" else delta
        result = reader(root)  # also a warm-up: imports, first-use costs
        expected = expect_rows if isinstance(result, int) else expect_files
        got = result if isinstance(result, int) else len(result)
        if got != expected:
            raise RuntimeError(f"{side} reader on {root}: {got}, expected {expected}")
        out.append(median_time(lambda r=reader: r(root), READS))
    return out


def part_commit(args: argparse.Namespace, tables: dict[str, pa.Table], tmp: Path) -> None:
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in SIDES}
    seconds: dict[str, list[list[float]]] = {s: [] for s in SIDES}
    files: dict[str, dict[str, list[int]]] = {}
    for side in SIDES:  # a warm-up run on each side, not measured: first-use costs
        warm = {p: t.slice(0, 10) for p, t in tables.items()}
        commit_run(side, tmp / f"warm-up-{side}", stable_id("bench-lake-warm-up"), warm)
        read_all(tmp / f"warm-up-{side}", side, len(warm), sum(t.num_rows for t in warm.values()))
        shutil.rmtree(tmp / f"warm-up-{side}")
    for n in range(args.repeat):
        order = SIDES if n % 2 == 0 else SIDES[::-1]  # neither side always goes first
        for side in order:
            root = tmp / f"commit-{n}-{side}"
            first = commit_run(side, root, stable_id("bench-lake", str(n), "1"), tables)
            files[side] = inventory(root)
            seconds[side].append(read_all(root, side, len(tables), args.articles))
            second = commit_run(side, root, stable_id("bench-lake", str(n), "2"), tables)
            runs[side].append({**first, "lock2": second["lock"], "commit2": second["commit"]})
            shutil.rmtree(root)
        print(f"  ... commit run {n + 1} of {args.repeat} done", flush=True)

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    print(
        f"\n1. Commit of {args.articles:,} articles in {len(tables)} partitions, one file each "
        f"(seconds, median of {args.repeat}; x base: against the baseline in the same run)"
    )
    print(
        f"  {'variant':<28} {'write s':>8} {'commit s':>9} {'x base':>7} {'/ write':>8} "
        f"{'2nd: lock s':>12} {'commit s':>9} {'x base':>7} {'files in articles/':>19} "
        f"{'log/manifest files':>19}"
    )
    for side in SIDES:
        inv = files[side]
        in_table = sum(inv.get(k, [0, 0])[0] for k in ("data", "table log"))
        added = sum(inv.get(k, [0, 0])[0] for k in ("table log", "manifests", "_files links", "ledger"))
        commit, commit2 = med(side, "commit"), med(side, "commit2")
        print(
            f"  {LABELS[side]:<28} {med(side, 'write'):>8.3f} {commit:>9.3f} "
            f"{commit / med('base', 'commit'):>6.2f}x {commit / med(side, 'write'):>7.2f}x "
            f"{med(side, 'lock2'):>12.3f} {commit2:>9.3f} {commit2 / med('base', 'commit2'):>6.2f}x "
            f"{in_table:>19} {added:>19}"
        )
    print(
        "  write: stage_arrow of every file (the same on both sides); commit: the first run's, into a new "
        "lake;\n  / write: that commit / write; 2nd: another run into the same lake: taking the lock (with "
        "its recovery), then its commit"
    )
    print("  files after the first run (a hard-linked second name counts as a file):")
    for side in SIDES:
        parts = ", ".join(
            f"{kind} {count} ({size / 1024:.1f} KiB)" if kind != "_files links" else f"{kind} {count}"
            for kind, (count, size) in sorted(files[side].items())
        )
        print(f"    {LABELS[side]}: {parts}")

    print(
        f"\n2. Readers: open the version just committed ({len(tables)} files), from scratch each call "
        f"(seconds, median of {args.repeat} runs x {READS} calls)"
    )
    print(f"  {'reader (baseline / Delta)':<58} {'baseline':>9} {'Delta':>9} {'x base':>7}")
    for n, (label, _, _) in enumerate(READERS):
        base = statistics.median(r[n] for r in seconds["base"])
        delta = statistics.median(r[n] for r in seconds["delta"])
        print(f"  {label:<58} {base:>9.4f} {delta:>9.4f} {delta / base:>6.2f}x")
    print(
        "  baseline: LegacyLake(root).snapshot_files('articles') (every manifest replayed, the _files/ "
        "names);\n  Delta: DeltaTable(root/articles).file_uris(), or Lake(root).snapshot_files('articles') "
        "(through get_add_actions)"
    )


# --- 3. compaction ----------------------------------------------------------------------------


def compact_once(tables: dict[str, pa.Table], files: int, root: Path) -> tuple[float, float, int]:
    lake = Lake(root)
    for f in range(files):
        run_id = stable_id("bench", str(f))
        staged = [
            stage_arrow(root, run_id, TABLE, p, t.slice(f * len(t) // files, len(t) // files))
            for p, t in sorted(tables.items())
        ]
        lake.commit(run_id, [], staged)
    sources = [lake.root / rel for rel in sorted(lake.live_files(TABLE))]
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


def part_compact(args: argparse.Namespace, tables: dict[str, pa.Table], tmp: Path) -> None:
    plains, compacts = [], []
    rows = 0
    for n in range(args.repeat):
        plain, compacted, rows = compact_once(tables, args.files_per_partition, tmp / f"compact-{n}")
        plains.append(plain)
        compacts.append(compacted)
        shutil.rmtree(tmp / f"compact-{n}")
    p, k = statistics.median(plains), statistics.median(compacts)
    print(f"\n3. Compaction (today's lake), median of {args.repeat}")
    print(f"  {'step':<50} {'seconds':>8} {'rows/s':>10} {'x plain':>8}")
    print(
        f"  {'plain pyarrow read+write of the files (baseline)':<50} {p:>8.3f} {rows / p:>10,.0f} {1:>7.2f}x"
    )
    label = f"compact {args.files_per_partition} files/partition -> 1 (a Delta swap)"
    print(f"  {label:<50} {k:>8.3f} {rows / k:>10,.0f} {k / p:>7.2f}x")


# --- 4. log growth ----------------------------------------------------------------------------


def _size(path: Path) -> tuple[int, int]:
    """(files, bytes) under `path`."""
    files = size = 0
    for folder, _, names in os.walk(path):
        for name in names:
            files += 1
            size += (Path(folder) / name).stat().st_size
    return files, size


def part_log_growth(args: argparse.Namespace, tmp: Path) -> None:
    marks = sorted({m for m in (1_000, 3_000, 10_000) if m < args.commits} | {args.commits})
    roots = {side: tmp / f"log-{side}" for side in SIDES}
    kept = {side: new_lake(side, roots[side]) for side in SIDES}  # a long-lived process's lake
    times: dict[tuple[str, str], list[float]] = {(s, k): [] for s in SIDES for k in ("kept", "fresh")}
    rows = []
    done = 0
    started = time.perf_counter()
    print(f"  ... log growth: {args.commits:,} tiny commits on each side", flush=True)
    for mark in marks:
        while done < mark:
            partition, table = tiny(done, args.partitions)
            run_id = stable_id("tiny-run", str(done))
            fresh = mark - done <= FRESH
            for side in SIDES:
                staged = stage_arrow(roots[side], run_id, TABLE, partition, table)
                t0 = time.perf_counter()
                if fresh:  # as `newsbeam run` commits: a new process, its lake, the lock (recovery)
                    lake = new_lake(side, roots[side])
                    with lake.lock():
                        lake.commit(run_id, [], [staged])
                else:  # as a streaming run commits: one lake object, its caches
                    kept[side].commit(run_id, [], [staged])
                times[(side, "fresh" if fresh else "kept")].append(time.perf_counter() - t0)
            done += 1
            if done % 1000 == 0:
                print(f"  ... {done:,} commits, {time.perf_counter() - started:.0f} s", flush=True)
        rows.append(measure_log(args, tmp, roots, mark, times))
    print_log_growth(args, rows)


def measure_log(
    args: argparse.Namespace,
    tmp: Path,
    roots: dict[str, Path],
    mark: int,
    times: dict[tuple[str, str], list[float]],
) -> dict[str, Any]:
    from deltalake import DeltaTable

    table_root = roots["delta"] / TABLE
    # The same commit JSONs without the checkpoints: what a reader replays when there are none.
    bare = tmp / f"bare-{mark}" / TABLE
    (bare / "_delta_log").mkdir(parents=True)
    for name in os.listdir(table_root / "_delta_log"):
        if name.endswith(".json"):
            os.link(table_root / "_delta_log" / name, bare / "_delta_log" / name)
    r: dict[str, Any] = {"commits": mark}
    r["base_list"] = median_time(lambda: list_base(roots["base"]), args.repeat)
    r["open"] = median_time(lambda: DeltaTable(str(table_root)).version(), args.repeat)
    r["list"] = median_time(lambda: list_delta(roots["delta"]), args.repeat)
    r["today_list"] = median_time(lambda: list_today(roots["delta"]), args.repeat)
    r["list_bare"] = median_time(lambda: len(DeltaTable(str(bare)).file_uris()), args.repeat)
    r["ledger"] = median_time(lambda: len(Lake(roots["delta"]).manifests()), args.repeat)
    r["latest"] = median_time(lambda: Lake(roots["delta"]).latest_versions(), args.repeat)
    counts = {
        len(list_base(roots["base"])),
        len(list_delta(roots["delta"])),
        len(DeltaTable(str(bare)).file_uris()),
    }
    assert counts == {mark}, counts
    for side in SIDES:
        kept = times[(side, "kept")][-WINDOW:]
        r[f"{side}_kept"] = statistics.median(kept)
        r[f"{side}_kept_mean"] = statistics.fmean(kept)
        r[f"{side}_fresh"] = statistics.median(times[(side, "fresh")][-FRESH:])
    checkpoints = sorted((table_root / "_delta_log").glob("*.checkpoint.parquet"))
    r["ckpt_kib"] = checkpoints[-1].stat().st_size / 1024 if checkpoints else 0.0
    r["log_files"], log_bytes = _size(table_root / "_delta_log")
    r["log_mib"] = log_bytes / 2**20
    r["runs_files"], runs_bytes = _size(roots["delta"] / "_runs")
    r["runs_mib"] = runs_bytes / 2**20
    r["manifests_files"], manifest_bytes = _size(roots["base"] / "_manifests")
    r["manifests_mib"] = manifest_bytes / 2**20
    shutil.rmtree(bare.parent)
    print(
        f"  ... at {mark:,} commits: file_uris() {r['list']:.3f} s, base snapshot {r['base_list']:.3f} s; "
        f"commit (long-lived) Delta {r['delta_kept']:.3f} s, base {r['base_kept']:.3f} s",
        flush=True,
    )
    return r


def print_log_growth(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    print(
        f"\n4. Log growth: tiny commits (1 file of 1 row each, {args.partitions} partitions); Delta "
        f"checkpoints every 100 commits.\n   Readers, from scratch each call (seconds, median of "
        f"{args.repeat})"
    )
    print(
        f"  {'commits':>8} {'base snapshot':>14} {'Delta open':>11} {'file_uris()':>12} {'x base':>7} "
        f"{'Lake.snapshot':>14} {'x base':>7} {'file_uris, no ckpt':>19} {'Lake.manifests()':>17} "
        f"{'latest_versions()':>18}"
    )
    for r in rows:
        print(
            f"  {r['commits']:>8,} {r['base_list']:>14.3f} {r['open']:>11.3f} {r['list']:>12.3f} "
            f"{r['list'] / r['base_list']:>6.2f}x {r['today_list']:>14.3f} "
            f"{r['today_list'] / r['base_list']:>6.2f}x {r['list_bare']:>19.3f} {r['ledger']:>17.3f} "
            f"{r['latest']:>18.3f}"
        )
    print(
        "  base snapshot: LegacyLake(root).snapshot_files; Delta open: DeltaTable(path).version(); "
        "file_uris: DeltaTable(path).file_uris();\n  Lake.snapshot: Lake(root).snapshot_files; "
        "no ckpt: the same commit JSONs without checkpoints;\n  Lake.manifests(): the ledger, read by a "
        "new Lake; latest_versions(): Lake(root).latest_versions(), what `newsbeam sql` resolves first"
    )
    print(
        f"\n   Writers: one tiny run's commit (seconds; its file's write not included): long-lived = one "
        f"lake object for every commit\n   (median and mean of the {WINDOW} before the mark), fresh = a new "
        f"lake object and the lock, as `newsbeam run` (median of the last {FRESH})"
    )
    print(
        f"  {'commits':>8} {'base kept':>10} {'Delta kept':>11} {'x base':>7} {'Delta mean':>11} "
        f"{'base fresh':>11} {'Delta fresh':>12} {'x base':>7} {'ckpt KiB':>9} {'log files':>10} "
        f"{'log MiB':>8} {'_runs files':>12} {'_runs MiB':>10} {'_manifests MiB':>15}"
    )
    for r in rows:
        print(
            f"  {r['commits']:>8,} {r['base_kept']:>10.3f} {r['delta_kept']:>11.3f} "
            f"{r['delta_kept'] / r['base_kept']:>6.2f}x {r['delta_kept_mean']:>11.3f} "
            f"{r['base_fresh']:>11.3f} {r['delta_fresh']:>12.3f} {r['delta_fresh'] / r['base_fresh']:>6.2f}x "
            f"{r['ckpt_kib']:>9.0f} {r['log_files']:>10,} {r['log_mib']:>8.1f} {r['runs_files']:>12,} "
            f"{r['runs_mib']:>10.1f} {r['manifests_mib']:>15.1f}"
        )
    print(
        "  Delta mean includes the checkpoint every 100th commit writes; ckpt KiB: the articles table's "
        "last checkpoint;\n  log: articles/_delta_log; _runs: the ledger table (its files and its log)"
    )


# --- the command ------------------------------------------------------------------------------


def parser(prog: str = "python -m bench.lake", commits: int = 0) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--articles", type=int, default=100_000)
    p.add_argument("--partitions", type=int, default=30)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--files-per-partition", type=int, default=10, help="compaction's input")
    p.add_argument("--skip-compact", action="store_true", help="leave out part 3 (compaction)")
    p.add_argument(
        "--commits",
        type=int,
        default=commits,
        help="part 4: log growth over this many tiny commits (0: none)",
    )
    return p


def header(name: str) -> None:
    import deltalake
    import duckdb

    print(
        f"{name}: deltalake {deltalake.__version__}, pyarrow {pa.__version__}, duckdb {duckdb.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, {datetime.now(timezone.utc):%Y-%m-%d}",
        flush=True,
    )


def run(args: argparse.Namespace) -> None:
    """Parts 1 to 4 as the flags ask."""
    tables = articles(args.articles, args.partitions, "bench")
    with tempfile.TemporaryDirectory(prefix="bench-lake-") as name:
        tmp = Path(name)
        part_commit(args, tables, tmp)
        if not args.skip_compact:
            part_compact(args, tables, tmp)
        if args.commits:
            part_log_growth(args, tmp)


def main() -> None:
    args = parser().parse_args()
    header("bench.lake")
    run(args)


if __name__ == "__main__":
    main()

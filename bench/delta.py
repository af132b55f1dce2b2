"""Delta Lake benchmark: bench/lake.py's comparison, then the Delta-only checks of today's lake.

    python -m bench.delta [--articles 100000] [--partitions 30] [--repeat 5] [--commits 10000]
                          [--skip-lake]

1-4. `bench.lake` with the same flags (log growth included: `--commits` defaults to 10,000
     here): today's Delta commit (`Lake.commit`) against the manifest commit it replaced,
     its readers, compaction, and the log's growth with and without checkpoints.
     `--skip-lake` leaves them out.
5. Idempotence of today's commit: the same run committed again (`Lake.commit`, found in
   the ledger), an unchecked re-add of the same files (`create_write_transaction` without
   the application transaction), and two writers with the lake's application id at the
   same read version (what the lock normally prevents).
6. Typed dates: the partition column `published_date` of a table `Lake.commit` wrote, as
   pyarrow, DuckDB, polars and pandas read it (in a child process: readers through
   deltalake's own filesystem can abort at exit).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from bench.lake import articles, header, parser, run, stage
from pipeline.lake.delta import APP_ID
from pipeline.lake.files import stage_arrow
from pipeline.lake.store import Lake
from schemas.arrow import TABLES
from schemas.ids import stable_id

TABLE = TABLES["articles"]
PARTITION = TABLE.partition_column  # published_date
# The Delta table's schema: the file columns, then the partition column (not in the files).
SCHEMA = pa.schema([*TABLE.schema, pa.field(PARTITION, pa.date32(), nullable=False)])
ROOT = Path(__file__).resolve().parents[1]
ABORT = 134  # SIGABRT: "terminate called without an active exception" at interpreter exit


def delta_rows(table_root: Path) -> int:
    """Rows of the current version, through plain pyarrow over `file_uris()`."""
    from deltalake import DeltaTable

    return int(pds.dataset(DeltaTable(str(table_root)).file_uris(), format="parquet").count_rows())


# --- 5. idempotence ------------------------------------------------------------------------


def add_actions(table_root: Path, files: list[Path]) -> list[Any]:
    """Delta `add`s of files already in the table's partition folders (stats: the row count)."""
    from deltalake.transaction import AddAction

    actions = []
    for path in files:
        st = path.stat()
        stats = json.dumps({"numRecords": pq.read_metadata(path).num_rows})
        rel = path.relative_to(table_root).as_posix()
        partition = {PARTITION: path.parent.name.split("=", 1)[1]}
        actions.append(AddAction(rel, st.st_size, partition, st.st_mtime_ns // 1_000_000, True, stats))
    return actions


def part_idempotence(tmp: Path) -> None:
    from deltalake import CommitProperties, DeltaTable, Transaction
    from deltalake.exceptions import CommitFailedError

    root = tmp / "idem"
    table_root = root / TABLE.folder
    tables = articles(3_000, 3, "idem")
    run_id = stable_id("bench-delta-idem")
    lake = Lake(root)
    with lake.lock():
        first = lake.commit(run_id, [], stage(root, run_id, tables))
        version = DeltaTable(str(table_root)).version()
        again = Lake(root).commit(run_id, [], stage(root, run_id, tables))  # a retried bundle
    left = sorted(p.name for p in (root / "_staging").iterdir() if p.name != "commits")
    print(
        f"\n5. Idempotence: run committed as lake commit {first['seq']} (articles version {version}, "
        f"{delta_rows(table_root):,} rows);\n   the same run again, re-staged: "
        f"{'the same record' if again == first else 'a new record'}, articles version "
        f"{DeltaTable(str(table_root)).version()}, {delta_rows(table_root):,} rows; "
        f"staging folders left behind: {len(left)}"
    )
    table = DeltaTable(str(table_root))
    live = [Path(u) for u in table.file_uris()]
    table.create_write_transaction(
        add_actions(table_root, live), mode="append", schema=SCHEMA, partition_by=[PARTITION]
    )
    print(
        f"   unchecked re-add of the same files: version {DeltaTable(str(table_root)).version()}, "
        f"{delta_rows(table_root):,} rows (an add of a live path replaces it)"
    )
    one, two = DeltaTable(str(table_root)), DeltaTable(str(table_root))
    seq = int(one.transaction_version(APP_ID) or 0) + 1
    props = CommitProperties(app_transactions=[Transaction(APP_ID, seq)])
    partition, rows = next(iter(articles(10, 1, "idem-race").items()))
    for n, writer in enumerate((one, two)):
        f = stage_arrow(root, stable_id("bench-delta-race", str(n)), TABLE.name, partition, rows)
        os.replace(root / f.staged_path, root / f.final_path)
        try:
            writer.create_write_transaction(
                add_actions(table_root, [root / f.final_path]),
                mode="append",
                schema=SCHEMA,
                partition_by=[PARTITION],
                commit_properties=props,
            )
            outcome = "committed"
        except CommitFailedError as exc:
            outcome = f"rejected ({str(exc).splitlines()[0]})"
        print(f"   writer {n + 1} with the lake's app id at seq {seq}, same read version: {outcome}")


# --- 6. typed dates ---------------------------------------------------------------------------


def _dtypes(path: str) -> dict[str, Any]:
    import duckdb
    import polars as pl
    from deltalake import DeltaTable

    table = DeltaTable(path)
    dataset = table.to_pyarrow_dataset()
    con = duckdb.connect()
    con.register("articles", dataset)
    typeof = con.execute(f"SELECT typeof({PARTITION}) FROM articles LIMIT 1").fetchone()
    out: dict[str, Any] = {
        "pyarrow (to_pyarrow_dataset)": str(dataset.schema.field(PARTITION).type),
        "DuckDB (over that dataset)": typeof[0] if typeof else "-",
        "polars (scan_delta)": str(pl.scan_delta(path).collect_schema()[PARTITION]),
        "polars (a value)": repr(pl.scan_delta(path).select(pl.col(PARTITION).min()).collect().item()),
    }
    try:
        import pandas as pd

        frame = table.to_pandas(columns=[PARTITION])
        out["pandas to_pandas()"] = f"{frame[PARTITION].dtype} ({type(frame[PARTITION].iloc[0]).__name__})"
        typed = table.to_pyarrow_table(columns=[PARTITION]).to_pandas(types_mapper=pd.ArrowDtype)
        out["pandas, types_mapper=ArrowDtype"] = str(typed[PARTITION].dtype)
    except ImportError:
        out["pandas"] = "not installed"
    out["published_at (pyarrow)"] = str(dataset.schema.field("published_at").type)
    out["published_at (polars)"] = str(pl.scan_delta(path).collect_schema()["published_at"])
    return out


def read_in_child(path: Path) -> tuple[dict[str, Any], bool]:
    """(the child's answer, whether it aborted at exit after printing it)."""
    cmd = [sys.executable, "-m", "bench.delta", "--dtypes", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines or done.returncode not in (0, ABORT, -6):
        raise RuntimeError(f"dtypes of {path}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return json.loads(lines[-1]), done.returncode != 0


def part_dtypes(tmp: Path) -> None:
    root = tmp / "idem"  # written by Lake.commit in part 5
    found, aborted = read_in_child(root / TABLE.folder)
    print(f"\n6. Typed dates: `{PARTITION}` (the Delta partition column) as each reader returns it")
    for key, value in found.items():
        print(f"  {key:<34} {value}")
    print(f"  (the reader process {'aborted' if aborted else 'did not abort'} at exit)")


def main() -> None:
    p = parser("python -m bench.delta", commits=10_000)
    p.add_argument("--skip-lake", action="store_true", help="leave out bench.lake's parts 1-4")
    p.add_argument("--dtypes", metavar="PATH", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.dtypes:
        print(json.dumps(_dtypes(args.dtypes)), flush=True)
        return
    header("bench.delta")
    if not args.skip_lake:
        run(args)
    with tempfile.TemporaryDirectory(prefix="bench-delta-") as name:
        part_idempotence(Path(name))
        part_dtypes(Path(name))


if __name__ == "__main__":
    main()

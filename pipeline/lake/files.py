"""Writing one table file: durable Parquet under a deterministic name, and what the commit
needs to know of it (`StagedFile`).

Workers write every file under `_staging/<token>/` (outside every table folder, so no
reader globbing a table folder ever sees a half-made run); the commit moves them into
their table folders and records them in the table's Delta log.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.state import fsync_dir
from pipeline.lake.storage import Storage
from schemas.arrow import TABLES, Table, records_to_table
from schemas.ids import stable_id

STAGING = "_staging"
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "coerce_timestamps": "us"}
KILL_ENV = "NEWSBEAM_KILL_AT"


def kill_point(kill_at: str | None, name: str) -> None:
    """Crash-test hook: die here, as abruptly as a power cut, when `kill_at` names this point.

    `kill_at` is read once from the environment by the driver and passed down.
    """
    if kill_at == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class StagedFile:
    """One Parquet file written to staging, waiting for the commit."""

    table: str
    partition: str
    staged_path: str  # relative to the output dir
    final_path: str
    rows: int
    sha256: str
    stats: dict[str, Any] = field(default_factory=dict)
    size: int = 0

    def entry(self) -> dict[str, Any]:
        """How a commit's record lists the file."""
        return {
            "table": self.table,
            "partition": self.partition,
            "path": self.final_path,
            "rows": self.rows,
            "sha256": self.sha256,
        }


def new_dirs(path: Path) -> list[Path]:
    """mkdir -p; returns the directories it created, outermost first."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    path.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def make_dirs(path: Path) -> None:
    """mkdir -p, with the parent of every created directory fsynced so the entry survives."""
    for created in new_dirs(path):
        fsync_dir(created.parent)


def write_parquet_durable(table: pa.Table, path: Path, kill_at: str | None = None, **options: Any) -> str:
    """Write, fsync and rename into place; returns the file's SHA-256."""
    make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, **{**PARQUET_OPTIONS, **options})
    kill_point(kill_at, "staging_write")
    digest = hashlib.sha256()
    with open(tmp, "rb+") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return digest.hexdigest()


def file_stats(table: Table, records: list[Any]) -> dict[str, Any]:
    """Counts the run summary needs, computed where the rows are written."""
    # Fetch and read failures are not items, and an `article` reject is an article that kept
    # its teaser: they are counted apart from rejected items.
    items = [r for r in records if getattr(r, "stage", "item") not in ("fetch", "read", "article")]
    stats: dict[str, Any] = {}
    if table.name in ("articles", "rejects", "duplicates"):
        stats["by_source"] = dict(Counter(r.source for r in items))
    if table.name == "articles":
        stats["topics"] = dict(Counter(t.id for r in records for t in r.topics))
    elif table.name in ("rejects", "duplicates"):
        stats["reasons"] = dict(Counter(r.reason for r in records))
    return stats


def part_name(token: str, table_name: str, partition: str, shard: int = 0) -> str:
    """Deterministic file name: the run (or swap) that wrote it, its partition and shard."""
    suffix = f"-{shard:03d}" if shard else ""
    return f"part-{token[:16]}-{stable_id(table_name, partition, length=12)}{suffix}.parquet"


def stage_arrow(
    output_dir: str | Path,
    token: str,
    table_name: str,
    partition: str,
    arrow: pa.Table,
    shard: int = 0,
    stats: dict[str, Any] | None = None,
    kill_at: str | None = None,
) -> StagedFile:
    """Write one partition's rows to `_staging/<token>/` under a deterministic name
    (`output_dir`: a local folder or an object store URI)."""
    table = TABLES[table_name]
    part_dir = f"{table.partition_column}={partition}"
    name = part_name(token, table_name, partition, shard)
    staged = f"{STAGING}/{token}/{table_name}/{part_dir}/{name}"
    storage = Storage(output_dir)
    if storage.remote:
        digest, size = storage.write_parquet(staged, arrow, **PARQUET_OPTIONS)
    else:
        digest = write_parquet_durable(arrow, storage.local(staged), kill_at)
        size = storage.local(staged).stat().st_size
    return StagedFile(
        table=table_name,
        partition=partition,
        staged_path=staged,
        final_path=f"{table.folder}/{part_dir}/{name}",
        rows=arrow.num_rows,
        sha256=digest,
        stats=stats or {},
        size=size,
    )


def stage_partition(
    output_dir: str,
    run_id: str,
    table_name: str,
    partition: str,
    records: list[Any],
    kill_at: str | None = None,
) -> StagedFile:
    """Write one partition's records to staging under a deterministic name."""
    table = TABLES[table_name]
    records = sorted(records, key=lambda r: getattr(r, table.sort_key))
    arrow = records_to_table(records, table, run_id=run_id)
    return stage_arrow(
        output_dir, run_id, table_name, partition, arrow, stats=file_stats(table, records), kill_at=kill_at
    )


def stage_rows(
    output_dir: str | Path, token: str, table: Table, partition: str, rows: pa.Table, max_rows: int
) -> list[StagedFile]:
    """A partition's rows staged as files of at most `max_rows` rows (none when empty)."""
    if rows.num_rows == 0:
        return []
    return [
        stage_arrow(output_dir, token, table.name, partition, rows.slice(start, max_rows), shard=n)
        for n, start in enumerate(range(0, rows.num_rows, max_rows))
    ]


def merge_stats(files: list[StagedFile]) -> dict[str, Any]:
    totals: dict[str, Any] = {"rows": Counter(), "by_source": {}, "topics": Counter(), "reasons": {}}
    for f in files:
        totals["rows"][f.table] += f.rows
        for source, n in f.stats.get("by_source", {}).items():
            totals["by_source"].setdefault(source, Counter())[f.table] += n
        totals["topics"].update(f.stats.get("topics", {}))
        if "reasons" in f.stats:
            totals["reasons"].setdefault(f.table, Counter()).update(f.stats["reasons"])
    return totals


def row_counts(files: list[StagedFile]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for f in files:
        counts[f.table] += f.rows
    return dict(counts)


def staged_to_json(files: list[StagedFile]) -> list[dict[str, Any]]:
    return [asdict(f) for f in files]


def staged_from_json(items: list[dict[str, Any]]) -> list[StagedFile]:
    return [StagedFile(**item) for item in items]


def move_in(storage: Storage, files: list[StagedFile], kill_at: str | None) -> None:
    """Move each staged file into its table folder (locally: renames, each directory
    fsynced once). Files an earlier attempt already moved are skipped."""
    todo = []
    for f in files:
        if f.staged_path and storage.exists(f.staged_path):
            todo.append((f.staged_path, f.final_path))
        elif not storage.exists(f.final_path):
            raise FileNotFoundError(f"staged file vanished before commit: {f.staged_path}")
    if not storage.remote:
        created: list[Path] = []
        for _, dst in todo:
            created += new_dirs(storage.local(dst).parent)
        for parent in sorted({d.parent for d in created}):
            fsync_dir(parent)
    for n, (src, dst) in enumerate(todo):
        if n == 1:
            kill_point(kill_at, "between_moves")
        storage.move(src, dst)
    if not storage.remote:
        for folder in sorted({storage.local(dst).parent for _, dst in todo}):
            fsync_dir(folder)

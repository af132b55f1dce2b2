"""The output lake: raw landing, staged writes, and the run commit.

Layout under the output dir:

    raw/landed_date=YYYY-MM-DD/batch-<id>.parquet   fetched documents, landed before processing
    articles/published_date=YYYY-MM-DD/part-*.parquet
    rejects/fetched_date=YYYY-MM-DD/part-*.parquet
    duplicates/fetched_date=YYYY-MM-DD/part-*.parquet
    _manifests/<run_id>.json                        written last: the run is committed
    _state/                                         feed validators, seed fingerprints
    _staging/                                       work in progress, never read by consumers

Files are written under `_staging/` (same filesystem, outside every dataset
folder, so no reader globbing `articles/**` ever sees a partial file) and
moved in with `os.replace`; the manifest is the last thing written.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.state import fsync_dir, write_json_atomic
from schemas.arrow import TABLES, Table, records_to_table
from schemas.ids import stable_id
from schemas.records import RawFetch

MANIFESTS = "_manifests"
STAGING = "_staging"
STATE = "_state"
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "coerce_timestamps": "us"}


class LakeBusy(RuntimeError):
    """Another run holds the output's lock."""


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


def _write_parquet_atomic(table: pa.Table, path: Path) -> str:
    """Write, fsync and rename into place; returns the file's SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, **PARQUET_OPTIONS)
    with open(tmp, "rb+") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return digest


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


def stage_partition(
    output_dir: str, run_id: str, table_name: str, partition: str, records: list[Any]
) -> StagedFile:
    """Write one partition's records to staging under a deterministic name."""
    table = TABLES[table_name]
    records = sorted(records, key=lambda r: getattr(r, table.sort_key))
    arrow = records_to_table(records, table, run_id=run_id)
    part_dir = f"{table.partition_column}={partition}"
    name = f"part-{run_id[:16]}-{stable_id(table_name, partition, length=12)}.parquet"
    staged = Path(STAGING) / run_id / table_name / part_dir / name
    digest = _write_parquet_atomic(arrow, Path(output_dir) / staged)
    return StagedFile(
        table=table_name,
        partition=partition,
        staged_path=staged.as_posix(),
        final_path=f"{table.folder}/{part_dir}/{name}",
        rows=arrow.num_rows,
        sha256=digest,
        stats=file_stats(table, records),
    )


def _merge_stats(files: list[StagedFile]) -> dict[str, Any]:
    totals: dict[str, Any] = {"rows": Counter(), "by_source": {}, "topics": Counter(), "reasons": {}}
    for f in files:
        totals["rows"][f.table] += f.rows
        for source, n in f.stats.get("by_source", {}).items():
            totals["by_source"].setdefault(source, Counter())[f.table] += n
        totals["topics"].update(f.stats.get("topics", {}))
        if "reasons" in f.stats:
            totals["reasons"].setdefault(f.table, Counter()).update(f.stats["reasons"])
    return totals


class Lake:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # --- locking -----------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time; the OS drops the lock if the holder dies."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise LakeBusy(f"another newsbeam run is writing to {self.root}") from exc
            yield

    # --- raw landing -------------------------------------------------------

    def land_raw(self, records: list[RawFetch], landed_at: datetime) -> str | None:
        """Persist fetched documents before any processing; returns the batch id."""
        if not records:
            return None
        records = sorted(records, key=lambda r: r.raw_id)
        # From content and fetch times only: landing the same fetches again is the same batch.
        batch_id = stable_id("batch", *(f"{r.raw_id}@{r.fetched_at.isoformat()}" for r in records))
        arrow = records_to_table(records, TABLES["raw"], batch_id=batch_id)
        path = self.root / "raw" / f"landed_date={landed_at:%Y-%m-%d}" / f"batch-{batch_id}.parquet"
        tmp_dir = self.root / STAGING / "raw"
        _write_parquet_atomic(arrow, tmp_dir / path.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_dir / path.name, path)
        fsync_dir(path.parent)
        return batch_id

    def raw_batches(self) -> dict[str, Path]:
        return {
            p.stem.removeprefix("batch-"): p
            for p in sorted((self.root / "raw").glob("landed_date=*/batch-*.parquet"))
        }

    def pending_raw_batches(self) -> dict[str, Path]:
        """Landed batches that no committed run has processed yet."""
        done = {b for m in self.manifests() for b in m.get("raw_batches", [])}
        return {b: p for b, p in self.raw_batches().items() if b not in done}

    # --- manifests ---------------------------------------------------------

    def manifest_path(self, run_id: str) -> Path:
        return self.root / MANIFESTS / f"{run_id}.json"

    def manifests(self) -> list[dict[str, Any]]:
        folder = self.root / MANIFESTS
        if not folder.is_dir():
            return []
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]

    def manifests_by_id(self) -> dict[str, dict[str, Any]]:
        return {m["run_id"]: m for m in self.manifests()}

    def committed_files(self, table: str) -> list[Path]:
        """Files of `table` that committed runs list."""
        return [
            self.root / f["path"] for m in self.manifests() for f in m.get("files", []) if f["table"] == table
        ]

    def state_path(self, name: str) -> Path:
        return self.root / STATE / name

    # --- commit ------------------------------------------------------------

    def commit(self, run_id: str, raw_batches: list[str], staged: list[StagedFile]) -> dict[str, Any]:
        """Move staged files in, then write the manifest. Safe to call again after a crash."""
        manifest_path = self.manifest_path(run_id)
        if manifest_path.exists():
            return dict(json.loads(manifest_path.read_text(encoding="utf-8")))
        staged = sorted(staged, key=lambda f: f.final_path)
        for f in staged:
            src, dst = self.root / f.staged_path, self.root / f.final_path
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.exists():
                os.replace(src, dst)
                fsync_dir(dst.parent)
            elif not dst.exists():
                raise FileNotFoundError(f"staged file vanished before commit: {src}")
        self._remove_stale_parts(run_id, {f.final_path for f in staged})
        manifest = {
            "run_id": run_id,
            "raw_batches": sorted(raw_batches),
            "files": [
                {
                    "table": f.table,
                    "partition": f.partition,
                    "path": f.final_path,
                    "rows": f.rows,
                    "sha256": f.sha256,
                }
                for f in staged
            ],  # fmt: skip
            "stats": _merge_stats(staged),
        }
        write_json_atomic(manifest_path, manifest)
        shutil.rmtree(self.root / STAGING / run_id, ignore_errors=True)
        return manifest

    def _remove_stale_parts(self, run_id: str, keep: set[str]) -> None:
        """Files of an earlier, uncommitted attempt of this run must not stay visible."""
        prefix = f"part-{run_id[:16]}-"
        for table in TABLES.values():
            for path in (self.root / table.folder).glob(f"*/{prefix}*.parquet"):
                if path.relative_to(self.root).as_posix() not in keep:
                    path.unlink()

"""The output lake: raw landing, staged writes, the run commit and partition swaps.

Layout under the output dir:

    raw/landed_date=YYYY-MM-DD/batch-<id>.parquet   fetched documents, landed before processing
    articles/published_date=YYYY-MM-DD/part-*.parquet
    rejects/fetched_date=YYYY-MM-DD/part-*.parquet
    duplicates/fetched_date=YYYY-MM-DD/part-*.parquet
    _index/dedup/published_date=YYYY-MM-DD/part-*.parquet
    _manifests/<run_id>.json, _manifests/<kind>-<op_id>.json   written last: the commit point
    _files/<table folder>/<partition>/part-*.parquet  a second name (hard link) of every committed
                                                    file, kept after a swap until `vacuum`
    _state/                                         feed validators, seed fingerprints
    _staging/                                       work in progress, never read by consumers

The commit protocol (one writer at a time, under `.lock`):

1. Every file is written under `_staging/` (same filesystem, outside every
   dataset folder) with a deterministic name, fsynced, and checksummed.
2. Each file gets its `_files/` name (a hard link) and is then renamed into its
   dataset folder; directories are fsynced.
3. The manifest (files, row counts, checksums, files removed) is written last,
   atomically: the commit point. Manifests carry a sequence number; the
   committed state is the replay of every manifest in that order.
4. For a swap, the dataset names of the files it replaces are unlinked after
   the manifest; their `_files/` names stay until `vacuum`, so a reader of an
   older snapshot keeps working.

Taking the lock first recovers: any file inside a dataset folder that the
manifests do not list as live (moved in by a commit that died before its
manifest, or replaced by a swap that died before unlinking it) is removed.
What readers see:

- The snapshot view (`Lake.snapshot_files`, `newsbeam sql`) reads the `_files/`
  names of the live files: exactly one committed state, at every instant,
  even during a swap, and even after a crash.
- A plain `read_parquet('articles/**/*.parquet')` never sees a partial file or
  a staged file. Between a commit's first rename and its manifest it may see
  part of that commit; after a crash in that window it sees those files until
  the next writer takes the lock; during a swap it may for a moment see both
  the old and the new files of a partition.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
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
FILES = "_files"
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "coerce_timestamps": "us"}
# Tables whose files are listed by manifests (raw batches are tracked by id instead).
COMMITTED_TABLES = ("articles", "rejects", "duplicates", "dedup_index")

KILL_ENV = "NEWSBEAM_KILL_AT"


def kill_point(kill_at: str | None, name: str) -> None:
    """Crash-test hook: die here, as abruptly as a power cut, when `kill_at` names this point.

    `kill_at` is read once from the environment by the driver and passed down.
    """
    if kill_at == name:
        os.kill(os.getpid(), signal.SIGKILL)


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

    def entry(self) -> dict[str, Any]:
        """How a manifest lists the file."""
        return {
            "table": self.table,
            "partition": self.partition,
            "path": self.final_path,
            "rows": self.rows,
            "sha256": self.sha256,
        }


def _mkdirs(path: Path) -> list[Path]:
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
    for created in _mkdirs(path):
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
    """Write one partition's rows to `_staging/<token>/` under a deterministic name."""
    table = TABLES[table_name]
    part_dir = f"{table.partition_column}={partition}"
    name = part_name(token, table_name, partition, shard)
    staged = Path(STAGING) / token / table_name / part_dir / name
    digest = write_parquet_durable(arrow, Path(output_dir) / staged, kill_at)
    return StagedFile(
        table=table_name,
        partition=partition,
        staged_path=staged.as_posix(),
        final_path=f"{table.folder}/{part_dir}/{name}",
        rows=arrow.num_rows,
        sha256=digest,
        stats=stats or {},
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


def _row_counts(files: list[StagedFile]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for f in files:
        counts[f.table] += f.rows
    return dict(counts)


def staged_to_json(files: list[StagedFile]) -> list[dict[str, Any]]:
    return [asdict(f) for f in files]


def staged_from_json(items: list[dict[str, Any]]) -> list[StagedFile]:
    return [StagedFile(**item) for item in items]


class Lake:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._manifest_cache: dict[str, tuple[int, dict[str, Any]]] = {}

    # --- locking -----------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time; the OS drops the lock if the holder dies (even by SIGKILL).

        Whoever takes the lock first removes what a dead writer left inside the datasets.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise LakeBusy(f"another newsbeam run is writing to {self.root}") from exc
            self.recover()
            yield

    def recover(self) -> list[str]:
        """Make the dataset folders hold exactly the live files; returns what was removed.

        Call only with the lock held.
        """
        live = self.live_files()
        removed = []
        for name in COMMITTED_TABLES:
            for path in sorted((self.root / TABLES[name].folder).glob("*/*")):
                rel = path.relative_to(self.root).as_posix()
                if path.is_file() and rel not in live:
                    path.unlink()
                    removed.append(rel)
        for folder in {(self.root / rel).parent for rel in removed}:
            fsync_dir(folder)
        for rel in live:  # lakes written before `_files/` existed get their second names
            second = self.root / FILES / rel
            if not second.exists() and (self.root / rel).exists():
                make_dirs(second.parent)
                os.link(self.root / rel, second)
        return removed

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
        write_parquet_durable(arrow, tmp_dir / path.name)
        make_dirs(path.parent)
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
        """Every manifest, in commit order (manifests from before sequence numbers first)."""
        folder = self.root / MANIFESTS
        if not folder.is_dir():
            return []
        found = []
        for path in folder.glob("*.json"):
            mtime = path.stat().st_mtime_ns
            cached = self._manifest_cache.get(path.name)
            if cached is None or cached[0] != mtime:  # manifests never change once written; parse once
                cached = (mtime, json.loads(path.read_text(encoding="utf-8")))
                self._manifest_cache[path.name] = cached
            m = cached[1]
            found.append(((m.get("seq", 0), mtime, path.name), m))
        return [m for _, m in sorted(found, key=lambda item: item[0])]

    def manifests_by_id(self) -> dict[str, dict[str, Any]]:
        return {m["run_id"]: m for m in self.manifests() if "run_id" in m}

    def _next_seq(self) -> int:
        return max((m.get("seq", 0) for m in self.manifests()), default=0) + 1

    def live_files(self, table: str | None = None) -> dict[str, dict[str, Any]]:
        """The committed state: path -> manifest entry, every manifest applied in order."""
        live: dict[str, dict[str, Any]] = {}
        for m in self.manifests():
            for f in m.get("removed", []):
                live.pop(f["path"], None)
            for f in m.get("files", []):
                live[f["path"]] = f
        if table is not None:
            live = {p: f for p, f in live.items() if f["table"] == table}
        return live

    def committed_files(self, table: str) -> list[Path]:
        """Dataset paths of the live files of `table` (for the writer, which holds the lock)."""
        return [self.root / p for p in sorted(self.live_files(table))]

    def snapshot_files(self, table: str) -> list[Path]:
        """Paths of one committed state of `table` that stay readable while writers swap files."""
        files = []
        for rel in sorted(self.live_files(table)):
            second = self.root / FILES / rel
            files.append(second if second.exists() else self.root / rel)
        return files

    def state_path(self, name: str) -> Path:
        return self.root / STATE / name

    # --- commit ------------------------------------------------------------

    def _move_in(self, files: list[StagedFile], kill_at: str | None) -> None:
        """Give each staged file its `_files/` name, then rename it into its dataset folder.

        Each directory is fsynced once, after all its entries changed.
        """
        todo = []
        for f in files:
            src, dst = self.root / f.staged_path, self.root / f.final_path
            if src.exists():
                todo.append((src, dst, self.root / FILES / f.final_path))
            elif not dst.exists():
                raise FileNotFoundError(f"staged file vanished before commit: {src}")
            # else: moved by an earlier call of the same commit
        created: list[Path] = []
        for _, dst, second in todo:
            created += _mkdirs(dst.parent) + _mkdirs(second.parent)
        for parent in sorted({d.parent for d in created}):
            fsync_dir(parent)
        for src, _, second in todo:
            link_tmp = second.with_name(f".{second.name}.link")
            link_tmp.unlink(missing_ok=True)
            os.link(src, link_tmp)
            os.replace(link_tmp, second)
        for folder in sorted({second.parent for _, _, second in todo}):
            fsync_dir(folder)
        for n, (src, dst, _) in enumerate(todo):
            if n == 1:
                kill_point(kill_at, "between_moves")
            os.replace(src, dst)
        for folder in sorted({dst.parent for _, dst, _ in todo}):
            fsync_dir(folder)

    def commit(
        self,
        run_id: str,
        raw_batches: list[str],
        staged: list[StagedFile],
        info: Mapping[str, Any] | None = None,
        kill_at: str | None = None,
    ) -> dict[str, Any]:
        """Move a run's staged files in, then write its manifest. Idempotent by run id:
        called again (a retried bundle, a rerun after a crash) it neither duplicates nor drops."""
        manifest_path = self.manifest_path(run_id)
        if manifest_path.exists():
            shutil.rmtree(self.root / STAGING / run_id, ignore_errors=True)
            return dict(json.loads(manifest_path.read_text(encoding="utf-8")))
        staged = sorted(staged, key=lambda f: f.final_path)
        kill_point(kill_at, "before_moves")
        self._move_in(staged, kill_at)
        self._remove_stale_parts(run_id, {f.final_path for f in staged})
        kill_point(kill_at, "before_manifest")
        manifest = {
            "kind": "run",
            "run_id": run_id,
            "seq": self._next_seq(),
            "raw_batches": sorted(raw_batches),
            "files": [f.entry() for f in staged],
            "removed": [],
            "stats": _merge_stats(staged),
            **(info or {}),
        }
        write_json_atomic(manifest_path, manifest)
        kill_point(kill_at, "after_manifest")
        shutil.rmtree(self.root / STAGING / run_id, ignore_errors=True)
        return manifest

    def _remove_stale_parts(self, run_id: str, keep: set[str]) -> None:
        """Files of an earlier, uncommitted attempt of this run must not stay visible."""
        prefix = f"part-{run_id[:16]}-"
        for name in COMMITTED_TABLES:
            for path in (self.root / TABLES[name].folder).glob(f"*/{prefix}*.parquet"):
                if path.relative_to(self.root).as_posix() not in keep:
                    path.unlink()

    def replace_partitions(
        self,
        kind: str,
        replacements: Mapping[tuple[str, str], list[StagedFile]],
        info: Mapping[str, Any] | None = None,
        kill_at: str | None = None,
    ) -> dict[str, Any] | None:
        """Atomically swap whole partitions: the contract compaction, replay and re-tagging use.

        `replacements` maps (table, partition) to the staged files that become that
        partition's entire content (an empty list empties it). Every file the
        partition holds now is removed; the caller stages complete content,
        including any rows it means to keep. The swap commits with one manifest
        (`kind`, files added, files removed, seq, `info`), written after the new
        files are in place; the replaced files' dataset names are unlinked after
        it, their `_files/` names stay for readers of older snapshots until
        `vacuum`. The operation's id derives from what it removes and adds, so
        calling it again with the same arguments is a no-op returning the same
        manifest. Returns None when nothing would change. Call with the lock held.
        """
        live = self.live_files()
        removed: list[dict[str, Any]] = []
        added: list[StagedFile] = []
        for (table, partition), files in sorted(replacements.items()):
            for f in files:
                if (f.table, f.partition) != (table, partition):
                    raise ValueError(f"{f.staged_path} is not in {table} partition {partition}")
            removed += [e for e in live.values() if (e["table"], e["partition"]) == (table, partition)]
            added += files
        removed.sort(key=lambda e: e["path"])
        added.sort(key=lambda f: f.final_path)
        if added and [(e["path"], e["sha256"]) for e in removed] == [(f.final_path, f.sha256) for f in added]:
            # Already applied (a retry after a lost acknowledgement): the partitions hold exactly these.
            paths = {f.final_path for f in added}
            return next(m for m in reversed(self.manifests()) if paths <= {f["path"] for f in m["files"]})
        overlap = {e["path"] for e in removed} & {f.final_path for f in added}
        if overlap:
            raise ValueError(f"a swap cannot add a file it removes: {sorted(overlap)[0]}")
        if not removed and not added:
            return None
        op_id = stable_id(kind, *(e["path"] for e in removed), *(f.sha256 for f in added))
        path = self.root / MANIFESTS / f"{kind}-{op_id}.json"
        if path.exists():
            return dict(json.loads(path.read_text(encoding="utf-8")))
        kill_point(kill_at, "before_moves")
        self._move_in(added, kill_at)
        kill_point(kill_at, "before_manifest")
        manifest = {
            "kind": kind,
            "op_id": op_id,
            "seq": self._next_seq(),
            "files": [f.entry() for f in added],
            "removed": removed,
            "stats": {"rows": _row_counts(added)},
            **(info or {}),
        }
        write_json_atomic(path, manifest)
        kill_point(kill_at, "after_manifest")
        folders = set()
        for e in removed:
            (self.root / e["path"]).unlink(missing_ok=True)
            folders.add((self.root / e["path"]).parent)
        for folder in folders:
            if folder.exists():
                fsync_dir(folder)
        for token in {Path(f.staged_path).parts[1] for f in added}:
            shutil.rmtree(self.root / STAGING / token, ignore_errors=True)
        return manifest

"""The output lake: every file under the output directory, and the only code that writes one.

Layout under the output dir:

    articles/  published_date=YYYY-MM-DD/part-*.parquet + _delta_log/   Delta tables
    rejects/   fetched_date=YYYY-MM-DD/...
    duplicates/ fetched_date=YYYY-MM-DD/...
    raw/       landed_date=YYYY-MM-DD/batch-<id>.parquet: fetched documents, landed first
    _index/dedup/ published_date=YYYY-MM-DD/...: the dedup index
    _runs/     the ledger: one row per commit (run or swap), in commit order
    _state/    feed validators, seed fingerprints, fetched pages, taxonomy versions
    _staging/  work in progress, never read by consumers; `commits/` holds the
               staged list of every commit in flight

The commit (one writer at a time, under `.lock`):

1. Workers write every file under `_staging/<token>/` (deterministic names, fsynced).
2. The commit gets the next sequence number and writes its staged list
   (`_staging/commits/<seq>-<token>.json`: every file, every partition it replaces,
   its ledger record) atomically: from here on it will happen.
3. Each file is renamed into its table folder; then each table gets one Delta
   transaction adding its files (and removing the replaced partitions' files),
   carrying the lake's application transaction at version `seq`.
4. The ledger row is committed last (also at `seq`), and the staged list removed.

A crash anywhere after step 2 is completed by the next writer that takes the lock
(roll forward): moves already made are skipped, a table whose application
transaction is already at `seq` is skipped, so every table gets the commit exactly
once. Before step 2 nothing is visible and the run's raw batches stay pending.

No command deletes data it cannot account for: a table folder without a readable
Delta log, or a lake in the layout before Delta (`_manifests/`), makes every writing
command stop with LakeError.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.state import fsync_dir, write_json_atomic
from pipeline.lake import delta
from pipeline.lake.files import (
    STAGING,
    StagedFile,
    kill_point,
    make_dirs,
    merge_stats,
    new_dirs,
    row_counts,
    write_parquet_durable,
)
from schemas.arrow import TABLES, records_to_table
from schemas.ids import stable_id
from schemas.records import RawFetch

STATE = "_state"
RUNS = "_runs"
COMMITS = f"{STAGING}/commits"
LEGACY_MANIFESTS = "_manifests"  # the layout before Delta tables: `newsbeam migrate` converts it
# Tables whose files only commits add (raw batches are landed, and tracked by id).
COMMITTED_TABLES = ("articles", "rejects", "duplicates", "dedup_index")
DATASETS = (*COMMITTED_TABLES, "raw")
LEDGER_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),  # the commit's record, JSON
    ]
)


class LakeBusy(RuntimeError):
    """Another run holds the output's lock."""


class LakeError(RuntimeError):
    """The lake is not in a state newsbeam may write to; nothing was changed."""


class Lake:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._ledger_cache: dict[str, list[dict[str, Any]]] = {}

    # --- locking and recovery ----------------------------------------------------

    @contextmanager
    def lock(self, recover: bool = True) -> Iterator[None]:
        """One writer at a time; the OS drops the lock if the holder dies (even by SIGKILL).

        Whoever takes the lock first completes the commits a dead writer left in flight
        (`recover=False` only for `migrate`, which converts a lake `recover` refuses).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise LakeBusy(f"another newsbeam run is writing to {self.root}") from exc
            if recover:
                self.recover()
            yield

    def check(self) -> None:
        """LakeError unless every dataset folder present has a readable Delta log."""
        if (self.root / LEGACY_MANIFESTS).is_dir():
            raise LakeError(
                f"{self.root} is a lake in the layout before Delta tables ({LEGACY_MANIFESTS}/): "
                "convert it first with `newsbeam migrate`"
            )
        folders = [self.root / TABLES[name].folder for name in DATASETS] + [self.root / RUNS]
        for folder in folders:
            if not folder.is_dir():
                continue
            if not delta.is_table(folder):
                if any(folder.glob("**/*.parquet")):
                    raise LakeError(
                        f"{folder} holds data files but no {delta.LOG}/: its transaction log is missing; "
                        "nothing was written (restore the log from a backup, or move the folder away)"
                    )
                continue
            try:
                delta.open_table(folder)
            except delta.LogError as exc:
                raise LakeError(f"{exc}; nothing was written") from exc
        data = any(delta.is_table(self.root / TABLES[n].folder) for n in COMMITTED_TABLES)
        if data and not delta.is_table(self.root / RUNS):
            raise LakeError(f"{self.root / RUNS} (the commit ledger) is missing; nothing was written")

    def recover(self) -> list[str]:
        """Complete every commit in flight, oldest first; returns their tokens.

        Call only with the lock held.
        """
        self.check()
        done = []
        for path in sorted((self.root / COMMITS).glob("*.json")):
            intent = json.loads(path.read_text(encoding="utf-8"))
            self._apply(intent, None)
            done.append(str(intent["token"]))
        self._adopt_landed_raw()
        return done

    # --- raw landing ---------------------------------------------------------------

    def land_raw(self, records: list[RawFetch], landed_at: datetime) -> str | None:
        """Persist fetched documents before any processing; returns the batch id."""
        if not records:
            return None
        records = sorted(records, key=lambda r: r.raw_id)
        # From content and fetch times only: landing the same fetches again is the same batch.
        batch_id = stable_id("batch", *(f"{r.raw_id}@{r.fetched_at.isoformat()}" for r in records))
        arrow = records_to_table(records, TABLES["raw"], batch_id=batch_id)
        day = f"{landed_at:%Y-%m-%d}"
        rel = f"raw/landed_date={day}/batch-{batch_id}.parquet"
        staged = Path(STAGING) / "raw" / f"batch-{batch_id}.parquet"
        digest = write_parquet_durable(arrow, self.root / staged)
        f = StagedFile("raw", day, staged.as_posix(), rel, arrow.num_rows, digest)
        delta.ensure_table(self.root, TABLES["raw"])
        self._move_in([f], None)
        delta.commit_files(self.root, TABLES["raw"], None, [f])
        return batch_id

    def _adopt_landed_raw(self) -> None:
        """A batch renamed into `raw/` by a run that died before its log entry is complete
        (written and fsynced before the rename): it is committed, not lost."""
        folder = self.root / "raw"
        files = sorted(folder.glob("landed_date=*/batch-*.parquet"))
        if not files:
            return
        live = set(self.raw_batches().values())
        orphans = [
            StagedFile("raw", p.parent.name.split("=", 1)[1], "", p.relative_to(self.root).as_posix(), 0, "")
            for p in files
            if p not in live
        ]
        if orphans:
            delta.commit_files(self.root, TABLES["raw"], None, orphans)

    def raw_batches(self) -> dict[str, Path]:
        """Landed batch id -> its file, as the raw table's current version lists them."""
        folder = self.root / "raw"
        if not delta.is_table(folder):
            return {}
        entries = delta.live_adds(delta.open_table(folder))
        return {Path(e["path"]).stem.removeprefix("batch-"): folder / e["path"] for e in entries}

    def pending_raw_batches(self) -> dict[str, Path]:
        """Landed batches that no committed run has processed yet."""
        done = {b for m in self.manifests() for b in m.get("raw_batches", [])}
        return {b: p for b, p in self.raw_batches().items() if b not in done}

    # --- the ledger ----------------------------------------------------------------

    def manifests(self) -> list[dict[str, Any]]:
        """Every commit's record (runs and swaps), in commit order."""
        root = self.root / RUNS
        if not delta.is_table(root):
            return []
        table = delta.open_table(root)
        records: list[tuple[int, dict[str, Any]]] = []
        for entry in delta.live_adds(table):
            cached = self._ledger_cache.get(entry["path"])
            if cached is None:  # ledger files never change once written: read each once
                rows = pq.read_table(root / entry["path"], columns=["record"]).column("record").to_pylist()
                cached = [json.loads(r) for r in rows]
                self._ledger_cache[entry["path"]] = cached
            records += [(int(m["seq"]), m) for m in cached]
        return [m for _, m in sorted(records, key=lambda item: item[0])]

    def manifests_by_id(self) -> dict[str, dict[str, Any]]:
        return {m["run_id"]: m for m in self.manifests() if "run_id" in m}

    def is_committed(self, run_id: str) -> bool:
        return run_id in self.manifests_by_id()

    def _next_seq(self) -> int:
        return max((int(m["seq"]) for m in self.manifests()), default=0) + 1

    def append_ledger(self, seq: int, records: list[dict[str, Any]]) -> None:
        """Commit ledger rows (one per commit record) at lake commit `seq`, unless already there."""
        root = self.root / RUNS
        if delta.is_table(root) and delta.applied_seq(delta.open_table(root)) >= seq:
            return
        row = pa.table(
            {
                "seq": [int(r["seq"]) for r in records],
                "kind": [str(r["kind"]) for r in records],
                "id": [str(r.get("run_id") or r.get("op_id") or "") for r in records],
                "record": [json.dumps(r, sort_keys=True, default=str) for r in records],
            },
            schema=LEDGER_SCHEMA,
        )
        name = f"commit-{seq:012d}.parquet"
        if not delta.is_table(root):
            delta.create_ledger(root, LEDGER_SCHEMA)
        write_parquet_durable(row, root / name)
        delta.commit_ledger_file(root, delta.open_table(root), name, seq)

    def versions_at(self, as_of: int | datetime | None = None) -> tuple[int, dict[str, int]]:
        """The lake commit `as_of` names (a commit's sequence number, or the last commit at
        or before a time; the newest by default) and each table's Delta version then."""
        records = self.manifests()
        if isinstance(as_of, datetime):
            records = [m for m in records if datetime.fromisoformat(str(m.get("committed_at"))) <= as_of]
        elif as_of is not None:
            if not any(int(m["seq"]) == as_of for m in records):
                raise LakeError(f"no commit {as_of} in {self.root} (see `newsbeam status`)")
            records = [m for m in records if int(m["seq"]) <= as_of]
        if not records:
            raise LakeError(f"{self.root} has no commit at or before {as_of}")
        versions: dict[str, int] = {}
        for m in records:
            versions.update({t: int(v) for t, v in m.get("versions", {}).items()})
        return int(records[-1]["seq"]), versions

    # --- reading the committed state ------------------------------------------------

    def table_version(self, table: str) -> int | None:
        root = self.root / TABLES[table].folder
        return int(delta.open_table(root).version()) if delta.is_table(root) else None

    def live_files(self, table: str | None = None) -> dict[str, dict[str, Any]]:
        """The committed state: path (from the lake root) -> table, partition, rows, size."""
        live: dict[str, dict[str, Any]] = {}
        for name in [table] if table else COMMITTED_TABLES:  # raw only when asked for
            folder = TABLES[name].folder
            if not delta.is_table(self.root / folder):
                continue
            for e in delta.live_adds(delta.open_table(self.root / folder)):
                rel = f"{folder}/{e['path']}"
                live[rel] = {**e, "table": name, "path": rel}
        return live

    def committed_files(self, table: str) -> list[Path]:
        """Paths of the live files of `table`."""
        return [self.root / p for p in sorted(self.live_files(table))]

    def snapshot_files(self, table: str, version: int | str | datetime | None = None) -> list[Path]:
        """Files of one version of `table` (the current one by default): they stay in place
        while writers commit, until `vacuum` removes what no recent version lists."""
        root = self.root / TABLES[table].folder
        if not delta.is_table(root):
            return []
        return [root / e["path"] for e in delta.live_adds(delta.open_table(root, version))]

    def state_path(self, name: str) -> Path:
        return self.root / STATE / name

    # --- commit ----------------------------------------------------------------------

    def _move_in(self, files: list[StagedFile], kill_at: str | None) -> None:
        """Rename each staged file into its table folder; each directory fsynced once."""
        todo = []
        for f in files:
            src, dst = self.root / f.staged_path, self.root / f.final_path
            if f.staged_path and src.exists():
                todo.append((src, dst))
            elif not dst.exists():
                raise FileNotFoundError(f"staged file vanished before commit: {src}")
            # else: moved by an earlier attempt of the same commit
        created: list[Path] = []
        for _, dst in todo:
            created += new_dirs(dst.parent)
        for parent in sorted({d.parent for d in created}):
            fsync_dir(parent)
        for n, (src, dst) in enumerate(todo):
            if n == 1:
                kill_point(kill_at, "between_moves")
            os.replace(src, dst)
        for folder in sorted({dst.parent for _, dst in todo}):
            fsync_dir(folder)

    def _begin(
        self, token: str, record: dict[str, Any], staged: list[StagedFile], replaced: dict[str, list[str]]
    ) -> dict[str, Any]:
        """Write the commit's staged list: from here on the commit will complete."""
        seq = self._next_seq()
        # When it was committed: what `sql --as-of TIME` selects by (never a row's value).
        record = {"committed_at": datetime.now(timezone.utc).isoformat(), **record, "seq": seq}
        intent = {
            "token": token,
            "seq": seq,
            "files": [{**f.entry(), "staged_path": f.staged_path, "size": f.size} for f in staged],
            "replaced": replaced,
            "record": record,
        }
        if not delta.is_table(self.root / RUNS):  # the ledger exists before any table
            delta.create_ledger(self.root / RUNS, LEDGER_SCHEMA)
        make_dirs(self.root / COMMITS)
        write_json_atomic(self.root / COMMITS / f"{seq:012d}-{token}.json", intent)
        return intent

    def _apply(self, intent: dict[str, Any], kill_at: str | None) -> dict[str, Any]:
        seq, token = int(intent["seq"]), str(intent["token"])
        files = [
            StagedFile(
                e["table"],
                e["partition"],
                e["staged_path"],
                e["path"],
                e["rows"],
                e["sha256"],
                size=e["size"],
            )
            for e in intent["files"]
        ]
        for name in sorted({f.table for f in files}):  # a table folder never holds files without a log
            delta.ensure_table(self.root, TABLES[name])
        self._move_in(files, kill_at)
        kill_point(kill_at, "before_manifest")
        metadata = {"newsbeam.kind": str(intent["record"]["kind"]), "newsbeam.id": token}
        replaced: dict[str, list[str]] = intent.get("replaced", {})
        record = dict(intent["record"])
        record["versions"] = {}
        for name in sorted({f.table for f in files} | set(replaced)):
            table_files = [f for f in files if f.table == name]
            delta.commit_files(self.root, TABLES[name], seq, table_files, replaced.get(name, ()), metadata)
            # The version holding this commit (a rolled-forward one was the last to write it).
            record["versions"][name] = self.table_version(name)
            kill_point(kill_at, "between_tables")
        self.append_ledger(seq, [record])
        kill_point(kill_at, "after_manifest")
        (self.root / COMMITS / f"{seq:012d}-{token}.json").unlink(missing_ok=True)
        for f in files:
            self._remove_staging(f.staged_path)
        return record

    def _remove_staging(self, staged_path: str) -> None:
        parts = Path(staged_path).parts
        if len(parts) > 1 and parts[0] == STAGING:
            import shutil

            shutil.rmtree(self.root / STAGING / parts[1], ignore_errors=True)

    def commit(
        self,
        run_id: str,
        raw_batches: list[str],
        staged: list[StagedFile],
        info: Mapping[str, Any] | None = None,
        kill_at: str | None = None,
    ) -> dict[str, Any]:
        """Commit a run's staged files to every table, then its ledger row. Idempotent by
        run id: called again (a retried bundle, a rerun after a crash) it neither
        duplicates nor drops."""
        existing = self.manifests_by_id().get(run_id)
        if existing is not None:
            return existing
        staged = sorted(staged, key=lambda f: f.final_path)
        kill_point(kill_at, "before_moves")
        record = {
            "kind": "run",
            "run_id": run_id,
            "raw_batches": sorted(raw_batches),
            "files": [f.entry() for f in staged],
            "removed": [],
            "stats": merge_stats(staged),
            **(info or {}),
        }
        return self._apply(self._begin(run_id, record, staged, {}), kill_at)

    def replace_partitions(
        self,
        kind: str,
        replacements: Mapping[tuple[str, str], list[StagedFile]],
        info: Mapping[str, Any] | None = None,
        kill_at: str | None = None,
    ) -> dict[str, Any] | None:
        """Atomically swap whole partitions: the contract compaction, replay, re-tagging and
        migration use.

        `replacements` maps (table, partition) to the staged files that become that
        partition's entire content (an empty list empties it). Each table gets one Delta
        transaction removing every file its partitions hold now and adding the new ones;
        the caller stages complete content, including any rows it means to keep. The
        removed files stay in place for readers of older versions until `vacuum`. The
        operation's id derives from what it removes and adds, so calling it again with the
        same arguments is a no-op returning the same record. Returns None when nothing
        would change. Call with the lock held.
        """
        live: dict[str, dict[str, Any]] = {}
        for name in sorted({table for table, _ in replacements}):
            live.update(self.live_files(name))
        removed: list[dict[str, Any]] = []
        added: list[StagedFile] = []
        replaced: dict[str, list[str]] = {}
        for (table, partition), files in sorted(replacements.items()):
            for f in files:
                if (f.table, f.partition) != (table, partition):
                    raise ValueError(f"{f.staged_path} is not in {table} partition {partition}")
            removed += [e for e in live.values() if (e["table"], e["partition"]) == (table, partition)]
            added += files
            replaced.setdefault(table, []).append(partition)
        removed.sort(key=lambda e: e["path"])
        added.sort(key=lambda f: f.final_path)
        if added and [e["path"] for e in removed] == [f.final_path for f in added]:
            # Already applied (a retry after a lost acknowledgement): the partitions hold exactly these.
            paths = {f.final_path for f in added}
            return next(m for m in reversed(self.manifests()) if paths <= {f["path"] for f in m["files"]})
        if not removed and not added:
            return None
        op_id = stable_id(kind, *(e["path"] for e in removed), *(f.sha256 for f in added))
        for m in self.manifests():
            if m.get("op_id") == op_id:
                return m
        kill_point(kill_at, "before_moves")
        record = {
            "kind": kind,
            "op_id": op_id,
            "files": [f.entry() for f in added],
            "removed": [{k: e[k] for k in ("table", "partition", "path", "rows")} for e in removed],
            "stats": {"rows": row_counts(added)},
            **(info or {}),
        }
        return self._apply(self._begin(op_id, record, added, replaced), kill_at)

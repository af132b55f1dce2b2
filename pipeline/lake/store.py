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

The output dir is a local folder or an object store URI (`s3://`, `gs://`, `az://`;
pipeline/lake/storage.py).

The commit (locally one writer at a time, under `.lock`; on an object store the
ledger's log decides between writers):

1. Workers write every file under `_staging/<token>/` (deterministic names).
2. The commit gets the next sequence number and writes its staged list
   (`_staging/commits/<seq>-<token>.json`: every file, every partition it replaces,
   its ledger record).
3. The ledger row is committed at `seq` (pipeline/lake/ledger.py): from here on the
   commit will happen. A writer that finds `seq` taken stops (LakeBusy, exit 3).
4. Each file is moved into its table folder; then each table gets one Delta
   transaction adding its files (and removing the replaced partitions' files),
   carrying the lake's application transaction at version `seq`; the staged list
   is removed last.

A crash anywhere after step 2 is completed by the next writer (roll forward): a
ledger row, a move or a table already holding `seq` is skipped, so every table gets
the commit exactly once. Before step 3 nothing is visible and the run's raw batches
stay pending; between steps 3 and 4 the ledger lists a run whose rows readers of the
tables do not see yet, until the next writer starts.

No command deletes data it cannot account for: a table folder without a readable
Delta log, or a lake in the layout before Delta (`_manifests/`), makes every writing
command stop with LakeError.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.lake import delta, raw
from pipeline.lake.files import (
    STAGING,
    StagedFile,
    kill_point,
    merge_stats,
    move_in,
    row_counts,
)
from pipeline.lake.ledger import RUNS, Ledger, LedgerConflict
from pipeline.lake.state import LakeState
from pipeline.lake.storage import Storage
from schemas.arrow import TABLES
from schemas.ids import stable_id
from schemas.records import RawFetch

COMMITS = f"{STAGING}/commits"
LEGACY_MANIFESTS = "_manifests"  # the layout before Delta tables: `newsbeam migrate` converts it
# Tables whose files only commits add (raw batches are landed, and tracked by id).
COMMITTED_TABLES = ("articles", "rejects", "duplicates", "dedup_index")
DATASETS = (*COMMITTED_TABLES, "raw")


class LakeBusy(RuntimeError):
    """Another writer holds the output's lock, or committed first."""


class LakeError(RuntimeError):
    """The lake is not in a state newsbeam may write to, or cannot do this; nothing was changed."""


class Lake:
    def __init__(self, root: Path | str) -> None:
        self.storage = Storage(root)
        self.ledger = Ledger(self.storage)
        self.state = LakeState(self.storage)

    def __str__(self) -> str:
        return self.storage.uri

    @property
    def remote(self) -> bool:
        return self.storage.remote

    @property
    def root(self) -> Path:
        """The lake's folder, for the operations that need a local filesystem."""
        if self.storage.remote:
            raise LakeError(
                f"{self.storage.uri}: this command needs a lake on a local filesystem "
                "(on object storage: run, compact, retag, vacuum, sql, status, verify)"
            )
        return self.storage.local()

    # --- locking and recovery ----------------------------------------------------

    @contextmanager
    def lock(self, recover: bool = True) -> Iterator[None]:
        """One writer at a time; the OS drops the lock if the holder dies (even by SIGKILL).

        Whoever takes the lock first completes the commits a dead writer left in flight
        (`recover=False` only for `migrate`, which converts a lake `recover` refuses). On
        an object store there is no lock: the ledger decides at commit time, and the
        lake's `_state/` is read at the start and written back at the end.
        """
        if self.storage.remote:
            with self.state.writing():
                if recover:
                    self.recover()
                yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise LakeBusy(f"another newsbeam run is writing to {self.root}") from exc
            if recover:
                self.recover()
            yield

    def state_path(self, name: str) -> Path:
        """A file of the lake's `_state/` (pipeline/lake/state.py)."""
        return self.state.path(name)

    def check(self) -> None:
        """LakeError unless every dataset folder present has a readable Delta log."""
        if self.storage.is_dir(LEGACY_MANIFESTS):
            raise LakeError(
                f"{self} is a lake in the layout before Delta tables ({LEGACY_MANIFESTS}/): "
                "convert it first with `newsbeam migrate`"
            )
        for folder in [TABLES[name].folder for name in DATASETS] + [RUNS]:
            if not self.storage.is_dir(folder):
                continue
            if not delta.is_table(self.storage, folder):
                if self.storage.files(folder, ".parquet"):
                    raise LakeError(
                        f"{self.storage.location(folder)} holds data files but no {delta.LOG}/: its "
                        "transaction log is missing; nothing was written (restore the log from a "
                        "backup, or move the folder away)"
                    )
                continue
            try:
                delta.open_table(self.storage, folder)
            except delta.LogError as exc:
                raise LakeError(f"{exc}; nothing was written") from exc
        data = any(delta.is_table(self.storage, TABLES[n].folder) for n in COMMITTED_TABLES)
        if data and not self.ledger.exists():
            raise LakeError(
                f"{self.storage.location(RUNS)} (the commit ledger) is missing; nothing was written"
            )

    def recover(self) -> list[str]:
        """Complete every commit in flight, oldest first; returns their tokens. A staged
        list whose sequence number another writer's commit took is dropped (that writer
        was told so and stopped). Call only with the lock held."""
        self.check()
        done = []
        for rel in self.storage.files(COMMITS, ".json"):
            intent = json.loads(self.storage.read_bytes(rel) or b"{}")
            holder = self.ledger.holder(int(intent["seq"]))
            if holder is not None and holder != intent["token"]:
                self.storage.delete(rel)
                continue
            self._apply(intent, None)
            done.append(str(intent["token"]))
        raw.adopt_orphans(self.storage)
        return done

    # --- raw landing ---------------------------------------------------------------

    def land_raw(self, records: list[RawFetch], landed_at: datetime) -> str | None:
        """Persist fetched documents before any processing; returns the batch id."""
        return raw.land(self.storage, records, landed_at)

    def raw_batches(self) -> dict[str, str]:
        """Landed batch id -> its file's location, as the raw table's current version lists them."""
        return raw.batches(self.storage)

    def pending_raw_batches(self) -> dict[str, str]:
        """Landed batches that no committed run has processed yet."""
        done = {b for m in self.manifests() for b in m.get("raw_batches", [])}
        return {b: p for b, p in self.raw_batches().items() if b not in done}

    # --- the ledger ----------------------------------------------------------------

    def manifests(self) -> list[dict[str, Any]]:
        """Every commit's record (runs and swaps), in commit order."""
        return self.ledger.records()

    def manifests_by_id(self) -> dict[str, dict[str, Any]]:
        return {m["run_id"]: m for m in self.manifests() if "run_id" in m}

    def is_committed(self, run_id: str) -> bool:
        return run_id in self.manifests_by_id()

    def append_ledger(self, seq: int, records: list[dict[str, Any]]) -> None:
        self.ledger.append(seq, records)

    def versions_at(self, as_of: int | datetime) -> tuple[int, dict[str, int]]:
        """The lake commit `as_of` names (a commit's sequence number, or the last commit at
        or before a time) and each table's Delta version holding exactly the commits up to it."""
        try:
            seq = self.ledger.seq_at(as_of)
        except ValueError as exc:
            raise LakeError(str(exc)) from exc
        versions, tables = {}, 0
        for name in COMMITTED_TABLES:
            folder = TABLES[name].folder
            if delta.is_table(self.storage, folder):
                tables += 1
                version = delta.version_at_seq(self.storage, folder, seq)
                if version is not None:
                    versions[name] = version
        if tables and not versions:
            raise LakeError(
                f"no table of {self} holds commit {seq} (commits from before `newsbeam migrate` "
                "are kept in the ledger only)"
            )
        return seq, versions

    def latest_versions(self) -> dict[str, int] | None:
        """Each table's version holding exactly the newest commit: one consistent state even
        while a commit is being applied table by table (None: no commit yet)."""
        records = self.manifests()
        return self.versions_at(int(records[-1]["seq"]))[1] if records else None

    # --- reading the committed state ------------------------------------------------

    def table_version(self, table: str) -> int | None:
        folder = TABLES[table].folder
        if not delta.is_table(self.storage, folder):
            return None
        return int(delta.open_table(self.storage, folder).version())

    def live_files(self, table: str | None = None) -> dict[str, dict[str, Any]]:
        """The committed state: path (from the lake root) -> table, partition, rows, size."""
        live: dict[str, dict[str, Any]] = {}
        for name in [table] if table else COMMITTED_TABLES:  # raw only when asked for
            folder = TABLES[name].folder
            if not delta.is_table(self.storage, folder):
                continue
            for e in delta.live_adds(delta.open_table(self.storage, folder)):
                rel = f"{folder}/{e['path']}"
                live[rel] = {**e, "table": name, "path": rel}
        return live

    def committed_files(self, table: str) -> list[str]:
        """Locations of the live files of `table`."""
        return [self.storage.location(p) for p in sorted(self.live_files(table))]

    def snapshot_files(self, table: str, version: int | str | datetime | None = None) -> list[str]:
        """Files of one version of `table` (the current one by default): they stay in place
        while writers commit, until `vacuum` removes what no recent version lists."""
        folder = TABLES[table].folder
        if not delta.is_table(self.storage, folder):
            return []
        entries = delta.live_adds(delta.open_table(self.storage, folder, version))
        return [self.storage.location(f"{folder}/{e['path']}") for e in entries]

    # --- commit ----------------------------------------------------------------------

    def _begin(
        self, token: str, record: dict[str, Any], staged: list[StagedFile], replaced: dict[str, list[str]]
    ) -> dict[str, Any]:
        """Write the commit's staged list."""
        seq = max([self.ledger.applied_seq(), *(int(m["seq"]) for m in self.manifests())]) + 1
        # When it was committed: what `sql --as-of TIME` selects by (never a row's value).
        record = {"committed_at": datetime.now(timezone.utc).isoformat(), **record, "seq": seq}
        intent = {
            "token": token,
            "seq": seq,
            "files": [{**f.entry(), "staged_path": f.staged_path, "size": f.size} for f in staged],
            "replaced": replaced,
            "record": record,
        }
        self.ledger.create()
        for name in sorted({f.table for f in staged} | set(replaced)):  # no table folder without a log
            delta.ensure_table(self.storage, TABLES[name])
        self.storage.write_bytes(self._intent(seq, token), json.dumps(intent, sort_keys=True).encode())
        return intent

    def _intent(self, seq: int, token: str) -> str:
        return f"{COMMITS}/{seq:012d}-{token}.json"

    def _apply(self, intent: dict[str, Any], kill_at: str | None) -> dict[str, Any]:
        seq, token = int(intent["seq"]), str(intent["token"])
        record = dict(intent["record"])
        try:
            self.ledger.append(seq, [record])
        except LedgerConflict as exc:
            self.storage.delete(self._intent(seq, token))
            raise LakeBusy(f"{exc}: nothing of this commit was applied; run again") from exc
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
        move_in(self.storage, files, kill_at)
        kill_point(kill_at, "before_manifest")
        metadata = {"newsbeam.kind": str(record["kind"]), "newsbeam.id": token}
        replaced: dict[str, list[str]] = intent.get("replaced", {})
        for name in sorted({f.table for f in files} | set(replaced)):
            table_files = [f for f in files if f.table == name]
            delta.commit_files(self.storage, TABLES[name], seq, table_files, replaced.get(name, ()), metadata)
            kill_point(kill_at, "between_tables")
        kill_point(kill_at, "after_manifest")
        self.storage.delete(self._intent(seq, token))
        for staged in {
            Path(f.staged_path).parts[1] for f in files if f.staged_path.startswith(STAGING + "/")
        }:
            self.storage.delete_dir(f"{STAGING}/{staged}")
        return record

    def commit(
        self,
        run_id: str,
        raw_batches: list[str],
        staged: list[StagedFile],
        info: Mapping[str, Any] | None = None,
        kill_at: str | None = None,
    ) -> dict[str, Any]:
        """Commit a run's staged files: its ledger row, then every table. Idempotent by run
        id: called again (a retried bundle, a rerun after a crash) it neither duplicates
        nor drops."""
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

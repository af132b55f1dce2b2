"""The lake's ledger (`_runs/`): a Delta table with one row per commit (a run or a swap),
in commit order. A row's `seq` is the lake's sequence number, which every table's Delta
transaction for that commit carries too; its `record` (JSON) is what `status`, `replay`
and the report read: raw batches processed, files, counts, the run's information.

The row is committed first, before the tables: its put-if-absent on the Delta log is
what decides, between two writers of one lake on an object store, which one owns a
sequence number.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lake import delta
from pipeline.lake.files import PARQUET_OPTIONS
from pipeline.lake.storage import Storage

RUNS = "_runs"
LEDGER_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),  # the commit's record, JSON
    ]
)


class LedgerConflict(RuntimeError):
    """Another writer took this sequence number first."""


class Ledger:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def exists(self) -> bool:
        return delta.is_table(self.storage, RUNS)

    def create(self) -> None:
        delta.create_ledger(self.storage, RUNS, LEDGER_SCHEMA)

    def records(self) -> list[dict[str, Any]]:
        """Every commit's record, in commit order."""
        if not self.exists():
            return []
        table = delta.open_table(self.storage, RUNS)
        found: list[tuple[int, dict[str, Any]]] = []
        for entry in delta.live_adds(table):
            cached = self._cache.get(entry["path"])
            if cached is None:  # ledger files never change once written: read each once
                with self.storage.open_input(f"{RUNS}/{entry['path']}") as fh:
                    rows = pq.read_table(fh, columns=["record"]).column("record").to_pylist()
                cached = [json.loads(r) for r in rows]
                self._cache[entry["path"]] = cached
            found += [(int(m["seq"]), m) for m in cached]
        return [m for _, m in sorted(found, key=lambda item: item[0])]

    def applied_seq(self) -> int:
        return delta.applied_seq(delta.open_table(self.storage, RUNS)) if self.exists() else 0

    def append(self, seq: int, records: list[dict[str, Any]]) -> None:
        """Commit rows (one per record) at lake commit `seq`, unless already there.

        LedgerConflict when another writer committed `seq` first."""
        from deltalake.exceptions import CommitFailedError

        if self.applied_seq() >= seq:
            return
        rows = pa.table(
            {
                "seq": [int(r["seq"]) for r in records],
                "kind": [str(r["kind"]) for r in records],
                "id": [str(r.get("run_id") or r.get("op_id") or "") for r in records],
                "record": [json.dumps(r, sort_keys=True, default=str) for r in records],
            },
            schema=LEDGER_SCHEMA,
        )
        self.create()
        name = f"commit-{seq:012d}-{rows.column('id')[-1].as_py()[:16]}.parquet"
        if self.storage.remote:
            self.storage.write_parquet(f"{RUNS}/{name}", rows, **PARQUET_OPTIONS)
        else:
            from pipeline.lake.files import write_parquet_durable

            write_parquet_durable(rows, self.storage.local(f"{RUNS}/{name}"))
        try:
            delta.commit_ledger_file(self.storage, RUNS, name, seq)
        except CommitFailedError as exc:
            raise LedgerConflict(f"commit {seq} of {self.storage.uri} was taken by another writer") from exc

    def holder(self, seq: int) -> str | None:
        """The id of the commit that owns `seq` (None: nobody yet)."""
        for m in self.records():
            if int(m["seq"]) == seq:
                return str(m.get("run_id") or m.get("op_id"))
        return None

    def seq_at(self, as_of: int | datetime) -> int:
        """The commit `as_of` names: its sequence number, or the last commit at or before a time."""
        records = self.records()
        if isinstance(as_of, datetime):
            before = [m for m in records if datetime.fromisoformat(str(m.get("committed_at"))) <= as_of]
            if not before:
                raise ValueError(f"{self.storage.uri} has no commit at or before {as_of.isoformat()}")
            return int(before[-1]["seq"])
        if not any(int(m["seq"]) == as_of for m in records):
            raise ValueError(f"no commit {as_of} in {self.storage.uri} (see `newsbeam status`)")
        return as_of

"""The Delta Lake side of the lake: each dataset is a Delta table (its partition folders
plus `_delta_log/`), and the commit of already written files is one Delta transaction.

deltalake (delta-rs) commits `AddAction`s for files written elsewhere but checks none of
them, does not fsync a local log entry, and does not refresh a `DeltaTable` after its own
commit: this module does all three (see docs/benchmarks-delta.md). On object stores
delta-rs writes each log entry with a put-if-absent, so of two writers committing the
same version one fails (CommitFailedError).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.state import fsync_dir
from pipeline.lake.files import StagedFile
from pipeline.lake.storage import Storage
from schemas.arrow import Table

LOG = "_delta_log"
APP_ID = "newsbeam"  # the application transaction every commit of a lake carries
SEQ_KEY = "newsbeam.seq"  # the lake commit a table version holds (commitInfo)
CHECKPOINT_INTERVAL = "100"  # commits between checkpoints: a reader replays at most this many JSONs
# Short columns a query filters on get min/max in each file's stats (not url, title, text).
STATS_MIN_MAX = frozenset(
    {
        "article_id",
        "reject_id",
        "raw_id",
        "source",
        "language",
        "published_at",
        "fetched_at",
        "run_id",
        "reason",
        "schema_version",
    }
)


class LogError(RuntimeError):
    """A table's transaction log is missing or unreadable: nothing may be written."""


def delta_schema(table: Table) -> pa.Schema:
    """The Delta table's schema: the file columns, then the partition column as a date."""
    return pa.schema([*table.schema, pa.field(table.partition_column, pa.date32(), nullable=False)])


def is_table(storage: Storage, folder: str) -> bool:
    return storage.is_dir(f"{folder}/{LOG}")


def open_table(storage: Storage, folder: str, version: int | str | datetime | None = None) -> Any:
    """The table in `folder` (its current version, or `version`); LogError when the log is
    missing or cannot be read."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    if not is_table(storage, folder):
        raise LogError(f"{storage.location(folder)} has no {LOG}/")
    try:
        table = DeltaTable(storage.location(folder))
        if version is not None:
            table.load_as_version(version)
        return table
    except (DeltaError, OSError, ValueError) as exc:
        where = storage.location(folder)
        raise LogError(f"{where}: the Delta log cannot be read ({str(exc).splitlines()[0]})") from exc


def _create(
    storage: Storage, folder: str, schema: pa.Schema, name: str, partition_by: list[str] | None
) -> None:
    from deltalake import DeltaTable

    DeltaTable.create(
        storage.location(folder),
        schema,
        partition_by=partition_by,
        name=name,
        configuration={"delta.checkpointInterval": CHECKPOINT_INTERVAL},
    )
    fsync_log(storage, folder)


def ensure_table(storage: Storage, table: Table) -> str:
    """The table's folder, with its Delta table created first if there is none."""
    if not is_table(storage, table.folder):
        _create(storage, table.folder, delta_schema(table), table.name, [table.partition_column])
    return table.folder


def applied_seq(table: Any) -> int:
    """The newest lake commit (its sequence number) this table already holds."""
    return int(table.transaction_version(APP_ID) or 0)


def _stat_value(value: Any) -> Any:
    if isinstance(value, datetime):  # Delta stats: ISO 8601, UTC, microseconds kept
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def file_stats_json(meta: pq.FileMetaData) -> str:
    """The Delta `stats` of one Parquet file, from its footer: numRecords, nullCount of the
    top-level scalar columns, minValues/maxValues of the short filter columns."""
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            name = column.path_in_schema
            s = column.statistics
            if "." in name or s is None or not s.has_null_count:
                continue
            nulls[name] = nulls.get(name, 0) + s.null_count
            if name in STATS_MIN_MAX and s.has_min_max:
                lo, hi = _stat_value(s.min), _stat_value(s.max)
                mins[name] = lo if name not in mins else min(mins[name], lo)
                maxs[name] = hi if name not in maxs else max(maxs[name], hi)
    stats = {"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}
    return json.dumps(stats, separators=(",", ":"))


def add_action(storage: Storage, table: Table, f: StagedFile) -> Any:
    """The `add` of one file moved into its table folder, checked as delta-rs does not."""
    from deltalake.transaction import AddAction

    folder = table.folder + "/"
    if not f.final_path.startswith(folder):
        raise ValueError(f"{f.final_path} is not in table {table.name}")
    size = storage.size(f.final_path)
    if f.size and size != f.size:
        raise ValueError(f"{f.final_path}: {size} bytes, the writer wrote {f.size}")
    with storage.open_input(f.final_path) as fh:
        stats = file_stats_json(pq.read_metadata(fh))
    rel = f.final_path[len(folder) :]
    return AddAction(
        rel, size, {table.partition_column: f.partition}, storage.mtime_ms(f.final_path), True, stats
    )


def missing_columns(current: Any, table: Table) -> list[pa.Field]:
    """Columns of the table's current schema that the Delta table does not have yet."""
    have = set(pa.schema(current.schema().to_arrow()).names)
    return [f for f in table.schema if f.name not in have]


def _props(seq: int | None, metadata: dict[str, str] | None) -> Any:
    from deltalake import CommitProperties, Transaction

    now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    custom = {**(metadata or {}), **({SEQ_KEY: str(seq)} if seq is not None else {})}
    return CommitProperties(
        custom_metadata=custom,
        app_transactions=[Transaction(APP_ID, seq, now_ms)] if seq is not None else None,
    )


def commit_files(
    storage: Storage,
    table: Table,
    seq: int | None,
    files: Iterable[StagedFile],
    replaced: Iterable[str] = (),
    metadata: dict[str, str] | None = None,
) -> int | None:
    """One Delta transaction: add `files` to the table (after removing every file of the
    `replaced` partitions), carrying lake commit `seq`. Returns the new version, or None
    when the table already holds commit `seq` (a retried or rolled-forward commit).

    Without `seq` (raw landing) files the table already lists are left out instead."""
    from deltalake.schema import Field as DeltaField

    folder = ensure_table(storage, table)
    current = open_table(storage, folder)
    files = sorted(files, key=lambda f: f.final_path)
    if seq is None:
        live = {table.folder + "/" + e["path"] for e in live_adds(current)}
        files = [f for f in files if f.final_path not in live]
        if not files:
            return None
    elif applied_seq(current) >= seq:
        return None
    new_columns = missing_columns(current, table)
    if new_columns:  # a newer schema version adds nullable columns: the table evolves first
        current.alter.add_columns([DeltaField.from_arrow(f) for f in new_columns])
        current = open_table(storage, folder)
    actions = [add_action(storage, table, f) for f in files]
    partitions = sorted(set(replaced))
    version = current.version() + 1
    current.create_write_transaction(
        actions,
        mode="overwrite" if partitions else "append",
        schema=delta_schema(table),
        partition_by=[table.partition_column],
        partition_filters=[(table.partition_column, "in", partitions)] if partitions else None,
        commit_properties=_props(seq, metadata),
    )
    fsync_log(storage, folder, version)
    return version


def fsync_log(storage: Storage, folder: str, version: int | None = None) -> None:
    """Make a local log entry durable (delta-rs writes it without fsync)."""
    if storage.remote:
        return
    root = storage.local(folder)
    log = root / LOG
    entries = [log / f"{version:020d}.json"] if version is not None else sorted(log.glob("*.json"))
    for entry in entries:
        if entry.exists():
            fd = os.open(entry, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(log)
    fsync_dir(root)


def live_adds(table: Any) -> list[dict[str, Any]]:
    """Path (relative to the table), partition, rows and size of every file of a version."""
    adds = pa.table(table.get_add_actions(flatten=True))
    part = next((c for c in adds.column_names if c.startswith("partition.")), None)
    out = []
    for row in adds.to_pylist():
        value = row.get(part) if part else None
        out.append(
            {
                "path": row["path"],
                "partition": value.isoformat() if hasattr(value, "isoformat") else str(value),
                "rows": int(row.get("num_records") or 0),
                "size": int(row["size_bytes"]),
            }
        )
    return sorted(out, key=lambda e: e["path"])


def version_at_seq(storage: Storage, folder: str, seq: int) -> int | None:
    """The table's newest version holding no lake commit after `seq` (None: none yet)."""
    table = open_table(storage, folder)
    for entry in table.history():  # newest first
        held = entry.get(SEQ_KEY)
        if held is not None and int(held) <= seq:
            return int(entry["version"])
    return None


def create_ledger(storage: Storage, folder: str, schema: pa.Schema) -> None:
    if not is_table(storage, folder):
        _create(storage, folder, schema, "newsbeam_commits", None)


def commit_ledger_file(storage: Storage, folder: str, name: str, seq: int) -> None:
    """Add one file of the (unpartitioned) ledger table, at lake commit `seq`.

    Raises deltalake's CommitFailedError when another writer committed `seq` first."""
    from deltalake.transaction import AddAction

    current = open_table(storage, folder)
    rel = f"{folder}/{name}"
    with storage.open_input(rel) as fh:
        rows = pq.read_metadata(fh).num_rows
    stats = json.dumps({"numRecords": rows}, separators=(",", ":"))
    version = current.version() + 1
    current.create_write_transaction(
        [AddAction(name, storage.size(rel), {}, storage.mtime_ms(rel), True, stats)],
        mode="append",
        schema=pa.schema(current.schema().to_arrow()),
        commit_properties=_props(seq, None),
    )
    fsync_log(storage, folder, version)

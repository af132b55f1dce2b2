"""Lake operations beside the ingestion cycle: compact, replay, vacuum, snapshot SQL, status.

Every operation that writes takes the lake's lock and swaps partitions with
`Lake.replace_partitions`; the readers (`snapshot_connection`,
`snapshot_dataset`) take no lock and see exactly one committed state.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipeline.lake import delta, labels
from pipeline.lake.files import STAGING, StagedFile, stage_rows, staged_from_json
from pipeline.lake.ledger import RUNS
from pipeline.lake.state import STATE
from pipeline.lake.storage import parent_name
from pipeline.lake.store import COMMITTED_TABLES, Lake
from pipeline.tagging.taxonomy import Taxonomy, load_taxonomy
from schemas.arrow import TABLES, Table
from schemas.ids import stable_id

DEFAULT_MAX_ROWS_PER_FILE = 1_000_000
DEFAULT_GRACE = timedelta(hours=1)  # how long a replaced file stays readable for older snapshots


class MaintenanceError(RuntimeError):
    """An operation that cannot be carried out as asked (nothing was changed)."""


# --- reading files of mixed schema versions ---------------------------------


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns: columns an older version lacks become nulls."""
    present = set(table.column_names)
    columns = [
        table.column(f.name).cast(f.type) if f.name in present else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def read_files(paths: list[Path], table: Table) -> pa.Table:
    """Rows of `paths` under the table's current schema, sorted the way the writer sorts."""
    parts = [conform(pq.read_table(p), table.schema) for p in paths]
    merged = pa.concat_tables(parts) if parts else table.schema.empty_table()
    return merged.sort_by([(table.sort_key, "ascending"), ("run_id", "ascending")])


def by_partition(lake: Lake, table: str) -> dict[str, list[str]]:
    """Partition -> the live files of `table` in it (paths from the lake root)."""
    out: dict[str, list[str]] = {}
    for rel, entry in sorted(lake.live_files(table).items()):
        out.setdefault(entry["partition"], []).append(rel)
    return out


# --- compact -----------------------------------------------------------------


@dataclass
class CompactResult:
    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    manifest: dict[str, Any] | None = None


def compact(
    lake: Lake,
    max_rows_per_file: int = DEFAULT_MAX_ROWS_PER_FILE,
    kill_at: str | None = None,
    tables: tuple[str, ...] = COMMITTED_TABLES,
    now: datetime | None = None,
) -> CompactResult:
    """Merge each partition's files into as few as `max_rows_per_file` allows, in one swap.

    The row set is unchanged; only partitions with more files than they need are rewritten.
    Call with the lock held.
    """
    result = CompactResult()
    replacements: dict[tuple[str, str], list[StagedFile]] = {}
    live = lake.live_files()
    for name in tables:
        table = TABLES[name]
        for partition, rels in by_partition(lake, name).items():
            rows = sum(live[r]["rows"] for r in rels)
            if len(rels) <= max(1, -(-rows // max_rows_per_file)):
                continue
            merged = read_files([lake.storage.location(r) for r in rels], table)
            token = "compact-" + stable_id("compact", *rels)
            staged = stage_rows(lake.storage.uri, token, table, partition, merged, max_rows_per_file)
            replacements[(name, partition)] = staged
            result.partitions += 1
            result.files_before += len(rels)
            result.files_after += len(staged)
            result.rows += merged.num_rows
    if replacements:
        info = {"committed_at": now.isoformat()} if now else {}
        result.manifest = lake.replace_partitions("compact", replacements, info, kill_at=kill_at)
    return result


# --- replay --------------------------------------------------------------------


@dataclass
class ReplayResult:
    runs: list[str] = field(default_factory=list)
    partitions_replaced: int = 0
    manifests: list[dict[str, Any]] = field(default_factory=list)


RunGraph = Callable[[Any], None]  # runs a RunPlan to completion


def _landed_date(location: str) -> str:
    return parent_name(location).split("=", 1)[1]


def runs_to_replay(lake: Lake, since: date, until: date) -> list[dict[str, Any]]:
    """Manifests of the runs that processed raw data landed in [since, until], in commit order."""
    landed = {b: _landed_date(p) for b, p in lake.raw_batches().items()}
    runs = []
    for m in lake.manifests():
        if m.get("kind", "run") != "run" or "run_id" not in m:
            continue
        days = {**m.get("raw_landed", {}), **{b: landed[b] for b in m.get("raw_batches", []) if b in landed}}
        if any(since.isoformat() <= day <= until.isoformat() for day in days.values()):
            runs.append(m)
    return runs


def _runs_in(path: Path) -> set[str]:
    return set(pq.read_table(path, columns=["run_id"]).column("run_id").unique().to_pylist())


def replay_run(
    lake: Lake,
    manifest: dict[str, Any],
    earlier_runs: set[str],
    plan_for: Callable[[str, dict[str, Path], list[Path]], Any],
    run_graph: RunGraph,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """Re-run one committed run with the current pipeline and swap its rows in.

    The run is recomputed against the dedup index of the runs committed before it, as
    it was originally; its rows keep its run id, and rows of other runs in the same
    partitions are kept. Partitions whose content comes out the same are left alone.
    """
    run_id = manifest["run_id"]
    raw = lake.raw_batches()
    missing = sorted(set(manifest["raw_batches"]) - set(raw))
    if missing:
        raise MaintenanceError(
            f"run {run_id[:16]} cannot be replayed: raw batch {missing[0]} is gone (vacuumed?)"
        )
    work = f"replay-{run_id}"
    index_table = TABLES["dedup_index"]
    index = read_files(lake.committed_files("dedup_index"), index_table)
    index = index.filter(pc.is_in(index.column("run_id"), pa.array(sorted(earlier_runs), pa.string())))
    index_files = []
    if index.num_rows:
        index_path = lake.root / STAGING / work / "index.parquet"
        index_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(index, index_path)
        index_files.append(index_path)
    plan = plan_for(run_id, {b: raw[b] for b in manifest["raw_batches"]}, index_files)
    run_graph(plan)
    staged_list = lake.root / STAGING / run_id / "staged.json"
    fresh = {(f.table, f.partition): f for f in staged_from_json(json.loads(staged_list.read_text("utf-8")))}

    files_of = {name: by_partition(lake, name) for name in COMMITTED_TABLES}
    touched = set(fresh) | {
        (name, partition)
        for name, partitions in files_of.items()
        for partition, rels in partitions.items()
        if any(run_id in _runs_in(lake.storage.location(r)) for r in rels)
    }
    replacements = {}
    for name, partition in sorted(touched):
        table = TABLES[name]
        rels = files_of[name].get(partition, [])
        current = read_files([lake.storage.location(r) for r in rels], table)
        kept = current.filter(pc.not_equal(current.column("run_id"), run_id))
        replacements[(name, partition)] = _replacement(lake, table, partition, rels, kept, current, fresh)
    changed = {k: v for k, v in replacements.items() if v is not None}
    info = {"replayed_run": run_id, **({"committed_at": now.isoformat()} if now else {})}
    swap = lake.replace_partitions("replay", changed, info) if changed else None
    shutil.rmtree(lake.root / STAGING / run_id, ignore_errors=True)
    shutil.rmtree(lake.root / STAGING / work, ignore_errors=True)
    return swap


def _replacement(
    lake: Lake,
    table: Table,
    partition: str,
    rels: list[str],
    kept: pa.Table,
    current: pa.Table,
    fresh: dict[tuple[str, str], StagedFile],
) -> list[StagedFile] | None:
    new = fresh.get((table.name, partition))
    parts = [kept] + (
        [conform(pq.read_table(lake.storage.location(new.staged_path)), table.schema)] if new else []
    )
    combined = pa.concat_tables(parts).sort_by([(table.sort_key, "ascending"), ("run_id", "ascending")])
    if combined.equals(current):
        return None
    token = "replay-" + stable_id("replay", table.name, partition, *rels)
    return stage_rows(lake.storage.uri, token, table, partition, combined, DEFAULT_MAX_ROWS_PER_FILE)


def replay(
    lake: Lake,
    since: date,
    until: date,
    plan_for: Callable[[str, dict[str, Path], list[Path]], Any],
    run_graph: RunGraph,
    now: datetime | None = None,
) -> ReplayResult:
    """Replay every run that processed raw data landed in [since, until], oldest first.

    A run's other batches (landed outside the range) are replayed with it: a run is
    recomputed whole. Later runs are not recomputed. Call with the lock held.
    """
    if since > until:
        raise MaintenanceError(f"--since {since} is after --until {until}")
    result = ReplayResult()
    for target in runs_to_replay(lake, since, until):
        earlier = set()
        for m in lake.manifests():
            if m.get("run_id") == target["run_id"]:
                break
            if "run_id" in m:
                earlier.add(m["run_id"])
        swap = replay_run(lake, target, earlier, plan_for, run_graph, now)
        result.runs.append(target["run_id"])
        if swap is not None:
            result.manifests.append(swap)
            result.partitions_replaced += len(
                {(f["table"], f["partition"]) for f in swap["removed"]}
                | {(f["table"], f["partition"]) for f in swap["files"]}
            )
    return result


# --- vacuum --------------------------------------------------------------------


@dataclass
class VacuumResult:
    staging: list[str] = field(default_factory=list)
    retired_files: list[str] = field(default_factory=list)
    raw_batches: list[str] = field(default_factory=list)


def vacuum(
    lake: Lake, now: datetime, raw_retention_days: int | None = None, grace: timedelta = DEFAULT_GRACE
) -> VacuumResult:
    """Delete what no recent version needs. Call with the lock held.

    - `_staging/`: everything but commits in flight (the lock's recovery completed those);
    - each table's files that no version of the last `grace` lists (replaced by a swap
      longer ago, or never committed): Delta's vacuum, so a reader of an older version
      has that long to finish; the log is checkpointed first;
    - raw batches landed more than `raw_retention_days` before `now` that a committed run
      has processed (a run's record keeps their ids, but it can no longer be replayed); a
      batch no run has processed is never deleted.
    """
    result = VacuumResult()
    storage = lake.storage
    # Commits in flight are never left under the lock (its recovery completed them).
    leftovers = {"/".join(rel.split("/")[:2]) for rel in storage.files(STAGING)}
    for child in sorted(leftovers):
        storage.delete_dir(child) if storage.is_dir(child) else storage.delete(child)
        result.staging.append(child)
    if storage.is_dir(STAGING) and not storage.remote:
        for empty in sorted(lake.root.joinpath(STAGING).iterdir()):
            shutil.rmtree(empty, ignore_errors=True)
            result.staging.append(f"{STAGING}/{empty.name}")

    if raw_retention_days is not None:
        oldest_kept = (now - timedelta(days=raw_retention_days)).date().isoformat()
        processed = {b for m in lake.manifests() for b in m.get("raw_batches", [])}
        old = sorted(
            batch
            for batch, path in lake.raw_batches().items()
            if batch in processed and _landed_date(path) < oldest_kept
        )
        if old:  # one file per batch: whole files leave the raw table, none is rewritten
            listed = ", ".join(f"'{b}'" for b in old)
            delta.open_table(storage, TABLES["raw"].folder).delete(f"batch_id IN ({listed})")
            result.raw_batches = old

    # Delta's vacuum counts whole hours back from the clock: the grace, less how far `now`
    # is ahead of the clock, rounded up so a replaced file is never deleted early.
    ahead = max(timedelta(0), now - utc_now())
    hours = max(0, math.ceil((grace - ahead).total_seconds() / 3600))
    for name in (*COMMITTED_TABLES, "raw"):
        if not delta.is_table(storage, TABLES[name].folder):
            continue
        table = delta.open_table(storage, TABLES[name].folder)
        table.create_checkpoint()
        # Raw batches are read only by writers (under the lock): no reader to wait for.
        keep = 0 if name == "raw" else hours
        deleted = table.vacuum(
            retention_hours=keep, dry_run=False, enforce_retention_duration=False, full=True
        )
        result.retired_files += sorted(f"{TABLES[name].folder}/{rel}" for rel in deleted)
    return result


# --- snapshot reads --------------------------------------------------------------

_READ_TABLES = ("articles", "rejects", "duplicates", "dedup_index")


def _partition_schema(table: Table) -> pa.Schema:
    return pa.schema([pa.field(table.partition_column, pa.date32())])


def snapshot_dataset(lake: Lake, name: str, version: int | None = None) -> ds.Dataset:
    """A pyarrow dataset of one committed state of `name`, every schema version unified."""
    table = TABLES[name]
    schema = pa.unify_schemas([table.schema, _partition_schema(table)])
    files = [lake.storage.fs_path(p) for p in lake.snapshot_files(name, version)]
    partitioning = ds.partitioning(_partition_schema(table), flavor="hive")
    return ds.dataset(
        files, schema=schema, format="parquet", partitioning=partitioning, filesystem=lake.storage.fs
    )


def duckdb_source(lake: Lake, name: str, version: int | None = None) -> str | None:
    """The DuckDB table function reading one version of `name` (the current one by
    default; None when empty)."""
    table = TABLES[name]
    files = lake.snapshot_files(name, version)
    if not files:
        return None
    listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
    return (
        f"read_parquet([{listed}], hive_partitioning = true, union_by_name = true, "
        f"hive_types = {{'{table.partition_column}': DATE}})"
    )


def require_lake(lake: Lake, check: bool = True) -> None:
    """MaintenanceError unless `lake.root` is a lake a run has written: reading or
    operating on any other folder would only show empty tables."""
    if not lake.storage.is_dir(RUNS) and not lake.storage.is_dir(STATE):
        raise MaintenanceError(
            f"{lake} is not a newsbeam lake (no {RUNS}/ or {STATE}/): "
            "give the output folder of a run with --output or `output_dir`"
        )
    if check:
        lake.check()


def label_tables(taxonomy: Taxonomy, lake: Lake | None = None) -> dict[str, pa.Table]:
    """`entity_labels` (id, type, label, country, taxonomy_version, wikidata, labels) and
    `topic_labels` (id, label, taxonomy_version): what the ids in `articles.entities` and
    `articles.topics` mean, one row per taxonomy version and id (pipeline/lake/labels.py).
    With `lake`, every version its label tables hold; `taxonomy`'s own version always from
    `taxonomy` (so a lake written before the label tables still has its labels)."""
    return labels.label_views(taxonomy, lake.storage if lake is not None else None)


def snapshot_connection(
    lake: Lake, taxonomy: Taxonomy | None = None, as_of: int | datetime | None = None
) -> Any:
    """DuckDB with views `articles`, `rejects`, `duplicates`, `dedup_index` over one
    committed state (the newest, or the one after commit / at time `as_of`), `raw` over
    the landed batches, and `entity_labels`, `topic_labels` of every taxonomy version the
    lake's label tables hold, `taxonomy`'s (the built-in one by default) from `taxonomy`
    itself."""
    import duckdb

    require_lake(lake)
    # Every view at the same commit: the one named, or the newest.
    versions = lake.versions_at(as_of)[1] if as_of is not None else lake.latest_versions()
    con = duckdb.connect()
    for name, table in label_tables(taxonomy or load_taxonomy(), lake).items():
        con.register(name, table)
    for name in _READ_TABLES:
        version = versions.get(name) if versions is not None else None
        if versions is not None and name not in versions:
            source = None  # the table had no commit yet then
        elif lake.remote:  # DuckDB reads the object store through pyarrow's filesystem
            con.register(f"_delta_{name}", snapshot_dataset(lake, name, version))
            source = f"_delta_{name}"
        else:
            source = duckdb_source(lake, name, version)
        if source is None:
            table = TABLES[name]
            empty = pa.unify_schemas([table.schema, _partition_schema(table)]).empty_table()
            con.register(f"_empty_{name}", empty)
            source = f"_empty_{name}"
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {source}")
    raw = sorted(lake.raw_batches().values())
    if raw and lake.remote:
        raw_schema = pa.unify_schemas([TABLES["raw"].schema, _partition_schema(TABLES["raw"])])
        raw_set = ds.dataset(
            [lake.storage.fs_path(p) for p in raw],
            schema=raw_schema,
            format="parquet",
            partitioning=ds.partitioning(_partition_schema(TABLES["raw"]), flavor="hive"),
            filesystem=lake.storage.fs,
        )
        con.register("_delta_raw", raw_set)
        con.execute("CREATE VIEW raw AS SELECT * FROM _delta_raw")
    elif raw:
        listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in raw)
        con.execute(
            f"CREATE VIEW raw AS SELECT * FROM read_parquet([{listed}], hive_partitioning = true, "
            "union_by_name = true, hive_types = {'landed_date': DATE})"
        )
    return con


# --- status ------------------------------------------------------------------------


def _when(m: dict[str, Any]) -> str:
    return str(m.get("started_at") or m.get("committed_at") or "-")[:19]


def run_lines(lake: Lake, last: int = 10) -> Iterator[str]:
    """One line per recent commit (runs and swaps), newest first."""
    yield f"  {'SEQ':>4} {'KIND':<8} {'ID':<16} {'WHEN':<19} {'OUTCOME':<8} ROWS"
    for m in reversed(lake.manifests()[-last:]):
        rows = m.get("stats", {}).get("rows", {})
        counts = ", ".join(f"{t} {n}" for t, n in sorted(rows.items()))
        removed = len(m.get("removed", []))
        if removed:
            counts += f" (replaced {removed} files)"
        ident = (m.get("run_id") or m.get("op_id") or "?")[:16]
        outcome = m.get("outcome", "ok" if m.get("kind", "run") == "run" else "-")
        kind = m.get("kind", "run")
        yield f"  {m.get('seq', 0):>4} {kind:<8} {ident:<16} {_when(m):<19} {outcome:<8} {counts}"


def table_lines(lake: Lake) -> Iterator[str]:
    """Each Delta table: its version, live files and rows, and its last operation."""
    yield f"  {'TABLE':<12} {'VERSION':>7} {'FILES':>6} {'ROWS':>9} LAST OPERATION"
    for name in (*COMMITTED_TABLES, "raw"):
        if not delta.is_table(lake.storage, TABLES[name].folder):
            continue
        table = delta.open_table(lake.storage, TABLES[name].folder)
        adds = delta.live_adds(table)
        last = table.history(1)[0] if table.version() > 0 else {}
        when = datetime.fromtimestamp(int(last.get("timestamp", 0)) / 1000, timezone.utc).isoformat()[:19]
        op = f"{last.get('operation', 'CREATE')} {last.get('newsbeam.kind', '')} {when}".replace("  ", " ")
        rows = sum(e["rows"] for e in adds)
        yield f"  {name:<12} {table.version():>7} {len(adds):>6} {rows:>9} {op}"


def feed_lines(lake: Lake, names: dict[str, str] | None = None) -> Iterator[str]:
    """Per-feed health from the saved poll state, each feed by its configured name (`names`:
    URL -> name; a feed no longer configured by its URL); fields a version lacks show as '-'."""
    path = lake.state_path("feeds.json")
    states = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    names = names or {}
    yield f"  {'FEED':<48} {'LAST OK':<25} {'FAILS':>5} {'NEXT POLL':<25} LAST ERROR"
    for url, s in sorted(states.items(), key=lambda item: (names.get(item[0], "~"), item[0])):
        s = s if isinstance(s, dict) else {}
        streak = s.get("failure_streak", s.get("consecutive_failures", 0))
        shown = names.get(url, url)
        yield (
            f"  {shown[:48]:<48} {str(s.get('last_success_at') or '-'):<25} {streak!s:>5} "
            f"{str(s.get('next_poll_at') or '-'):<25} {str(s.get('last_error') or '')[:60]}"
        )


def status_report(lake: Lake, last: int = 10, names: dict[str, str] | None = None) -> str:
    require_lake(lake)
    pending = lake.pending_raw_batches()
    live = lake.live_files()
    lines = [f"lake {lake}: {len(live)} live files, {len(pending)} raw batches pending", "tables:"]
    lines += list(table_lines(lake))
    lines.append("runs:")
    lines += list(run_lines(lake, last))
    lines.append("feeds:")
    lines += list(feed_lines(lake, names))
    return "\n".join(lines)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)

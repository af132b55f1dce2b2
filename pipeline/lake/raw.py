"""The raw table: fetched documents landed before any processing, one file per batch."""

from __future__ import annotations

from datetime import datetime

from pipeline.lake import delta
from pipeline.lake.files import PARQUET_OPTIONS, STAGING, StagedFile, move_in, write_parquet_durable
from pipeline.lake.storage import Storage, parent_name
from schemas.arrow import TABLES, records_to_table
from schemas.ids import stable_id
from schemas.records import RawFetch


def land(storage: Storage, records: list[RawFetch], landed_at: datetime) -> str | None:
    """Persist fetched documents before any processing; returns the batch id."""
    if not records:
        return None
    records = sorted(records, key=lambda r: r.raw_id)
    # From content and fetch times only: landing the same fetches again is the same batch.
    batch_id = stable_id("batch", *(f"{r.raw_id}@{r.fetched_at.isoformat()}" for r in records))
    arrow = records_to_table(records, TABLES["raw"], batch_id=batch_id)
    day = f"{landed_at:%Y-%m-%d}"
    rel = f"raw/landed_date={day}/batch-{batch_id}.parquet"
    staged = f"{STAGING}/raw/batch-{batch_id}.parquet"
    if storage.remote:
        digest, size = storage.write_parquet(staged, arrow, **PARQUET_OPTIONS)
    else:
        digest = write_parquet_durable(arrow, storage.local(staged))
        size = storage.size(staged)
    f = StagedFile("raw", day, staged, rel, arrow.num_rows, digest, size=size)
    delta.ensure_table(storage, TABLES["raw"])
    move_in(storage, [f], None)
    delta.commit_files(storage, TABLES["raw"], None, [f])
    return batch_id


def adopt_orphans(storage: Storage) -> None:
    """A batch moved into `raw/` by a writer that died before its log entry is complete
    (written whole before the move): it is committed, not lost."""
    files = [r for r in storage.files("raw", ".parquet") if "/landed_date=" in r and "/batch-" in r]
    if not files:
        return
    live = set(batches(storage).values())
    orphans = [
        StagedFile("raw", parent_name(r).split("=", 1)[1], "", r, 0, "")
        for r in files
        if storage.location(r) not in live
    ]
    if orphans:
        delta.commit_files(storage, TABLES["raw"], None, orphans)


def batches(storage: Storage) -> dict[str, str]:
    """Landed batch id -> its file's location, as the raw table's current version lists them."""
    if not delta.is_table(storage, "raw"):
        return {}
    entries = delta.live_adds(delta.open_table(storage, "raw"))
    return {
        e["path"].rsplit("/", 1)[-1].removesuffix(".parquet").removeprefix("batch-"): storage.location(
            f"raw/{e['path']}"
        )
        for e in entries
    }

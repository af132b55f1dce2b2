"""Read a newsbeam lake back the way consumers do: DuckDB and pyarrow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds


def delta_files(out: Path, folder: str) -> list[str]:
    """The files of the current version of the Delta table in `out/folder`, read by deltalake."""
    from deltalake import DeltaTable

    if not (out / folder / "_delta_log").is_dir():
        return []
    return sorted(DeltaTable(str(out / folder)).file_uris())


def duck_rows(out: Path, table: str, columns: str = "*", order: str = "1") -> list[dict[str, Any]]:
    """Rows of the current version of a table (by folder), through deltalake and DuckDB."""
    files = delta_files(out, table)
    if not files:
        return []
    con = duckdb.connect()
    rel = con.sql(
        f"SELECT {columns} FROM read_parquet({files!r}, hive_partitioning = true, union_by_name = true) "
        f"ORDER BY {order}"
    )
    names = rel.columns
    return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]


def arrow_table(out: Path, table: str) -> Any:
    """The current version of a table (by folder), through deltalake and pyarrow."""
    return ds.dataset(
        delta_files(out, table), format="parquet", partitioning="hive", partition_base_dir=str(out / table)
    ).to_table()


def _snapshot_files(out: Path, table: str) -> list[str]:
    from pipeline.lake.store import Lake

    return [str(p) for p in Lake(out).snapshot_files(table)]


def snapshot_duck_rows(out: Path, table: str, columns: str = "*") -> list[dict[str, Any]]:
    """One committed state (the manifest-listed files), every schema version unified."""
    from schemas.arrow import TABLES

    files = _snapshot_files(out, table)
    if not files:
        return []
    part = TABLES[table].partition_column
    rel = duckdb.connect().sql(
        f"SELECT {columns} FROM read_parquet({files!r}, hive_partitioning = true, union_by_name = true, "
        f"hive_types = {{'{part}': DATE}}) ORDER BY ALL"
    )
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def snapshot_arrow(out: Path, table: str) -> Any:
    """The same state through pyarrow: the current schema unified with older files'."""
    import pyarrow as pa

    from schemas.arrow import TABLES

    t = TABLES[table]
    partitioning = pa.schema([pa.field(t.partition_column, pa.date32())])
    dataset = ds.dataset(
        _snapshot_files(out, table),
        schema=pa.unify_schemas([t.schema, partitioning]),
        format="parquet",
        partitioning=ds.partitioning(partitioning, flavor="hive"),
    )
    return dataset.to_table().sort_by([(t.sort_key, "ascending"), ("run_id", "ascending")])


def glob_duck_count(out: Path, table: str) -> int:
    """What a plain reader of the partition folders sees (no Delta log): must never fail.

    It globs the partition folders only: `_delta_log/` holds checkpoint Parquet files too.
    """
    from schemas.arrow import TABLES

    folder = out / TABLES[table].folder
    pattern = f"{TABLES[table].partition_column}=*/*.parquet"
    if not any(folder.glob(pattern)):
        return 0
    sql = f"SELECT count(*) FROM read_parquet('{folder}/{pattern}', hive_partitioning = true)"
    return int(duckdb.sql(sql).fetchall()[0][0])


def delta_count(out: Path, table: str) -> int:
    """Rows of the current version of a table (by folder), through deltalake and DuckDB."""
    files = delta_files(out, table)
    if not files:
        return 0
    return int(duckdb.sql(f"SELECT count(*) FROM read_parquet({files!r})").fetchall()[0][0])

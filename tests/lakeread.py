"""Read a newsbeam lake back the way consumers do: DuckDB and pyarrow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds


def duck_rows(out: Path, table: str, columns: str = "*", order: str = "1") -> list[dict[str, Any]]:
    folder = out / table
    if not any(folder.glob("*/*.parquet")):
        return []
    con = duckdb.connect()
    rel = con.sql(
        f"SELECT {columns} FROM read_parquet('{folder}/**/*.parquet', hive_partitioning = true) "
        f"ORDER BY {order}"
    )
    names = rel.columns
    return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]


def arrow_table(out: Path, table: str) -> Any:
    return ds.dataset(out / table, format="parquet", partitioning="hive").to_table()


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
    """What a plain reader of the dataset folder sees (no manifest): must never fail."""
    from schemas.arrow import TABLES

    folder = out / TABLES[table].folder
    if not any(folder.glob("*/*.parquet")):
        return 0
    sql = f"SELECT count(*) FROM read_parquet('{folder}/**/*.parquet', hive_partitioning = true)"
    return int(duckdb.sql(sql).fetchall()[0][0])

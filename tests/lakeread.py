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

"""The commit: staged outside the datasets, moved in, manifest last, safe to repeat."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from pipeline.lake import Lake, stage_partition
from schemas.records import Reject

T0 = datetime(2024, 6, 19, tzinfo=timezone.utc)
RUN = "a" * 32


def rejects(n: int, source: str = "s") -> list[Reject]:
    return [
        Reject(f"id-{i}", "parse", "bad_json", "ParseError", False, source, "o", "h", T0, "d")
        for i in range(n)
    ]


def count(out: Path) -> int:
    files = list((out / "rejects").glob("*/*.parquet"))
    if not files:
        return 0
    sql = f"SELECT count(*) FROM read_parquet('{out}/rejects/**/*.parquet', hive_partitioning = true)"
    return int(duckdb.sql(sql).fetchall()[0][0])


def test_staged_files_are_invisible_until_commit(tmp_path: Path) -> None:
    staged = stage_partition(str(tmp_path), RUN, "rejects", "2024-06-19", rejects(3))
    assert (tmp_path / staged.staged_path).exists()
    assert count(tmp_path) == 0, "a reader globbing the dataset must not see staged files"
    manifest = Lake(tmp_path).commit(RUN, ["batch-1"], [staged])
    assert count(tmp_path) == 3
    assert manifest["files"][0]["rows"] == 3
    assert manifest["stats"]["reasons"]["rejects"] == {"bad_json": 3}
    assert not (tmp_path / "_staging" / RUN).exists()
    assert Lake(tmp_path).pending_raw_batches() == {}


def test_commit_is_idempotent_and_survives_a_crash_between_moves(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    staged = [
        stage_partition(str(tmp_path), RUN, "rejects", day, rejects(2, source=day))
        for day in ("2024-06-18", "2024-06-19")
    ]
    # A crash after the first move and before the manifest:
    first = staged[0]
    (tmp_path / first.final_path).parent.mkdir(parents=True)
    os.replace(tmp_path / first.staged_path, tmp_path / first.final_path)
    assert not lake.manifest_path(RUN).exists()

    manifest = lake.commit(RUN, [], staged)
    again = lake.commit(RUN, [], staged)
    assert manifest == again
    assert count(tmp_path) == 4
    assert json.loads(lake.manifest_path(RUN).read_text())["run_id"] == RUN


def test_stale_files_of_an_earlier_attempt_are_removed(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    stale = stage_partition(str(tmp_path), RUN, "rejects", "2024-06-17", rejects(5))
    (tmp_path / stale.final_path).parent.mkdir(parents=True)
    os.replace(tmp_path / stale.staged_path, tmp_path / stale.final_path)  # attempt 1 died here
    fresh = stage_partition(str(tmp_path), RUN, "rejects", "2024-06-19", rejects(1))
    lake.commit(RUN, [], [fresh])
    assert count(tmp_path) == 1
    assert not (tmp_path / stale.final_path).exists()


def test_staging_is_deterministic(tmp_path: Path) -> None:
    a = stage_partition(str(tmp_path / "a"), RUN, "rejects", "2024-06-19", rejects(3))
    b = stage_partition(str(tmp_path / "b"), RUN, "rejects", "2024-06-19", list(reversed(rejects(3))))
    assert (a.final_path, a.sha256) == (b.final_path, b.sha256)

"""The commit: staged outside the datasets, moved in, manifest last, safe to repeat."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from pipeline.lake.store import Lake, stage_partition
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


# --- one writer ------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from pipeline.lake.store import Lake
with Lake(sys.argv[1]).lock():
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_sigkilled_lock_holder_never_leaves_the_lake_locked(tmp_path: Path, seeds_dir: Path) -> None:
    import signal
    import subprocess
    import sys

    from pipeline import cli
    from pipeline.lake.store import LakeBusy
    from tests.conftest import ROOT

    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        args = ["--output", str(out)]
        assert cli.main(["run", *args, "--seeds", str(seeds_dir)]) == cli.EXIT_BUSY
        assert cli.main(["compact", *args]) == cli.EXIT_BUSY
        assert cli.main(["vacuum", *args]) == cli.EXIT_BUSY
        with pytest.raises(LakeBusy):
            Lake(out).lock().__enter__()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert holder.returncode == -signal.SIGKILL
    with Lake(out).lock():  # the kernel dropped the dead holder's lock
        pass


# --- swaps -------------------------------------------------------------------------


def _commit_run(lake: Lake, run_id: str, days: dict[str, int], source: str = "s") -> dict:
    staged = [
        stage_partition(
            str(lake.root), run_id, "rejects", day, rejects_named(n, f"{run_id[:4]}-{day}", source)
        )
        for day, n in days.items()
    ]
    return lake.commit(run_id, [], staged)


def rejects_named(n: int, prefix: str, source: str = "s") -> list[Reject]:
    return [
        Reject(f"{prefix}-{i}", "parse", "bad_json", "ParseError", False, source, "o", "h", T0, "d")
        for i in range(n)
    ]


def _ids(out: Path) -> list[str]:
    from tests.lakeread import snapshot_arrow, snapshot_duck_rows

    duck = [r["reject_id"] for r in snapshot_duck_rows(out, "rejects", "reject_id")]
    arrow = snapshot_arrow(out, "rejects").column("reject_id").to_pylist()
    assert sorted(duck) == sorted(arrow)
    return sorted(duck)


def test_replace_partitions_swaps_whole_partitions_and_keeps_old_snapshots_readable(
    tmp_path: Path,
) -> None:
    from pipeline.lake.store import stage_arrow
    from schemas.arrow import TABLES, records_to_table

    lake = Lake(tmp_path)
    _commit_run(lake, "1" * 32, {"2024-06-18": 2, "2024-06-19": 2})
    _commit_run(lake, "2" * 32, {"2024-06-19": 3})
    old_snapshot = lake.snapshot_files("rejects")
    assert len(old_snapshot) == 3

    new_rows = records_to_table(rejects_named(1, "new"), TABLES["rejects"], run_id="3" * 32)
    staged = stage_arrow(tmp_path, "op-token", "rejects", "2024-06-19", new_rows)
    with lake.lock():
        manifest = lake.replace_partitions("retag", {("rejects", "2024-06-19"): [staged]})
        again = lake.replace_partitions("retag", {("rejects", "2024-06-19"): [staged]})
    assert manifest is not None and manifest == again
    assert {f["path"] for f in manifest["removed"]} == {
        p.relative_to(tmp_path / "_files").as_posix() for p in old_snapshot if "2024-06-19" in str(p)
    }
    assert _ids(tmp_path) == ["1111-2024-06-18-0", "1111-2024-06-18-1", "new-0"]
    assert count(tmp_path) == 3, "a plain reader of the folders sees the swapped state"
    assert [p.name for p in lake.committed_files("rejects")] == sorted(
        [staged.final_path.rsplit("/", 1)[1], old_snapshot[0].name]
    )
    # A reader that listed the files before the swap can still read them all.
    assert duckdb.sql(
        f"SELECT count(*) FROM read_parquet({[str(p) for p in old_snapshot]!r})"
    ).fetchall() == [(7,)]


def test_a_swap_killed_before_its_manifest_is_rolled_back_and_after_it_rolled_forward(
    tmp_path: Path,
) -> None:
    from pipeline.lake.store import stage_arrow
    from schemas.arrow import TABLES, records_to_table

    lake = Lake(tmp_path)
    _commit_run(lake, "1" * 32, {"2024-06-19": 2})
    _commit_run(lake, "2" * 32, {"2024-06-19": 3})
    before = _ids(tmp_path)
    rows = records_to_table(rejects_named(1, "new"), TABLES["rejects"], run_id="3" * 32)
    staged = stage_arrow(tmp_path, "op", "rejects", "2024-06-19", rows)
    # Killed after moving the new file in, before the manifest: what a crash leaves.
    lake._move_in([staged], None)
    assert count(tmp_path) == 6 and _ids(tmp_path) == before
    with lake.lock():
        pass
    assert count(tmp_path) == 5 and _ids(tmp_path) == before

    # Killed after the manifest, before the replaced files were unlinked.
    staged = stage_arrow(tmp_path, "op", "rejects", "2024-06-19", rows)
    old = lake.committed_files("rejects")
    with lake.lock():
        lake.replace_partitions("retag", {("rejects", "2024-06-19"): [staged]})
    for path in old:  # put the old dataset names back, as if never unlinked
        os.link(tmp_path / "_files" / path.relative_to(tmp_path), path)
    assert _ids(tmp_path) == ["new-0"]
    with lake.lock():
        pass
    assert count(tmp_path) == 1


# --- schema versions ---------------------------------------------------------------


def test_a_lake_spanning_two_schema_versions_reads_whole_in_duckdb_and_pyarrow(tmp_path: Path) -> None:
    """An older file lacks a column a later version added: every reader sees every column,
    the older rows null in it, and partition values come back exactly."""
    import pyarrow as pa

    from pipeline.lake.store import stage_arrow
    from schemas.arrow import TABLES, records_to_table
    from tests.factories import make_article
    from tests.lakeread import snapshot_arrow, snapshot_duck_rows

    table = TABLES["articles"]
    days = {"2024-06-18": "old", "2024-06-19": "new"}
    staged = []
    for day, version in days.items():
        article = make_article(
            title=f"{version} story", text=f"Body of the {version} story.", url=f"https://x.example/{version}",
            published_at=datetime.fromisoformat(f"{day}T23:30:00+00:00"),
        )  # fmt: skip
        rows = records_to_table([article], table, run_id="r" * 32)
        if version == "old":  # written before `taxonomy_version` existed
            rows = rows.drop_columns(["taxonomy_version"])
        else:
            rows = rows.set_column(
                rows.schema.get_field_index("taxonomy_version"), "taxonomy_version", pa.array(["tx-2"])
            )
        staged.append(stage_arrow(tmp_path, "r" * 32, "articles", day, rows))
    Lake(tmp_path).commit("r" * 32, [], staged)

    rows = {r["title"]: r for r in snapshot_duck_rows(tmp_path, "articles")}
    assert set(rows["old story"]) == set(table.schema.names) | {"published_date"}
    assert rows["old story"]["taxonomy_version"] is None
    assert rows["new story"]["taxonomy_version"] == "tx-2"
    assert {t: r["published_date"].isoformat() for t, r in rows.items()} == {
        "old story": "2024-06-18",
        "new story": "2024-06-19",
    }
    # The same through a plain glob: DuckDB needs union_by_name for the column to appear.
    glob = duckdb.sql(
        "SELECT title, taxonomy_version, published_date FROM "
        f"read_parquet('{tmp_path}/articles/**/*.parquet', "
        "hive_partitioning = true, union_by_name = true) ORDER BY title"
    ).fetchall()
    assert [(t, v, d.isoformat()) for t, v, d in glob] == [
        ("new story", "tx-2", "2024-06-19"),
        ("old story", None, "2024-06-18"),
    ]

    arrow = snapshot_arrow(tmp_path, "articles")
    assert arrow.schema.names == table.schema.names + ["published_date"]
    by_title = {r["title"]: r for r in arrow.to_pylist()}
    assert by_title["old story"]["taxonomy_version"] is None
    assert by_title["new story"]["taxonomy_version"] == "tx-2"
    assert {t: r["published_date"].isoformat() for t, r in by_title.items()} == {
        "old story": "2024-06-18",
        "new story": "2024-06-19",
    }
    assert arrow.schema.field("published_at").type == pa.timestamp("us", tz="UTC")

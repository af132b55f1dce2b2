"""The commit: staged outside the datasets, moved in, manifest last, safe to repeat."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from pipeline.lake.files import stage_partition
from pipeline.lake.store import Lake
from schemas.records import Reject

T0 = datetime(2024, 6, 19, tzinfo=timezone.utc)
RUN = "a" * 32


def rejects(n: int, source: str = "s") -> list[Reject]:
    return [
        Reject(f"id-{i}", "parse", "bad_json", "ParseError", False, source, "o", "h", T0, "d")
        for i in range(n)
    ]


def count(out: Path) -> int:
    """Rows of the current version of `rejects`, through deltalake and DuckDB."""
    from tests.lakeread import delta_files

    files = delta_files(out, "rejects")
    if not files:
        return 0
    return int(duckdb.sql(f"SELECT count(*) FROM read_parquet({files!r})").fetchall()[0][0])


def test_staged_files_are_invisible_until_commit(tmp_path: Path) -> None:
    from deltalake import DeltaTable

    staged = stage_partition(str(tmp_path), RUN, "rejects", "2024-06-19", rejects(3))
    assert (tmp_path / staged.staged_path).exists()
    assert not list((tmp_path / "rejects").glob("*/*.parquet")), "staged files stay outside the table"
    assert count(tmp_path) == 0
    manifest = Lake(tmp_path).commit(RUN, ["batch-1"], [staged])
    assert count(tmp_path) == 3
    assert manifest["files"][0]["rows"] == 3
    assert manifest["stats"]["reasons"]["rejects"] == {"bad_json": 3}
    assert not (tmp_path / "_staging" / RUN).exists()
    table = DeltaTable(str(tmp_path / "rejects"))
    assert table.transaction_version("newsbeam") == manifest["seq"] == 1
    assert Lake(tmp_path).versions_at(manifest["seq"]) == (1, {"rejects": table.version()})
    assert Lake(tmp_path).manifests_by_id()[RUN]["raw_batches"] == ["batch-1"]


COMMIT_AND_DIE = """
import sys
from datetime import datetime, timezone
from pipeline.lake.files import stage_partition
from pipeline.lake.store import Lake
from schemas.records import Duplicate, Reject
T0 = datetime(2024, 6, 19, tzinfo=timezone.utc)
out, kill_at = sys.argv[1], sys.argv[2]
staged = []
for day in ("2024-06-18", "2024-06-19"):
    rows = [Reject(f"{day}-{i}", "parse", "bad_json", "ParseError", False, day, "o", "h", T0, "d")
            for i in range(2)]
    staged.append(stage_partition(out, "a" * 32, "rejects", day, rows))
dup = Duplicate("d1", "https://x.example/1", "s", T0, "a1", "same_url")
staged.append(stage_partition(out, "a" * 32, "duplicates", "2024-06-19", [dup]))
lake = Lake(out)
with lake.lock():
    lake.commit("a" * 32, ["batch-1"], staged, kill_at=kill_at)
"""


@pytest.mark.parametrize(
    ("kill_at", "completed"),
    [
        ("before_moves", False),
        ("between_moves", True),
        ("before_manifest", True),
        ("between_tables", True),
        ("after_manifest", True),
    ],
)
def test_a_commit_killed_anywhere_is_all_or_nothing_and_completed_by_the_next_writer(
    tmp_path: Path, kill_at: str, completed: bool
) -> None:
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.lakeread import delta_files

    out = tmp_path / "out"
    child = subprocess.run([sys.executable, "-c", COMMIT_AND_DIE, str(out), kill_at], cwd=ROOT, timeout=120)
    assert child.returncode == -signal.SIGKILL
    lake = Lake(out)
    with lake.lock():  # the next writer completes (or never sees) the dead one's commit
        pass
    assert count(out) == (4 if completed else 0)
    assert len(delta_files(out, "duplicates")) == (1 if completed else 0)
    assert lake.is_committed(RUN) is completed
    assert not list((out / "_staging" / "commits").glob("*.json"))
    if completed:  # once, and a retry changes nothing
        record = lake.manifests_by_id()[RUN]
        with lake.lock():
            again = lake.commit(RUN, ["batch-1"], [])
        assert again == record and count(out) == 4 and len(lake.manifests()) == 1


def test_a_table_that_already_holds_a_commit_is_not_given_it_twice(tmp_path: Path) -> None:
    """A commit killed between its tables: the table that has it keeps one copy."""
    from pipeline.lake import delta
    from schemas.arrow import TABLES

    lake = Lake(tmp_path)
    staged = stage_partition(str(tmp_path), RUN, "rejects", "2024-06-19", rejects(2))
    record = lake.commit(RUN, [], [staged])
    version = lake.table_version("rejects")
    assert delta.commit_files(lake.storage, TABLES["rejects"], record["seq"], [staged]) is None
    assert lake.table_version("rejects") == version and count(tmp_path) == 2


def test_staging_is_deterministic(tmp_path: Path) -> None:
    a = stage_partition(str(tmp_path / "a"), RUN, "rejects", "2024-06-19", rejects(3))
    b = stage_partition(str(tmp_path / "b"), RUN, "rejects", "2024-06-19", list(reversed(rejects(3))))
    assert (a.final_path, a.sha256) == (b.final_path, b.sha256)


# --- no command deletes what it cannot account for ------------------------------------


def _committed_lake(tmp_path: Path) -> tuple[Lake, list[Path]]:
    lake = Lake(tmp_path)
    lake.commit(RUN, [], [stage_partition(str(tmp_path), RUN, "rejects", "2024-06-19", rejects(2))])
    return lake, sorted((tmp_path / "rejects").glob("*/*.parquet"))


@pytest.mark.parametrize("damage", ["table log deleted", "ledger log deleted", "log entry truncated"])
def test_writing_refuses_when_a_log_is_missing_or_unreadable_and_deletes_nothing(
    tmp_path: Path, damage: str
) -> None:
    import shutil

    from pipeline.lake.store import LakeError

    lake, files = _committed_lake(tmp_path)
    if damage == "table log deleted":
        shutil.rmtree(tmp_path / "rejects" / "_delta_log")
    elif damage == "ledger log deleted":
        shutil.rmtree(tmp_path / "_runs" / "_delta_log")
    else:
        entry = sorted((tmp_path / "rejects" / "_delta_log").glob("*.json"))[-1]
        entry.write_text(entry.read_text()[:40])
    with pytest.raises(LakeError, match="nothing was written"), lake.lock():
        pass
    assert sorted((tmp_path / "rejects").glob("*/*.parquet")) == files
    assert all(f.stat().st_size > 0 for f in files)


def test_a_lake_in_the_layout_before_delta_must_be_migrated_first(tmp_path: Path) -> None:
    from pipeline.lake.store import LakeError

    (tmp_path / "_manifests").mkdir()
    with pytest.raises(LakeError, match="newsbeam migrate"), Lake(tmp_path).lock():
        pass


def test_a_raw_batch_moved_in_by_a_writer_that_died_before_its_log_entry_is_kept(tmp_path: Path) -> None:
    from schemas.records import RawFetch

    lake = Lake(tmp_path)
    raw = RawFetch("r1", "seed", "seed", "seeds/a.md", T0, "ok", body=b"# A")
    batch = lake.land_raw([raw], T0)
    assert batch is not None and set(lake.raw_batches()) == {batch}
    orphan = tmp_path / "raw" / "landed_date=2024-06-19" / "batch-orphan.parquet"
    orphan.write_bytes(Path(lake.raw_batches()[batch]).read_bytes())
    with lake.lock():
        pass
    assert set(lake.raw_batches()) == {batch, "orphan"}


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
    from pipeline.lake.files import stage_arrow
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
        Path(p).relative_to(tmp_path).as_posix() for p in old_snapshot if "2024-06-19" in p
    }
    assert _ids(tmp_path) == ["1111-2024-06-18-0", "1111-2024-06-18-1", "new-0"]
    assert count(tmp_path) == 3, "deltalake's current version is the swapped state"
    assert [Path(p).name for p in lake.committed_files("rejects")] == sorted(
        [staged.final_path.rsplit("/", 1)[1], Path(old_snapshot[0]).name]
    )
    # A reader that listed the files before the swap can still read them all, and the
    # version before the swap is still there to read (time travel).
    assert duckdb.sql(
        f"SELECT count(*) FROM read_parquet({[str(p) for p in old_snapshot]!r})"
    ).fetchall() == [(7,)]
    _, before = lake.versions_at(manifest["seq"] - 1)
    assert lake.snapshot_files("rejects", before["rejects"]) == old_snapshot


def test_a_swap_killed_after_its_staged_list_is_completed_by_the_next_writer(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    lake = Lake(tmp_path)
    _commit_run(lake, "1" * 32, {"2024-06-19": 2})
    _commit_run(lake, "2" * 32, {"2024-06-19": 3})
    swap = """
import sys
from pipeline.lake.files import stage_arrow
from pipeline.lake.store import Lake
from schemas.arrow import TABLES, records_to_table
from tests.test_lake import rejects_named
lake = Lake(sys.argv[1])
rows = records_to_table(rejects_named(1, "new"), TABLES["rejects"], run_id="3" * 32)
staged = stage_arrow(lake.root, "op", "rejects", "2024-06-19", rows)
with lake.lock():
    lake.replace_partitions("retag", {("rejects", "2024-06-19"): [staged]}, kill_at="before_manifest")
"""
    child = subprocess.run([sys.executable, "-c", swap, str(tmp_path)], cwd=ROOT, timeout=120)
    assert child.returncode == -signal.SIGKILL
    assert count(tmp_path) == 5, "until the swap completes, readers see the state before it"
    with lake.lock():
        pass
    assert _ids(tmp_path) == ["new-0"] and count(tmp_path) == 1
    assert [m["kind"] for m in lake.manifests()] == ["run", "run", "retag"]


# --- schema versions ---------------------------------------------------------------


def test_a_lake_spanning_two_schema_versions_reads_whole_in_duckdb_and_pyarrow(tmp_path: Path) -> None:
    """An older file lacks a column a later version added: every reader sees every column,
    the older rows null in it, and partition values come back exactly."""
    import pyarrow as pa

    from pipeline.lake.files import stage_arrow
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

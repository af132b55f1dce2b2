"""compact, replay, vacuum, sql and status, read back with DuckDB and pyarrow."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipeline import cli
from pipeline.lake.files import KILL_ENV, move_in, stage_arrow, stage_partition
from pipeline.lake.store import Lake
from pipeline.ops.maintenance import compact, vacuum
from pipeline.run import run_cycle
from schemas.arrow import TABLES, records_to_table
from schemas.ids import stable_id
from schemas.records import RawFetch
from tests.conftest import ROOT, make_config
from tests.factories import make_article
from tests.lakeread import delta_count, glob_duck_count, snapshot_arrow, snapshot_duck_rows
from tests.test_crash import FIRST, SECOND, lake_state, write_seeds

DAYS = ("2024-06-17", "2024-06-18", "2024-06-19")


def _small_runs(lake: Lake, runs: int, start: int = 0) -> None:
    """Runs of a few articles in each of three partitions: many small files."""
    for r in range(start, start + runs):
        run_id = stable_id("run", str(r))
        staged = []
        for d, day in enumerate(DAYS):
            articles = [
                make_article(
                    title=f"Story {r}-{d}-{i}",
                    text=f"Body {r} {d} {i}.",
                    url=f"https://x.example/{r}/{d}/{i}",
                    published_at=datetime.fromisoformat(f"{day}T12:00:00+00:00"),
                    raw_id=f"raw-{r}",
                )  # fmt: skip
                for i in range(4)
            ]
            staged.append(stage_partition(str(lake.root), run_id, "articles", day, articles))
        lake.commit(run_id, [], staged)


def _article_ids(out: Path) -> list[str]:
    duck = [r["article_id"] for r in snapshot_duck_rows(out, "articles", "article_id")]
    arrow = snapshot_arrow(out, "articles").column("article_id").to_pylist()
    assert sorted(arrow) == duck
    return duck


def test_compaction_while_a_reader_loops_never_fails_and_keeps_every_row(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    _small_runs(lake, 6)
    expected = _article_ids(tmp_path)
    full_rows = snapshot_duck_rows(tmp_path, "articles")
    assert len(expected) == 6 * 3 * 4

    stop, seen, errors = threading.Event(), [], []

    def reader() -> None:
        while not stop.is_set():
            try:
                files = [str(p) for p in lake.snapshot_files("articles")]  # one committed state
                duck = duckdb.sql(f"SELECT article_id FROM read_parquet({files!r}) ORDER BY 1").fetchall()
                arrow = ds.dataset(files, format="parquet").to_table(columns=["article_id"])
                assert sorted(arrow.column("article_id").to_pylist()) == [r[0] for r in duck]
                seen.append([r[0] for r in duck])
            except Exception as exc:  # what the test is about: a reader must never fail
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for round_ in range(3):
            with lake.lock():
                result = compact(lake)
            assert result.partitions == 3 and result.rows == len(expected)
            assert len(lake.committed_files("articles")) == 3
            if round_ < 2:
                _small_runs(lake, 1, start=6 + round_)
                expected = _article_ids(tmp_path)
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors[:3]
    assert seen, "the reader ran"
    sizes = {len(ids) for ids in seen}
    assert sizes <= {72, 84, 96}, "a reader sees a whole committed state, never a partial one"
    assert all(ids == sorted(set(ids)) for ids in seen), "never a duplicate row"

    rows = snapshot_duck_rows(tmp_path, "articles")
    assert len(rows) == 96 and delta_count(tmp_path, "articles") == 96
    first_six = {stable_id("run", str(r)) for r in range(6)}
    assert [r for r in rows if r["run_id"] in first_six] == full_rows, "identical rows"


def test_compaction_is_a_no_op_when_every_partition_has_one_file(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    _small_runs(lake, 1)
    with lake.lock():
        assert compact(lake).partitions == 0
    assert len(lake.manifests()) == 1


def test_compact_command(tmp_path: Path, capsys) -> None:
    _small_runs(Lake(tmp_path), 5)
    assert cli.main(["compact", "--output", str(tmp_path), "--max-rows-per-file", "5"]) == 0
    assert "compacted 3 partitions: 15 files -> 12, 60 rows" in capsys.readouterr().out
    assert len(_article_ids(tmp_path)) == 60
    sizes = [e["rows"] for e in Lake(tmp_path).live_files("articles").values()]
    assert sorted(sizes) == [5] * 12


# --- vacuum ------------------------------------------------------------------------


def _raw(name: str) -> RawFetch:
    return RawFetch(
        raw_id=f"raw-{name}", source=f"seeds/{name}", source_kind="seed", origin=name,
        fetched_at=datetime(2024, 6, 1, tzinfo=timezone.utc), status="ok", body=b"x",
    )  # fmt: skip


def test_vacuum_deletes_leftovers_retired_files_after_grace_and_only_processed_old_raw(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path)
    _small_runs(lake, 2)
    old_day = datetime(2024, 6, 1, tzinfo=timezone.utc)
    processed = lake.land_raw([_raw("a")], old_day)
    pending = lake.land_raw([_raw("b")], old_day)
    recent = lake.land_raw([_raw("c")], datetime.now(timezone.utc) - timedelta(days=2))
    lake.commit("9" * 32, [processed or "", recent or ""], [])
    (tmp_path / "_staging" / "dead-run" / "articles").mkdir(parents=True)
    (tmp_path / "_staging" / "dead-run" / "articles" / "x.parquet").write_bytes(b"partial")
    with lake.lock():
        compact(lake)
    live = {Path(p).resolve() for name in ("articles", "dedup_index") for p in lake.committed_files(name)}
    retired = [
        p for folder in ("articles", "_index/dedup") for p in (tmp_path / folder).glob("*/*.parquet")
        if p.resolve() not in live
    ]  # fmt: skip
    assert len(retired) == 6

    with lake.lock():
        first = vacuum(lake, datetime.now(timezone.utc), raw_retention_days=10)
    assert "_staging/dead-run" in first.staging and not any((tmp_path / "_staging").iterdir())
    kept = [f for f in first.retired_files if not f.startswith("raw/")]
    assert kept == [], "replaced files stay for readers of older versions"
    assert all(p.exists() for p in retired)
    assert set(first.raw_batches) == {processed}, "pending or recent raw data is never deleted"
    assert set(lake.raw_batches()) == {pending, recent}
    assert lake.pending_raw_batches().keys() == {pending}

    with lake.lock():
        later = vacuum(lake, datetime.now(timezone.utc) + timedelta(hours=2))
    assert len([f for f in later.retired_files if "raw/" not in f]) == 6 and later.raw_batches == []
    assert all(not p.exists() for p in retired)
    assert len(_article_ids(tmp_path)) == 24
    assert glob_duck_count(tmp_path, "articles") == 24, "after vacuum the folders hold only live files"


# --- sql and status ------------------------------------------------------------------


def test_sql_reads_only_committed_files(tmp_path: Path, capsys) -> None:
    lake = Lake(tmp_path)
    _small_runs(lake, 2)
    # A file moved in by a commit that died before its manifest: plain readers see it.
    ghost = make_article(
        title="Ghost", text="Not committed.", published_at=datetime(2024, 6, 17, tzinfo=timezone.utc)
    )
    extra = records_to_table([ghost], TABLES["articles"], run_id="g" * 32)
    move_in(lake.storage, [stage_arrow(tmp_path, "g" * 32, "articles", "2024-06-17", extra)], None)
    assert glob_duck_count(tmp_path, "articles") == 25
    query = (
        "SELECT count(*) AS n, count(DISTINCT published_date) AS days FROM articles WHERE title <> 'Ghost'"
    )
    assert cli.main(["sql", "--output", str(tmp_path), query]) == 0
    out = capsys.readouterr().out
    assert "24" in out and "3" in out
    assert (
        cli.main(["sql", "--output", str(tmp_path), "SELECT count(*) FROM articles WHERE title = 'Ghost'"])
        == 0
    )
    assert "│            0 │" in capsys.readouterr().out
    assert cli.main(["sql", "--output", str(tmp_path), "SELECT nope FROM articles"]) == cli.EXIT_FAILED
    assert "nope" in capsys.readouterr().err


def test_sql_on_an_empty_lake_has_typed_empty_views(tmp_path: Path, capsys) -> None:
    (tmp_path / "seeds").mkdir()
    run_cycle(make_config(tmp_path, tmp_path / "seeds"))  # a run with nothing to commit
    out = str(tmp_path / "data")
    assert cli.main(["sql", "--output", out, "SELECT count(*), max(published_date) FROM articles"]) == 0
    assert "│            0 │" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command", [["sql", "SELECT 1"], ["status"], ["retag", "--since", "2024-06-01", "--until", "2024-06-30"]]
)
def test_a_folder_that_is_not_a_lake_is_an_error_not_empty_tables(
    tmp_path: Path, capsys, command: list[str]
) -> None:
    (tmp_path / "photos").mkdir()
    assert cli.main([command[0], "--output", str(tmp_path / "photos"), *command[1:]]) == 2
    assert "is not a newsbeam lake" in capsys.readouterr().err


def test_retag_with_since_after_until_is_an_error(tmp_path: Path, capsys) -> None:
    lake = Lake(tmp_path)
    _small_runs(lake, 1)
    args = ["retag", "--output", str(tmp_path), "--since", "2024-06-30", "--until", "2024-06-01"]
    assert cli.main(args) == 2
    assert "--since 2024-06-30 is after --until 2024-06-01" in capsys.readouterr().err


def test_status_lists_commits_and_feed_health(tmp_path: Path, capsys) -> None:
    lake = Lake(tmp_path)
    _small_runs(lake, 2)
    with lake.lock():
        compact(lake, now=datetime(2024, 6, 20, 1, 2, 3, tzinfo=timezone.utc))
    states = {
        "https://ok.example/feed": {"last_success_at": "2024-06-20T01:00:00+00:00", "last_error": None},
        "https://bad.example/feed": {
            "last_error": "HTTP 503", "failure_streak": 4, "next_poll_at": "2024-06-20T05:00:00+00:00",
        },
        "https://odd.example/feed": "not a dict",
    }  # fmt: skip
    lake.state_path("feeds.json").parent.mkdir(parents=True)
    lake.state_path("feeds.json").write_text(json.dumps(states), encoding="utf-8")
    assert cli.main(["status", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    commits = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [c[1] for c in commits] == ["compact", "run", "run"]
    assert commits[0][3] == "2024-06-20T01:02:03"
    assert "articles 12" in out and "replaced 6 files" in out
    bad = next(line for line in lines if "bad.example" in line)
    assert "4" in bad.split() and "2024-06-20T05:00:00+00:00" in bad and "HTTP 503" in bad
    assert "2024-06-20T01:00:00+00:00" in next(line for line in lines if "ok.example" in line)


# --- replay ----------------------------------------------------------------------------

DAY1 = datetime(2024, 6, 20, 8, tzinfo=timezone.utc)
DAY2 = datetime(2024, 6, 21, 8, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def two_day_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs landed on two days; the second holds a copy of an article of the first."""
    base = tmp_path_factory.mktemp("replay")
    seeds = base / "seeds"
    write_seeds(seeds, FIRST)
    config = make_config(base, seeds)
    run_cycle(config, clock=lambda: DAY1)
    write_seeds(seeds, {**FIRST, **SECOND})
    run_cycle(config, clock=lambda: DAY2)
    return config.output_dir


@pytest.fixture
def two_day_lake(two_day_template: Path, tmp_path: Path) -> Path:
    shutil.copytree(two_day_template, tmp_path / "data")
    (tmp_path / "empty.toml").write_text("", encoding="utf-8")
    return tmp_path / "data"


def _replay(out: Path, since: str, until: str) -> int:
    empty = out.parent / "empty.toml"
    return cli.main(
        ["replay", "--config", str(empty), "--output", str(out), "--since", since, "--until", until]
    )


def test_replay_of_an_unchanged_lake_changes_nothing(two_day_lake: Path, capsys) -> None:
    before = lake_state(two_day_lake)
    assert len(before["duplicates"]) == 1, "the second run found a copy of the first run's article"
    manifests = len(Lake(two_day_lake).manifests())
    # the second run alone (its copy of the first run's article must stay a duplicate), then both
    for since, until in (("2024-06-21", "2024-06-21"), ("2024-06-01", "2024-06-30")):
        assert _replay(two_day_lake, since, until) == 0
        assert "0 partitions replaced" in capsys.readouterr().out
        assert lake_state(two_day_lake) == before
    assert len(Lake(two_day_lake).manifests()) == manifests


def test_replay_restores_what_the_pipeline_produces_and_keeps_other_runs(two_day_lake: Path, capsys) -> None:
    """Articles of the first run are damaged (as an older pipeline might have written them);
    replaying its day rewrites exactly its rows, in one swap."""
    lake = Lake(two_day_lake)
    before = lake_state(two_day_lake)
    first_run = next(m["run_id"] for m in lake.manifests())
    with lake.lock():
        replacements = {}
        for rel, entry in lake.live_files("articles").items():
            rows = pa.parquet.read_table(two_day_lake / rel)
            titles = [t.upper() if r == first_run else t for t, r in zip(
                rows.column("title").to_pylist(), rows.column("run_id").to_pylist(), strict=True
            )]  # fmt: skip
            rows = rows.set_column(rows.schema.get_field_index("title"), "title", pa.array(titles))
            replacements[("articles", entry["partition"])] = [
                stage_arrow(two_day_lake, "damage", "articles", entry["partition"], rows)
            ]
        lake.replace_partitions("damage", replacements)
    damaged = lake_state(two_day_lake)
    assert damaged != before
    assert _replay(two_day_lake, "2024-06-21", "2024-06-21") == 0  # the second run: nothing to fix
    assert lake_state(two_day_lake) == damaged
    assert _replay(two_day_lake, "2024-06-20", "2024-06-20") == 0
    assert "1 runs" in capsys.readouterr().out
    assert lake_state(two_day_lake) == before
    assert lake.manifests()[-1]["kind"] == "replay"
    assert delta_count(two_day_lake, "articles") == len(before["articles"])


def test_replay_refuses_a_run_whose_raw_data_was_vacuumed(two_day_lake: Path, capsys) -> None:
    lake = Lake(two_day_lake)
    with lake.lock():
        vacuum(lake, datetime(2024, 7, 30, tzinfo=timezone.utc), raw_retention_days=30)
    assert not lake.raw_batches()
    assert _replay(two_day_lake, "2024-06-20", "2024-06-20") == cli.EXIT_FAILED
    assert "cannot be replayed" in capsys.readouterr().err


def test_replay_rejects_a_bad_range(two_day_lake: Path, capsys) -> None:
    assert _replay(two_day_lake, "2024-06-21", "2024-06-20") == cli.EXIT_FAILED
    assert "after --until" in capsys.readouterr().err


@pytest.mark.parametrize("point", ["before_moves", "between_moves", "before_manifest", "after_manifest"])
def test_a_killed_compaction_leaves_the_rows_readable_and_the_next_one_finishes(
    tmp_path: Path, point: str
) -> None:
    lake = Lake(tmp_path)
    _small_runs(lake, 3)
    rows = snapshot_duck_rows(tmp_path, "articles")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "compact", "--output", str(tmp_path)],
        env={**os.environ, KILL_ENV: point},
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert snapshot_duck_rows(tmp_path, "articles") == rows
    assert len(_article_ids(tmp_path)) == 36
    files = 3 if point == "after_manifest" else 9
    assert len(lake.committed_files("articles")) == files
    glob_duck_count(tmp_path, "articles")  # never fails

    assert cli.main(["compact", "--output", str(tmp_path)]) == 0
    assert snapshot_duck_rows(tmp_path, "articles") == rows
    assert delta_count(tmp_path, "articles") == 36
    assert len(lake.committed_files("articles")) == 3

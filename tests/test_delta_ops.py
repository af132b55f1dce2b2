"""Operations on the Delta lake: migrate from the layout before Delta, verify, time travel
(`sql --as-of`), vacuum and status, each read back with deltalake, DuckDB and pyarrow."""

from __future__ import annotations

import tarfile
from pathlib import Path

from deltalake import DeltaTable

from pipeline import cli
from pipeline.lake.store import Lake
from tests.conftest import FIXTURES
from tests.lakeread import arrow_table, delta_files, duck_rows

# Written by newsbeam before Delta tables: three runs (four articles) and a compaction of
# the 2024-06-18 partition, so the manifests list removed files and `_files/` holds them.
LEGACY = FIXTURES / "legacy-lake.tar.gz"
LEGACY_TITLES = [
    "Heavy rain expected across the region this weekend",
    "North Korean envoy visits Moscow for talks on trade",
    "Russian delegation holds talks in Pyongyang on military cooperation",
]


def legacy_lake(tmp_path: Path) -> Path:
    with tarfile.open(LEGACY) as tar:
        tar.extractall(tmp_path, filter="tar")
    return tmp_path / "out"


def run_args(tmp_path: Path, out: Path, seeds: Path) -> list[str]:
    """`newsbeam run` on `seeds` only (no feeds), into `out`."""
    config = tmp_path / "no-feeds.toml"
    config.write_text(f'seeds_dir = "{seeds}"\noutput_dir = "{out}"\n', encoding="utf-8")
    return ["run", "--config", str(config)]


def titles(out: Path) -> list[str]:
    return sorted(r["title"] for r in duck_rows(out, "articles", "title") if not r["title"].startswith("La "))


def test_migrate_converts_a_lake_written_before_delta_in_place(tmp_path: Path, capsys) -> None:
    out = legacy_lake(tmp_path)
    before = sorted(p.relative_to(out) for p in (out / "articles").glob("*/*.parquet"))
    assert cli.main(["status", "--output", str(out)]) == 2, "the old layout must be migrated first"
    assert "newsbeam migrate" in capsys.readouterr().err

    assert cli.main(["migrate", "--output", str(out)]) == 0
    assert "4 commits" in capsys.readouterr().out
    # Every data file stays where it was; the committed ones are the tables' first version.
    assert sorted(p.relative_to(out) for p in (out / "articles").glob("*/*.parquet")) == before
    table = DeltaTable(str(out / "articles"))
    assert len(table.file_uris()) == 3, "the compaction's replaced files are not live"
    assert titles(out) == LEGACY_TITLES
    assert len(duck_rows(out, "articles")) == 4 == arrow_table(out, "articles").num_rows
    lake = Lake(out)
    assert [m["kind"] for m in lake.manifests()] == ["run", "run", "run", "compact", "migrate"]
    assert len(lake.raw_batches()) == 3 and lake.pending_raw_batches() == {}
    assert not (out / "_manifests").exists() and not (out / "_files").exists()
    assert (out / "_state" / "legacy" / "_manifests").is_dir(), "the old records are kept"

    # The migrated lake is a lake like any other: a run on it commits on top.
    assert cli.main(["verify", "--output", str(out)]) == 0
    assert cli.main(["migrate", "--output", str(out)]) == 2, "nothing to migrate twice"
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "a.md").write_text(
        "---\ntitle: Putin and Kim sign a partnership treaty in Pyongyang\npublished: 2024-06-19T10:00:00Z\n"
        "url: https://example.org/treaty\n---\nRussia and North Korea signed a treaty in Pyongyang.\n",
        encoding="utf-8",
    )
    assert cli.main(run_args(tmp_path, out, seeds)) == 0
    assert len(titles(out)) == 4
    assert [m["seq"] for m in Lake(out).manifests()] == [1, 2, 3, 4, 5, 6]


def test_a_migration_killed_half_way_is_finished_by_running_it_again(tmp_path: Path) -> None:
    import shutil

    from pipeline.ops.migrate import migrate

    out = legacy_lake(tmp_path)
    lake = Lake(out)
    with lake.lock(recover=False):
        migrate(lake)
    # Undo the last steps, as if it died after committing the tables.
    (out / "_state" / "legacy" / "_manifests").rename(out / "_manifests")
    shutil.rmtree(out / "_runs")
    with lake.lock(recover=False):
        migrate(lake)
    assert DeltaTable(str(out / "articles")).version() == 1, "each table committed once"
    assert len(Lake(out).manifests()) == 5 and titles(out) == LEGACY_TITLES


def test_migrate_refuses_when_a_listed_file_is_missing_and_changes_nothing(tmp_path: Path, capsys) -> None:
    import shutil

    out = legacy_lake(tmp_path)
    victim = sorted((out / "articles").glob("published_date=2024-06-19/*.parquet"))[0]
    victim.unlink()
    (out / "_files" / victim.relative_to(out)).unlink()
    assert cli.main(["migrate", "--output", str(out)]) == 2
    assert "missing" in capsys.readouterr().err
    assert (out / "_manifests").is_dir() and not (out / "articles" / "_delta_log").exists()
    shutil.rmtree(out)


def _run(tmp_path: Path, seeds_dir: Path) -> Path:
    out = tmp_path / "out"
    assert cli.main(run_args(tmp_path, out, seeds_dir)) == 0
    return out


def test_verify_names_each_bad_file(tmp_path: Path, seeds_dir: Path, capsys) -> None:
    out = _run(tmp_path, seeds_dir)
    assert cli.main(["verify", "--output", str(out)]) == 0
    assert "verify: ok" in capsys.readouterr().out
    article = Path(delta_files(out, "articles")[0])
    index = Path(delta_files(out, "_index/dedup")[0])
    article.write_bytes(article.read_bytes()[:-20])  # truncated: size and footer wrong
    index.unlink()
    assert cli.main(["verify", "--output", str(out)]) == 1
    shown = capsys.readouterr().out
    assert f"BAD articles/{article.parent.name}/{article.name}:" in shown
    assert f"BAD _index/dedup/{index.parent.name}/{index.name}: missing" in shown
    assert "2 bad" in shown


def test_sql_as_of_reads_the_lake_as_it_was_after_a_commit(tmp_path: Path, seeds_dir: Path, capsys) -> None:
    out = _run(tmp_path, seeds_dir)
    more = tmp_path / "more"
    more.mkdir()
    (more / "b.md").write_text(
        "---\ntitle: Second story\npublished: 2024-06-20T10:00:00Z\nurl: https://example.org/2\n---\n"
        "Russia and North Korea held talks in Pyongyang on cooperation.\n",
        encoding="utf-8",
    )
    assert cli.main(run_args(tmp_path, out, more)) == 0
    capsys.readouterr()
    query = "SELECT count(*) AS n FROM articles"
    assert cli.main(["sql", "--output", str(out), query]) == 0
    assert "│ 2 │" in capsys.readouterr().out.replace(" ", "").replace("│2│", "│ 2 │")
    assert cli.main(["sql", "--output", str(out), "--as-of", "1", query]) == 0
    now = capsys.readouterr().out
    assert "│ 1 │" in now.replace(" ", "").replace("│1│", "│ 1 │")
    first = Lake(out).manifests()[0]["committed_at"]
    assert cli.main(["sql", "--output", str(out), "--as-of", first, query]) == 0
    assert "│1│" in capsys.readouterr().out.replace(" ", "")
    assert cli.main(["sql", "--output", str(out), "--as-of", "9", query]) == 2
    assert "no commit 9" in capsys.readouterr().err
    assert cli.main(["sql", "--output", str(out), "--as-of", "2000-01-01", query]) == 2


def test_vacuum_deletes_only_what_no_recent_version_lists(tmp_path: Path, seeds_dir: Path) -> None:
    out = _run(tmp_path, seeds_dir)
    stray = Path(delta_files(out, "articles")[0]).with_name("part-never-committed.parquet")
    stray.write_bytes(b"PAR1")
    live = set(delta_files(out, "articles"))
    assert cli.main(["vacuum", "--output", str(out), "--grace-minutes", "0"]) == 0
    assert not stray.exists()
    assert set(delta_files(out, "articles")) == live and all(Path(p).exists() for p in live)
    # Processed raw batches, once past the retention: the whole landed day goes.
    assert len(Lake(out).raw_batches()) == 1
    assert cli.main(["vacuum", "--output", str(out), "--raw-retention-days", "1"]) == 0
    assert len(Lake(out).raw_batches()) == 1, "landed today: kept"


def test_status_shows_each_table_version_and_its_last_operation(
    tmp_path: Path, seeds_dir: Path, capsys
) -> None:
    out = _run(tmp_path, seeds_dir)
    capsys.readouterr()
    assert cli.main(["status", "--output", str(out)]) == 0
    shown = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in shown.splitlines()[2:8] if line.startswith("  ")}
    version = DeltaTable(str(out / "articles")).version()
    assert rows["articles"][1:3] == [str(version), str(len(delta_files(out, "articles")))]
    assert "WRITE" in rows["articles"]
    assert Lake(out).versions_at(1)[1]["articles"] == version


def test_deltalake_gives_the_partition_column_as_a_date(tmp_path: Path, seeds_dir: Path) -> None:
    import pyarrow as pa

    out = _run(tmp_path, seeds_dir)
    schema = pa.schema(DeltaTable(str(out / "articles")).schema().to_arrow())
    assert schema.field("published_date").type == pa.date32()
    assert schema.field("published_at").type == pa.timestamp("us", tz="UTC")

"""The lake on object storage: `--output s3://…` against an S3 API server on 127.0.0.1
(moto's server mode), read back with deltalake, pyarrow and DuckDB."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.lake.files import stage_partition
from pipeline.lake.ledger import Ledger
from pipeline.lake.store import Lake, LakeBusy
from pipeline.ops.maintenance import snapshot_connection
from schemas.records import Reject
from tests.s3server import S3Server, s3_server


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    with s3_server(monkeypatch) as server:
        yield server


def run_args(tmp_path: Path, seeds: Path, output: str) -> list[str]:
    config = tmp_path / "no-feeds.toml"
    config.write_text(f'seeds_dir = "{seeds}"\n', encoding="utf-8")
    return ["run", "--config", str(config), "--output", output]


def test_a_run_writes_delta_tables_to_object_storage(
    tmp_path: Path, seeds_dir: Path, s3: S3Server, capsys
) -> None:
    from deltalake import DeltaTable

    out = s3.uri("news")
    assert cli.main(run_args(tmp_path, seeds_dir, out)) == 0
    keys = s3.keys("news/")
    assert "news/articles/_delta_log/00000000000000000001.json" in keys
    assert any(k.startswith("news/articles/published_date=") for k in keys)
    assert any(k.startswith("news/_state/") for k in keys), "the lake's state lives with it"
    staging = [k for k in keys if k.startswith("news/_staging/") and not k.endswith("/")]
    assert not staging, "nothing left in staging"

    articles = DeltaTable(f"{out}/articles")
    files = articles.file_uris()
    assert len(files) == 1 and files[0].startswith("s3://lake/news/articles/published_date=")
    rows = pq.read_table(files[0]).to_pylist()
    assert len(rows) == 1 and "Choïgou" in rows[0]["title"]

    capsys.readouterr()
    query = "SELECT count(*) AS n, min(published_date) AS d FROM articles"
    assert cli.main(["sql", "--output", out, query]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"│\s+1 │ \d{4}-\d{2}-\d{2} │", shown), shown
    con = snapshot_connection(Lake(out))
    assert con.sql("SELECT count(*), typeof(any_value(published_date)) FROM articles").fetchall() == [
        (1, "DATE")
    ]

    # The same seeds again: nothing new, one more commit with nothing in it.
    assert cli.main(run_args(tmp_path, seeds_dir, out)) == 0
    assert len(DeltaTable(f"{out}/articles").file_uris()) == 1
    assert cli.main(["verify", "--output", out]) == 0
    assert cli.main(["vacuum", "--output", out, "--grace-minutes", "0"]) == 0
    assert len(DeltaTable(f"{out}/articles").file_uris()) == 1
    capsys.readouterr()
    assert cli.main(["status", "--output", out]) == 0
    assert "articles" in capsys.readouterr().out


def _rejects(prefix: str) -> list[Reject]:
    t0 = datetime(2024, 6, 19, tzinfo=timezone.utc)
    return [
        Reject(f"{prefix}-{i}", "parse", "bad_json", "ParseError", False, "s", "o", "h", t0, "d")
        for i in range(2)
    ]


def test_two_writers_committing_at_once_one_wins_and_the_other_stops_without_changes(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both take the same sequence number; the ledger's conditional commit decides."""
    out = s3.uri("race")
    setup = Lake(out)
    setup.commit("0" * 32, [], [stage_partition(out, "0" * 32, "rejects", "2024-06-18", _rejects("zero"))])
    barrier = threading.Barrier(2, timeout=120)
    original = Ledger.append

    def append_together(self: Ledger, seq: int, records: list) -> None:
        barrier.wait()  # both writers have chosen their sequence number
        original(self, seq, records)

    monkeypatch.setattr(Ledger, "append", append_together)
    outcomes: dict[str, str] = {}

    def writer(run: str) -> None:
        staged = [stage_partition(out, run, "rejects", "2024-06-19", _rejects(run[:4]))]
        try:
            Lake(out).commit(run, [], staged)
            outcomes[run] = "committed"
        except LakeBusy:
            outcomes[run] = "busy"

    threads = [threading.Thread(target=writer, args=(run,)) for run in ("a" * 32, "b" * 32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes.values()) == ["busy", "committed"]
    winner = next(run for run, o in outcomes.items() if o == "committed")
    loser = next(run for run, o in outcomes.items() if o == "busy")
    lake = Lake(out)
    assert [m.get("run_id") for m in lake.manifests()] == ["0" * 32, winner]
    ids = sorted(pq.read_table(f).column("reject_id")[0].as_py()[:4] for f in lake.committed_files("rejects"))
    assert ids == sorted(["zero", winner[:4]]), "nothing of the loser is visible"
    lists = [k for k in s3.keys("race/_staging/commits/") if not k.endswith("/")]
    assert not lists, "the loser's staged list is gone"

    # The loser runs again and lands after the winner.
    monkeypatch.setattr(Ledger, "append", original)
    staged = [stage_partition(out, loser, "rejects", "2024-06-19", _rejects(loser[:4]))]
    with Lake(out).lock():
        Lake(out).commit(loser, [], staged)
    assert [m.get("run_id") for m in Lake(out).manifests()] == ["0" * 32, winner, loser]
    assert [m["seq"] for m in Lake(out).manifests()] == [1, 2, 3]


def test_commands_that_need_a_local_lake_say_so(tmp_path: Path, s3: S3Server, capsys) -> None:
    out = s3.uri("local-only")
    Lake(out).commit(
        "0" * 32, [], [stage_partition(out, "0" * 32, "rejects", "2024-06-18", _rejects("zero"))]
    )
    for command in (["replay", "--since", "2024-06-01", "--until", "2024-06-30"], ["stream"], ["migrate"]):
        assert cli.main([command[0], "--output", out, *command[1:]]) == 2
        assert "needs a lake on a local filesystem" in capsys.readouterr().err
    # Those that work there do: a compaction, a retag with nothing to re-tag.
    assert cli.main(["compact", "--output", out]) == 0
    assert cli.main(["retag", "--output", out, "--since", "2024-06-01", "--until", "2024-06-30"]) == 0

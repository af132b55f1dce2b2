"""Crash safety: the job is SIGKILLed at named points of a cycle; the lake stays readable,
shows the last committed state, and the next run completes it as if nothing happened."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.lake.files import KILL_ENV
from pipeline.lake.store import COMMITTED_TABLES, Lake
from pipeline.run import run_cycle
from schemas.arrow import TABLES
from tests.conftest import ROOT, SEED, make_config, run_clock
from tests.lakeread import delta_count, glob_duck_count, snapshot_arrow, snapshot_duck_rows

FIRST = {
    "batch.jsonl": '{"title": "Kim visits a tractor factory", "text": "Kim Jong Un inspected a tractor '
    'factory in Pyongyang on Monday.", "published": "2024-06-17T08:00:00Z", "url": '
    '"https://a.example/1"}\n{not json\n',
}
SECOND = {
    "second.md": "---\npublished: 2024-06-18T09:00:00+09:00\nurl: https://b.example/2\n---\n"
    "# Shoigu in Pyongyang\nSergei Shoigu arrived in Pyongyang for talks with Kim Jong Un.\n",
    "third.txt": "---\npublished: 2024-06-19T10:00:00Z\n---\nSeoul answers\nSeoul said the "
    "talks in Pyongyang were a threat to the region.\n",
    # the first run's article again under another URL: a duplicate
    "again.jsonl": '{"title": "Kim visits a tractor factory", "text": "Kim Jong Un inspected a tractor '
    'factory in Pyongyang on Monday.", "published": "2024-06-17T08:00:00Z", "url": '
    '"https://c.example/copy"}\n',
}

# Until its tables are committed readers see the state before the run; after its ledger
# row, the state after it. Either way the next start leaves the state after it.
UNCOMMITTED = ["polled", "landed", "staging_write", "before_moves", "between_moves", "before_manifest"]
COMMITTED = ["after_manifest", "committed"]


def write_seeds(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    shutil.copyfile(SEED, folder / SEED.name)


def lake_state(out: Path) -> dict[str, Any]:
    """Every committed table, read by DuckDB and pyarrow (which must agree)."""
    state: dict[str, Any] = {}
    for table in COMMITTED_TABLES:
        rows = snapshot_duck_rows(out, table)
        arrow = snapshot_arrow(out, table)
        assert arrow.num_rows == len(rows), table
        key = "article_id" if "article_id" in arrow.column_names else "reject_id"
        assert sorted(arrow.column(key).to_pylist()) == sorted(r[key] for r in rows), table
        state[table] = rows
    return state


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A lake after the first run (the template every case starts from), and the state an
    uninterrupted second run leaves."""
    base = tmp_path_factory.mktemp("crash")
    write_seeds(base / "one" / "seeds", FIRST)
    write_seeds(base / "two" / "seeds", {**FIRST, **SECOND})
    template = make_config(base / "one", base / "one" / "seeds")
    run_cycle(template, clock=run_clock)
    clean = make_config(base, base / "two" / "seeds", out="clean")
    shutil.copytree(template.output_dir, clean.output_dir)
    run_cycle(clean, clock=run_clock)
    return {
        "template": template.output_dir,
        "seeds": base / "two" / "seeds",
        "before": lake_state(template.output_dir),
        "after": lake_state(clean.output_dir),
    }


def _die_at(config: Any, point: str) -> None:
    run_cycle(config, clock=run_clock, kill_at=point)


def _kill_in_child(config: Any, point: str) -> int:
    """run_cycle in a separate process (forked from a server that has imported the
    pipeline once), which kills itself at `point`."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["pipeline.run"])
    child = ctx.Process(target=_die_at, args=(config, point))
    child.start()
    child.join(120)
    return child.exitcode if child.exitcode is not None else 0


def _check_after_kill(out: Path, lakes: dict[str, Any], point: str) -> None:
    expected = lakes["after"] if point in COMMITTED else lakes["before"]
    assert lake_state(out) == expected, f"readers must see the last committed state after {point}"
    for table in ("articles", "rejects", "duplicates"):
        glob_duck_count(out, table)  # a plain reader of the folders never fails (no partial file)
    assert not list(out.glob("articles/**/.*")), "no temp file inside a dataset"


@pytest.mark.parametrize("point", UNCOMMITTED + COMMITTED)
def test_killed_cycle_recovers_to_the_uninterrupted_result(
    tmp_path: Path, lakes: dict[str, Any], point: str
) -> None:
    config = make_config(tmp_path, lakes["seeds"])
    shutil.copytree(lakes["template"], config.output_dir)
    assert _kill_in_child(config, point) == -signal.SIGKILL
    _check_after_kill(config.output_dir, lakes, point)

    run_cycle(config, clock=run_clock)
    assert lake_state(config.output_dir) == lakes["after"]
    assert delta_count(config.output_dir, "articles") == len(lakes["after"]["articles"])
    assert Lake(config.output_dir).pending_raw_batches() == {}, "every landed batch is processed"
    assert not list((config.output_dir / "_staging").glob("*/**/*.parquet"))


def test_newsbeam_run_killed_between_moves(tmp_path: Path, lakes: dict[str, Any]) -> None:
    """The same through the command line: the kill point comes from the environment."""
    out = tmp_path / "data"
    shutil.copytree(lakes["template"], out)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--config", str(_empty_config(tmp_path)),
         "--output", str(out), "--seeds", str(lakes["seeds"])],
        env={**os.environ, KILL_ENV: "between_moves"},
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    moved = set(_dataset_files(out)) - set(Lake(out).live_files())
    assert moved, "the kill came after a file was moved in and before the manifest"
    _check_after_kill(out, lakes, "between_moves")
    with Lake(out).lock():  # the next writer completes the commit from its staged list
        pass
    assert set(_dataset_files(out)) == set(Lake(out).live_files())
    # This run had its own clock: the same articles as an uninterrupted run, once each.
    ids = sorted(r["article_id"] for r in lake_state(out)["articles"])
    assert ids == sorted(r["article_id"] for r in lakes["after"]["articles"])
    assert delta_count(out, "articles") == len(lakes["after"]["articles"])


def _dataset_files(out: Path) -> list[str]:
    return [
        p.relative_to(out).as_posix()
        for table in COMMITTED_TABLES
        for p in (out / TABLES[table].folder).glob("*/*.parquet")
    ]


def _empty_config(tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text("", encoding="utf-8")  # no feeds: seeds only
    return path


def test_repeated_bundles_give_the_same_lake(tmp_path: Path, lakes: dict[str, Any], monkeypatch) -> None:
    """Beam may run a bundle more than once; `--direct_runner_bundle_repeat` (which the
    FnApiRunner honours) replays each one: staging and the commit must be idempotent."""
    calls = []
    commit = Lake.commit

    def counting(self: Lake, *args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(Lake, "commit", counting)
    config = make_config(tmp_path, lakes["seeds"])
    shutil.copytree(lakes["template"], config.output_dir)
    run_cycle(config, ["--direct_runner_bundle_repeat=2"], clock=run_clock)
    assert len(calls) == 3, "every bundle, the commit's included, ran three times"
    assert lake_state(config.output_dir) == lakes["after"]
    assert len(Lake(config.output_dir).manifests()) == 2

"""The same cycle on Beam's DaskRunner (a local dask.distributed cluster of two worker
processes) writes exactly what the local runner writes: nothing lost on any branch."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.run import run_cycle
from tests.conftest import FIXTURES, make_config, run_clock
from tests.lakeread import duck_rows

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[str]:
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _lake(out: Path) -> dict[str, list[dict]]:
    return {
        "articles": duck_rows(out, "articles", order="article_id"),
        "rejects": duck_rows(out, "rejects", order="reject_id"),
        "duplicates": duck_rows(out, "duplicates", order="article_id, source"),
    }


def test_dask_runner_matches_local_runner(tmp_path: Path, seeds_dir: Path, dask_cluster: str) -> None:
    feeds = FIXTURES / "feeds"
    shutil.copyfile(feeds / "rss2.xml", seeds_dir / "wire.rss")
    shutil.copyfile(feeds / "rss2.xml", seeds_dir / "wire-mirror.xml")  # every item a duplicate
    shutil.copyfile(feeds / "atom.xml", seeds_dir / "east.atom")
    shutil.copyfile(feeds / "truncated.xml", seeds_dir / "half.xml")  # a reject and a kept item
    shutil.copyfile(FIXTURES / "near_duplicates.jsonl", seeds_dir / "near.jsonl")  # one near copy

    local = run_cycle(make_config(tmp_path, seeds_dir, out="local"), clock=run_clock)
    dask = run_cycle(
        make_config(tmp_path, seeds_dir, out="dask"),
        ["--runner", DASK_RUNNER, "--dask_client_address", dask_cluster],
        clock=run_clock,
    )

    assert dask.runner == DASK_RUNNER
    expected, got = _lake(tmp_path / "local"), _lake(tmp_path / "dask")
    # Every branch of the graph produced rows, so a branch the runner skipped would show.
    assert len(expected["articles"]) == 9
    assert sorted(d["reason"] for d in expected["duplicates"]) == ["near_duplicate"] + ["same_url"] * 3
    assert {r["reason"] for r in expected["rejects"]} == {"malformed_feed_partial", "truncated_entry"}
    assert got == expected
    assert dask.run_id == local.run_id


def test_dask_runner_matches_local_runner_against_an_earlier_runs_index(
    tmp_path: Path, seeds_dir: Path, dask_cluster: str
) -> None:
    feeds = FIXTURES / "feeds"
    shutil.copyfile(feeds / "rss2.xml", seeds_dir / "wire.rss")
    local_config, dask_config = (
        make_config(tmp_path, seeds_dir, out="local"),
        make_config(tmp_path, seeds_dir, out="dask"),
    )
    dask_args = ["--runner", DASK_RUNNER, "--dask_client_address", dask_cluster]
    run_cycle(local_config, clock=run_clock)
    run_cycle(dask_config, dask_args, clock=run_clock)
    # The second run's copies are duplicates of what the first committed: only the index says so.
    shutil.copyfile(feeds / "rss2.xml", seeds_dir / "wire-mirror.xml")
    shutil.copyfile(feeds / "atom.xml", seeds_dir / "east.atom")
    local = run_cycle(local_config, clock=run_clock)
    dask = run_cycle(dask_config, dask_args, clock=run_clock)

    expected, got = _lake(tmp_path / "local"), _lake(tmp_path / "dask")
    assert {d["reason"] for d in expected["duplicates"]} == {"same_url"}
    assert len(expected["duplicates"]) == 3
    assert got == expected
    assert dask.run_id == local.run_id

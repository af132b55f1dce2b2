from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.fetch import HttpSettings
from connectors.http import FeedSource
from pipeline.config import RunConfig
from tests.feedserver import FeedServer
from tests.hostile import HostileServer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SEED = ROOT / "seeds" / "fr-kim-jong-un-receives-shoigu-pyongyang.txt"
# Runs whose lakes are compared read their seeds at this time (seeds are stamped with the
# run's time), so that runs in different dirs or processes compare equal.
RUN_AT = datetime(2023, 7, 22, 4, 26, 40, tzinfo=timezone.utc)


def run_clock() -> datetime:
    """A fixed clock that pickles (crash tests pass it to child processes)."""
    return RUN_AT


# Tests talk to one host (127.0.0.1): politeness there is tested on its own.
FAST_HTTP = HttpSettings(
    connect_timeout=2.0,
    read_timeout=1.0,
    total_deadline=3.0,
    concurrency=4,
    per_host_concurrency=8,
    per_host_min_gap=0.0,
    allow_hosts=("127.0.0.1",),  # the tests' servers; every other host stays guarded
)


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer().start()
    yield server
    server.stop()


@pytest.fixture
def seeds_dir(tmp_path: Path) -> Path:
    """A seeds dir holding the project's seed article."""
    folder = tmp_path / "seeds"
    folder.mkdir()
    shutil.copyfile(SEED, folder / SEED.name)
    return folder


def make_config(
    tmp_path: Path, seeds: Path, feeds: list[FeedSource] | None = None, out: str = "data"
) -> RunConfig:
    return RunConfig(
        seeds_dir=seeds,
        output_dir=tmp_path / out,
        taxonomy=None,
        feeds=tuple(feeds or ()),
        http=FAST_HTTP,
    )


def feed_fixture(name: str) -> bytes:
    return (FIXTURES / "feeds" / name).read_bytes()


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    yield server
    server.close()


@pytest.fixture
def other_origin() -> Iterator[HostileServer]:
    """A second hostile server: another port on 127.0.0.1 is another origin."""
    server = HostileServer()
    yield server
    server.close()

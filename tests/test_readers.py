"""The README's readers: each snippet of "Reading the lake" (deltalake, polars, DuckDB,
pandas) runs in a fresh process on a lake that `newsbeam run` wrote, and must read exactly
one version of `articles` (the rows its Delta log lists), typed, the same rows as the
others, and exit cleanly (deltalake's own pyarrow filesystem can abort a process at exit).

The lake holds what makes a glob of the folder wrong: two runs, a compaction whose
replaced files are still in place, and a checkpoint in `_delta_log/` (written by
`vacuum`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable

from pipeline import cli
from pipeline.lake.store import Lake
from pipeline.ops.maintenance import snapshot_connection
from tests.conftest import ROOT, SEED

BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)
READERS = ("deltalake", "polars", "duckdb", "pandas")
# What each reader's result must be: the module of its type, and the types of the date
# partition and the two timestamps (DuckDB's rows are tuples: their values are checked).
EXPECTED = {
    "deltalake": (
        "pyarrow",
        {
            "published_date": "date32[day]",
            "published_at": "timestamp[us, tz=UTC]",
            "fetched_at": "timestamp[us, tz=UTC]",
        },
    ),
    "polars": (
        "polars",
        {
            "published_date": "Date",
            "published_at": "Datetime(time_unit='us', time_zone='UTC')",
            "fetched_at": "Datetime(time_unit='us', time_zone='UTC')",
        },
    ),
    "pandas": (
        "pandas",
        {
            "published_date": "date32[day][pyarrow]",
            "published_at": "datetime64[us, UTC]",
            "fetched_at": "datetime64[us, UTC]",
        },
    ),
    "duckdb": ("builtins", {}),
}

# Runs a snippet, then prints what it read as JSON: its result's module, column types,
# the Python types of the `published_date` values and the (published_date, article_id) rows.
PROBE = """
import json, sys

path = sys.argv[1]
namespace = {}
exec(compile(open(path, encoding="utf-8").read(), path, "exec"), namespace)
name = next(n for n in ("articles", "rows", "frame") if n in namespace)
result = namespace[name]
module = type(result).__module__.split(".")[0]
columns = ("published_date", "published_at", "fetched_at")
if isinstance(result, list):  # DuckDB rows: published_date, article_id, ...
    dates, ids, types = [r[0] for r in result], [r[1] for r in result], {}
elif module == "pyarrow":
    dates, ids = result.column("published_date").to_pylist(), result.column("article_id").to_pylist()
    types = {c: str(result.schema.field(c).type) for c in columns}
elif module == "polars":
    dates, ids = result["published_date"].to_list(), result["article_id"].to_list()
    types = {c: str(result.schema[c]) for c in columns}
else:
    dates, ids = result["published_date"].tolist(), result["article_id"].tolist()
    types = {c: str(result[c].dtype) for c in columns}
print(json.dumps({
    "name": name,
    "module": module,
    "types": types,
    "value_types": sorted({type(d).__module__ + "." + type(d).__name__ for d in dates}),
    "rows": sorted([d.isoformat(), i] for d, i in zip(dates, ids)),
}))
"""

FIRST_SEEDS = {
    "wire.jsonl": json.dumps(
        {
            "title": "Putin and Kim Jong Un sign a treaty in Pyongyang",
            "text": "Vladimir Putin and Kim Jong Un signed a treaty on strategic partnership.",
            "published": "2024-06-19T08:00:00Z",
        }
    )
    + "\n{not json\n",
}
SECOND_SEEDS = {
    "talks.md": "---\ntitle: Russian delegation holds talks in Pyongyang on military cooperation\n"
    "published: 2024-06-19T12:00:00Z\nurl: https://example.org/talks\n---\n"
    "A Russian delegation held talks in Pyongyang with North Korean officials on military cooperation.\n",
}


def readme_readers() -> dict[str, str]:
    """The python blocks of the README's "Reading the lake" section, by the library they show."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Reading the lake") :]
    section = section[: section.index("\n## ", 1)]
    found: dict[str, str] = {}
    for lang, body in BLOCK.findall(section):
        if lang != "python":
            continue
        imported = set(re.findall(r"^(?:import|from) (\w+)", body, re.M))
        kind = next((lib for lib in ("polars", "pandas", "duckdb", "deltalake") if lib in imported), "?")
        assert kind not in found, f"two README readers for {kind}"
        found[kind] = body
    return found


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory holding `data/`: two `newsbeam run`s, `compact`, `vacuum`."""
    base = tmp_path_factory.mktemp("readers")
    seeds = base / "seeds"
    seeds.mkdir()
    shutil.copyfile(SEED, seeds / SEED.name)
    shutil.copyfile(ROOT / "seeds" / f"{SEED.name}.meta.json", seeds / f"{SEED.name}.meta.json")
    _write(seeds, FIRST_SEEDS)
    config = base / "newsbeam.toml"
    config.write_text(f'seeds_dir = "{seeds}"\noutput_dir = "{base / "data"}"\n', encoding="utf-8")
    assert cli.main(["run", "--config", str(config)]) == 0
    _write(seeds, SECOND_SEEDS)
    assert cli.main(["run", "--config", str(config)]) == 0
    assert cli.main(["compact", "--config", str(config)]) == 0
    assert cli.main(["vacuum", "--config", str(config)]) == 0  # a checkpoint; replaced files kept
    return base


def delta_rows(out: Path, version: int | None = None) -> int:
    """Rows of one version of `articles`, as its Delta log records them."""
    table = DeltaTable(str(out / "articles"), version=version)
    actions = pa.table(table.get_add_actions(flatten=True))
    return sum(actions.column("num_records").to_pylist())


def snapshot_rows(out: Path, as_of: int | None = None) -> list[list[str]]:
    """(published_date, article_id) of `articles`, read by `newsbeam sql`'s views."""
    con = snapshot_connection(Lake(out), as_of=as_of)
    rows = con.sql("SELECT published_date, article_id FROM articles").fetchall()
    return sorted([d.isoformat(), i] for d, i in rows)


def probe(base: Path, kind: str, code: str) -> dict[str, Any]:
    script = base / f"reader-{kind}.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(script)], cwd=base, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{kind}: exit {done.returncode}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def current(lake: Path) -> dict[str, dict[str, Any]]:
    """What each README reader read, as given (the current version)."""
    return {kind: probe(lake, kind, code) for kind, code in readme_readers().items()}


def test_the_readme_shows_one_reader_per_library() -> None:
    assert sorted(readme_readers()) == sorted(READERS)


def test_the_lake_is_one_a_glob_reads_wrong(lake: Path) -> None:
    """What the README warns of is there: replaced files a glob reads, and a checkpoint."""
    out = lake / "data"
    assert DeltaTable(str(out / "articles")).version() == 3, "run, run, compact"
    assert list((out / "articles" / "_delta_log").glob("*.checkpoint.parquet"))
    assert ds.dataset(str(out / "articles"), format="parquet", partitioning="hive").count_rows() > delta_rows(
        out
    )
    with pytest.raises(duckdb.Error, match="Hive partition mismatch"):
        duckdb.sql(
            f"SELECT count(*) FROM read_parquet('{out}/articles/**/*.parquet', hive_partitioning = true)"
        ).fetchall()


@pytest.mark.parametrize("kind", READERS)
def test_readme_reader_reads_the_current_version_typed(
    lake: Path, current: dict[str, dict[str, Any]], kind: str
) -> None:
    out = lake / "data"
    got = current[kind]
    module, types = EXPECTED[kind]
    assert got["module"] == module, got
    assert got["types"] == types
    assert got["value_types"] == ["datetime.date"]
    assert len(got["rows"]) == delta_rows(out) == 3
    assert got["rows"] == snapshot_rows(out)


def test_the_four_readers_read_the_same_rows(current: dict[str, dict[str, Any]]) -> None:
    rows = {kind: current[kind]["rows"] for kind in READERS}
    assert len({json.dumps(r) for r in rows.values()}) == 1, rows
    assert len({i for _, i in rows["deltalake"]}) == 3, "three distinct articles"


@pytest.mark.parametrize("kind", READERS)
def test_readme_reader_reads_an_older_version(lake: Path, kind: str) -> None:
    """`version=N`, as the README says: version 1 is the first run's articles, whose files
    the compaction replaced but which are still in place until `vacuum`'s grace is over."""
    out = lake / "data"
    code, n = re.subn(r'\("data/articles"\)', '("data/articles", version=1)', readme_readers()[kind])
    assert n == 1, "the snippet opens the table once"
    got = probe(lake, f"{kind}-v1", code)
    assert Lake(out).versions_at(1)[1]["articles"] == 1
    assert len(got["rows"]) == delta_rows(out, 1) == 2
    assert got["rows"] == snapshot_rows(out, as_of=1)
    assert got["rows"] != snapshot_rows(out)

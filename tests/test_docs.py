"""The documentation runs: every code block in README.md and docs/ that reads data is
executed against a real lake, and every column of the schemas is in the data dictionary.
(tests/test_readers.py runs the README's four readers each in a process of its own, on a
lake with several versions, and compares what they read.)"""

from __future__ import annotations

import datetime
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline import cli
from pipeline.lake.store import Lake
from pipeline.ops.maintenance import snapshot_connection
from pipeline.run import run_cycle
from tests.conftest import ROOT, SEED, make_config

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Other people's pages, not about reading the lake (they quote the old layout as measured).
BENCHMARKS = ("benchmarks.md", "benchmarks-delta.md", "benchmarks-speed.md")
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)
READS = re.compile(r"data/|newsbeam sql")


def _blocks(kind: str, reads: re.Pattern[str] = READS) -> list[Any]:
    found = []
    for path in DOCS:
        for n, (lang, body) in enumerate(BLOCK.findall(path.read_text(encoding="utf-8"))):
            if lang == kind and reads.search(body):
                found.append(pytest.param(body, id=f"{path.relative_to(ROOT)}#{n}"))
    return found


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory holding `data/`: the project's seed, an English article, a reject."""
    base = tmp_path_factory.mktemp("docs")
    seeds = base / "seeds"
    seeds.mkdir()
    shutil.copyfile(SEED, seeds / SEED.name)
    shutil.copyfile(ROOT / "seeds" / f"{SEED.name}.meta.json", seeds / f"{SEED.name}.meta.json")
    (seeds / "wire.jsonl").write_text(
        json.dumps(
            {
                "title": "Putin and Kim Jong Un sign a treaty in Pyongyang",
                "text": "Vladimir Putin and Kim Jong Un signed a treaty on strategic partnership.",
                "published": "2024-06-19T08:00:00Z",
            }
        )
        + "\n{not json\n",
        encoding="utf-8",
    )
    run_cycle(make_config(base, seeds))
    return base


def test_there_are_reading_examples_in_python_sql_and_sh() -> None:
    assert len(_blocks("python")) >= 4 and _blocks("sql") and _blocks("sh")


@pytest.mark.parametrize("code", _blocks("python"))
def test_python_reading_blocks_run_and_give_typed_dates(
    lake: Path, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = code.splitlines()[0]
    monkeypatch.chdir(lake)
    namespace: dict[str, Any] = {}
    exec(compile(code, where, "exec"), namespace)
    results = [namespace[n] for n in ("rows", "articles", "frame") if n in namespace]
    assert results, f"{where}: the block names its result rows, articles or frame"
    for result in results:
        assert len(result) >= 1, where
        if hasattr(result, "schema") and "published_date" in getattr(result, "column_names", []):
            assert str(result.schema.field("published_date").type) == "date32[day]", where
        if type(result).__module__.startswith("polars"):
            assert str(result.schema["published_date"]) == "Date", where
        if type(result).__module__.startswith("pandas"):
            assert str(result["published_date"].dtype) == "date32[day][pyarrow]", where
        if isinstance(result, list):
            assert isinstance(result[0][0], datetime.date), where


@pytest.mark.parametrize("code", _blocks("sql"))
def test_sql_reading_blocks_run(lake: Path, code: str) -> None:
    """SQL blocks are `newsbeam sql` queries: over its views of the tables' versions."""
    assert snapshot_connection(Lake(lake / "data")).sql(code).fetchall()


@pytest.mark.parametrize("code", _blocks("python") + _blocks("sql"))
def test_reading_blocks_go_through_the_delta_log(code: str) -> None:
    """A glob of a table folder reads files a swap replaced and the log's checkpoints."""
    assert not re.search(r"\*\.parquet|read_parquet\('data/|scan_parquet|dataset\(\"data/", code)
    assert "DeltaTable(" in code or "read_delta(" in code or "FROM articles" in code


def test_the_old_layout_is_named_only_as_what_migrate_converts() -> None:
    """`_manifests/` and `_files/` are gone: a paragraph naming them is about `migrate`."""
    stale = []
    for path in DOCS:
        if path.name in BENCHMARKS:
            continue
        for paragraph in path.read_text(encoding="utf-8").split("\n\n"):
            if re.search(r"_manifests|_files/|\bmanifests?\b", paragraph) and "migrate" not in paragraph:
                stale.append(f"{path.relative_to(ROOT)}: {paragraph[:80]!r}")
    assert not stale


@pytest.mark.parametrize("code", _blocks("sh", re.compile("newsbeam sql")))
def test_newsbeam_sql_examples_run(lake: Path, code: str, capsys: pytest.CaptureFixture[str]) -> None:
    queries = re.findall(r'^\s*(?:\.venv/bin/)?newsbeam sql ((?:--as-of \S+ )?)"([^"]+)"', code, re.M)
    assert queries
    for as_of, query in queries:
        assert cli.main(["sql", "--output", str(lake / "data"), *as_of.split(), query]) == 0, query
        assert "│" in capsys.readouterr().out, query


def test_the_data_dictionary_lists_every_column() -> None:
    schemas = json.loads((ROOT / "schemas" / "schema.json").read_text(encoding="utf-8"))
    text = (ROOT / "docs" / "output.md").read_text(encoding="utf-8")
    dictionary = text[text.index("## Data dictionary") :]
    missing = [
        f"{table}.{field['name']}"
        for table, schema in schemas.items()
        for field in schema["fields"]
        if f"`{field['name']}`" not in dictionary
    ]
    assert not missing


def test_every_docs_link_in_the_readme_exists() -> None:
    links = re.findall(r"\]\((docs/[^)#]+)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert links and all((ROOT / link).is_file() for link in links)
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200

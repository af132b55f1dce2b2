"""`newsbeam verify`: check every file the current version of every table references."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.parquet as pq

from pipeline.lake import delta
from pipeline.lake.ledger import RUNS
from pipeline.lake.store import DATASETS, Lake
from schemas.arrow import TABLES


@dataclass
class VerifyResult:
    tables: dict[str, int] = field(default_factory=dict)  # table -> files checked
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, what is wrong)


def verify(lake: Lake) -> VerifyResult:
    """Each referenced file exists, has the size the log records, a readable Parquet footer
    and the row count the log records; a table whose log cannot be read is a problem too."""
    result = VerifyResult()
    folders = {name: TABLES[name].folder for name in DATASETS}
    folders[RUNS] = RUNS
    for name, folder in folders.items():
        if not lake.storage.is_dir(folder):
            continue
        try:
            entries = delta.live_adds(delta.open_table(lake.storage, folder))
        except delta.LogError as exc:
            result.problems.append((folder, str(exc)))
            continue
        result.tables[name] = len(entries)
        for e in entries:
            rel = f"{folder}/{e['path']}"
            storage = lake.storage
            if not storage.exists(rel):
                result.problems.append((rel, "missing"))
                continue
            size = storage.size(rel)
            if size != e["size"]:
                result.problems.append((rel, f"{size} bytes, the log records {e['size']}"))
                continue
            try:
                with storage.open_input(rel) as fh:
                    rows = pq.read_metadata(fh).num_rows
            except Exception as exc:  # any unreadable footer, whatever pyarrow raises
                result.problems.append((rel, f"not readable as Parquet ({str(exc).splitlines()[0]})"))
                continue
            if e["rows"] and rows != e["rows"]:
                result.problems.append((rel, f"{rows} rows, the log records {e['rows']}"))
    return result


def format_verify(result: VerifyResult) -> str:
    lines = [f"  {name:<12} {n} files" for name, n in sorted(result.tables.items())]
    lines += [f"BAD {path}: {why}" for path, why in result.problems]
    verdict = "ok" if not result.problems else f"{len(result.problems)} bad"
    return "\n".join([f"verify: {verdict}", *lines])

"""`newsbeam migrate`: convert a lake written before Delta tables, in place.

The old layout kept the committed state in `_manifests/*.json` (files added and removed
per commit, replayed in sequence order) with a second name of every file under
`_files/`. Migration keeps every data file where it is: each table becomes a Delta
table whose first commit lists the files the manifests left live, every landed raw
batch joins the raw table, and the manifests become the ledger's first rows. Only
then are `_manifests/` moved to `_state/legacy/` (kept as history) and `_files/`
removed. A migration that dies half-way is finished by running it again: each step
is skipped once done.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.state import fsync_dir
from pipeline.lake import delta
from pipeline.lake.files import StagedFile, make_dirs
from pipeline.lake.state import STATE
from pipeline.lake.store import COMMITTED_TABLES, LEGACY_MANIFESTS, Lake
from pipeline.ops.maintenance import MaintenanceError, utc_now
from schemas.arrow import TABLES

LEGACY_FILES = "_files"


@dataclass
class MigrateResult:
    commits: int = 0
    files: dict[str, int] | None = None
    raw_batches: int = 0


def legacy_manifests(root: Path) -> list[dict[str, Any]]:
    """The old layout's manifests in commit order (those from before sequence numbers first)."""
    found = []
    for path in (root / LEGACY_MANIFESTS).glob("*.json"):
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MaintenanceError(f"{path} cannot be read ({exc}); nothing was changed") from exc
        found.append(((m.get("seq", 0), path.stat().st_mtime_ns, path.name), m))
    return [m for _, m in sorted(found, key=lambda item: item[0])]


def legacy_live(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    live: dict[str, dict[str, Any]] = {}
    for m in manifests:
        for f in m.get("removed", []):
            live.pop(f["path"], None)
        for f in m.get("files", []):
            live[f["path"]] = f
    return live


def migrate(lake: Lake) -> MigrateResult:
    """Convert `lake` from the manifest layout to Delta tables. Call with the lake's folder
    locked by the caller's `fcntl` lock only (not `Lake.lock`, which refuses the old layout)."""
    root = lake.root
    if not (root / LEGACY_MANIFESTS).is_dir():
        if (root / "_runs").is_dir():
            raise MaintenanceError(f"{root} is already a lake of Delta tables: nothing to migrate")
        raise MaintenanceError(f"{root} has no {LEGACY_MANIFESTS}/: not a newsbeam lake to migrate")
    manifests = legacy_manifests(root)
    live = legacy_live(manifests)
    for rel in sorted(live):  # every live file must be readable before anything changes
        path, second = root / rel, root / LEGACY_FILES / rel
        if not path.exists() and second.exists():
            make_dirs(path.parent)
            path.hardlink_to(second)
        if not path.exists():
            raise MaintenanceError(f"{rel} is listed by the manifests but missing; nothing was changed")
    # The old records renumbered in commit order, then the migration's own: its number is
    # the application transaction every table and the ledger get.
    seq = len(manifests) + 1
    records = [{**m, "seq": n} for n, m in enumerate(manifests, start=1)]
    versions: dict[str, int] = {}
    result = MigrateResult(commits=len(manifests), files={})
    for name in COMMITTED_TABLES:
        entries = [e for e in live.values() if e["table"] == name]
        files = [
            StagedFile(name, e["partition"], "", e["path"], e["rows"], e.get("sha256", "")) for e in entries
        ]
        delta.commit_files(lake.storage, TABLES[name], seq, files, (), {"newsbeam.kind": "migrate"})
        versions[name] = lake.table_version(name) or 0
        result.files[name] = len(files)
    raw = sorted((root / "raw").glob("landed_date=*/batch-*.parquet"))
    if raw:
        batches = [
            StagedFile("raw", p.parent.name.split("=", 1)[1], "", p.relative_to(root).as_posix(), 0, "")
            for p in raw
        ]
        delta.commit_files(lake.storage, TABLES["raw"], None, batches)
    result.raw_batches = len(raw)
    records.append(
        {
            "kind": "migrate",
            "op_id": f"migrate-{seq}",
            "seq": seq,
            "files": [],
            "removed": [],
            "stats": {"rows": {}},
            "versions": versions,
            "migrated_commits": len(manifests),
            "committed_at": utc_now().isoformat(),
        }
    )
    lake.append_ledger(seq, records)
    legacy = root / STATE / "legacy"
    make_dirs(legacy)
    if (legacy / LEGACY_MANIFESTS).exists():
        shutil.rmtree(legacy / LEGACY_MANIFESTS)
    (root / LEGACY_MANIFESTS).rename(legacy / LEGACY_MANIFESTS)
    fsync_dir(root)
    shutil.rmtree(root / LEGACY_FILES, ignore_errors=True)
    return result

"""The commit protocol newsbeam used before Delta tables, kept only as the benchmark's baseline.

A frozen, trimmed copy of `Lake` from `pipeline/lake.py` as of commit d51834d
(`git show d51834d:pipeline/lake.py`): the lock with its recovery, the move of staged
files into their table folders with a hard-linked second name under `_files/`, the
manifest written last under `_manifests/` (the commit point), and the readers'
view (`live_files`, `snapshot_files`: every manifest replayed in order). Swaps,
raw landing and everything else are left out. Nothing in newsbeam uses it; do not
change it, or the baseline is no longer the protocol that ran.

Staging is the same then and now: workers write each file durably under
`_staging/<token>/<table>/<partition folder>/<part name>` (`pipeline.lake.files.stage_arrow`,
unchanged since), so `commit` takes any object with the fields of
`pipeline.lake.files.StagedFile` and the bench writes both sides' files the same way.
The durable file-system helpers (`fsync_dir`, `write_json_atomic`, `make_dirs`,
`new_dirs`) are unchanged since and imported.

Layout under the lake root:

    articles/published_date=YYYY-MM-DD/part-*.parquet   (and the other tables' folders)
    _manifests/<run_id>.json          one per commit, written last
    _files/<table folder>/<partition>/part-*.parquet    a second name of every committed file
    _staging/                         work in progress
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from connectors.state import fsync_dir, write_json_atomic
from pipeline.lake.files import make_dirs, new_dirs

MANIFESTS = "_manifests"
STAGING = "_staging"
FILES = "_files"
# The tables whose files manifests list, and their folders under the lake root (as then).
TABLE_FOLDERS = {
    "articles": "articles",
    "rejects": "rejects",
    "duplicates": "duplicates",
    "dedup_index": "_index/dedup",
}


class Staged(Protocol):
    """What the commit needs of a staged file (the fields of `StagedFile`, then and now)."""

    @property
    def table(self) -> str: ...
    @property
    def partition(self) -> str: ...
    @property
    def staged_path(self) -> str: ...
    @property
    def final_path(self) -> str: ...
    @property
    def rows(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def stats(self) -> dict[str, Any]: ...


def entry(f: Staged) -> dict[str, Any]:
    """How a manifest lists a file."""
    return {
        "table": f.table,
        "partition": f.partition,
        "path": f.final_path,
        "rows": f.rows,
        "sha256": f.sha256,
    }


def merge_stats(files: Sequence[Staged]) -> dict[str, Any]:
    totals: dict[str, Any] = {"rows": Counter(), "by_source": {}, "topics": Counter(), "reasons": {}}
    for f in files:
        totals["rows"][f.table] += f.rows
        for source, n in f.stats.get("by_source", {}).items():
            totals["by_source"].setdefault(source, Counter())[f.table] += n
        totals["topics"].update(f.stats.get("topics", {}))
        if "reasons" in f.stats:
            totals["reasons"].setdefault(f.table, Counter()).update(f.stats["reasons"])
    return totals


class LegacyLake:
    """The previous `Lake`: manifests under `_manifests/`, hard-linked second names under `_files/`."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._manifest_cache: dict[str, tuple[int, dict[str, Any]]] = {}

    # --- locking -----------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time; whoever takes the lock first removes what a dead writer
        left inside the datasets."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.recover()
            yield

    def recover(self) -> list[str]:
        """Make the dataset folders hold exactly the live files; returns what was removed."""
        live = self.live_files()
        removed = []
        for folder_name in TABLE_FOLDERS.values():
            for path in sorted((self.root / folder_name).glob("*/*")):
                rel = path.relative_to(self.root).as_posix()
                if path.is_file() and rel not in live:
                    path.unlink()
                    removed.append(rel)
        for folder in {(self.root / rel).parent for rel in removed}:
            fsync_dir(folder)
        for rel in live:  # lakes written before `_files/` existed get their second names
            second = self.root / FILES / rel
            if not second.exists() and (self.root / rel).exists():
                make_dirs(second.parent)
                os.link(self.root / rel, second)
        return removed

    # --- manifests ---------------------------------------------------------

    def manifest_path(self, run_id: str) -> Path:
        return self.root / MANIFESTS / f"{run_id}.json"

    def manifests(self) -> list[dict[str, Any]]:
        """Every manifest, in commit order."""
        folder = self.root / MANIFESTS
        if not folder.is_dir():
            return []
        found = []
        for path in folder.glob("*.json"):
            mtime = path.stat().st_mtime_ns
            cached = self._manifest_cache.get(path.name)
            if cached is None or cached[0] != mtime:  # manifests never change once written; parse once
                cached = (mtime, json.loads(path.read_text(encoding="utf-8")))
                self._manifest_cache[path.name] = cached
            m = cached[1]
            found.append(((m.get("seq", 0), mtime, path.name), m))
        return [m for _, m in sorted(found, key=lambda item: item[0])]

    def _next_seq(self) -> int:
        return int(max((m.get("seq", 0) for m in self.manifests()), default=0)) + 1

    def live_files(self, table: str | None = None) -> dict[str, dict[str, Any]]:
        """The committed state: path -> manifest entry, every manifest applied in order."""
        live: dict[str, dict[str, Any]] = {}
        for m in self.manifests():
            for f in m.get("removed", []):
                live.pop(f["path"], None)
            for f in m.get("files", []):
                live[f["path"]] = f
        if table is not None:
            live = {p: f for p, f in live.items() if f["table"] == table}
        return live

    def snapshot_files(self, table: str) -> list[Path]:
        """Paths of one committed state of `table` that stay readable while writers swap files."""
        files = []
        for rel in sorted(self.live_files(table)):
            second = self.root / FILES / rel
            files.append(second if second.exists() else self.root / rel)
        return files

    # --- commit ------------------------------------------------------------

    def _move_in(self, files: Sequence[Staged]) -> None:
        """Give each staged file its `_files/` name, then rename it into its dataset folder.

        Each directory is fsynced once, after all its entries changed.
        """
        todo = []
        for f in files:
            src, dst = self.root / f.staged_path, self.root / f.final_path
            if src.exists():
                todo.append((src, dst, self.root / FILES / f.final_path))
            elif not dst.exists():
                raise FileNotFoundError(f"staged file vanished before commit: {src}")
        created: list[Path] = []
        for _, dst, second in todo:
            created += new_dirs(dst.parent) + new_dirs(second.parent)
        for parent in sorted({d.parent for d in created}):
            fsync_dir(parent)
        for src, _, second in todo:
            link_tmp = second.with_name(f".{second.name}.link")
            link_tmp.unlink(missing_ok=True)
            os.link(src, link_tmp)
            os.replace(link_tmp, second)
        for folder in sorted({second.parent for _, _, second in todo}):
            fsync_dir(folder)
        for src, dst, _ in todo:
            os.replace(src, dst)
        for folder in sorted({dst.parent for _, dst, _ in todo}):
            fsync_dir(folder)

    def commit(
        self,
        run_id: str,
        raw_batches: list[str],
        staged: Sequence[Staged],
        info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Move a run's staged files in, then write its manifest. Idempotent by run id."""
        manifest_path = self.manifest_path(run_id)
        if manifest_path.exists():
            shutil.rmtree(self.root / STAGING / run_id, ignore_errors=True)
            return dict(json.loads(manifest_path.read_text(encoding="utf-8")))
        staged = sorted(staged, key=lambda f: f.final_path)
        self._move_in(staged)
        self._remove_stale_parts(run_id, {f.final_path for f in staged})
        manifest = {
            "kind": "run",
            "run_id": run_id,
            "seq": self._next_seq(),
            "raw_batches": sorted(raw_batches),
            "files": [entry(f) for f in staged],
            "removed": [],
            "stats": merge_stats(staged),
            **(info or {}),
        }
        write_json_atomic(manifest_path, manifest)
        shutil.rmtree(self.root / STAGING / run_id, ignore_errors=True)
        return manifest

    def _remove_stale_parts(self, run_id: str, keep: set[str]) -> None:
        """Files of an earlier, uncommitted attempt of this run must not stay visible."""
        prefix = f"part-{run_id[:16]}-"
        for folder_name in TABLE_FOLDERS.values():
            for path in (self.root / folder_name).glob(f"*/{prefix}*.parquet"):
                if path.relative_to(self.root).as_posix() not in keep:
                    path.unlink()

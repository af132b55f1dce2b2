"""The lake's `_state/`: feed validators, seed fingerprints, fetched pages, taxonomy
versions. Locally these are files in the lake's folder; on an object store a writer
works on a local copy taken when it starts and written back when it ends (a reader
gets a copy that is not written back)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.lake.storage import Storage

STATE = "_state"


class LakeState:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._copy: Path | None = None

    def path(self, name: str) -> Path:
        """Where `name` is read and written."""
        if not self.storage.remote:
            return self.storage.local(f"{STATE}/{name}")
        if self._copy is None:
            self._copy = self._download()
        return self._copy / name

    @contextmanager
    def writing(self) -> Iterator[None]:
        """A writer's span: on an object store, what it writes is put back at the end."""
        if not self.storage.remote:
            yield
            return
        work = self._download()
        self._copy = work
        try:
            yield
        finally:
            for path in sorted(p for p in work.rglob("*") if p.is_file() and not p.name.startswith(".")):
                self.storage.write_bytes(f"{STATE}/{path.relative_to(work).as_posix()}", path.read_bytes())
            self._copy = None
            shutil.rmtree(work, ignore_errors=True)

    def _download(self) -> Path:
        work = Path(tempfile.mkdtemp(prefix="newsbeam-state-"))
        for rel in self.storage.files(STATE):
            target = work / rel[len(STATE) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.storage.read_bytes(rel) or b"")
        return work

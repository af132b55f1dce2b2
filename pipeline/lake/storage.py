"""Where a lake's files live: a local directory, or an object store (`s3://`, `gs://`,
`az://`) reached through pyarrow's filesystems, with credentials and endpoints from the
standard environment variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, …).

Locations handed to readers and to Beam workers are strings: an absolute path for a
local lake, a URI for an object store. Local writes are durable (fsynced, renamed into
place); an object store's PUT is atomic by itself.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from connectors.state import fsync_dir

REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "az://", "abfs://", "abfss://")


def is_remote(location: str | Path) -> bool:
    return str(location).startswith(REMOTE_SCHEMES)


def parent_name(location: str) -> str:
    """The name of the folder holding `location` (a partition folder: `landed_date=…`)."""
    return PurePosixPath(location).parent.name


class Storage:
    """The lake's files, by path relative to the lake root."""

    def __init__(self, root: str | Path) -> None:
        self.remote = is_remote(root)
        if self.remote:
            self.uri = str(root).rstrip("/")
            fs, base = pafs.FileSystem.from_uri(self.uri)
            self.fs: pafs.FileSystem = fs
            self.base = base.rstrip("/")
        else:
            self.uri = str(Path(root).absolute())
            self.fs = pafs.LocalFileSystem()
            self.base = self.uri

    def location(self, rel: str) -> str:
        """What a reader or a worker opens: an absolute path, or a URI."""
        return f"{self.uri}/{rel}" if rel else self.uri

    def local(self, rel: str = "") -> Path:
        """The local path of `rel` (local lakes only)."""
        if self.remote:
            raise ValueError(f"{self.uri} is not on a local filesystem")
        return Path(self.uri) / rel

    def fs_path(self, location: str) -> str:
        """A location as `self.fs` names it (an object store's without its scheme)."""
        return location.split("://", 1)[1] if self.remote else location

    def _path(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def exists(self, rel: str) -> bool:
        return bool(self.fs.get_file_info(self._path(rel)).type != pafs.FileType.NotFound)

    def is_dir(self, rel: str) -> bool:
        return bool(self.fs.get_file_info(self._path(rel)).type == pafs.FileType.Directory)

    def size(self, rel: str) -> int:
        return int(self.fs.get_file_info(self._path(rel)).size or 0)

    def mtime_ms(self, rel: str) -> int:
        info = self.fs.get_file_info(self._path(rel))
        return int(info.mtime_ns // 1_000_000) if info.mtime_ns is not None else 0

    def files(self, rel_dir: str, suffix: str = "", recursive: bool = True) -> list[str]:
        """Files under `rel_dir` (relative to the lake root) whose names end with `suffix`."""
        selector = pafs.FileSelector(self._path(rel_dir), allow_not_found=True, recursive=recursive)
        found = []
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.File and info.base_name.endswith(suffix):
                found.append(info.path[len(self.base) + 1 :])
        return sorted(found)

    def read_bytes(self, rel: str) -> bytes | None:
        """The file's bytes, or None when there is no such file."""
        if not self.exists(rel):
            return None
        with self.fs.open_input_stream(self._path(rel)) as fh:
            return bytes(fh.read())

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Readers see the old file or the new one, never a torn one."""
        if not self.remote:
            _write_local(self.local(rel), data)
            return
        with self.fs.open_output_stream(self._path(rel)) as fh:
            fh.write(data)

    def write_parquet(self, rel: str, table: pa.Table, **options: Any) -> tuple[str, int]:
        """Write one Parquet file; returns its SHA-256 and size."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer, **options)
        data = buffer.getvalue()
        self.write_bytes(rel, data)
        return hashlib.sha256(data).hexdigest(), len(data)

    def move(self, src: str, dst: str) -> None:
        """Rename (local) or copy then delete (object stores, where a file is only ever
        written whole, so the copy is complete or absent)."""
        if not self.remote:
            os.replace(self.local(src), self.local(dst))
            return
        self.fs.copy_file(self._path(src), self._path(dst))
        self.fs.delete_file(self._path(src))

    def delete(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.delete_file(self._path(rel))

    def delete_dir(self, rel: str) -> None:
        if self.is_dir(rel):
            self.fs.delete_dir(self._path(rel))

    def open_input(self, rel: str) -> Any:
        return self.fs.open_input_file(self._path(rel))


def _write_local(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)

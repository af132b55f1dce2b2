"""ReadRawBatches: landed raw batch files -> lists of RawFetch, each fetch once."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterable, Iterator

import apache_beam as beam
import pyarrow.parquet as pq

from schemas.records import RawFetch

# --- read ------------------------------------------------------------------

_RAW_FIELDS = [f.name for f in dataclasses.fields(RawFetch)]


def read_raw_batch(path: str) -> Iterator[RawFetch]:
    table = pq.read_table(path, columns=_RAW_FIELDS)
    for row in table.to_pylist():
        yield RawFetch(**row)


RAW_GROUPS = 32  # raw documents are gathered into this many batches (fewer if fewer documents)


def raw_group(raw: RawFetch) -> int:
    """The batch of a raw document: stable in every process, the same for every copy of a fetch."""
    return zlib.crc32(raw.raw_id.encode()) % RAW_GROUPS


def _fetch_key(raw: RawFetch) -> tuple[str, str]:
    return raw.raw_id, raw.fetched_at.isoformat()


def one_per_fetch(raws: Iterable[RawFetch]) -> list[RawFetch]:
    """The documents of one batch, each fetch once (copies landed twice are one), in a
    stable order. Copies of a fetch are the same document; should two differ, the same
    one is kept whatever order they arrive in."""
    kept: dict[tuple[str, str], RawFetch] = {}
    for raw in raws:
        key = _fetch_key(raw)
        other = kept.get(key)
        if other is None or (other != raw and repr(raw) < repr(other)):
            kept[key] = raw
    return [kept[key] for key in sorted(kept)]


class ReadRawBatches(beam.PTransform):
    """Landed raw batch files -> lists of RawFetch (documents and article pages), each
    fetch in exactly one list, once.

    A document landed twice (a run died after landing, the next one fetched the same
    bytes at the same time, e.g. an unchanged seed) is read once: every record is keyed
    by `raw_group`, so the copies of a fetch meet in one group of one GroupByKey. Each
    group is one element, so the steps after it work on many documents per call, and the
    groups spread over workers. Built without `finish_bundle`, which the DaskRunner drops.
    """

    def __init__(self, paths: list[str]) -> None:
        super().__init__()
        self.paths = sorted(paths)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "BatchPaths" >> beam.Create(self.paths)
            | "Reshuffle" >> beam.Reshuffle()
            | "ReadBatch" >> beam.FlatMap(lambda path: ((raw_group(r), r) for r in read_raw_batch(path)))
            | "GroupDocuments" >> beam.GroupByKey()
            | "OnePerFetch" >> beam.Map(lambda kv: one_per_fetch(kv[1]))
        )

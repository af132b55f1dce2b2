"""StageTable and CommitRun: one staged file per table partition, then the run's commit
(the graph's only leaf)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import apache_beam as beam

from pipeline.lake.files import STAGING, StagedFile, stage_partition, staged_to_json
from pipeline.lake.storage import Storage
from pipeline.lake.store import Lake

# --- write and commit ------------------------------------------------------


def _stage(
    kv: tuple[tuple[str, str], Iterable[Any]], output_dir: str, run_id: str, kill_at: str | None
) -> StagedFile:
    (table, partition), records = kv
    return stage_partition(output_dir, run_id, table, partition, list(records), kill_at)


class StageTable(beam.PTransform):
    """Records of one table -> one staged Parquet file per partition."""

    def __init__(self, table: str, output_dir: str, run_id: str, kill_at: str | None = None) -> None:
        super().__init__()
        self.table, self.output_dir, self.run_id, self.kill_at = table, output_dir, run_id, kill_at

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        table = self.table
        return (
            records
            | "KeyByPartition" >> beam.Map(lambda r: ((table, r.partition_date), r))
            | "GroupByPartition" >> beam.GroupByKey()
            | "WriteStaged"
            >> beam.Map(_stage, output_dir=self.output_dir, run_id=self.run_id, kill_at=self.kill_at)
        )


def _commit(
    staged: list[StagedFile],
    output_dir: str,
    run_id: str,
    raw_batches: list[str],
    info: dict[str, Any],
    kill_at: str | None,
    stage_only: bool,
) -> str:
    if stage_only:
        listed = json.dumps(staged_to_json(staged), sort_keys=True).encode()
        Storage(output_dir).write_bytes(f"{STAGING}/{run_id}/staged.json", listed)
    else:
        Lake(output_dir).commit(run_id, raw_batches, staged, info, kill_at)
    return run_id


_MARKER = "commit"  # not a StagedFile: it only makes sure the gather has one group


class CommitRun(beam.PTransform):
    """Every staged file of the run -> moved into the lake, manifest written last.

    This is the graph's single sink: it depends on every output, which is also
    what runners that compute only the final step (Beam's DaskRunner) need.
    With `stage_only` it lists the staged files instead, for a driver that
    swaps them in itself (replay).
    """

    def __init__(
        self,
        output_dir: str,
        run_id: str,
        raw_batches: list[str],
        info: dict[str, Any] | None = None,
        kill_at: str | None = None,
        stage_only: bool = False,
    ) -> None:
        super().__init__()
        self.output_dir, self.run_id, self.raw_batches = output_dir, run_id, sorted(raw_batches)
        self.info, self.kill_at, self.stage_only = dict(info or {}), kill_at, stage_only

    def expand(self, staged: tuple[beam.PCollection, ...]) -> beam.PCollection:
        # Gathered by a GroupByKey, with a marker so that a run staging nothing still
        # commits, rather than by ToList: a global combine's default for an empty input
        # comes through a side input, which the DaskRunner computes as a job of its own.
        marker = staged[0].pipeline | "CommitMarker" >> beam.Create([_MARKER])
        return (
            (*staged, marker)
            | "AllStaged" >> beam.Flatten()
            | "OneKey" >> beam.Map(lambda f: (0, f))
            | "Gather" >> beam.GroupByKey()
            | "StagedFiles" >> beam.Map(lambda kv: [f for f in kv[1] if isinstance(f, StagedFile)])
            | "Commit"
            >> beam.Map(
                _commit,
                output_dir=self.output_dir,
                run_id=self.run_id,
                raw_batches=self.raw_batches,
                info=self.info,
                kill_at=self.kill_at,
                stage_only=self.stage_only,
            )
        )

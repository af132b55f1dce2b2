"""What every step shares: the metrics namespace, counting, splitting outputs by type.

A step that can reject returns a dict of PCollections (e.g. `articles` and
`rejects`), counts rejects per reason, and the graph writes them to the
`rejects` table. The outputs are split by record type with `Filter`s rather
than with a multi-output ParDo: Beam's DaskRunner (2.77) merges the tagged
outputs of a ParDo into one collection, so every consumer would see them all.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

NAMESPACE = "newsbeam"


def count(name: str) -> None:
    Metrics.counter(NAMESPACE, name).inc()


def split_by_type(records: beam.PCollection, step: str, **types: type) -> dict[str, beam.PCollection]:
    """One PCollection per record type: split_by_type(x, "Clean", articles=Article, rejects=Reject)."""
    return {
        name: records | f"{step}{name.title()}" >> beam.Filter(lambda r, t=kind: isinstance(r, t))
        for name, kind in types.items()
    }

"""The Beam work between parsing and cleaning: ParseEntries then CleanArticles (one element
per document, then per entry, split by record type after each step) against ParseAndClean
(one element per batch of documents), on the FnApiRunner.

    python -m bench.fusion [--articles 5000] [--repeat 5]

Each shape runs twice: with the real stage functions, and with stand-ins that return
their precomputed results (`stubbed`), so that what is left is Beam's own work per
element, per step and per pipeline. Shapes alternate within each repeat; the table
shows medians of CPU seconds of the pipeline alone (the runner's threads included), each
run in a fresh process.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

import pipeline.steps.parse as transforms
from bench.corpus import write_corpus
from connectors.seeds import read_seed_dir
from schemas.records import Entry, RawFetch

# The documents, in groups as ReadRawBatches gathers them; steps look them up by group
# number (this process runs the pipeline), so that neither shape pickles them into a Create.
_GROUPS: list[list[RawFetch]] = []


def _group(i: int) -> list[RawFetch]:
    return _GROUPS[i]


def separate(p: beam.Pipeline) -> None:
    raws = p | beam.Create(range(len(_GROUPS))) | beam.FlatMap(_group)
    parsed = raws | transforms.ParseEntries()
    _ = parsed["entries"] | transforms.CleanArticles()


def fused(p: beam.Pipeline) -> None:
    batches = p | beam.Create(range(len(_GROUPS))) | beam.Map(_group)
    _ = batches | transforms.ParseAndClean()


@contextmanager
def stubbed(raws: list[RawFetch]) -> Iterator[None]:
    """parse_raw and clean_or_reject answered from their precomputed results."""
    parsed = {r.raw_id: list(transforms.parse_raw(r)) for r in raws}
    cleaned = {
        (e.raw_id, e.position): transforms.clean_or_reject(e)
        for outs in parsed.values()
        for e in outs
        if isinstance(e, Entry)
    }
    real = transforms.parse_raw, transforms.clean_or_reject
    transforms.parse_raw = lambda r: iter(parsed[r.raw_id])  # type: ignore[assignment]
    transforms.clean_or_reject = lambda e: cleaned[(e.raw_id, e.position)]  # type: ignore[assignment]
    try:
        yield
    finally:
        transforms.parse_raw, transforms.clean_or_reject = real


def cpu_of(shape: Callable[[beam.Pipeline], None]) -> float:
    started = time.process_time()
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        shape(p)
    return time.process_time() - started


def measure(corpus: Path, mode: str, shape: str) -> float:
    """CPU seconds of one pipeline of `shape` over the corpus, in this (fresh) process."""
    raws = read_seed_dir(corpus, datetime(2024, 6, 1, tzinfo=timezone.utc))
    groups: dict[int, list[RawFetch]] = {}
    for raw in raws:
        groups.setdefault(transforms.raw_group(raw), []).append(raw)
    _GROUPS[:] = [transforms.one_per_fetch(g) for _, g in sorted(groups.items())]
    ctx: Any = stubbed(raws) if mode == "stubbed" else nullcontext()
    with ctx:
        gc.collect()
        return cpu_of(SHAPES[shape])


SHAPES = {"separate": separate, "fused": fused}
LABELS = {"separate": "separate (ParseEntries, CleanArticles)", "fused": "fused (ParseAndClean)"}


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        # From the imported module, not __main__: Beam pickles what __main__ defines by value,
        # so the steps would carry every document with them.
        from bench import fusion

        print(json.dumps(fusion.measure(Path(sys.argv[2]), sys.argv[3], sys.argv[4])))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.fusion")
    parser.add_argument("--articles", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="newsbeam-fusion-") as tmp:
        write_corpus(Path(tmp), args.articles)
        for _ in range(args.repeat):
            for mode in ("real", "stubbed"):
                for shape in SHAPES:
                    cmd = [sys.executable, "-m", "bench.fusion", "--one", tmp, mode, shape]
                    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
                    results.setdefault((mode, shape), []).append(float(done.stdout.strip().splitlines()[-1]))
    print(f"{args.articles} articles, median CPU seconds of {args.repeat} (each run in a fresh process)")
    print(f"{'stage functions':<16} {'shape':<40} {'CPU s':>7} {'us/article':>10}")
    for (mode, shape), values in results.items():
        cpu = statistics.median(values)
        print(f"{mode:<16} {LABELS[shape]:<40} {cpu:>7.2f} {cpu / args.articles * 1e6:>10.0f}")


if __name__ == "__main__":
    main()

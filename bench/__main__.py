"""One ingestion cycle over generated local feed files, against a no-Beam baseline.

    python -m bench [--articles 10000] [--repeat 3] [--dask]

Each variant runs in a fresh process (so peak memory is its own) over a fresh
output dir; the table shows the median of the repeats, in wall seconds and in CPU
seconds of the process and its children (a local Dask cluster's workers included).
Two baselines: the stage functions in a plain loop (parse, clean, tag: `x baseline`),
and the same loop with the dedup signing and the staged Parquet writing the run does
too (`x full`, the comparison that counts the same work on both sides).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.corpus import write_corpus

DASK = "apache_beam.runners.dask.dask_runner.DaskRunner"


def run_variant(variant: str, seeds: Path, out: Path, beam_args: list[str]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "bench.one", variant, str(seeds), str(out), *beam_args]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dask", action="store_true", help="also run on the DaskRunner (local cluster)")
    parser.add_argument(
        "--two-processes", action="store_true", help="also run the FnApiRunner with 2 worker processes"
    )
    args = parser.parse_args()

    variants: list[tuple[str, str, list[str]]] = [
        ("pure functions, no Beam (baseline)", "pure", []),
        ("pure + signing + writing, no Beam", "pure-full", []),
        ("newsbeam run, FnApiRunner", "run", []),
    ]
    if args.two_processes:
        two = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
        variants.append(("newsbeam run, FnApiRunner, 2 processes", "run", two))
    if args.dask:
        variants.append(("newsbeam run, DaskRunner (local cluster)", "run", ["--runner", DASK]))

    with tempfile.TemporaryDirectory(prefix="newsbeam-bench-") as tmp:
        seeds = Path(tmp) / "seeds"
        text_bytes = write_corpus(seeds, args.articles)
        print(
            f"corpus: {args.articles} articles in {len(list(seeds.iterdir()))} feed files, "
            f"{text_bytes / args.articles / 1024:.1f} KiB of HTML body per article; "
            f"median of {args.repeat} runs"
        )
        rows = []
        for label, variant, beam_args in variants:
            results = [
                run_variant(variant, seeds, Path(tmp) / f"out-{variant}-{len(rows)}-{i}", beam_args)
                for i in range(args.repeat)
            ]
            assert all(r["articles"] == args.articles for r in results), results
            seconds = statistics.median(r["seconds"] for r in results)
            cpu = statistics.median(r["cpu_seconds"] for r in results)
            peak = statistics.median(r["peak_mib"] for r in results)
            rows.append((label, seconds, cpu, args.articles / seconds, peak))
            print(f"  done: {label}: {seconds:.1f}s, {cpu:.1f}s CPU, {peak:.0f} MiB", flush=True)

    (base, base_cpu), (full, full_cpu) = rows[0][1:3], rows[1][1:3]
    print(
        f"{'variant':<42} {'seconds':>8} {'CPU s':>7} {'articles/s':>11} {'art/CPU s':>9} {'peak MiB':>9} "
        f"{'x baseline':>10} {'CPU x':>6} {'x full':>6} {'CPU x full':>10}"
    )
    for label, seconds, cpu, rate, peak in rows:
        print(
            f"{label:<42} {seconds:>8.2f} {cpu:>7.2f} {rate:>11.0f} {args.articles / cpu:>9.0f} {peak:>9.0f} "
            f"{seconds / base:>10.2f} {cpu / base_cpu:>6.2f} {seconds / full:>6.2f} {cpu / full_cpu:>10.2f}"
        )


if __name__ == "__main__":
    main()

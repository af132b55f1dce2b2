"""A runner's cost split into a fixed part and a part per article.

    python -m bench.overhead [--sizes 10,500,2000] [--repeat 3] [--dask]

Runs one cycle over corpora of each size (each run in a fresh process, as
`python -m bench` does) and fits seconds = fixed + per_article x articles to the
medians by least squares, in wall and in CPU seconds (the process and its
children, so a local Dask cluster's workers count). The fixed part is what a
run costs whatever it holds (imports, starting a cluster, building and
submitting the graph, the commit); the per-article part is what grows with it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from bench.__main__ import DASK, run_variant
from bench.corpus import write_corpus


def fit(sizes: list[int], values: list[float]) -> tuple[float, float]:
    """(fixed, per item) of the least-squares line through (size, value)."""
    mean_n, mean_v = statistics.fmean(sizes), statistics.fmean(values)
    spread = sum((n - mean_n) ** 2 for n in sizes)
    slope = sum((n - mean_n) * (v - mean_v) for n, v in zip(sizes, values, strict=True)) / spread
    return mean_v - slope * mean_n, slope


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead")
    parser.add_argument("--sizes", default="10,500,2000", help="articles per corpus, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dask", action="store_true", help="also run on the DaskRunner (local cluster)")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    if len(sizes) < 2:
        parser.error("--sizes needs at least two sizes")

    variants: list[tuple[str, str, list[str]]] = [
        ("pure functions, no Beam (baseline)", "pure", []),
        ("newsbeam run, FnApiRunner", "run", []),
    ]
    if args.dask:
        variants.append(("newsbeam run, DaskRunner (local cluster)", "run", ["--runner", DASK]))

    print(f"sizes {sizes}, median of {args.repeat} runs per size")
    rows = []
    with tempfile.TemporaryDirectory(prefix="newsbeam-overhead-") as tmp:
        for size in sizes:
            write_corpus(Path(tmp) / f"seeds-{size}", size)
        for label, variant, beam_args in variants:
            walls, cpus = [], []
            for size in sizes:
                seeds, out = Path(tmp) / f"seeds-{size}", Path(tmp) / "out"
                results = []
                for _ in range(args.repeat):
                    results.append(run_variant(variant, seeds, out, beam_args))
                    shutil.rmtree(out, ignore_errors=True)  # each run starts from an empty lake
                assert all(r["articles"] == size for r in results), results
                walls.append(statistics.median(r["seconds"] for r in results))
                cpus.append(statistics.median(r["cpu_seconds"] for r in results))
                print(f"  done: {label}, {size}: {walls[-1]:.2f}s, {cpus[-1]:.2f}s CPU", flush=True)
            rows.append((label, walls, cpus, fit(sizes, walls), fit(sizes, cpus)))

    size_cols = "".join(f" {f'{n} art. s':>12}" for n in sizes)
    print(f"{'variant':<42}{size_cols} {'fixed s':>8} {'ms/article':>10} {'CPU fixed':>9} {'CPU ms/art':>10}")
    for label, walls, _cpus, (fixed, per), (cpu_fixed, cpu_per) in rows:
        cols = "".join(f" {w:>12.2f}" for w in walls)
        print(f"{label:<42}{cols} {fixed:>8.2f} {per * 1e3:>10.2f} {cpu_fixed:>9.2f} {cpu_per * 1e3:>10.2f}")


if __name__ == "__main__":
    main()

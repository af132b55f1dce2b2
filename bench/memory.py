"""Peak memory of one `newsbeam run` over generated feed files, sampled from outside.

    python -m bench.memory [--articles 20000] [--seeds DIR] [--interval 0.1] [-- BEAM_ARGS...]

Writes `bench.corpus.write_corpus(SEEDS, N)` in a temporary folder (or reads `--seeds`),
then runs `python -m bench.one run SEEDS OUT [BEAM_ARGS]` in a fresh process while a
sampler reads its resident set size (and that of its child processes, a local Dask
cluster's workers included) every `--interval` seconds. The sampled peak is checked
against the run's own `ru_maxrss`, which catches spikes between samples; the table shows
the larger.

Named moments come from the output folder, watched from outside: `landed` is the moment
the run's raw batch appears in the lake (`raw/`), i.e. the seeds are read and landed and
the graph is about to start; `graph` is everything after it, up to the commit.

Prints a markdown table: articles, wall and CPU seconds, peak RSS, MiB per 1,000
articles, the peak before and after `landed`, the RSS at `landed` and at the last
sample (the run winding down).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.corpus import write_corpus

MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]


def _proc_rss(pid: int) -> int:
    """Resident bytes of one process from /proc (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (psutil if installed, else /proc
    for the process alone)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with the project's dependencies
        return _proc_rss(pid)
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


@dataclass
class Samples:
    """RSS samples of a run: (seconds since start, bytes), and when the raw batch landed."""

    points: list[tuple[float, int]] = field(default_factory=list)
    landed_at: float | None = None

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int:
        return max((rss for t, rss in self.points if start <= t <= end), default=0)

    def at(self, moment: float) -> int:
        """The first sample at or after `moment` (the last one if none)."""
        later = [rss for t, rss in self.points if t >= moment]
        return later[0] if later else (self.points[-1][1] if self.points else 0)


def _landed(out: Path) -> bool:
    raw = out / "raw"
    return raw.is_dir() and any(raw.rglob("batch-*.parquet"))


def sample(pid: int, out: Path, interval: float, samples: Samples, stop: threading.Event) -> None:
    started = time.monotonic()
    while not stop.is_set():
        now = time.monotonic() - started
        rss = tree_rss(pid)
        if rss:
            samples.points.append((now, rss))
        if samples.landed_at is None and _landed(out):
            samples.landed_at = now
        stop.wait(interval)


def run_sampled(seeds: Path, out: Path, beam_args: list[str], interval: float) -> dict[str, Any]:
    """One `bench.one run` in a fresh process, sampled; its JSON result plus the samples."""
    cmd = [sys.executable, "-m", "bench.one", "run", str(seeds), str(out), *beam_args]
    samples, stop = Samples(), threading.Event()
    # From the project's root: `-m` puts it first on the path, so this checkout's code runs.
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        sampler = threading.Thread(target=sample, args=(proc.pid, out, interval, samples, stop), daemon=True)
        sampler.start()
        stdout, stderr = proc.communicate()
        stop.set()
        sampler.join()
    if proc.returncode != 0:
        sys.stderr.write(stderr[-4000:])
        raise SystemExit(f"bench.one exited with {proc.returncode}")
    result = dict(json.loads(stdout.strip().splitlines()[-1]))
    result["samples"] = samples
    return result


def table(result: dict[str, Any]) -> str:
    samples: Samples = result["samples"]
    articles = int(result["articles"])
    peak = max(samples.peak(), int(result["peak_mib"] * MIB))
    landed = samples.landed_at
    before = samples.peak(end=landed) if landed is not None else 0
    after = samples.peak(start=landed) if landed is not None else 0
    per_1000 = peak / MIB / (articles / 1000) if articles else float("nan")
    header = (
        "| articles | wall s | CPU s | peak RSS MiB | MiB per 1,000 articles "
        "| peak until landed MiB | RSS at landed MiB | peak in graph MiB | last sample MiB |"
    )
    rule = "|" + "---:|" * 9
    row = (
        f"| {articles:,} | {result['seconds']:.1f} | {result['cpu_seconds']:.1f} | {peak / MIB:,.0f} "
        f"| {per_1000:.1f} | {before / MIB:,.0f} "
        f"| {samples.at(landed) / MIB if landed is not None else float('nan'):,.0f} "
        f"| {after / MIB:,.0f} | {samples.points[-1][1] / MIB if samples.points else 0:,.0f} |"
    )
    return "\n".join([header, rule, row])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    beam_args: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, beam_args = args[:cut], args[cut + 1 :]
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=summary)
    parser.add_argument("--articles", type=int, default=20_000, help="articles to generate (default 20000)")
    parser.add_argument("--seeds", type=Path, help="an existing seeds folder instead of a generated corpus")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between RSS samples")
    opts = parser.parse_args(args)
    with tempfile.TemporaryDirectory(prefix="newsbeam-memory-") as tmp:
        seeds = opts.seeds
        if seeds is None:
            seeds = Path(tmp) / "seeds"
            write_corpus(seeds, opts.articles)
        result = run_sampled(seeds, Path(tmp) / "out", beam_args, opts.interval)
    print(table(result))
    if beam_args:
        print(f"\nbeam args: {' '.join(beam_args)}")


if __name__ == "__main__":
    main()

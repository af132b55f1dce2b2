"""Deduplication at scale: throughput, peak memory, precision and recall.

    python -m bench.dedup [--articles 200000] [--shards 200] [--repeat 3] [--variants ...]

Each variant runs in its own process on the local runner (FnApiRunner):
- `generate`: build the corpus in the pipeline and count it (the baseline);
- `exact`: generate + the exact passes only (same URL, same content);
- `near`: generate + DeduplicateArticles (exact + near duplicates);
- `previous`: generate + the earlier shape of the step (bench.dedup_previous:
  one element per key and article through one GroupByKey), same decisions.
The dedup stage's throughput is articles / (variant time - generate time).
A micro-benchmark compares MinHash signing with rensa and with datasketch.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from bench.dedup_corpus import shard
from bench.dedup_previous import PreviousDeduplicateArticles
from pipeline.dedup.near import NearDupSettings, signature
from pipeline.steps.deduplicate import DeduplicateArticles


def _write(results: list, path: str) -> None:
    Path(path).write_text(json.dumps(results))


def run_variant(
    variant: str, articles: int, shards: int, out: str, threshold: float, beam_args: list[str]
) -> None:
    size = articles // shards
    settings = replace(NearDupSettings(), threshold=threshold)
    if variant == "exact":
        settings = replace(settings, min_words=10**9)  # nothing is signed: exact passes only
    started = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner", *beam_args])) as p:
        corpus = (
            p
            | beam.Create(list(range(shards)))
            | beam.Reshuffle()
            | beam.FlatMap(lambda i: [a for a, _, _ in shard(i, size)])
        )
        if variant == "generate":
            result = corpus | beam.combiners.Count.Globally() | beam.Map(lambda n: [n])
        else:
            step = PreviousDeduplicateArticles(7, settings) if variant == "previous" else None
            deduped = corpus | (step or DeduplicateArticles([], 7, settings))
            result = (
                deduped["duplicates"]
                | beam.Map(lambda d: (d.article_id, d.duplicate_of, d.reason, d.similarity))
                | beam.combiners.ToList()
            )
        result | beam.Map(_write, path=out)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_mib": usage.ru_maxrss / 1024}))


def truth(articles: int, shards: int) -> dict[str, tuple[str, str]]:
    size = articles // shards
    return {a.article_id: (kind, of) for i in range(shards) for a, kind, of in shard(i, size) if kind}


def score(found: list, planted: dict[str, tuple[str, str]]) -> tuple[float, float]:
    """Precision and recall of `copy is a duplicate` over planted copies."""
    flagged = {d[0] for d in found}
    true_pos = len(flagged & set(planted))
    precision = true_pos / len(flagged) if flagged else 1.0
    return precision, true_pos / len(planted)


def signing_speed(docs: int = 2000) -> list[tuple[str, float]]:
    from datasketch import MinHash

    texts = [a.text for a, _, _ in shard(0, docs)]
    settings = NearDupSettings()
    rows = []
    started = time.perf_counter()
    for t in texts:
        signature(t, settings)
    rows.append(("rensa RMinHash (used)", docs / (time.perf_counter() - started)))
    started = time.perf_counter()
    for t in texts:
        m = MinHash(num_perm=settings.num_perm, seed=1)
        m.update_batch([w.encode() for w in t.split()])
    rows.append(("datasketch MinHash", docs / (time.perf_counter() - started)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup")
    parser.add_argument("--articles", type=int, default=200_000)
    parser.add_argument("--shards", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=NearDupSettings.threshold)
    parser.add_argument("--variants", default="generate,exact,near,previous", help="comma-separated")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_variant(args.variant, args.articles, args.shards, args.out, args.threshold, [])
        return

    planted = truth(args.articles, args.shards)
    print(
        f"corpus: {args.articles} articles (~2.5 KB), {sum(k == 'near' for k, _ in planted.values())} "
        f"planted near duplicates, {sum(k == 'exact' for k, _ in planted.values())} exact copies; "
        f"threshold {args.threshold}; median of {args.repeat} runs"
    )
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ["generate", *(v for v in args.variants.split(",") if v != "generate")]:
            runs = []
            for i in range(args.repeat):
                out = f"{tmp}/{variant}-{i}.json"
                cmd = [sys.executable, "-m", "bench.dedup", "--variant", variant, "--out", out,
                       "--articles", str(args.articles), "--shards", str(args.shards),
                       "--threshold", str(args.threshold)]  # fmt: skip
                done = subprocess.run(cmd, check=True, capture_output=True, text=True)
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"  {variant} run {i + 1}: {runs[-1]}", file=sys.stderr, flush=True)
            found = json.loads(Path(out).read_text())
            rows[variant] = (
                statistics.median(r["seconds"] for r in runs),
                statistics.median(r["cpu_seconds"] for r in runs),
                statistics.median(r["peak_mib"] for r in runs),
                found,
            )
    # Wall time on a shared machine is noisy; CPU time (the local runner works in one
    # process) is shown too, and every ratio compares variants measured in this run.
    base, base_cpu = rows["generate"][0], rows["generate"][1]
    stage = {v: (r[0] - base, r[1] - base_cpu) for v, r in rows.items() if v != "generate"}
    print(
        f"{'variant':<10} {'seconds':>8} {'cpu s':>7} {'stage art/s':>12} {'per cpu s':>10} {'peak MiB':>9}"
        f" {'precision':>10} {'recall':>7} {'stage cpu / near':>17}"
    )
    nan = float("nan")
    for variant, (seconds, cpu, peak, found) in rows.items():
        wall_s, cpu_s = stage.get(variant, (nan, nan))
        rate = args.articles / wall_s if wall_s > 0 else nan
        cpu_rate = args.articles / cpu_s if cpu_s > 0 else nan
        precision, recall = score(found, planted) if variant != "generate" else (nan, nan)
        ratio = cpu_s / stage["near"][1] if "near" in stage else nan
        print(
            f"{variant:<10} {seconds:>8.1f} {cpu:>7.1f} {rate:>12.0f} {cpu_rate:>10.0f} {peak:>9.0f}"
            f" {precision:>10.3f} {recall:>7.3f} {ratio:>17.2f}"
        )
    if "near" in rows:
        near_only = {k: v for k, v in planted.items() if v[0] == "near"}
        print(f"recall on planted near duplicates only: {score(rows['near'][3], near_only)[1]:.3f}")
    print("\nMinHash signing, one core:")
    for name, rate in signing_speed():
        print(f"  {name:<30} {rate:>8.0f} docs/s")


if __name__ == "__main__":
    main()

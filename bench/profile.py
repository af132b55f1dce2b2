"""Where one `newsbeam run` spends its time, by cProfile, on the FnApiRunner (in memory).

    python -m bench.profile [--articles 5000] [--top 25] [--save run.prof]

Generates the bench corpus, runs one cycle under cProfile (the FnApiRunner's
in-memory worker runs in the profiled thread) and prints the run's time split
into groups: the stage functions (parse, clean, sign, link, route, tag), pickling
and coders between steps, staging and commit, landing, and what remains (Beam's
own per-element and per-bundle work, imports, graph construction). Each group is
the cumulative time of the named functions, counted once when they nest, so the
groups add up to the profiled total.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.corpus import write_corpus

# (group, file suffix, function name): the first group whose entry is on the stack owns the time.
GROUPS: list[tuple[str, str, str]] = [
    ("staging and commit", "pipeline/lake/store.py", "stage_partition"),
    ("staging and commit", "pipeline/lake/store.py", "commit"),
    ("landing (driver)", "pipeline/lake/store.py", "land_raw"),
    ("reading seeds (driver)", "connectors/seeds.py", "read_seed_dir"),
    ("read raw batches", "pipeline/steps/read.py", "read_raw_batch"),
    ("stage fn: parse", "pipeline/steps/parse.py", "parse_raw"),
    ("stage fn: page join", "pipeline/steps/pages.py", "join_page"),
    ("stage fn: clean", "pipeline/steps/parse.py", "clean_or_reject"),
    ("stage fn: clean", "pipeline/steps/clean.py", "clean_entry"),
    ("stage fn: dedup sign", "pipeline/dedup/decide.py", "member"),
    ("stage fn: dedup payloads", "pipeline/dedup/decide.py", "shard_payloads"),
    ("stage fn: dedup links", "pipeline/steps/deduplicate.py", "link_shard"),
    ("stage fn: dedup resolve", "pipeline/steps/deduplicate.py", "drops_by_shard"),
    ("stage fn: dedup route", "pipeline/steps/deduplicate.py", "route_article"),
    ("stage fn: dedup index read", "pipeline/steps/deduplicate.py", "read_index_members"),
    ("stage fn: tag", "pipeline/steps/tag.py", "tag_article"),
    ("tagger build", "pipeline/steps/tag.py", "process_tagger"),
    ("tagger build", "pipeline/run.py", "load_tagger"),
    ("coders / pickling", "apache_beam/coders/coder_impl.py", ""),
    ("coders / pickling", "apache_beam/coders/coders.py", ""),
    ("coders / pickling", "", "<built-in method _pickle.dumps>"),
    ("coders / pickling", "", "<built-in method _pickle.loads>"),
    ("metrics counters", "apache_beam/metrics/metric.py", "inc"),
    ("graph construction", "pipeline/run.py", "build_graph"),
]


def _group_of(func: tuple[str, int, str]) -> str | None:
    filename, _, name = func
    for group, suffix, fname in GROUPS:
        if suffix and not filename.endswith(suffix):
            continue
        if fname and name != fname:
            continue
        if not suffix and filename != "~":
            continue
        return group
    return None


def exclusive_groups(stats: pstats.Stats) -> dict[str, float]:
    """Seconds per group: the cumulative time of each group's entry functions, minus what
    they spend in entry functions of another group (so nothing is counted twice).

    pstats keeps, per function, the time spent under each direct caller. The time of a
    function reached from a grouped caller belongs to that caller's group; walking from
    the leaves up we attribute every function's own time to the nearest grouped ancestor,
    splitting it by the share each caller contributed.
    """
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    group = {f: _group_of(f) for f in raw}
    # owner share: for each function, the fraction of its time owned by each group (or None).
    memo: dict[Any, dict[str | None, float]] = {}

    def shares(func: Any, depth: int = 0) -> dict[str | None, float]:
        if func in memo:
            return memo[func]
        if group.get(func) is not None:
            memo[func] = {group[func]: 1.0}
            return memo[func]
        memo[func] = {None: 1.0}  # cycle guard
        _, _, _, ct, callers = raw[func]
        total = sum(c[3] for c in callers.values()) or 0.0
        result: dict[str | None, float] = {}
        if total <= 0 or depth > 200:
            result = {None: 1.0}
        else:
            for caller, (_, _, _, cct) in callers.items():
                for g, s in shares(caller, depth + 1).items() if caller in raw else [(None, 1.0)]:
                    result[g] = result.get(g, 0.0) + s * cct / total
        memo[func] = result
        return result

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    seconds: dict[str, float] = {}
    for func, (_, _, tt, _, _) in raw.items():
        for g, s in shares(func).items():
            key = g or "rest (Beam per element/bundle, driver, imports)"
            seconds[key] = seconds.get(key, 0.0) + tt * s
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--articles", type=int, default=5000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--save", help="write the raw profile here (pstats format)")
    args = parser.parse_args()

    from bench.one import newsbeam_run

    with tempfile.TemporaryDirectory(prefix="newsbeam-profile-") as tmp:
        seeds = Path(tmp) / "seeds"
        write_corpus(seeds, args.articles)
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        articles = newsbeam_run(seeds, Path(tmp) / "out", [])
        profile.disable()
        wall = time.perf_counter() - started
    assert articles == args.articles, articles
    if args.save:
        profile.dump_stats(args.save)
    stats = pstats.Stats(profile)
    total = stats.total_tt  # type: ignore[attr-defined]
    groups = exclusive_groups(stats)
    print(f"{args.articles} articles, wall {wall:.2f}s under the profiler, profiled {total:.2f}s")
    print(f"{'group':<52} {'seconds':>8} {'share':>6}")
    for name, secs in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"{name:<52} {secs:>8.2f} {secs / total:>6.1%}")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()

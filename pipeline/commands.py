"""What each `newsbeam` command does, given its parsed arguments (pipeline/cli.py
parses them, resolves nothing and dispatches here). Commands on a lake get the
resolved `RunConfig`; `eval`, `tag` and `check` need neither a lake nor Beam."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, RunConfig, load_config
from pipeline.lake.files import KILL_ENV
from pipeline.lake.storage import is_remote
from pipeline.lake.store import Lake, LakeError
from pipeline.tagging.tagger import TaxonomyError

EXIT_FAILED = 2  # bad config, an unknown option, a crash (0 and 1 are the run's: pipeline/run.py)
EXIT_BUSY = 3  # another writer holds the lake's lock

# Top-level settings from the environment (a container's, a scheduler's): a flag wins
# over its variable, the variable over the config file.
ENV_CONFIG, ENV_OUTPUT, ENV_SEEDS = "NEWSBEAM_CONFIG", "NEWSBEAM_OUTPUT_DIR", "NEWSBEAM_SEEDS_DIR"


def _from_env(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def local_only(config: RunConfig, command: str) -> None:
    """Commands that work on a lake on a local filesystem only, for now."""
    if is_remote(config.output_dir):
        raise LakeError(
            f"{config.output_dir}: `newsbeam {command}` needs a lake on a local filesystem "
            "(on object storage: run, compact, retag, vacuum, sql, status, verify)"
        )


def output_location(value: str) -> Path | str:
    """`--output` and NEWSBEAM_OUTPUT_DIR: a folder, or an object store URI as given."""
    return value if is_remote(value) else Path(value).expanduser()


def config_from(args: argparse.Namespace) -> RunConfig:
    config = load_config(args.config or _from_env(ENV_CONFIG))
    env_output = os.environ.get(ENV_OUTPUT, "").strip()
    output = args.output or (output_location(env_output) if env_output else None)
    if output:
        config = config.__class__(**{**config.__dict__, "output_dir": output})
    seeds = getattr(args, "seeds", None) or _from_env(ENV_SEEDS)
    if seeds:
        config = config.__class__(**{**config.__dict__, "seeds_dir": seeds})
    if getattr(args, "topics", None) is not None:
        topics = tuple(sorted({t.strip() for t in args.topics.split(",") if t.strip()}))
        config = config.__class__(**{**config.__dict__, "keep_topics": topics})
    window = getattr(args, "window_seconds", None)
    if window is not None:
        if window <= 0:
            raise ConfigError(f"`--window-seconds` must be positive, got {window:g}")
        config = replace(config, stream=replace(config.stream, window_seconds=window))
    return config


def evaluate(args: argparse.Namespace) -> int:
    if args.stories:
        return evaluate_stories(args)
    from pipeline.tagging.evaluate import (
        DEFAULT_EVAL_SET,
        DEFAULT_REAL_TEXTS,
        evaluate,
        format_report,
        load_eval_set,
        load_real_set,
    )
    from pipeline.tagging.tagger import Tagger, load_taxonomy

    try:
        tagger = Tagger(load_taxonomy(args.taxonomy))
        if args.eval_set == "real":
            articles = load_real_set(args.texts or DEFAULT_REAL_TEXTS, args.split)
        else:
            folder = DEFAULT_EVAL_SET if args.eval_set == "written" else Path(args.eval_set)
            articles = load_eval_set(folder, args.split)
    except (TaxonomyError, ValueError, OSError) as exc:
        print(f"newsbeam: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not articles:
        print("newsbeam: no labelled articles found", file=sys.stderr)
        return EXIT_FAILED
    print(format_report(evaluate(tagger, articles), show_mistakes=args.mistakes))
    return 0


def evaluate_stories(args: argparse.Namespace) -> int:
    from pipeline.stories.evaluate import DEFAULT_PAIRS, DEFAULT_TEXTS, format_report, linking_figures

    try:
        pairs, stories = linking_figures(args.texts or DEFAULT_TEXTS, DEFAULT_PAIRS)
    except (TaxonomyError, ValueError, OSError) as exc:
        print(f"newsbeam: {exc}", file=sys.stderr)
        return EXIT_FAILED
    wanted = ("dev", "test", "all") if args.split == "all" else (args.split,)
    print(format_report({n: pairs[n] for n in wanted}, {n: stories[n] for n in wanted}))
    return 0


def check(args: argparse.Namespace) -> int:
    from pipeline.ops.check import report

    def override(config: RunConfig) -> RunConfig:
        output, seeds = args.output or _from_env(ENV_OUTPUT), args.seeds or _from_env(ENV_SEEDS)
        return replace(config, output_dir=output or config.output_dir, seeds_dir=seeds or config.seeds_dir)

    text, status = report(args.config or _from_env(ENV_CONFIG), override)
    print(text, file=sys.stdout if status == 0 else sys.stderr)
    return status


def tag(args: argparse.Namespace) -> int:
    from pipeline.tagging.explain import split_title, tag_report
    from pipeline.tagging.tagger import Tagger, load_taxonomy

    try:
        tagger = Tagger(load_taxonomy(args.taxonomy))
        raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (TaxonomyError, OSError, UnicodeDecodeError) as exc:
        print(f"newsbeam: {exc}", file=sys.stderr)
        return EXIT_FAILED
    title, text = (args.title, raw.strip()) if args.title is not None else split_title(raw)
    print(tag_report(tagger, title, text, args.language, args.explain))
    return 0


def run(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    # Crash tests name a point where the job kills itself; read here, once, and passed down.
    from pipeline.observe.progress import for_stderr
    from pipeline.run import format_report, report_json, run_cycle

    progress = for_stderr()  # a live display on a terminal, nothing in logs and pipes
    report = run_cycle(config, beam_args, kill_at=os.environ.get(KILL_ENV) or None, progress=progress)
    if args.json:
        print(json.dumps(report_json(report), ensure_ascii=False))
    else:
        print(format_report(report))
    if args.metrics_file:
        from pipeline.observe.metrics import write_run_metrics

        write_run_metrics(report, args.metrics_file, time.time())
    return report.exit_code


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, doing: str) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` (saying what the stream does then) while inside."""

    def request_stop(signum: int, frame: Any) -> None:
        if not stop.is_set():
            print(f"newsbeam stream: {signal.Signals(signum).name}: {doing}", flush=True)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stream(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    local_only(config, "stream")
    import time

    from pipeline.streaming.windows import format_window, run_stream, stream_options

    stop = threading.Event()
    if any(a == "--streaming" or a.startswith("--streaming=") for a in beam_args):
        if args.metrics_port:  # not silently ignored: the unbounded job has no window loop to report
            raise ConfigError("--metrics-port is served by the micro-batch mode, not with --streaming")
        return stream_unbounded(config, args, beam_args, stop)
    stream_options(beam_args)  # refuse bad flags before anything starts

    last = time.monotonic()
    metrics = None
    if args.metrics_port:
        from pipeline.observe.metrics import StreamMetrics

        metrics = StreamMetrics(args.metrics_port)

    def show(window: Any) -> None:
        nonlocal last
        now = time.monotonic()
        print(format_window(window, now - last), flush=True)
        last = now
        if metrics is not None:
            metrics.observe(window.run, time.time())

    with stop_on_signals(stop, "committing the open window"):
        report = run_stream(
            config,
            beam_args,
            args.max_windows,
            stop,
            on_window=show,
            kill_at=os.environ.get(KILL_ENV) or None,
        )
    print(f"newsbeam stream: stopped after {len(report.windows)} windows", flush=True)
    return 0


def stream_unbounded(
    config: RunConfig, args: argparse.Namespace, beam_args: list[str], stop: threading.Event
) -> int:
    from pipeline.streaming.unbounded import run_unbounded

    with stop_on_signals(stop, "committing the open windows"):
        report = run_unbounded(
            config,
            beam_args,
            args.max_windows,
            stop,
            kill_at=os.environ.get(KILL_ENV) or None,
            show=True,
        )
    print(f"newsbeam stream: stopped after {len(report.run_ids)} commits", flush=True)
    return 0


def compact(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipeline.ops.maintenance import compact, utc_now

    lake = Lake(config.output_dir)
    with lake.lock():
        kill_at = os.environ.get(KILL_ENV) or None
        result = compact(lake, args.max_rows_per_file, kill_at=kill_at, now=utc_now())
    print(
        f"compacted {result.partitions} partitions: {result.files_before} files -> "
        f"{result.files_after}, {result.rows} rows"
    )
    return 0


def retag(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipeline.observe.progress import for_stderr
    from pipeline.ops.maintenance import utc_now
    from pipeline.ops.retag import retag
    from pipeline.tagging.tagger import Tagger, load_taxonomy

    tagger = Tagger(load_taxonomy(config.taxonomy))
    lake = Lake(config.output_dir)
    progress = for_stderr()  # partitions re-tagged of N on a terminal, nothing in logs and pipes
    try:
        with lake.lock():
            info = {"committed_at": utc_now().isoformat()}
            result = retag(
                lake, tagger, args.since, args.until, info=info, force=args.force, progress=progress
            )
    finally:
        progress.close()
    print(
        f"re-tagged {result.rows} articles in {result.partitions_read} partitions with taxonomy "
        f"{tagger.taxonomy.version}: {result.partitions_replaced} partitions replaced"
    )
    return 0


def replay(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    local_only(config, "replay")
    from pipeline.observe.progress import for_stderr
    from pipeline.ops.maintenance import replay, runs_to_replay, utc_now
    from pipeline.run import make_plan, pipeline_options, run_graph
    from pipeline.tagging.tagger import Tagger, load_taxonomy

    options = pipeline_options(beam_args)
    tagger = Tagger(load_taxonomy(config.taxonomy))
    lake = Lake(config.output_dir)

    def plan_for(run_id: str, batches: dict[str, Path], index_files: list[Path]) -> Any:
        return make_plan(config, lake, tagger, run_id, batches, index_files, stage_only=True)

    progress = for_stderr()  # runs replayed of N on a terminal, nothing in logs and pipes
    done = 0

    def replay_one(plan: Any) -> None:
        nonlocal done
        progress.step("runs replayed", done, total)
        run_graph(plan, options)
        done += 1
        progress.step("runs replayed", done, total)

    try:
        with lake.lock():
            total = len(runs_to_replay(lake, args.since, args.until)) if args.since <= args.until else 0
            result = replay(lake, args.since, args.until, plan_for, replay_one, utc_now())
    finally:
        progress.close()
    print(
        f"replayed {len(result.runs)} runs landed {args.since}..{args.until}: "
        f"{result.partitions_replaced} partitions replaced"
    )
    return 0


def vacuum(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from datetime import timedelta

    from pipeline.ops.maintenance import utc_now, vacuum

    lake = Lake(config.output_dir)
    with lake.lock():
        result = vacuum(lake, utc_now(), args.raw_retention_days, timedelta(minutes=args.grace_minutes))
    print(
        f"vacuum: {len(result.staging)} staging leftovers, {len(result.retired_files)} replaced files, "
        f"{len(result.raw_batches)} raw batches deleted"
    )
    return 0


def sql(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    import duckdb

    from pipeline.ops.maintenance import snapshot_connection
    from pipeline.tagging.tagger import load_taxonomy

    try:
        lake = Lake(config.output_dir)
        rel = snapshot_connection(lake, load_taxonomy(config.taxonomy), args.as_of).sql(args.query)
        if rel is not None:
            rel.show(max_width=200, max_rows=200)
    except duckdb.Error as exc:
        print(f"newsbeam: sql: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def status(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipeline.ops.maintenance import status_report

    names = {feed.url: feed.name for feed in config.feeds}
    print(status_report(Lake(config.output_dir), args.last, names))
    return 0


def migrate(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    local_only(config, "migrate")
    from pipeline.ops.migrate import migrate

    lake = Lake(config.output_dir)
    with lake.lock(recover=False):
        result = migrate(lake)
    files = ", ".join(f"{name} {n}" for name, n in sorted((result.files or {}).items()))
    print(f"migrated {lake.root}: {result.commits} commits; files: {files}; {result.raw_batches} raw batches")
    return 0


def verify(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipeline.ops.maintenance import require_lake
    from pipeline.ops.verify import format_verify, verify

    lake = Lake(config.output_dir)
    require_lake(lake, check=False)  # verify names a missing or unreadable log itself
    result = verify(lake)
    print(format_verify(result))
    return 1 if result.problems else 0


def report(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    local_only(config, "report")
    from pipeline.ops.report import ReportError, write_report
    from pipeline.tagging.tagger import load_taxonomy

    names = {feed.url: feed.name for feed in config.feeds}
    try:
        out = write_report(
            config.output_dir,
            args.html,
            args.days,
            taxonomy=load_taxonomy(config.taxonomy),
            feed_names=names,
            since=args.since,
            until=args.until,
            topic=args.topic,
        )
    except ReportError as exc:  # filters that cannot be met: said before any page is written
        print(f"newsbeam report: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"report written to {out}")
    return 0


def feeds(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipeline.ops.feedlist import main as feeds_main

    return feeds_main(config, args)


COMMANDS: dict[str, Callable[[RunConfig, argparse.Namespace, list[str]], int]] = {
    "run": run,
    "stream": stream,
    "compact": compact,
    "replay": replay,
    "retag": retag,
    "vacuum": vacuum,
    "sql": sql,
    "migrate": migrate,
    "verify": verify,
    "status": status,
    "feeds": feeds,
    "report": report,
}


STANDALONE: dict[str, Callable[[argparse.Namespace], int]] = {"eval": evaluate, "tag": tag, "check": check}

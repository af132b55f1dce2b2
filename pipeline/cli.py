"""`newsbeam` command line. Flags `run`, `replay` and `stream` do not know are Beam
pipeline options; one Beam does not know either is an error (exit status 2), as is any
unexpected exception (one line on stderr; the traceback with -v)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, RunConfig, load_config
from pipeline.lake import KILL_ENV, Lake, LakeBusy
from pipeline.logs import LEVELS
from pipeline.logs import setup as setup_logs
from pipeline.maintenance import MaintenanceError
from pipeline.options import unknown_beam_option, unknown_option_message
from pipeline.tagging import TaxonomyError

EXIT_FAILED = 2
EXIT_BUSY = 3
# The commands that hand every flag they do not know to Beam's PipelineOptions.
BEAM_COMMANDS = ("run", "replay", "stream")


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {value!r}") from exc


def _positive(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return n


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("newsbeam")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsbeam",
        description="News ingestion: feeds and seed files in, clean tagged Parquet out.",
    )
    verbose_help = "show Beam's logs, and the traceback of an unexpected error"
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    parser.add_argument("--version", action="version", version=f"newsbeam {_version()}")
    parser.add_argument("--log-level", choices=LEVELS, default="warning", help="newsbeam's own log on stderr")
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines as text or JSON"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def verbose(cmd: argparse.ArgumentParser) -> None:
        # SUPPRESS: left out, the subcommand does not reset a `newsbeam -v CMD` to False.
        cmd.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)

    def command_in(
        subs: Any, name: str, help: str, description: str | None = None
    ) -> argparse.ArgumentParser:
        cmd: argparse.ArgumentParser = subs.add_parser(name, help=help, description=description or help)
        cmd.add_argument("--config", type=Path, help="TOML config (default: built-in defaults)")
        verbose(cmd)
        return cmd

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        cmd = command_in(sub, name, help, description)
        cmd.add_argument("--output", type=Path, help="output dir (overrides `output_dir`)")
        return cmd

    run = command(
        "run",
        "run one ingestion cycle",
        "Run one ingestion cycle. Any other --flag is passed to Beam's "
        "PipelineOptions (e.g. --runner, --direct_num_workers, --dask_client_address); "
        "one no PipelineOptions knows is an error.",
    )
    run.add_argument("--seeds", type=Path, help="seeds dir (overrides `seeds_dir`)")
    run.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    run.add_argument(
        "--metrics-file", type=Path, help="write Prometheus metrics here after the run (textfile collector)"
    )
    run.add_argument(
        "--topics", help="comma-separated topic ids: keep only articles about one of them (`keep_topics`)"
    )
    stream = command(
        "stream",
        "ingest continuously: poll feeds as they are due, commit a run per window",
        "Poll each feed every `[stream] poll_interval` seconds and commit what was fetched "
        "every `[stream] window_seconds`, with the same graph and commit as `run`. SIGTERM or "
        "SIGINT commits the open window, then exits. With --streaming it is one unbounded Beam "
        "streaming job (local runner unless --runner names one). Any other --flag is passed to Beam.",
    )
    stream.add_argument("--seeds", type=Path, help="seeds dir (overrides `seeds_dir`)")
    stream.add_argument("--metrics-port", type=_positive, help="serve Prometheus /metrics on this port")
    stream.add_argument(
        "--window-seconds", type=float, help="window length (overrides `[stream] window_seconds`)"
    )
    stream.add_argument(
        "--max-windows",
        type=_positive,
        help="stop after this many windows (with --streaming: after this many window lengths)",
    )
    compact = command("compact", "merge each partition's small files into few large ones, atomically")
    compact.add_argument("--max-rows-per-file", type=_positive, default=1_000_000)
    replay = command(
        "replay",
        "re-run the current pipeline over raw data landed in a date range",
        "Re-run every run that processed raw data landed in [--since, --until] with the "
        "current pipeline and swap the affected partitions in atomically. Other --flags go to Beam.",
    )
    replay.add_argument("--since", type=_day, required=True, help="first landed date, YYYY-MM-DD")
    replay.add_argument("--until", type=_day, required=True, help="last landed date, YYYY-MM-DD")
    retag = command(
        "retag",
        "re-tag stored articles with the current taxonomy",
        "Re-tag the articles published in [--since, --until] with the configured taxonomy "
        "(from the stored text, no refetch) and swap their partitions in atomically.",
    )
    retag.add_argument("--since", type=_day, required=True, help="first published date, YYYY-MM-DD")
    retag.add_argument("--until", type=_day, required=True, help="last published date, YYYY-MM-DD")
    vacuum = command("vacuum", "delete staging leftovers, replaced files and (optionally) old raw data")
    vacuum.add_argument(
        "--raw-retention-days", type=_positive, help="delete processed raw batches landed earlier than this"
    )
    vacuum.add_argument(
        "--grace-minutes", type=int, default=60, help="keep replaced files this long for running readers"
    )
    sql = command("sql", "query one committed state with DuckDB (views: articles, rejects, duplicates, …)")
    sql.add_argument("query", help='e.g. "SELECT published_date, count(*) FROM articles GROUP BY 1"')
    report = command("report", "one static HTML page: topics, feed health, entities, duplicates and rejects")
    report.add_argument(
        "--html", type=Path, default=Path("newsbeam-report.html"), help="the HTML file to write"
    )
    report.add_argument("--days", type=_positive, help="only the last N days (default: everything)")
    status = command("status", "recent runs and swaps, and the health of each feed")
    status.add_argument("--last", type=_positive, default=10, help="how many commits to list")
    feeds = sub.add_parser("feeds", help="the configured feeds (OPML included): list them, or export OPML")
    feeds_sub = feeds.add_subparsers(dest="feeds_command", required=True)
    feeds_list = command_in(feeds_sub, "list", "each feed (name, URL, tags) and its health from its state")
    feeds_list.add_argument("--output", type=Path, help="output dir (overrides `output_dir`)")
    command_in(feeds_sub, "export", "write the feeds as OPML 2.0 to stdout").set_defaults(output=None)
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script: `source <(newsbeam completion bash)` (or zsh).",
    )
    completion.add_argument("shell", choices=("bash", "zsh"))
    check = sub.add_parser(
        "check",
        help="validate the config and the taxonomy, reporting every problem at once",
        description="Validate the config (or the built-in defaults), the taxonomy it names, the "
        "seeds folder and the output folder, and list every problem found. Exit 0 or 2.",
    )
    check.add_argument("--config", type=Path, help="TOML config (default: built-in defaults)")
    check.add_argument("--output", type=Path, help="output dir (overrides `output_dir`)")
    check.add_argument("--seeds", type=Path, help="seeds dir (overrides `seeds_dir`)")
    verbose(check)
    tag = sub.add_parser(
        "tag",
        help="tag one text: entities, topics, scores, evidence (--explain: and why)",
        description="Tag one text (a file, or stdin with - or nothing; the first line is the title "
        "unless --title is given) and print its entities and topics as JSON, or with --explain "
        "a readable account: evidence sentences, and each calibrated topic's features and score.",
    )
    tag.add_argument("file", nargs="?", default="-", help="the text (default: stdin)")
    tag.add_argument("--title", help="the headline (then the whole input is the body)")
    tag.add_argument("--language", help="ISO 639-1 code of the text (exact aliases need it)")
    tag.add_argument("--taxonomy", type=Path, help="taxonomy TOML (default: built-in)")
    tag.add_argument("--explain", action="store_true", help="say why each topic was or was not kept")
    verbose(tag)
    evaluate = sub.add_parser(
        "eval",
        help="tagging precision, recall and F1 on a labelled set",
        description="Tag a labelled set and print precision, recall and F1 per topic and per "
        "language: `written` (tests/eval/tagging, the default), `real` (the labels of "
        "tests/eval/real joined with real published articles from --texts), or a folder of "
        "labelled *.jsonl written like tests/eval/tagging.",
    )
    evaluate.add_argument("--set", dest="eval_set", default="written", help="written | real | FOLDER")
    evaluate.add_argument(
        "--texts",
        type=Path,
        help="folder of the real articles (*.jsonl) for --set real (default: ../shared/realnews)",
    )
    evaluate.add_argument("--split", choices=["dev", "test", "all"], default="all")
    evaluate.add_argument("--taxonomy", type=Path, help="taxonomy TOML (default: built-in)")
    evaluate.add_argument("--mistakes", action="store_true", help="list every wrong decision")
    verbose(evaluate)
    return parser


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


# --- errors -------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def guarded(func: Callable[[], int], verbose: bool) -> int:
    """`func()`, or exit status 2 after an unexpected exception: one line on stderr
    (the traceback before it with `verbose`). KeyboardInterrupt and SystemExit pass."""
    try:
        return func()
    except BrokenPipeError:  # the reader went away (`| head`): nothing left to say
        sys.stderr.close()
        return 0
    except Exception as exc:
        if verbose:
            traceback.print_exception(exc, file=sys.stderr)
        print(f"newsbeam: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


# Top-level settings from the environment (a container's, a scheduler's): a flag wins
# over its variable, the variable over the config file.
ENV_CONFIG, ENV_OUTPUT, ENV_SEEDS = "NEWSBEAM_CONFIG", "NEWSBEAM_OUTPUT_DIR", "NEWSBEAM_SEEDS_DIR"


def _from_env(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def _config(args: argparse.Namespace) -> RunConfig:
    config = load_config(args.config or _from_env(ENV_CONFIG))
    output = args.output or _from_env(ENV_OUTPUT)
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


def _evaluate(args: argparse.Namespace) -> int:
    from pipeline.evaluate import (
        DEFAULT_EVAL_SET,
        DEFAULT_REAL_TEXTS,
        evaluate,
        format_report,
        load_eval_set,
        load_real_set,
    )
    from pipeline.tagging import Tagger, load_taxonomy

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


def _check(args: argparse.Namespace) -> int:
    from pipeline.check import report

    def override(config: RunConfig) -> RunConfig:
        output, seeds = args.output or _from_env(ENV_OUTPUT), args.seeds or _from_env(ENV_SEEDS)
        return replace(config, output_dir=output or config.output_dir, seeds_dir=seeds or config.seeds_dir)

    text, status = report(args.config or _from_env(ENV_CONFIG), override)
    print(text, file=sys.stdout if status == 0 else sys.stderr)
    return status


def _tag(args: argparse.Namespace) -> int:
    from pipeline.explain import split_title, tag_report
    from pipeline.tagging import Tagger, load_taxonomy

    try:
        tagger = Tagger(load_taxonomy(args.taxonomy))
        raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (TaxonomyError, OSError, UnicodeDecodeError) as exc:
        print(f"newsbeam: {exc}", file=sys.stderr)
        return EXIT_FAILED
    title, text = (args.title, raw.strip()) if args.title is not None else split_title(raw)
    print(tag_report(tagger, title, text, args.language, args.explain))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and args.command not in BEAM_COMMANDS:
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    return guarded(lambda: _main(parser, args, beam_args), args.verbose)


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace, beam_args: list[str]) -> int:
    if args.command == "eval":
        return _evaluate(args)
    if args.command == "tag":
        return _tag(args)
    if args.command == "check":
        return _check(args)
    if args.command == "completion":
        from pipeline.completion import script

        print(script(parser, args.shell))
        return 0
    # Before Beam is imported: its import logs warnings about optional cloud clients.
    setup_logs(args.log_level, args.log_format, args.verbose)
    # Beam drops a flag no PipelineOptions knows: a typo would run with the default.
    unknown = unknown_beam_option(beam_args)
    if unknown is not None:
        own = [opt for action in _subcommand(parser, args.command)._actions for opt in action.option_strings]
        print(unknown_option_message(args.command, own, unknown), file=sys.stderr)
        return EXIT_FAILED
    try:
        config = _config(args)
        return int(_COMMANDS[args.command](config, args, beam_args))
    except (ConfigError, TaxonomyError) as exc:
        print(f"newsbeam: config error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except LakeBusy as exc:
        print(f"newsbeam: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except MaintenanceError as exc:
        print(f"newsbeam: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _run(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipeline.run import format_report, report_json, run_cycle

    # Crash tests name a point where the job kills itself; read here, once, and passed down.
    report = run_cycle(config, beam_args, kill_at=os.environ.get(KILL_ENV) or None)
    if args.json:
        print(json.dumps(report_json(report), ensure_ascii=False))
    else:
        print(format_report(report))
    if args.metrics_file:
        from pipeline.metrics import write_run_metrics

        write_run_metrics(report, args.metrics_file, time.time())
    return report.exit_code


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event, doing: str) -> Iterator[None]:
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


def _stream(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    import time

    from pipeline.stream import format_window, run_stream, stream_options

    stop = threading.Event()
    if any(a == "--streaming" or a.startswith("--streaming=") for a in beam_args):
        if args.metrics_port:  # not silently ignored: the unbounded job has no window loop to report
            raise ConfigError("--metrics-port is served by the micro-batch mode, not with --streaming")
        return _stream_unbounded(config, args, beam_args, stop)
    stream_options(beam_args)  # refuse bad flags before anything starts

    last = time.monotonic()
    metrics = None
    if args.metrics_port:
        from pipeline.metrics import StreamMetrics

        metrics = StreamMetrics(args.metrics_port)

    def show(window: Any) -> None:
        nonlocal last
        now = time.monotonic()
        print(format_window(window, now - last), flush=True)
        last = now
        if metrics is not None:
            metrics.observe(window.run, time.time())

    with _stop_on_signals(stop, "committing the open window"):
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


def _stream_unbounded(
    config: RunConfig, args: argparse.Namespace, beam_args: list[str], stop: threading.Event
) -> int:
    from pipeline.unbounded import run_unbounded

    with _stop_on_signals(stop, "committing the open windows"):
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


def _compact(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipeline.maintenance import compact, utc_now

    lake = Lake(config.output_dir)
    with lake.lock():
        kill_at = os.environ.get(KILL_ENV) or None
        result = compact(lake, args.max_rows_per_file, kill_at=kill_at, now=utc_now())
    print(
        f"compacted {result.partitions} partitions: {result.files_before} files -> "
        f"{result.files_after}, {result.rows} rows"
    )
    return 0


def _retag(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipeline.maintenance import utc_now
    from pipeline.retag import retag
    from pipeline.tagging import Tagger, load_taxonomy

    tagger = Tagger(load_taxonomy(config.taxonomy))
    lake = Lake(config.output_dir)
    with lake.lock():
        result = retag(lake, tagger, args.since, args.until, info={"committed_at": utc_now().isoformat()})
    print(
        f"re-tagged {result.rows} articles in {result.partitions_read} partitions with taxonomy "
        f"{tagger.taxonomy.version}: {result.partitions_replaced} partitions replaced"
    )
    return 0


def _replay(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipeline.maintenance import replay, utc_now
    from pipeline.run import make_plan, pipeline_options, run_graph
    from pipeline.tagging import Tagger, load_taxonomy

    options = pipeline_options(beam_args)
    tagger = Tagger(load_taxonomy(config.taxonomy))
    lake = Lake(config.output_dir)

    def plan_for(run_id: str, batches: dict[str, Path], index_files: list[Path]) -> Any:
        return make_plan(config, lake, tagger, run_id, batches, index_files, stage_only=True)

    with lake.lock():
        result = replay(
            lake, args.since, args.until, plan_for, lambda plan: run_graph(plan, options), utc_now()
        )
    print(
        f"replayed {len(result.runs)} runs landed {args.since}..{args.until}: "
        f"{result.partitions_replaced} partitions replaced"
    )
    return 0


def _vacuum(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from datetime import timedelta

    from pipeline.maintenance import utc_now, vacuum

    lake = Lake(config.output_dir)
    with lake.lock():
        result = vacuum(lake, utc_now(), args.raw_retention_days, timedelta(minutes=args.grace_minutes))
    print(
        f"vacuum: {len(result.staging)} staging leftovers, {len(result.retired_files)} replaced files, "
        f"{len(result.raw_batches)} raw batches deleted"
    )
    return 0


def _sql(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    import duckdb

    from pipeline.maintenance import snapshot_connection
    from pipeline.tagging import load_taxonomy

    try:
        rel = snapshot_connection(Lake(config.output_dir), load_taxonomy(config.taxonomy)).sql(args.query)
        if rel is not None:
            rel.show(max_width=200, max_rows=200)
    except duckdb.Error as exc:
        print(f"newsbeam: sql: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _status(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipeline.maintenance import status_report

    names = {feed.url: feed.name for feed in config.feeds}
    print(status_report(Lake(config.output_dir), args.last, names))
    return 0


def _report(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipeline.report import write_report
    from pipeline.tagging import load_taxonomy

    names = {feed.url: feed.name for feed in config.feeds}
    out = write_report(
        config.output_dir, args.html, args.days, taxonomy=load_taxonomy(config.taxonomy), feed_names=names
    )
    print(f"report written to {out}")
    return 0


def _feeds(config: RunConfig, args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipeline.feedlist import main as feeds_main

    return feeds_main(config, args)


_COMMANDS = {
    "run": _run,
    "stream": _stream,
    "compact": _compact,
    "replay": _replay,
    "retag": _retag,
    "vacuum": _vacuum,
    "sql": _sql,
    "status": _status,
    "feeds": _feeds,
    "report": _report,
}


if __name__ == "__main__":
    sys.exit(main())

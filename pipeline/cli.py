"""`newsbeam` command line. Flags `run`, `replay` and `stream` do not know are Beam
pipeline options; one Beam does not know either is an error (exit status 2), as is any
unexpected exception (one line on stderr; the traceback with -v)."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.commands import COMMANDS, EXIT_BUSY, EXIT_FAILED, STANDALONE, config_from, output_location
from pipeline.config import ConfigError
from pipeline.lake.store import LakeBusy, LakeError
from pipeline.observe.logs import LEVELS
from pipeline.observe.logs import setup as setup_logs
from pipeline.ops.maintenance import MaintenanceError
from pipeline.options import unknown_beam_option, unknown_option_message
from pipeline.tagging.tagger import TaxonomyError

# The commands that hand every flag they do not know to Beam's PipelineOptions.
BEAM_COMMANDS = ("run", "replay", "stream")


def _as_of(value: str) -> int | datetime:
    """A commit's sequence number, or a time (naive times are UTC)."""
    if value.isdigit():
        return int(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a commit number nor an ISO 8601 time"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


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
        cmd.add_argument(
            "--output",
            type=output_location,
            help="output dir or s3:// gs:// az:// URI (overrides `output_dir`)",
        )
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
    retag.add_argument(
        "--force", action="store_true", help="re-tag although the taxonomy's version names other rules here"
    )
    vacuum = command("vacuum", "delete staging leftovers, replaced files and (optionally) old raw data")
    vacuum.add_argument(
        "--raw-retention-days", type=_positive, help="delete processed raw batches landed earlier than this"
    )
    vacuum.add_argument(
        "--grace-minutes", type=int, default=60, help="keep replaced files this long for running readers"
    )
    sql = command("sql", "query one committed state with DuckDB (views: articles, rejects, duplicates, …)")
    sql.add_argument("query", help='e.g. "SELECT published_date, count(*) FROM articles GROUP BY 1"')
    sql.add_argument(
        "--as-of",
        type=_as_of,
        help="the lake as of a commit (its SEQ in `newsbeam status`) or a time (ISO 8601, UTC if no zone)",
    )
    command("migrate", "convert a lake written before Delta tables to Delta tables, in place")
    command("verify", "check every file the current version of every table references; name the bad ones")
    report = command("report", "one static HTML page: topics, feed health, entities, duplicates and rejects")
    report.add_argument(
        "--html", type=Path, default=Path("newsbeam-report.html"), help="the HTML file to write"
    )
    report.add_argument(
        "--days", type=_positive, help="only the last N days, up to --until or today (default: everything)"
    )
    report.add_argument("--since", type=_day, help="first day shown, YYYY-MM-DD (not with --days)")
    report.add_argument("--until", type=_day, help="last day shown, YYYY-MM-DD")
    report.add_argument("--topic", help="only the articles tagged with this topic id (and their duplicates)")
    status = command("status", "recent runs and swaps, and the health of each feed")
    status.add_argument("--last", type=_positive, default=10, help="how many commits to list")
    feeds = sub.add_parser("feeds", help="the configured feeds (OPML included): list them, or export OPML")
    feeds_sub = feeds.add_subparsers(dest="feeds_command", required=True)
    feeds_list = command_in(feeds_sub, "list", "each feed (name, URL, tags) and its health from its state")
    feeds_list.add_argument("--output", type=output_location, help="output dir (overrides `output_dir`)")
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
    check.add_argument("--output", type=output_location, help="output dir (overrides `output_dir`)")
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
        help="tagging (or story linking) precision, recall and F1 on a labelled set",
        description="Tag a labelled set and print precision, recall and F1 per topic and per "
        "language: `written` (tests/eval/tagging, the default), `real` (the labels of "
        "tests/eval/real joined with real published articles from --texts), or a folder of "
        "labelled *.jsonl written like tests/eval/tagging. With --stories: story linking on the "
        "labelled pairs of real articles (tests/eval/stories), pair precision and recall, "
        "same-language and cross-language.",
    )
    evaluate.add_argument(
        "--stories", action="store_true", help="evaluate story linking on tests/eval/stories instead"
    )
    evaluate.add_argument("--set", dest="eval_set", default="written", help="written | real | FOLDER")
    evaluate.add_argument(
        "--texts",
        type=Path,
        help="folder of the real articles (*.jsonl) for --set real and --stories "
        "(default: ../shared/realnews)",
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


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and args.command not in BEAM_COMMANDS:
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    return guarded(lambda: _main(parser, args, beam_args), args.verbose)


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace, beam_args: list[str]) -> int:
    if args.command in STANDALONE:  # no lake, no Beam
        return int(STANDALONE[args.command](args))
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
        config = config_from(args)
        return int(COMMANDS[args.command](config, args, beam_args))
    except (ConfigError, TaxonomyError) as exc:
        print(f"newsbeam: config error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except LakeBusy as exc:
        print(f"newsbeam: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except (MaintenanceError, LakeError) as exc:
        print(f"newsbeam: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

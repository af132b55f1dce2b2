"""`newsbeam` command line. Flags newsbeam does not know are Beam pipeline options."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.config import ConfigError, load_config
from pipeline.lake import LakeBusy
from pipeline.tagging import TaxonomyError

EXIT_FAILED = 2
EXIT_BUSY = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsbeam",
        description="News ingestion: feeds and seed files in, clean tagged Parquet out.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run one ingestion cycle",
        description="Run one ingestion cycle. Any other --flag is passed to Beam's "
        "PipelineOptions (e.g. --runner, --direct_num_workers, --dask_client_address).",
    )
    run.add_argument("--config", type=Path, help="TOML config (default: built-in defaults)")
    run.add_argument("--output", type=Path, help="output dir (overrides `output_dir`)")
    run.add_argument("--seeds", type=Path, help="seeds dir (overrides `seeds_dir`)")
    run.add_argument(
        "--topics", help="comma-separated topic ids: keep only articles about one of them (`keep_topics`)"
    )
    run.add_argument("-v", "--verbose", action="store_true", help="show Beam's logs")
    evaluate = sub.add_parser(
        "eval",
        help="tagging precision, recall and F1 on a labelled set",
        description="Tag a labelled set (default: tests/eval/tagging) and print precision, "
        "recall and F1 per topic and per language.",
    )
    evaluate.add_argument("--set", dest="eval_set", type=Path, help="folder of labelled *.jsonl")
    evaluate.add_argument("--split", choices=["dev", "test", "all"], default="all")
    evaluate.add_argument("--taxonomy", type=Path, help="taxonomy TOML (default: built-in)")
    evaluate.add_argument("--mistakes", action="store_true", help="list every wrong decision")
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    from pipeline.evaluate import DEFAULT_EVAL_SET, evaluate, format_report, load_eval_set
    from pipeline.tagging import Tagger, load_taxonomy

    try:
        tagger = Tagger(load_taxonomy(args.taxonomy))
        articles = load_eval_set(args.eval_set or DEFAULT_EVAL_SET, args.split)
    except (TaxonomyError, ValueError, OSError) as exc:
        print(f"newsbeam: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not articles:
        print("newsbeam: no labelled articles found", file=sys.stderr)
        return EXIT_FAILED
    print(format_report(evaluate(tagger, articles), show_mistakes=args.mistakes))
    return 0


def main(argv: list[str] | None = None) -> int:
    args, beam_args = _parser().parse_known_args(argv)
    if args.command == "eval":
        return _evaluate(args)
    # Before Beam is imported: its import logs warnings about optional cloud clients.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    from pipeline.run import format_report, run_cycle

    try:
        config = load_config(args.config)
        if args.output:
            config = config.__class__(**{**config.__dict__, "output_dir": args.output})
        if args.seeds:
            config = config.__class__(**{**config.__dict__, "seeds_dir": args.seeds})
        if args.topics is not None:
            topics = tuple(sorted({t.strip() for t in args.topics.split(",") if t.strip()}))
            config = config.__class__(**{**config.__dict__, "keep_topics": topics})
        report = run_cycle(config, beam_args)
    except (ConfigError, TaxonomyError) as exc:
        print(f"newsbeam: config error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except LakeBusy as exc:
        print(f"newsbeam: {exc}", file=sys.stderr)
        return EXIT_BUSY
    print(format_report(report))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())

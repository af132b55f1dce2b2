"""Beam's pipeline options: which flags a runner knows, so that a mistyped one is an
error instead of being dropped by Beam (which ignores flags no PipelineOptions knows)."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import re

# Modules that register PipelineOptions subclasses only once imported (their runners'
# options); tried, in this order, only when a flag is not known otherwise.
_OPTION_MODULES = (
    "apache_beam",
    "apache_beam.runners.dask.dask_runner",
    "apache_beam.runners.render",
)
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


def beam_option_parser() -> argparse.ArgumentParser:
    """Every flag of every PipelineOptions subclass imported so far, in one parser.

    Like `PipelineOptions.get_all_options`, plus subclasses of subclasses (`view_as`
    parses those) and without exiting on a clash between two classes."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False, add_help=False, conflict_handler="resolve")
    seen: set[type] = set()
    todo = list(PipelineOptions.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if cls in seen:
            continue
        seen.add(cls)
        todo.extend(cls.__subclasses__())
        if "_add_argparse_args" in cls.__dict__:
            cls._add_argparse_args(parser)
    return parser


def _flag_like(arg: str) -> bool:
    return arg.startswith("-") and not _NEGATIVE_NUMBER.match(arg)


def _first_unknown(beam_args: list[str], parser: argparse.ArgumentParser) -> str | None:
    """The first of `beam_args` that is no flag of `parser` (nor the value of one)."""
    actions = parser._option_string_actions
    i = 0
    while i < len(beam_args):
        arg = beam_args[i]
        i += 1
        name, eq, _ = arg.partition("=")
        action = actions.get(name) if arg.startswith("--") else None
        if action is None:
            return arg
        if eq or action.nargs == 0:
            continue
        nargs = action.nargs
        most = 1 if nargs in (None, "?") else nargs if isinstance(nargs, int) else len(beam_args)
        taken = 0
        while taken < most and i < len(beam_args) and not _flag_like(beam_args[i]):
            i += 1
            taken += 1
    return None


def _runner_module(beam_args: list[str]) -> str | None:
    """The module of a `--runner a.b.CustomRunner`: importing it may register its options."""
    for i, arg in enumerate(beam_args):
        if arg.startswith("--runner="):
            value = arg.partition("=")[2]
        elif arg == "--runner" and i + 1 < len(beam_args):
            value = beam_args[i + 1]
        else:
            continue
        return value.rpartition(".")[0] or None
    return None


def unknown_beam_option(beam_args: list[str]) -> str | None:
    """The first of `beam_args` Beam's PipelineOptions do not know (Beam drops those
    silently), or None. Accepts `--flag value` and `--flag=value`."""
    if not beam_args:
        return None
    unknown = _first_unknown(beam_args, beam_option_parser())
    if unknown is None:
        return None
    runner = _runner_module(beam_args)
    for module in (*_OPTION_MODULES, *([runner] if runner else [])):
        with contextlib.suppress(Exception):  # a runner Beam cannot load either: its error, later
            importlib.import_module(module)
    return _first_unknown(beam_args, beam_option_parser())


def unknown_option_message(command: str, own: list[str], unknown: str) -> str:
    """What to tell about `unknown` given to `newsbeam <command>` (whose own flags are `own`)."""
    if not unknown.startswith("-"):
        return f"newsbeam {command}: unexpected argument {unknown!r}"
    name = unknown.partition("=")[0]
    beam = [opt for opt in beam_option_parser()._option_string_actions if opt.startswith("--")]
    close = difflib.get_close_matches(name, own + beam, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"newsbeam {command}: unknown option {name}{hint}"

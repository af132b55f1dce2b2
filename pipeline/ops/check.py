"""`newsbeam check`: validate the configuration and the taxonomy, and report every
problem found at once (not the first only), before anything runs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pipeline.config import ConfigError, RunConfig, load_config
from pipeline.tagging.tagger import Tagger
from pipeline.tagging.taxonomy import TaxonomyError, load_taxonomy


def problems(config_path: Path | None, override: Callable[[RunConfig], RunConfig] = lambda c: c) -> list[str]:
    """Every problem of the config at `config_path` (the built-in defaults when None), of
    the taxonomy it names, and of its folders; empty when all is well."""
    try:
        config = override(load_config(config_path))
    except ConfigError as exc:  # the rest depends on what the config says
        return [f"config: {exc}"]
    found = []
    try:
        taxonomy = load_taxonomy(config.taxonomy)
        Tagger(taxonomy)  # builds the automaton: an alias the matcher refuses shows here
        unknown = set(config.keep_topics) - {t.id for t in taxonomy.topics}
        if unknown:
            found.append(f"config: `keep_topics` names topics the taxonomy lacks: {sorted(unknown)}")
    except TaxonomyError as exc:
        found.append(f"taxonomy: {exc}")
    if not config.seeds_dir.is_dir():
        found.append(f"seeds_dir {config.seeds_dir} is not a folder")
    output = config.output_dir
    if isinstance(output, Path):  # an object store is checked by the first write to it
        existing = next((p for p in (output, *output.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
            found.append(f"output_dir {output} cannot be created or written (nearest existing: {existing})")
    return found


def report(
    config_path: Path | None, override: Callable[[RunConfig], RunConfig] = lambda c: c
) -> tuple[str, int]:
    """The text `newsbeam check` prints and its exit status (0 fine, 2 problems)."""
    found = problems(config_path, override)
    if not found:
        return f"{config_path or 'built-in defaults'}: config and taxonomy are valid", 0
    lines = [f"{config_path or 'built-in defaults'}: {len(found)} problem(s)"] + [f"  - {p}" for p in found]
    return "\n".join(lines), 2

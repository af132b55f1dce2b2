"""`newsbeam check`: validate the configuration and the taxonomy, and report every
problem found at once (not the first only), before anything runs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pipeline.config import ConfigError, RunConfig, validate_config_file
from pipeline.tagging.tagger import Tagger
from pipeline.tagging.taxonomy import TaxonomyError, load_taxonomy


def problems(config_path: Path | None, override: Callable[[RunConfig], RunConfig] = lambda c: c) -> list[str]:
    """Every problem of the config at `config_path` (the built-in defaults when None), of
    the taxonomy it names, and of its folders; empty when all is well. A key with a bad
    value is reported once: what depends on it (its folder, its taxonomy) is not checked."""
    try:
        valid, config_problems = validate_config_file(config_path)
    except ConfigError as exc:  # unreadable, or not TOML: nothing else can be read
        return [f"config: {p}" for p in exc.problems]
    found = [f"config: {line}" for line in config_problems.lines]
    config, bad = override(valid), config_problems.keys
    if "taxonomy" not in bad:
        found += _taxonomy_problems(config, config_problems.where)
    if not (config.seeds_dir == valid.seeds_dir and "seeds_dir" in bad) and not config.seeds_dir.is_dir():
        found.append(f"seeds_dir {config.seeds_dir} is not a folder")
    output = config.output_dir
    checked = not (output == valid.output_dir and "output_dir" in bad)
    if checked and isinstance(output, Path):  # an object store is checked by the first write to it
        existing = next((p for p in (output, *output.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
            found.append(f"output_dir {output} cannot be created or written (nearest existing: {existing})")
    return found


def _taxonomy_problems(config: RunConfig, where: str) -> list[str]:
    try:
        taxonomy = load_taxonomy(config.taxonomy)
        Tagger(taxonomy)  # builds the automaton: an alias the matcher refuses shows here
    except TaxonomyError as exc:
        return [f"taxonomy: {exc}"]
    unknown = set(config.keep_topics) - {t.id for t in taxonomy.topics}
    if unknown:
        return [f"config: {where}: `keep_topics` names topics the taxonomy lacks: {sorted(unknown)}"]
    return []


def report(
    config_path: Path | None, override: Callable[[RunConfig], RunConfig] = lambda c: c
) -> tuple[str, int]:
    """The text `newsbeam check` prints and its exit status (0 fine, 2 problems): one line
    per problem, each naming the file and the key."""
    found = problems(config_path, override)
    if not found:
        return f"{config_path or 'built-in defaults'}: config and taxonomy are valid", 0
    lines = [f"{config_path or 'built-in defaults'}: {len(found)} problem(s)"] + [f"  - {p}" for p in found]
    return "\n".join(lines), 2

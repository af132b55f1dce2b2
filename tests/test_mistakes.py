"""Mistakes that used to pass in silence: a missing seeds folder, a taxonomy edited
under an old version string, one unsupported file making every later run partial."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.run import EXIT_OK, EXIT_PARTIAL, format_report, run_cycle
from pipeline.taxonomy import DEFAULT_TAXONOMY, TaxonomyError
from tests.conftest import make_config
from tests.lakeread import duck_rows


def test_a_missing_seeds_folder_is_a_failed_source_not_ok(tmp_path: Path) -> None:
    report = run_cycle(make_config(tmp_path, tmp_path / "seedz"))
    assert report.exit_code == EXIT_PARTIAL
    [seeds] = report.sources
    assert (seeds.source, seeds.status) == ("seeds", "error")
    assert "seedz is not a folder" in seeds.detail
    assert "status: partial" in format_report(report)


def test_an_unsupported_seed_fails_once_then_no_longer_makes_runs_partial(
    tmp_path: Path, seeds_dir: Path
) -> None:
    (seeds_dir / "table.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    config = make_config(tmp_path, seeds_dir)
    first = run_cycle(config)
    assert first.exit_code == EXIT_PARTIAL
    assert [r["reason"] for r in duck_rows(config.output_dir, "rejects")] == ["unreadable"]

    second = run_cycle(config)
    assert second.exit_code == EXIT_OK
    [csv] = [s for s in second.sources if s.source == "seeds/table.csv"]
    assert csv.status == "unchanged" and csv.detail.startswith("still failing: unreadable")
    assert len(duck_rows(config.output_dir, "rejects")) == 1, "the reject is not written twice"

    (seeds_dir / "other.csv").write_text("a,b\n3,4\n", encoding="utf-8")  # a new failure is reported
    assert run_cycle(config).exit_code == EXIT_PARTIAL


def test_a_taxonomy_edited_without_a_new_version_is_refused(tmp_path: Path, seeds_dir: Path) -> None:
    taxonomy = tmp_path / "taxonomy.toml"
    text = DEFAULT_TAXONOMY.read_text(encoding="utf-8")
    taxonomy.write_text(text, encoding="utf-8")
    config = dataclasses.replace(make_config(tmp_path, seeds_dir), taxonomy=taxonomy)
    run_cycle(config)

    taxonomy.write_text(text + "\n# a comment changes no rule\n", encoding="utf-8")
    run_cycle(config)  # same rules, same version: fine

    edited = text.replace('cues.en = ["visit*", "talks"', 'cues.en = ["visit*", "talks", "chat"', 1)
    assert edited != text
    taxonomy.write_text(edited, encoding="utf-8")
    with pytest.raises(TaxonomyError, match="was used for other rules in this lake"):
        run_cycle(config)

    version = next(line for line in text.splitlines() if line.startswith("version = "))
    taxonomy.write_text(edited.replace(version, 'version = "2099.1.1"', 1), encoding="utf-8")
    assert run_cycle(config).exit_code == EXIT_OK

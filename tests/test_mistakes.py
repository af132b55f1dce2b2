"""Mistakes that used to pass in silence: a missing seeds folder, a taxonomy edited
under an old version string, one file in no seed format making every later run partial."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.config import ConfigError
from pipeline.run import EXIT_OK, EXIT_PARTIAL, format_report, run_cycle
from pipeline.tagging.taxonomy import DEFAULT_TAXONOMY, TaxonomyError
from tests.conftest import make_config
from tests.lakeread import duck_rows


def test_a_missing_seeds_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="seedz is not a folder"):
        run_cycle(make_config(tmp_path, tmp_path / "seedz"))
    assert not (tmp_path / "data").exists(), "nothing was written"


def test_a_file_in_no_seed_format_is_skipped_and_listed_not_a_failure(
    tmp_path: Path, seeds_dir: Path
) -> None:
    (seeds_dir / "table.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (seeds_dir / "NOTES").write_text("to do\n", encoding="utf-8")
    config = make_config(tmp_path, seeds_dir)
    report = run_cycle(config)
    assert report.exit_code == EXIT_OK
    skipped = {s.source: (s.status, s.detail) for s in report.sources if s.status == "skipped"}
    assert skipped == {
        "seeds/NOTES": ("skipped", "not a seed format: not read"),
        "seeds/table.csv": ("skipped", "not a seed format: not read"),
    }
    assert "seeds/table.csv" in format_report(report)
    assert duck_rows(config.output_dir, "rejects") == []
    assert len(duck_rows(config.output_dir, "articles")) == 1


def test_a_seed_that_fails_fails_once_then_no_longer_makes_runs_partial(
    tmp_path: Path, seeds_dir: Path
) -> None:
    (seeds_dir / "gone.txt").symlink_to(seeds_dir / "nowhere.txt")  # dangling: unreadable
    config = make_config(tmp_path, seeds_dir)
    assert run_cycle(config).exit_code == EXIT_PARTIAL
    assert [r["reason"] for r in duck_rows(config.output_dir, "rejects")] == ["unreadable"]

    second = run_cycle(config)
    assert second.exit_code == EXIT_OK
    [gone] = [s for s in second.sources if s.source == "seeds/gone.txt"]
    assert gone.status == "unchanged" and gone.detail.startswith("still failing: unreadable")
    assert len(duck_rows(config.output_dir, "rejects")) == 1, "the reject is not written twice"

    (seeds_dir / "lost.txt").symlink_to(seeds_dir / "nowhere.txt")  # a new failure is reported
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


def test_newsbeam_check_lists_every_problem_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tax.toml").write_text(
        'version = "x"\n[[topics]]\nid = "t"\nall_of = [["nobody"]]\n', encoding="utf-8"
    )
    (tmp_path / "blocked").write_text("a file where a folder should be", encoding="utf-8")
    config = tmp_path / "newsbeam.toml"
    config.write_text(
        'seeds_dir = "nowhere"\ntaxonomy = "tax.toml"\noutput_dir = "blocked/data"\n', encoding="utf-8"
    )
    assert cli.main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "3 problem(s)" in err
    assert "unknown entity 'nobody'" in err and "nowhere is not a folder" in err and "blocked/data" in err

    (tmp_path / "seeds").mkdir()
    config.write_text('seeds_dir = "seeds"\n', encoding="utf-8")
    assert cli.main(["check", "--config", str(config)]) == 0
    assert "config and taxonomy are valid" in capsys.readouterr().out

    config.write_text("[http]\npoll_interval = nan\n", encoding="utf-8")
    assert cli.main(["check", "--config", str(config)]) == 2
    assert "must be a finite number" in capsys.readouterr().err


def test_retag_under_a_reused_version_needs_force(tmp_path: Path, seeds_dir: Path, capsys) -> None:
    taxonomy = tmp_path / "taxonomy.toml"
    text = DEFAULT_TAXONOMY.read_text(encoding="utf-8")
    taxonomy.write_text(text, encoding="utf-8")
    config = dataclasses.replace(make_config(tmp_path, seeds_dir), taxonomy=taxonomy)
    run_cycle(config)
    edited = text.replace('cues.en = ["visit*", "talks"', 'cues.en = ["visit*", "talks", "chat"', 1)
    taxonomy.write_text(edited, encoding="utf-8")
    conf = tmp_path / "c.toml"
    conf.write_text(
        f'seeds_dir = "{seeds_dir}"\noutput_dir = "{config.output_dir}"\ntaxonomy = "{taxonomy}"\n'
    )
    args = ["retag", "--config", str(conf), "--since", "2000-01-01", "--until", "2100-01-01"]
    assert cli.main(args) == 2
    assert "retag --force" in capsys.readouterr().err
    assert cli.main([*args, "--force"]) == 0
    assert cli.main(args) == 0  # the version now names the edited rules


def test_newsbeam_check_lists_every_mistake_of_a_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "seeds").mkdir()
    config = tmp_path / "newsbeam.toml"
    config.write_text(
        'seeds_dir = "seeds"\noutput_dir = 5\nseed_dir = "seeds"\nkeep_topics = ["nk-russia", "nk-mars"]\n'
        "[http]\ntotal_deadline = -1\nread_timeout = nan\n"
        '[[feeds]]\nname = "no-url"\n'
        '[[feeds]]\nname = "slow"\nurl = "https://example.com/feed"\npoll_interval = "hourly"\n',
        encoding="utf-8",
    )
    assert cli.main(["check", "--config", str(config)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"{config}: 7 problem(s)"
    expected = [  # one line per problem, each naming the file and the key
        "`output_dir` must be a non-empty path string",  # and no folder check of a bad value
        "unknown key `seed_dir` (known: ",
        "`http.total_deadline` must be positive, got -1.0",
        "`http.read_timeout` must be a finite number, got nan",
        "feeds[0] (no-url): `url` must be an absolute http(s) URL, got None",
        "feeds[1] (slow): `poll_interval` must be a positive number of seconds, got 'hourly'",
        "`keep_topics` names topics the taxonomy lacks: ['nk-mars']",  # the config's taxonomy
    ]
    for line, start in zip(lines[1:], expected, strict=True):
        assert line.startswith(f"  - config: {config}: {start}")

    assert cli.main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"newsbeam: config error: {config}: 6 problems:\n  - `output_dir` must be")
    assert "\n  - feeds[1] (slow): `poll_interval` must be a positive number" in err

    (tmp_path / "tax.toml").write_text(
        'version = "x"\n[[topics]]\nid = "t"\nall_of = [["nobody"]]\n', encoding="utf-8"
    )
    config.write_text('taxonomy = "tax.toml"\nseeds_dir = "seeds"\ncolour = 1\n', encoding="utf-8")
    assert cli.main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"2 problem(s)\n  - config: {config}: unknown key `colour`" in err
    assert "\n  - taxonomy: " in err and "unknown entity 'nobody'" in err, "the taxonomy is checked too"

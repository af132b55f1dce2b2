from __future__ import annotations

from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from pipeline import cli, run
from pipeline.cli import EXIT_BUSY, EXIT_FAILED
from pipeline.run import RunReport, pipeline_options


def test_unknown_flags_reach_beam_pipeline_options(monkeypatch, tmp_path: Path) -> None:
    seen = {}

    def fake_run(config, beam_args, **kwargs):
        seen["config"], seen["args"] = config, beam_args
        return RunReport(str(config.output_dir), None, "FnApiRunner", 0.0)

    monkeypatch.setattr(run, "run_cycle", fake_run)
    code = cli.main(
        ["run", "--output", str(tmp_path / "o"), "--direct_num_workers", "2", "--runner=FnApiRunner"]
    )
    assert code == 0
    assert seen["config"].output_dir == tmp_path / "o"
    options = pipeline_options(seen["args"])
    assert options.view_as(DirectOptions).direct_num_workers == 2
    assert options.view_as(StandardOptions).runner == "FnApiRunner"


def test_default_runner_is_the_local_batch_runner() -> None:
    assert pipeline_options([]).view_as(StandardOptions).runner == "FnApiRunner"
    runner = "apache_beam.runners.dask.dask_runner.DaskRunner"
    assert pipeline_options(["--runner", runner]).view_as(StandardOptions).runner == runner


def test_bad_config_exits_2_with_the_key(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.toml"
    config.write_text('outptu_dir = "x"\n', encoding="utf-8")
    assert cli.main(["run", "--config", str(config)]) == EXIT_FAILED
    assert "unknown key `outptu_dir`" in capsys.readouterr().err


def test_a_second_writer_is_refused(tmp_path: Path, seeds_dir: Path, capsys) -> None:
    from pipeline.lake import Lake

    with Lake(tmp_path / "out").lock():
        code = cli.main(["run", "--output", str(tmp_path / "out"), "--seeds", str(seeds_dir)])
    assert code == EXIT_BUSY
    assert "another newsbeam run" in capsys.readouterr().err
    assert not (tmp_path / "out" / "articles").exists()


@pytest.mark.parametrize("argv", [["run", "--help"], ["--help"]])
def test_help(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    assert "newsbeam" in capsys.readouterr().out

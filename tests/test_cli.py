from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from pipeline import cli, commands, options, run
from pipeline.cli import EXIT_BUSY, EXIT_FAILED
from pipeline.run import RunReport, pipeline_options

ROOT = Path(__file__).resolve().parent.parent


def _newsbeam(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command line, on this checkout's code."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _empty_config(tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text("", encoding="utf-8")  # no feeds: seeds only; output defaults to tmp_path/data
    return path


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
    from pipeline.lake.store import Lake

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


def test_a_mistyped_flag_exits_2_with_a_suggestion_and_writes_nothing(
    tmp_path: Path, seeds_dir: Path
) -> None:
    config = _empty_config(tmp_path)
    done = _newsbeam(
        "run",
        "--config",
        str(config),
        "--seeds",
        str(seeds_dir),
        "--ouput",
        str(tmp_path / "X"),
        cwd=tmp_path,
    )
    assert done.returncode == EXIT_FAILED, done.stderr
    assert done.stderr.strip() == "newsbeam run: unknown option --ouput (did you mean --output?)"
    assert not (tmp_path / "X").exists()
    assert not (tmp_path / "data").exists(), "nothing written to the default output either"


@pytest.mark.parametrize(
    "beam_args",
    [
        ["--dask_client_address", "tcp://x:1"],
        ["--dask_client_address=tcp://x:1"],
        ["--runner", "apache_beam.runners.dask.dask_runner.DaskRunner", "--dask_client_address", "tcp://x:1"],
        ["--runner=FlinkRunner", "--flink_master", "host:8081", "--flink_version=1.20"],
        ["--project", "p", "--region=europe-west1", "--temp_location", "gs://b/tmp"],
        ["--direct_num_workers", "2", "--direct_running_mode=multi_processing"],
        ["--direct_running_mode", "in_memory", "--direct_num_workers=2"],
        ["--runner", "PortableRunner", "--job_endpoint", "h:8099", "--environment_type", "EXTERNAL"],
        ["--streaming"],
        ["--experiments=a", "--experiments", "b"],
        ["--direct_runner_bundle_repeat=2"],
        [],
    ],
)
def test_beam_flags_are_accepted(beam_args: list[str]) -> None:
    assert options.unknown_beam_option(beam_args) is None


@pytest.mark.parametrize(
    ("beam_args", "unknown"),
    [
        (["--ouput", "X"], "--ouput"),
        (["--runner=FnApiRunner", "--dask_client_adress=tcp://x:1"], "--dask_client_adress=tcp://x:1"),
        (["--direct_num", "2"], "--direct_num"),  # Beam does not take abbreviations
        (["--flink_master", "h:8081", "stray"], "stray"),
        (["--save_main_session", "yes"], "yes"),  # a switch takes no value
        (["-x"], "-x"),
    ],
)
def test_unknown_beam_flags_are_found(beam_args: list[str], unknown: str) -> None:
    assert options.unknown_beam_option(beam_args) == unknown


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--ouput", "X"], "newsbeam run: unknown option --ouput (did you mean --output?)"),
        (["run", "--seds", "s"], "newsbeam run: unknown option --seds (did you mean --seeds?)"),
        (
            ["run", "--dask_client_adress", "tcp://x:1"],
            "newsbeam run: unknown option --dask_client_adress (did you mean --dask_client_address?)",
        ),
        (
            ["stream", "--window_seconds", "5"],
            "newsbeam stream: unknown option --window_seconds (did you mean --window-seconds?)",
        ),
        (
            ["replay", "--since", "2024-01-01", "--until", "2024-01-02", "--ouput=X"],
            "newsbeam replay: unknown option --ouput (did you mean --output?)",
        ),
        (["run", "--zzzzzz"], "newsbeam run: unknown option --zzzzzz"),
        (["run", "oops"], "newsbeam run: unexpected argument 'oops'"),
    ],
)
def test_every_beam_command_refuses_unknown_flags(argv: list[str], message: str, monkeypatch, capsys) -> None:
    def never(*args, **kwargs):
        raise AssertionError("ran despite an unknown flag")

    monkeypatch.setattr(run, "run_cycle", never)
    monkeypatch.setitem(commands.COMMANDS, argv[0], never)
    assert cli.main(argv) == EXIT_FAILED
    assert capsys.readouterr().err.strip() == message


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [(["run"], False), (["-v", "run"], True), (["run", "-v"], True), (["--verbose", "eval"], True)],
)
def test_verbose_is_global_and_per_command(argv: list[str], verbose: bool) -> None:
    args, _ = cli._parser().parse_known_args(argv)
    assert args.verbose is verbose


def test_a_crash_exits_2_with_one_line(tmp_path: Path, seeds_dir: Path) -> None:
    """An unexpected exception (the output is a file, not a folder) is a failed run, not a partial one."""
    output = tmp_path / "not-a-dir"
    output.write_text("", encoding="utf-8")
    config = _empty_config(tmp_path)
    done = _newsbeam(
        "run", "--config", str(config), "--seeds", str(seeds_dir), "--output", str(output), cwd=tmp_path
    )
    assert done.returncode == EXIT_FAILED, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("newsbeam: error: FileExistsError: "), done.stderr
    assert str(output) in lines[0]


def test_a_crash_shows_the_traceback_with_verbose(tmp_path: Path) -> None:
    output = tmp_path / "not-a-dir"
    output.write_text("", encoding="utf-8")
    done = _newsbeam("-v", "compact", "--output", str(output), cwd=tmp_path)
    assert done.returncode == EXIT_FAILED, done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("newsbeam: error: FileExistsError: ")


def test_the_crash_handler(capsys) -> None:
    def crash() -> int:
        raise ValueError("first line\n  second line")

    assert cli.guarded(crash, verbose=False) == EXIT_FAILED
    assert capsys.readouterr().err == "newsbeam: error: ValueError: first line second line\n"
    assert cli.guarded(crash, verbose=True) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)")
    assert err.endswith("newsbeam: error: ValueError: first line second line\n")

    def bare() -> int:
        raise RuntimeError

    assert cli.guarded(bare, verbose=False) == EXIT_FAILED
    assert capsys.readouterr().err == "newsbeam: error: RuntimeError\n"
    assert cli.guarded(lambda: 1, verbose=False) == 1  # a partial run keeps its status


def test_the_crash_handler_lets_interrupts_through() -> None:
    def interrupted() -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cli.guarded(interrupted, verbose=False)

"""Watching it work: --version, `run --json`, a Prometheus textfile, `status` by feed name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import cli
from tests.conftest import ROOT, feed_fixture
from tests.feedserver import FeedServer, Route


def _config(tmp_path: Path, seeds_dir: Path, feeds: dict[str, str]) -> Path:
    lines = [f'seeds_dir = "{seeds_dir}"', f'output_dir = "{tmp_path / "data"}"', "[http]"]
    lines += ['allow_hosts = ["127.0.0.1"]', "per_host_min_gap = 0.01", "total_deadline = 3.0"]
    for name, url in feeds.items():
        lines += ["[[feeds]]", f'name = "{name}"', f'url = "{url}"']
    path = tmp_path / "newsbeam.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.startswith("newsbeam 0.")


def test_run_json_metrics_and_status_by_name(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer, capsys
) -> None:
    feed_server.routes["/rss"] = Route(feed_fixture("rss2.xml"))
    feed_server.routes["/down"] = Route(b"", status=503, content_type="text/plain")
    config = _config(tmp_path, seeds_dir, {"wire": feed_server.url("/rss"), "down": feed_server.url("/down")})
    metrics = tmp_path / "textfile" / "newsbeam.prom"

    assert cli.main(["run", "--config", str(config), "--json", "--metrics-file", str(metrics)]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "partial" and summary["exit_code"] == 1
    by_source = {s["source"]: s for s in summary["sources"]}
    assert by_source["down"]["status"] == "error" and "HTTP 503" in by_source["down"]["detail"]
    assert by_source["wire"]["articles"] == summary["totals"]["articles"] - 1  # plus the seed
    assert summary["topics"]["nk-russia"] >= 1

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.read_text(encoding="utf-8"))
        for s in family.samples
    }
    assert samples[("newsbeam_run_rows", (("table", "articles"),))] == summary["totals"]["articles"]
    assert samples[("newsbeam_run_exit_code", ())] == 1
    assert samples[("newsbeam_source_up", (("kind", "feed"), ("source", "down"), ("status", "error")))] == 0
    assert samples[("newsbeam_source_up", (("kind", "feed"), ("source", "wire"), ("status", "ok")))] == 1

    assert cli.main(["status", "--config", str(config)]) == 0
    feeds = capsys.readouterr().out.split("feeds:", 1)[1]
    assert "  down " in feeds and "  wire " in feeds and feed_server.url("/rss") not in feeds


def test_json_log_lines_carry_fields(tmp_path: Path, seeds_dir: Path, feed_server: FeedServer) -> None:
    feed_server.routes["/down"] = Route(b"", status=503, content_type="text/plain")
    config = _config(tmp_path, seeds_dir, {"down": feed_server.url("/down")})
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--log-level", "info", "--log-format", "json", "run"]
        + ["--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert lines and all(line["logger"].startswith("newsbeam") for line in lines)
    [failed] = [line for line in lines if line["level"] == "warning"]
    assert failed["source"] == "down" and "HTTP 503" in failed["message"]
    [committed] = [line for line in lines if "run_id" in line]
    assert committed["run_status"] == "partial" and committed["totals"]["articles"] == 1

    quiet = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--config",
            str(config),
            "--output",
            str(tmp_path / "b"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "WARNING newsbeam.run: feed down failed: HTTP 503" in quiet.stderr
    assert "INFO" not in quiet.stderr  # the default level is warning


def test_settings_from_the_environment_and_label_views(
    tmp_path: Path, seeds_dir: Path, capsys, monkeypatch
) -> None:
    config = _config(tmp_path, seeds_dir, {})
    monkeypatch.setenv("NEWSBEAM_CONFIG", str(config))
    monkeypatch.setenv("NEWSBEAM_OUTPUT_DIR", str(tmp_path / "from-env"))
    assert cli.main(["run"]) == 0
    assert (tmp_path / "from-env" / "articles").is_dir() and not (tmp_path / "data").exists()
    assert cli.main(["run", "--output", str(tmp_path / "flag")]) == 0  # a flag wins over the variable
    assert (tmp_path / "flag" / "articles").is_dir()
    capsys.readouterr()

    query = (
        "SELECT l.label FROM articles, unnest(entities) AS u(e) JOIN entity_labels l ON l.id = e.id "
        "WHERE e.id = 'sergei-shoigu' UNION ALL SELECT label FROM topic_labels WHERE id = 'nk-russia'"
    )
    assert cli.main(["sql", query]) == 0
    out = capsys.readouterr().out
    assert "Sergei Shoigu" in out and "North Korea–Russia relations" in out


def test_stream_serves_metrics_while_it_runs(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer
) -> None:
    import socket
    import time

    import httpx

    feed_server.routes["/rss"] = Route(feed_fixture("rss2.xml"))
    config = _config(tmp_path, seeds_dir, {"wire": feed_server.url("/rss")})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "pipeline.cli", "stream", "--config", str(config)]
    command += ["--window-seconds", "2", "--max-windows", "30", "--metrics-port", str(port)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        windows = articles = 0.0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and windows < 1:
            time.sleep(0.3)
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                continue
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "newsbeam_stream_windows_total":
                        windows = sample.value
                    if sample.name == "newsbeam_stream_rows_total" and sample.labels == {"table": "articles"}:
                        articles = sample.value
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert windows >= 1, "a window was counted while the stream ran"
        assert articles >= 4  # the seed and the feed's items, committed by the first window
    finally:
        proc.terminate()  # SIGTERM: the open window is committed, exit 0
        assert proc.wait(timeout=120) == 0


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("newsbeam fe", {"feeds"}),
        ("newsbeam feeds l", {"list"}),
        ("newsbeam run --me", {"--metrics-file"}),
        ("newsbeam --log-f", {"--log-format"}),
        (
            "newsbeam report --",
            {
                "--html",
                "--days",
                "--since",
                "--until",
                "--topic",
                "--output",
                "--config",
                "--help",
                "--verbose",
            },
        ),
    ],
)
def test_bash_completion_offers_the_parsers_own_words(line: str, offered: set[str]) -> None:
    script = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "completion", "bash"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    words = line.split(" ")
    probe = (
        f"{script}\nCOMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; _newsbeam; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert set(done.stdout.split()) == offered, done.stderr


def test_progress_on_a_terminal_and_silence_in_a_pipe(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/rss"] = Route(feed_fixture("rss2.xml"))
    config = _config(tmp_path, seeds_dir, {"wire": feed_server.url("/rss")})
    command = [sys.executable, "-m", "pipeline.cli", "run", "--config", str(config)]

    status, seen = _on_a_terminal(command + ["--output", str(tmp_path / "tty")])
    assert status == 0
    assert b"feeds polled" in seen and b"processing and committing" in seen

    piped = subprocess.run(
        command + ["--output", str(tmp_path / "pipe")], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert piped.returncode == 0 and "feeds polled" not in piped.stderr


def _on_a_terminal(command: list[str]) -> tuple[int, bytes]:
    """Run `command` with stderr on a pseudo-terminal; its exit status and what it showed."""
    import os
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed: the command is over
            break
        if not chunk:
            break
        seen += chunk
    status = proc.wait(timeout=120)
    os.close(master)
    return status, seen


def test_retag_and_replay_show_progress_on_a_terminal_only(tmp_path: Path, seeds_dir: Path) -> None:
    config = _config(tmp_path, seeds_dir, {})
    out = str(tmp_path / "data")
    base = [sys.executable, "-m", "pipeline.cli"]
    assert subprocess.run([*base, "run", "--config", str(config)], cwd=ROOT, timeout=300).returncode == 0
    days = ["--since", "2000-01-01", "--until", "2100-01-01"]
    for command, shown in (("retag", b"partitions re-tagged"), ("replay", b"runs replayed")):
        args = [*base, command, "--config", str(config), "--output", out, *days]
        status, seen = _on_a_terminal(args)
        assert status == 0 and shown in seen, (command, seen[-500:])
        piped = subprocess.run(args, cwd=ROOT, capture_output=True, timeout=300)
        assert piped.returncode == 0 and shown not in piped.stderr, command

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "newsbeam.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_builtin_defaults_poll_real_feeds_into_data() -> None:
    config = load_config(None)
    assert config.output_dir == Path.cwd() / "data"
    assert config.seeds_dir == Path.cwd() / "seeds"
    assert len(config.feeds) >= 4
    assert all(f.url.startswith("https://") for f in config.feeds)


def test_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            'seeds_dir = "in"\noutput_dir = "/abs/out"\ntaxonomy = "tax.toml"\n'
            "[http]\ntotal_deadline = 5\n[dedup]\nthreshold = 0.8\nlookback_days = 3\n"
            '[[feeds]]\nname = "a"\nurl = "https://example.com/feed"\n',
        )
    )
    assert config.seeds_dir == tmp_path / "in"
    assert config.output_dir == Path("/abs/out")
    assert config.taxonomy == tmp_path / "tax.toml"
    assert config.http.total_deadline == 5.0
    assert (config.near_dup.threshold, config.lookback_days) == (0.8, 3)
    assert [f.name for f in config.feeds] == ["a"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('output_dirr = "x"', "unknown key `output_dirr`"),
        ("seeds_dir = 3", "`seeds_dir` must be a non-empty path string"),
        ("[http]\ntimeout = 3", "unknown key `http.timeout`"),
        ('[http]\nconcurrency = "4"', "`http.concurrency` must be int"),
        ("[http]\ntotal_deadline = -1", "`http.total_deadline` must be positive"),
        ('[[feeds]]\nurl = "https://e.com/f"', "feeds[0]: `name` is required"),
        ('[[feeds]]\nname = "a"\nurl = "file:///etc/passwd"',
         "feeds[0] (a): `url` must be an absolute http(s) URL"),
        ('[[feeds]]\nname = "a"\nurl = "https://e.com/1"\n[[feeds]]\nname = "a"\nurl = "https://e.com/2"',
         "duplicate feed name 'a'"),
        ('[[feeds]]\nname = "a"\nurl = "https://e.com/1"\ninterval = 5', "feeds[0]: unknown key `interval`"),
        ("feeds = 3", "`feeds` must be an array of tables"),
        ('[[feeds]]\nname = "a"\nurl = "https://e.com/1"\nverify_tls = "no"',
         "feeds[0] (a): `verify_tls` must be true or false, got 'no'"),
        ("[http]\nper_host_concurrency = 0", "`http.per_host_concurrency` must be positive"),
        ("[http]\ndead_after = 2.5", "`http.dead_after` must be int"),
        ("[http]\nretry_after_max = 5", "unknown key `http.retry_after_max`"),
        ("[dedup]\nthreshold = 1.5", "`dedup`: threshold must be in (0, 1]"),
        ("[dedup]\nbands = 500", "`dedup`: bands must be between 1 and num_perm"),
        ("[dedup]\nshingles = 2", "unknown key `dedup.shingles`"),
        ("keep_topics = \"nk-russia\"", "`keep_topics` must be a list of topic ids"),
        ("this is = not toml =", "invalid TOML"),
    ],
)  # fmt: skip
def test_bad_config_names_the_key_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "newsbeam.toml"))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")


def test_politeness_backoff_and_tls_settings(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "[http]\nper_host_concurrency = 1\nper_host_min_gap = 2\npoll_interval = 600\n"
            "backoff_max = 7200\ndead_after = 5\ndead_poll_interval = 43200\n"
            "permanent_redirect_polls = 4\nrefresh_after = 3600\n"
            '[[feeds]]\nname = "a"\nurl = "https://e.com/1"\n'
            '[[feeds]]\nname = "b"\nurl = "https://self-signed.example/feed"\nverify_tls = false\n',
        )
    )
    http = config.http
    assert (http.per_host_concurrency, http.per_host_min_gap, http.poll_interval) == (1, 2.0, 600.0)
    assert (http.backoff_max, http.dead_after, http.dead_poll_interval) == (7200.0, 5, 43200.0)
    assert (http.permanent_redirect_polls, http.refresh_after) == (4, 3600.0)
    assert [(f.name, f.verify_tls) for f in config.feeds] == [("a", True), ("b", False)]
    policy = http.retry_policy()
    assert (policy.poll_interval, policy.backoff_max, policy.dead_after) == (600.0, 7200.0, 5)


def test_every_problem_of_a_config_is_in_one_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'colour = "red"\nseeds_dir = 3\n[http]\ntotal_deadline = -1\nread_timeout = nan\ntimeout = 3\n'
        '[dedup]\nbands = 500\n[[feeds]]\nname = "no-url"\n[[feeds]]\nname = "a"\nurl = "https://e.com/1"\n'
        'poll_interval = "hourly"\nverify_tls = "no"\n[[feeds]]\nname = "a"\nurl = "https://e.com/2"\n',
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    expected = [  # in the order of their keys in the file; each line names the file
        "unknown key `colour` (known: articles, dedup, feeds, http, keep_topics, opml, output_dir,",
        "`seeds_dir` must be a non-empty path string",
        "`http.total_deadline` must be positive, got -1.0",
        "`http.read_timeout` must be a finite number, got nan",
        "unknown key `http.timeout` (known: backoff_max, concurrency, connect_timeout,",
        "`dedup`: bands must be between 1 and num_perm",
        "feeds[0] (no-url): `url` must be an absolute http(s) URL, got None",
        "feeds[1] (a): `verify_tls` must be true or false, got 'no'",
        "feeds[1] (a): `poll_interval` must be a positive number of seconds, got 'hourly'",
        "feeds[2]: duplicate feed name 'a'",
    ]
    problems = info.value.problems
    for line, start in zip(problems, expected, strict=True):
        assert line.startswith(f"{path}: {start}")
    message = str(info.value)
    assert message.startswith(f"{path}: 10 problems:\n  - unknown key `colour`")
    assert message.endswith("\n  - feeds[2]: duplicate feed name 'a'")


def test_a_single_problem_is_the_whole_message(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\ntotal_deadline = -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: `http.total_deadline` must be positive, got -1.0"
    assert info.value.problems == (str(info.value),)


def test_invalid_toml_is_one_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, 'colour = "red"\n[http]\ntotal_deadline = -1\nthis is = not toml =\n'))
    assert len(info.value.problems) == 1 and "invalid TOML" in info.value.problems[0]

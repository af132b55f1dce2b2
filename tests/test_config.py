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

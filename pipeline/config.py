"""Run configuration: TOML in, typed `RunConfig` out, validated once.

Keys: `seeds_dir`, `output_dir`, `taxonomy` (paths, relative to the config
file), optional `[http]`, `[dedup]`, `[articles]` and `[stream]` tables, and `[[feeds]]`
tables with `name`, `url` and optionally `verify_tls`, `fetch_articles`, `poll_interval`
(seconds: the feed's own period in `newsbeam stream`, instead of `[stream] poll_interval`)
and `tags` (strings). `opml` (a path) adds every feed an OPML subscription list names,
tagged with its categories (`connectors/opml.py`): a URL a `[[feeds]]` entry also has is
that entry, with the OPML tags added. Unknown keys are errors, so a typo never silently
does nothing; so is an OPML file that cannot be read, naming the file and line.

Each parser reports what is wrong into a `Problems` and goes on with the next key, so one
pass of the rules finds every problem of a file: `load_config` raises one `ConfigError`
listing them all, `newsbeam check` prints them one per line (`validate_config_file`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectors.articles import ArticleSettings
from connectors.fetch import HttpSettings
from connectors.http import FeedSource
from connectors.netguard import AllowRule
from connectors.opml import OpmlError, merge_feeds, read_opml
from connectors.seeds import DEFAULT_MAX_BYTES as DEFAULT_SEED_MAX_BYTES
from pipeline.dedup.near import NearDupSettings
from pipeline.lake.storage import is_remote

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CONFIG = Path(__file__).with_name("defaults.toml")


class ConfigError(ValueError):
    """A config that cannot be used. `problems`: every problem found, one line each
    (`file: key: what`); the message alone when the error names one problem."""

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems) or (message,)


class Problems:
    """What is wrong with one config file (`where`): each parser adds the problems of its
    keys and goes on with the next key, so that every problem is found in one pass."""

    def __init__(self, where: str, order: Iterable[str] = ()) -> None:
        self.where = where
        self._order = {key: n for n, key in enumerate(order)}  # top-level keys in file order
        self._found: list[tuple[str, str]] = []

    def add(self, key: str, message: str) -> None:
        """A problem of top-level `key` (the message names the key in full)."""
        self._found.append((key, message))

    def __len__(self) -> int:
        return len(self._found)

    @property
    def keys(self) -> set[str]:
        """The top-level keys that have a problem."""
        return {key for key, _ in self._found}

    @property
    def messages(self) -> list[str]:
        """The problems, in the order of their keys in the file."""
        found = sorted(self._found, key=lambda km: self._order.get(km[0], len(self._order)))
        return [message for _, message in found]

    @property
    def lines(self) -> list[str]:
        """One line per problem, each naming the file."""
        return [f"{self.where}: {message}" for message in self.messages]

    def raise_any(self) -> None:
        """ConfigError listing every problem, if there is any."""
        messages = self.messages
        if len(messages) == 1:
            raise ConfigError(self.lines[0], self.lines)
        if messages:
            listed = "".join(f"\n  - {message}" for message in messages)
            raise ConfigError(f"{self.where}: {len(messages)} problems:{listed}", self.lines)


@dataclass(frozen=True)
class StreamSettings:
    """`newsbeam stream`: every `window_seconds` what was polled is committed as one run;
    each feed is polled every `poll_interval` seconds (longer while it backs off)."""

    window_seconds: float = 60.0
    poll_interval: float = 300.0


@dataclass(frozen=True)
class RunConfig:
    seeds_dir: Path
    output_dir: Path | str  # a folder, or an object store URI (s3://, gs://, az://)
    taxonomy: Path | None
    feeds: tuple[FeedSource, ...]
    http: HttpSettings
    near_dup: NearDupSettings = NearDupSettings()
    lookback_days: int = 7
    keep_topics: tuple[str, ...] = ()  # empty: keep every article
    articles: ArticleSettings = ArticleSettings()
    stream: StreamSettings = StreamSettings()
    seeds_max_bytes: int = DEFAULT_SEED_MAX_BYTES  # larger seed files are rejected unread


_TOP_KEYS = {
    "seeds_dir",
    "output_dir",
    "taxonomy",
    "http",
    "feeds",
    "dedup",
    "keep_topics",
    "articles",
    "stream",
    "seeds_max_bytes",
    "opml",
}
_FEED_KEYS = {"name", "url", "verify_tls", "fetch_articles", "poll_interval", "tags"}
_DEDUP_KEYS = {"threshold", "shingle_words", "num_perm", "bands", "min_words", "lookback_days", "shards"}


def _output(data: dict[str, Any], base: Path, problems: Problems) -> Path | str:
    value = data.get("output_dir")
    if isinstance(value, str) and is_remote(value.strip()):
        return value.strip()
    return _path(data, "output_dir", base, problems) or base / "data"


def _path(data: dict[str, Any], key: str, base: Path, problems: Problems) -> Path | None:
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        problems.add(key, f"`{key}` must be a non-empty path string")
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _typed_table(table: Any, name: str, defaults: Any, known: set[str], problems: Problems) -> dict[str, Any]:
    """The valid values of a config table, checked against the types and signs of `defaults`."""
    if not isinstance(table, dict):
        problems.add(name, f"`{name}` must be a table")
        return {}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            problems.add(name, f"unknown key `{name}.{key}` (known: {', '.join(sorted(known))})")
            continue
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool):
            problems.add(name, f"`{name}.{key}` must be {expected.__name__}, got {value!r}")
        elif isinstance(value, float) and not math.isfinite(value):
            problems.add(name, f"`{name}.{key}` must be a finite number, got {value!r}")
        elif isinstance(value, (int, float)) and value <= 0:
            problems.add(name, f"`{name}.{key}` must be positive, got {value!r}")
        else:
            values[key] = value
    return values


def _allow_hosts(table: dict[str, Any], name: str, problems: Problems) -> tuple[str, ...]:
    hosts = table.pop("allow_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        problems.add(name, f"`{name}.allow_hosts` must be an array of strings")
        return ()
    for n, host in enumerate(hosts):
        try:
            AllowRule.parse(host)
        except ValueError as exc:
            problems.add(name, f"`{name}.allow_hosts[{n}]`: {exc}")
    return tuple(hosts)


def _with_hosts(table: Any, name: str, defaults: Any, problems: Problems) -> Any:
    """`defaults` with the values of `table`, a table of its fields and `allow_hosts`."""
    if not isinstance(table, dict):
        problems.add(name, f"`{name}` must be a table")
        return defaults
    table = dict(table)
    hosts = _allow_hosts(table, name, problems)
    known = {f.name for f in fields(defaults)} - {"allow_hosts"}
    return replace(defaults, allow_hosts=hosts, **_typed_table(table, name, defaults, known, problems))


def _stream(table: Any, problems: Problems) -> StreamSettings:
    defaults = StreamSettings()
    known = {f.name for f in fields(StreamSettings)}
    return replace(defaults, **_typed_table(table, "stream", defaults, known, problems))


def _dedup(table: Any, problems: Problems) -> tuple[NearDupSettings, int]:
    defaults = NearDupSettings()
    values = _typed_table(table, "dedup", _DedupDefaults(), _DEDUP_KEYS, problems)
    lookback = values.pop("lookback_days", 7)
    settings = replace(defaults, **values)
    try:
        settings.validate()
    except ValueError as exc:
        problems.add("dedup", f"`dedup`: {exc}")
        return defaults, lookback
    return settings, lookback


@dataclass(frozen=True)
class _DedupDefaults:
    threshold: float = NearDupSettings.threshold
    shingle_words: int = NearDupSettings.shingle_words
    num_perm: int = NearDupSettings.num_perm
    bands: int = NearDupSettings.bands
    min_words: int = NearDupSettings.min_words
    shards: int = NearDupSettings.shards
    lookback_days: int = 7


def _feeds(items: Any, problems: Problems) -> tuple[FeedSource, ...]:
    """The valid feeds; a feed with a problem is left out (its problems are reported)."""
    if not isinstance(items, list):
        problems.add("feeds", "`feeds` must be an array of tables ([[feeds]])")
        return ()
    feeds: list[FeedSource] = []
    names: set[str] = set()
    for n, item in enumerate(items):
        feed = _feed(item, f"feeds[{n}]", names, problems)
        if feed is not None:
            feeds.append(feed)
    return tuple(feeds)


def _feed(item: Any, at: str, names: set[str], problems: Problems) -> FeedSource | None:
    """The feed of one `[[feeds]]` table (`at`), or None after reporting its problems."""
    if not isinstance(item, dict):
        problems.add("feeds", f"{at}: must be a table with `name` and `url`")
        return None
    before = len(problems)
    report = partial(problems.add, "feeds")
    for key in sorted(set(item) - _FEED_KEYS):
        report(f"{at}: unknown key `{key}` (known: {', '.join(sorted(_FEED_KEYS))})")
    name, url = item.get("name"), item.get("url")
    if not isinstance(name, str) or not name.strip():
        report(f"{at}: `name` is required and must be a non-empty string")
    elif name in names:
        report(f"{at}: duplicate feed name {name!r}")
    else:
        names.add(name)
        at = f"{at} ({name})"
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        report(f"{at}: `url` must be an absolute http(s) URL, got {url!r}")
    for key, default in (("fetch_articles", False), ("verify_tls", True)):
        if not isinstance(item.get(key, default), bool):
            report(f"{at}: `{key}` must be true or false, got {item[key]!r}")
    poll_interval = item.get("poll_interval")
    number = isinstance(poll_interval, (int, float)) and not isinstance(poll_interval, bool)
    if poll_interval is not None and (not number or not math.isfinite(poll_interval) or poll_interval <= 0):
        report(f"{at}: `poll_interval` must be a positive number of seconds, got {poll_interval!r}")
    tags = item.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        report(f"{at}: `tags` must be an array of non-empty strings, got {tags!r}")
    if len(problems) > before:
        return None
    return FeedSource(
        name=item["name"],
        url=item["url"],
        verify_tls=item.get("verify_tls", True),
        fetch_articles=item.get("fetch_articles", False),
        poll_interval=None if poll_interval is None else float(poll_interval),
        tags=tuple(dict.fromkeys(t.strip() for t in tags)),
    )


def _with_opml(
    feeds: tuple[FeedSource, ...], path: Path | None, problems: Problems
) -> tuple[FeedSource, ...]:
    """`feeds` and the feeds of the OPML file at `path` (none without one), merged by URL."""
    if path is None:
        return feeds
    try:
        return merge_feeds(feeds, read_opml(path))
    except OpmlError as exc:
        problems.add("opml", f"`opml`: {exc}")
        return feeds


def _keep_topics(value: Any, problems: Problems) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        problems.add("keep_topics", "`keep_topics` must be a list of topic ids")
        return ()
    return tuple(sorted(set(value)))


def _positive_int(data: dict[str, Any], key: str, default: int, problems: Problems) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        problems.add(key, f"`{key}` must be a positive integer, got {value!r}")
        return default
    return value


def validate_config(data: dict[str, Any], base: Path, where: str) -> tuple[RunConfig, Problems]:
    """The config `data` as far as it is valid (a bad value replaced by its default, a bad
    feed left out) and every problem of it."""
    problems = Problems(where, order=data)
    for key in sorted(set(data) - _TOP_KEYS):
        problems.add(key, f"unknown key `{key}` (known: {', '.join(sorted(_TOP_KEYS))})")
    near_dup, lookback_days = _dedup(data.get("dedup", {}), problems)
    feeds = _feeds(data.get("feeds", []), problems)
    config = RunConfig(
        seeds_dir=_path(data, "seeds_dir", base, problems) or base / "seeds",
        output_dir=_output(data, base, problems),
        taxonomy=_path(data, "taxonomy", base, problems),
        feeds=_with_opml(feeds, _path(data, "opml", base, problems), problems),
        http=_with_hosts(data.get("http", {}), "http", HttpSettings(), problems),
        near_dup=near_dup,
        lookback_days=lookback_days,
        keep_topics=_keep_topics(data.get("keep_topics", []), problems),
        articles=_with_hosts(data.get("articles", {}), "articles", ArticleSettings(), problems),
        stream=_stream(data.get("stream", {}), problems),
        seeds_max_bytes=_positive_int(data, "seeds_max_bytes", DEFAULT_SEED_MAX_BYTES, problems),
    )
    return config, problems


def parse_config(data: dict[str, Any], base: Path, where: str) -> RunConfig:
    """The config `data`; ConfigError listing every problem of it."""
    config, problems = validate_config(data, base, where)
    problems.raise_any()
    return config


def validate_config_file(path: Path | None) -> tuple[RunConfig, Problems]:
    """`validate_config` of the file at `path` (None: the built-in defaults, paths relative to
    the working dir). ConfigError only for a file that cannot be read or is not TOML."""
    source = path or DEFAULT_CONFIG
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
    base = source.resolve().parent if path else Path.cwd()
    return validate_config(data, base, str(source))


def load_config(path: Path | None) -> RunConfig:
    """The config at `path`, or the built-in defaults (paths relative to the working dir);
    ConfigError listing every problem of it."""
    config, problems = validate_config_file(path)
    problems.raise_any()
    return config

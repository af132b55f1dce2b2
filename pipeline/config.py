"""Run configuration: TOML in, typed `RunConfig` out, validated once.

Keys: `seeds_dir`, `output_dir`, `taxonomy` (paths, relative to the config
file), optional `[http]`, `[dedup]`, `[articles]` and `[stream]` tables, and `[[feeds]]`
tables with `name`, `url` and optionally `verify_tls`, `fetch_articles`, `poll_interval`
(seconds: the feed's own period in `newsbeam stream`, instead of `[stream] poll_interval`)
and `tags` (strings). `opml` (a path) adds every feed an OPML subscription list names,
tagged with its categories (`connectors/opml.py`): a URL a `[[feeds]]` entry also has is
that entry, with the OPML tags added. Unknown keys are errors, so a typo never silently
does nothing; so is an OPML file that cannot be read, naming the file and line.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, fields, replace
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
    pass


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


def _output(data: dict[str, Any], base: Path, where: str) -> Path | str:
    value = data.get("output_dir")
    if isinstance(value, str) and is_remote(value.strip()):
        return value.strip()
    return _path(data, "output_dir", base, where) or base / "data"


def _path(data: dict[str, Any], key: str, base: Path, where: str) -> Path | None:
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: `{key}` must be a non-empty path string")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _typed_table(table: Any, name: str, defaults: Any, known: set[str], where: str) -> dict[str, Any]:
    """Values of a config table, checked against the types and signs of `defaults`."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: `{name}` must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key `{name}.{key}` (known: {', '.join(sorted(known))})")
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ConfigError(f"{where}: `{name}.{key}` must be {expected.__name__}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: `{name}.{key}` must be a finite number, got {value!r}")
        if isinstance(value, (int, float)) and value <= 0:
            raise ConfigError(f"{where}: `{name}.{key}` must be positive, got {value!r}")
        values[key] = value
    return values


def _allow_hosts(table: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
    hosts = table.pop("allow_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise ConfigError(f"{where}: `{name}.allow_hosts` must be an array of strings")
    for n, host in enumerate(hosts):
        try:
            AllowRule.parse(host)
        except ValueError as exc:
            raise ConfigError(f"{where}: `{name}.allow_hosts[{n}]`: {exc}") from exc
    return tuple(hosts)


def _http(table: Any, where: str) -> HttpSettings:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: `http` must be a table")
    table = dict(table)
    hosts = _allow_hosts(table, "http", where)
    defaults = HttpSettings()
    known = {f.name for f in fields(HttpSettings)} - {"allow_hosts"}
    return replace(defaults, allow_hosts=hosts, **_typed_table(table, "http", defaults, known, where))


def _stream(table: Any, where: str) -> StreamSettings:
    defaults = StreamSettings()
    known = {f.name for f in fields(StreamSettings)}
    return replace(defaults, **_typed_table(table, "stream", defaults, known, where))


def _articles(table: Any, where: str) -> ArticleSettings:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: `articles` must be a table")
    table = dict(table)
    hosts = _allow_hosts(table, "articles", where)
    defaults = ArticleSettings()
    known = {f.name for f in fields(ArticleSettings)} - {"allow_hosts"}
    values = _typed_table(table, "articles", defaults, known, where)
    return replace(defaults, allow_hosts=tuple(hosts), **values)


def _dedup(table: Any, where: str) -> tuple[NearDupSettings, int]:
    defaults = NearDupSettings()
    values = _typed_table(table, "dedup", _DedupDefaults(), _DEDUP_KEYS, where)
    lookback = values.pop("lookback_days", 7)
    settings = replace(defaults, **values)
    try:
        settings.validate()
    except ValueError as exc:
        raise ConfigError(f"{where}: `dedup`: {exc}") from exc
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


def _feeds(items: Any, where: str) -> tuple[FeedSource, ...]:
    if not isinstance(items, list):
        raise ConfigError(f"{where}: `feeds` must be an array of tables ([[feeds]])")
    feeds: list[FeedSource] = []
    names: set[str] = set()
    for n, item in enumerate(items):
        at = f"{where}: feeds[{n}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{at}: must be a table with `name` and `url`")
        unknown = set(item) - _FEED_KEYS
        if unknown:
            raise ConfigError(
                f"{at}: unknown key `{sorted(unknown)[0]}` (known: {', '.join(sorted(_FEED_KEYS))})"
            )
        fetch_articles = item.get("fetch_articles", False)
        if not isinstance(fetch_articles, bool):
            raise ConfigError(f"{at}: `fetch_articles` must be true or false, got {fetch_articles!r}")
        name, url = item.get("name"), item.get("url")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{at}: `name` is required and must be a non-empty string")
        if name in names:
            raise ConfigError(f"{at}: duplicate feed name {name!r}")
        names.add(name)
        if (
            not isinstance(url, str)
            or urlsplit(url).scheme not in ("http", "https")
            or not urlsplit(url).netloc
        ):
            raise ConfigError(f"{at} ({name}): `url` must be an absolute http(s) URL, got {url!r}")
        verify_tls = item.get("verify_tls", True)
        if not isinstance(verify_tls, bool):
            raise ConfigError(f"{at} ({name}): `verify_tls` must be true or false, got {verify_tls!r}")
        poll_interval = item.get("poll_interval")
        number = isinstance(poll_interval, (int, float)) and not isinstance(poll_interval, bool)
        number = number and math.isfinite(poll_interval)
        if poll_interval is not None and (not number or poll_interval <= 0):
            raise ConfigError(
                f"{at} ({name}): `poll_interval` must be a positive number of seconds, got {poll_interval!r}"
            )
        tags = item.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
            raise ConfigError(f"{at} ({name}): `tags` must be an array of non-empty strings, got {tags!r}")
        feeds.append(
            FeedSource(
                name=name,
                url=url,
                verify_tls=verify_tls,
                fetch_articles=fetch_articles,
                poll_interval=None if poll_interval is None else float(poll_interval),
                tags=tuple(dict.fromkeys(t.strip() for t in tags)),
            )
        )
    return tuple(feeds)


def _with_opml(feeds: tuple[FeedSource, ...], path: Path | None, where: str) -> tuple[FeedSource, ...]:
    """`feeds` and the feeds of the OPML file at `path` (none without one), merged by URL."""
    if path is None:
        return feeds
    try:
        return merge_feeds(feeds, read_opml(path))
    except OpmlError as exc:
        raise ConfigError(f"{where}: `opml`: {exc}") from exc


def _keep_topics(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise ConfigError(f"{where}: `keep_topics` must be a list of topic ids")
    return tuple(sorted(set(value)))


def parse_config(data: dict[str, Any], base: Path, where: str) -> RunConfig:
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key `{sorted(unknown)[0]}` (known: {', '.join(sorted(_TOP_KEYS))})"
        )
    near_dup, lookback_days = _dedup(data.get("dedup", {}), where)
    return RunConfig(
        seeds_dir=_path(data, "seeds_dir", base, where) or base / "seeds",
        output_dir=_output(data, base, where),
        taxonomy=_path(data, "taxonomy", base, where),
        feeds=_with_opml(_feeds(data.get("feeds", []), where), _path(data, "opml", base, where), where),
        http=_http(data.get("http", {}), where),
        near_dup=near_dup,
        lookback_days=lookback_days,
        keep_topics=_keep_topics(data.get("keep_topics", []), where),
        articles=_articles(data.get("articles", {}), where),
        stream=_stream(data.get("stream", {}), where),
        seeds_max_bytes=_positive_int(data, "seeds_max_bytes", DEFAULT_SEED_MAX_BYTES, where),
    )


def _positive_int(data: dict[str, Any], key: str, default: int, where: str) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{where}: `{key}` must be a positive integer, got {value!r}")
    return value


def load_config(path: Path | None) -> RunConfig:
    """The config at `path`, or the built-in defaults (paths relative to the working dir)."""
    source = path or DEFAULT_CONFIG
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
    base = source.resolve().parent if path else Path.cwd()
    return parse_config(data, base, str(source))

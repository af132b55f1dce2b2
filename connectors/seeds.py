"""Local seed files: reading them as raw documents and parsing them into entries.

Formats (by extension):
- `.txt`  title on the first line, body paragraphs after;
- `.md`   like `.txt`; a leading `# ` is dropped from the title;
- `.html`/`.htm` a page: title from og:title/<title>/<h1>, body from <article> or <body>;
- `.json` one record or a list of records; `.jsonl` one record per line. A record has
  `text` or `html`, and optionally `title`, `url`, `published`, `publisher`, `language`;
- `.xml`/`.rss`/`.atom` a local feed file.

`.txt` and `.md` may start with a front-matter block of `key: value` lines between
two `---` lines, and any seed may have a sidecar `<file name>.meta.json`; both
accept `url`, `published`, `publisher` (`source` is an older name for it), `language`
and `title`. The `source` of every entry is the seed's path.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from selectolax.lexbor import LexborHTMLParser

from connectors.errors import Problem
from connectors.feeds import ParseResult, parse_feed_bytes
from connectors.jsonfeed import is_json_feed
from schemas.ids import sha256_hex, stable_id
from schemas.records import Entry, RawFetch

TEXT_FORMATS = {".txt", ".md"}
HTML_FORMATS = {".html", ".htm"}
JSON_FORMATS = {".json", ".jsonl"}
FEED_FORMATS = {".xml", ".rss", ".atom"}
SEED_FORMATS = TEXT_FORMATS | HTML_FORMATS | JSON_FORMATS | FEED_FORMATS
SIDECAR_SUFFIX = ".meta.json"
MEDIA_TYPES = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
}
META_KEYS = ("url", "published", "publisher", "source", "language", "title")  # `source`: publisher, as before


DEFAULT_MAX_BYTES = 20 * 1024 * 1024


def _iter_candidates(seeds_dir: Path) -> Iterator[Path]:
    for path in sorted(seeds_dir.rglob("*")):
        rel = path.relative_to(seeds_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.name.endswith(SIDECAR_SUFFIX) or (path.is_dir() and not path.is_symlink()):
            continue
        yield path


def _iter_seed_paths(seeds_dir: Path) -> Iterator[Path]:
    return (p for p in _iter_candidates(seeds_dir) if p.suffix.lower() in SEED_FORMATS)


def unsupported_seeds(seeds_dir: Path) -> list[str]:
    """Files in the seeds folder that are not in a seed format (a `.csv`, notes): not read,
    listed so that the run can say so, and never a failure."""
    if not seeds_dir.is_dir():
        return []
    return [
        p.relative_to(seeds_dir).as_posix()
        for p in _iter_candidates(seeds_dir)
        if p.suffix.lower() not in SEED_FORMATS
    ]


class _Unusable(Exception):
    """A seed path that is not read at all: outside the folder, not a file, too large."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _checked_file(path: Path, root: Path, max_bytes: int) -> Path:
    """The file to read for `path`: inside `root` once links are resolved, a regular file
    (a FIFO or device would block the run, a directory is no document), at most `max_bytes`."""
    try:
        real = path.resolve(strict=True)  # OSError for a dangling link: reported as unreadable
    except RuntimeError as exc:  # a symlink loop
        raise _Unusable("unreadable", f"symlink loop: {exc}") from exc
    if not real.is_relative_to(root):
        raise _Unusable("outside_seeds_dir", "a link to a file outside the seeds folder")
    mode = real.stat().st_mode
    if not stat.S_ISREG(mode):
        raise _Unusable("not_a_file", "not a regular file")
    size = real.stat().st_size
    if size > max_bytes:
        raise _Unusable("too_large", f"{size} bytes, more than seeds_max_bytes ({max_bytes})")
    return real


def _read_capped(path: Path, max_bytes: int) -> bytes:
    with path.open("rb") as handle:  # the size may have grown since it was checked
        body = handle.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise _Unusable("too_large", f"more than seeds_max_bytes ({max_bytes})")
    return body


def read_seed(path: Path, seeds_dir: Path, now: datetime, max_bytes: int = DEFAULT_MAX_BYTES) -> RawFetch:
    """One seed file as a raw document read at `now` (the run's time: a file's mtime says
    nothing about the article); unusable or unreadable files become error records."""
    rel = path.relative_to(seeds_dir).as_posix()
    source = f"seeds/{rel}"
    try:
        if path.suffix.lower() not in SEED_FORMATS:
            raise ValueError(f"unsupported seed format {path.suffix or '(none)'!r}")  # read_seed_dir skips
        real = _checked_file(path, seeds_dir.resolve(), max_bytes)
        body = _read_capped(real, max_bytes)
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        meta = None
        if sidecar.exists():
            meta = _read_capped(_checked_file(sidecar, seeds_dir.resolve(), max_bytes), max_bytes).decode()
    except _Unusable as exc:
        return _seed_error(rel, source, now, exc.reason, str(exc))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        # Relative path and error kind only: the same failure in another checkout is the same record.
        kind = f"{type(exc).__name__}:{getattr(exc, 'errno', '') or ''}"
        detail = f"unreadable: {type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
        return _seed_error(rel, source, now, kind, detail)
    return RawFetch(
        raw_id=stable_id("seed", rel, sha256_hex(body), meta),
        source=source,
        source_kind="seed",
        origin=rel,
        fetched_at=now,
        status="ok",
        content_type=MEDIA_TYPES[path.suffix.lower()],
        body=body,
        meta_json=meta,
    )


def _seed_error(rel: str, source: str, now: datetime, kind: str, detail: str) -> RawFetch:
    return RawFetch(
        raw_id=stable_id("seed-error", rel, kind),
        source=source,
        source_kind="seed",
        origin=rel,
        fetched_at=now,
        status="error",
        error_kind="permanent",
        error=detail[:300],
    )


def read_seed_dir(seeds_dir: Path, now: datetime, max_bytes: int = DEFAULT_MAX_BYTES) -> list[RawFetch]:
    if not seeds_dir.is_dir():
        return []
    return [read_seed(path, seeds_dir, now, max_bytes) for path in _iter_seed_paths(seeds_dir)]


# --- parsing ---------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)


def _split_front_matter(text: str) -> tuple[dict[str, str], str]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    meta: dict[str, str] = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            meta[key.strip().lower()] = value.strip().strip("\"'")
    return meta, text[match.end() :]


def _entry(raw: RawFetch, position: int, meta: dict[str, Any], **fields: Any) -> Entry:
    def pick(key: str) -> str | None:
        value = fields.get(key) or meta.get(key)
        return str(value).strip() if value not in (None, "") else None

    return Entry(
        raw_id=raw.raw_id,
        source=raw.source,
        source_kind=raw.source_kind,
        origin=raw.origin,
        fetched_at=raw.fetched_at,
        position=position,
        title=pick("title") or "",
        url=pick("url"),
        html=fields.get("html"),
        text=fields.get("text"),
        published=pick("published"),
        language_hint=pick("language"),
        publisher=pick("publisher") or pick("source"),
    )


def _parse_text(raw: RawFetch, text: str, meta: dict[str, Any], markdown: bool) -> ParseResult:
    front, text = _split_front_matter(text)
    meta = {**front, **meta}
    lines = text.strip().splitlines()
    if not lines:
        return ParseResult(problems=[Problem("empty_document", "no title line")])
    title = lines[0].strip()
    if markdown:
        title = title.lstrip("#").strip()
    body = "\n".join(lines[1:]).strip()
    entry = _entry(raw, 0, meta, title=meta.get("title") or title, text=body)
    return ParseResult(entries=[entry])


def _parse_html(raw: RawFetch, text: str, meta: dict[str, Any]) -> ParseResult:
    tree = LexborHTMLParser(text)

    def attr(selector: str, name: str) -> str | None:
        node = tree.css_first(selector)
        return node.attributes.get(name) if node is not None else None

    title = attr('meta[property="og:title"]', "content")
    if not title:
        node = tree.css_first("title") or tree.css_first("h1")
        title = node.text(strip=True) if node is not None else ""
    body = tree.css_first("article") or tree.body
    html = body.html if body is not None else ""
    found = {
        "url": attr('link[rel="canonical"]', "href") or attr('meta[property="og:url"]', "content"),
        "published": attr('meta[property="article:published_time"]', "content"),
        "language": attr("html", "lang"),
    }
    found = {k: v for k, v in found.items() if v}
    return ParseResult(entries=[_entry(raw, 0, {**found, **meta}, title=title, html=html)])


def _parse_json_records(raw: RawFetch, text: str, meta: dict[str, Any], lines: bool) -> ParseResult:
    result = ParseResult()
    records: list[tuple[int, Any]] = []
    if lines:
        for n, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                records.append((n, json.loads(line)))
            except json.JSONDecodeError as exc:
                result.problems.append(Problem("bad_json", f"line {n + 1}: {exc}", position=n))
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            return ParseResult(problems=[Problem("bad_json", str(exc))])
        records = list(enumerate(doc if isinstance(doc, list) else [doc]))
    for n, record in records:
        if not isinstance(record, dict):
            result.problems.append(Problem("bad_record", "record is not an object", position=n))
            continue
        if not (record.get("text") or record.get("html")):  # no title: the cleaner takes the lead's
            result.problems.append(Problem("missing_field", "record needs `text` or `html`", position=n))
            continue
        fields = {k: record.get(k) for k in (*META_KEYS, "text", "html")}
        result.entries.append(_entry(raw, n, meta, **fields))
    return result


def parse_seed(raw: RawFetch) -> ParseResult:
    """Entries of one seed document (pure: no file access)."""
    body = raw.body or b""
    suffix = PurePosixPath(raw.origin).suffix.lower()
    meta: dict[str, Any] = {}
    if raw.meta_json:
        try:
            loaded = json.loads(raw.meta_json)
        except json.JSONDecodeError as exc:
            return ParseResult(problems=[Problem("bad_sidecar", f"{SIDECAR_SUFFIX}: {exc}")])
        if not isinstance(loaded, dict):
            return ParseResult(problems=[Problem("bad_sidecar", "sidecar is not a JSON object")])
        meta = {k: loaded[k] for k in META_KEYS if k in loaded}
    if suffix in FEED_FORMATS or (suffix == ".json" and is_json_feed(body)):
        return parse_feed_bytes(raw, body)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return ParseResult(problems=[Problem("undecodable", f"not UTF-8: {exc}")])
    if suffix in TEXT_FORMATS:
        return _parse_text(raw, text, meta, markdown=suffix == ".md")
    if suffix in HTML_FORMATS:
        return _parse_html(raw, text, meta)
    if suffix in JSON_FORMATS:
        return _parse_json_records(raw, text, meta, lines=suffix == ".jsonl")
    return ParseResult(problems=[Problem("unsupported_format", f"seed format {suffix!r}")])

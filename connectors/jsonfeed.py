"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org) read into the fields of a feed item.

A document is a JSON Feed by its content, whatever it was served as: its first
non-whitespace character (after any byte-order mark) is `{`, and its top-level
`version` starts with `https://jsonfeed.org/version/`. A `{` document without that
version is `not_a_feed`; one that does not parse is `malformed_feed`.

Limits: the body is already capped by whoever read it (`[http] max_bytes`,
`seeds_max_bytes`). Before `json.loads` sees the text, its bracket nesting is
measured by a linear, non-recursive scan (strings skipped, escapes honoured); a
document nested deeper than MAX_DEPTH levels is refused as `too_deep` and never
parsed, so no nesting can reach the recursion limit or the C stack.

Item fields: `id` (a number is coerced to a string, as the spec asks) is the guid;
the link is `url`, else `external_url`, else an `id` that is itself an absolute
http(s) URL, joined against the document's URL; `content_html` is the HTML, else
`content_text`, else `summary`, is the text; `date_published`, else `date_modified`,
the date (read by feedparser's own date parser, as Atom dates are); `language` of the
item (1.1) or of the feed; `authors` (1.1) or `author` (1.0), item or feed level, and
`tags` are read too. A value of the wrong type is ignored and flagged
(`invalid_field`); an item that is not an object is `malformed_entry`.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any
from urllib.parse import urlsplit

from feedparser.datetimes import _parse_date  # the parser feedparser itself uses
from feedparser.urls import _urljoin

from connectors.errors import Problem

VERSION_PREFIXES = ("https://jsonfeed.org/version/", "http://jsonfeed.org/version/")
MAX_DEPTH = 64  # real feeds nest 4 levels (feed, items, item, authors/attachments)

_JSON_START = re.compile(rb"[ \t\r\n]*\{")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Two passes leave only the brackets, in order: escaped characters go first (so an
# escaped quote cannot end a string), then every string and everything else that is not
# a bracket. The string branch always matches, at a closing quote or at the end of the
# text, so neither pass ever backtracks: linear on any input.
_ESCAPED = re.compile(r"\\[\s\S]")
_NOT_BRACKETS = re.compile(r'"[^"]*(?:"|\Z)|[^"\[\]{}]+')
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# `\/` for `/` too: PHP's json_encode escapes every slash.
_VERSION_HINT = re.compile(rb'"version"\s*:\s*"https?:\\?/\\?/jsonfeed\.org\\?/version\\?/')


@dataclass
class JsonItem:
    guid: str | None = None
    link: str | None = None
    title: str = ""
    html: str | None = None  # content_html
    text: str | None = None  # content_text, else summary (plain text)
    published: str | None = None  # as the feed gives it
    published_parsed: object = None  # time.struct_time in UTC, as feedparser gives it
    language: str | None = None
    authors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass
class JsonFeed:
    version: str
    title: str | None = None
    language: str | None = None
    authors: tuple[str, ...] = ()
    items: list[JsonItem | None] = field(default_factory=list)  # None: not an object
    problems: list[Problem] = field(default_factory=list)


def looks_like_json(body: bytes) -> bool:
    """True when the first non-whitespace character (after any BOM) is `{`: never XML."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            head = body[len(bom) : len(bom) + 256].decode(codec, errors="ignore")
            return head.lstrip(" \t\r\n").startswith("{")
    return _JSON_START.match(body) is not None


def nesting_depth(text: str) -> int:
    """How deep the brackets of `text` nest (strings skipped), without recursing."""
    if "\\" in text:
        text = _ESCAPED.sub("", text)
    brackets = _NOT_BRACKETS.sub("", text)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def is_json_feed(body: bytes) -> bool:
    """Whether `body` (UTF-8 JSON) is a JSON Feed: what a caller holding a `.json` file
    needs to choose between this parser and its own records."""
    if not looks_like_json(body) or _VERSION_HINT.search(body) is None:
        return False
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    loaded = load_json_feed(text, "")
    return not isinstance(loaded, Problem)


def load_json_feed(text: str, base_url: str) -> JsonFeed | Problem:
    """The feed in `text`, or the Problem that makes the whole document unusable."""
    if nesting_depth(text) > MAX_DEPTH:
        return Problem("too_deep", f"JSON nested more than {MAX_DEPTH} levels deep; not parsed")
    try:
        doc = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and integers over Python's digit limit
        return Problem("malformed_feed", f"{type(exc).__name__}: {exc}"[:500])
    if not isinstance(doc, dict):
        return Problem("not_a_feed", f"JSON {type(doc).__name__}, not a JSON Feed object")
    version = doc.get("version")
    if not isinstance(version, str) or not version.startswith(VERSION_PREFIXES):
        return Problem("not_a_feed", f"JSON without a JSON Feed version ({VERSION_PREFIXES[0]}…)")
    items = doc.get("items")
    if not isinstance(items, list):
        return Problem("malformed_feed", "JSON Feed without an `items` array")
    feed = JsonFeed(version=version)
    feed.title = _string(doc, "title", None, feed.problems)
    feed.language = _string(doc, "language", None, feed.problems)
    feed.authors = _authors(doc, None, feed.problems)
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            feed.problems.append(
                Problem("malformed_entry", f"item is {_json_type(item)}, not an object", position=position)
            )
            feed.items.append(None)
            continue
        feed.items.append(_item(item, position, base_url, feed))
    return feed


def _item(item: dict[str, Any], position: int, base: str, feed: JsonFeed) -> JsonItem:
    problems = feed.problems
    out = JsonItem()
    guid = item.get("id")
    if isinstance(guid, (int, float)) and not isinstance(guid, bool):
        guid = str(guid)  # the spec: a reader must coerce a number to a string
    out.guid = _checked_string("id", guid, position, problems) or None
    link = _string(item, "url", position, problems) or _string(item, "external_url", position, problems)
    if not link and out.guid and _is_web_url(out.guid):
        link = out.guid  # the spec recommends the item's URL as its id
    out.link = _joined(base, link.strip()) if link and link.strip() else None
    out.title = (_string(item, "title", position, problems) or "").strip()
    out.html = _string(item, "content_html", position, problems) or None
    if out.html is None:
        text = _string(item, "content_text", position, problems)
        out.text = text or _string(item, "summary", position, problems) or None
    published = _string(item, "date_published", position, problems) or None
    modified = _string(item, "date_modified", position, problems) or None
    out.published = published or modified
    out.published_parsed = _date(published) or _date(modified)
    out.language = _string(item, "language", position, problems) or None
    out.authors = _authors(item, position, problems) or feed.authors
    tags = item.get("tags")
    if isinstance(tags, list):
        out.tags = tuple(t.strip() for t in tags if isinstance(t, str) and t.strip())
    elif tags is not None:
        problems.append(_invalid("tags", tags, "an array", position))
    return out


def _authors(obj: dict[str, Any], position: int | None, problems: list[Problem]) -> tuple[str, ...]:
    """Names of `authors` (1.1), else of `author` (1.0); an author without a name by its URL."""
    authors = obj.get("authors")
    if authors is None and "author" in obj:
        authors = [obj["author"]]
    if authors is None:
        return ()
    if not isinstance(authors, list):
        problems.append(_invalid("authors", authors, "an array", position))
        return ()
    names = []
    for author in authors:
        if isinstance(author, dict):
            name = author.get("name") or author.get("url")
            if isinstance(name, str) and name.strip():
                names.append(name.strip())
    return tuple(names)


def _string(obj: dict[str, Any], key: str, position: int | None, problems: list[Problem]) -> str | None:
    return _checked_string(key, obj.get(key), position, problems)


def _checked_string(key: str, value: Any, position: int | None, problems: list[Problem]) -> str | None:
    if value is None or isinstance(value, str):
        return value
    problems.append(_invalid(key, value, "a string", position))
    return None


def _invalid(key: str, value: Any, wanted: str, position: int | None) -> Problem:
    where = "item" if position is not None else "feed"
    detail = f"{where} `{key}` is {_json_type(value)}, not {wanted}; ignored"
    return Problem("invalid_field", detail, position=position)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _joined(base: str, link: str) -> str:
    # An absolute link (nearly all of them) as it is: joining costs as much as the rest of an item.
    if link[:8].lower().startswith(("https://", "http://")):
        return link
    return str(_urljoin(base, link))


def _is_web_url(value: str) -> bool:
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _date(value: str | None) -> object:
    return _parse_date(value) if value else None

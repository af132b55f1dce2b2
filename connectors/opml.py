"""OPML subscription lists: read safely into feeds, and written back out.

Reading. The bytes are decoded like a feed body (`connectors/encoding.py`: BOM, XML
declaration, detection) and passed through `connectors/xmlguard.py` (characters XML
forbids). A DOCTYPE with an internal subset or an external DTD is refused outright: no
subscription list needs entities. expat then runs with every entity declaration and external entity reference
refused, so there is no entity expansion and no file or network access. Every `<outline>`
under `<body>` that has an `xmlUrl` is a feed: named by its `text` (else `title`, else the
URL), tagged with the names of the outlines it is nested in (its categories). Errors say
which file and line, and what is wrong.

Merging (`merge_feeds`). A URL listed twice is one feed, its tags merged. A URL that a
`[[feeds]]` entry also has is that entry (its name and settings), with the OPML tags added.
A name already taken (by a `[[feeds]]` entry or another outline) becomes `name (host)`,
then `name (host) 2`, 3, … in document order: the same file always gives the same names.

Writing (`write_opml`). OPML 2.0; each feed's tags become nested category outlines, so
reading the output back gives the same feeds (names, URLs and tags; settings such as
`verify_tls` have no place in OPML, and credentials in a URL are never written).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit
from xml.parsers import expat

import httpx

from connectors.encoding import decode_feed
from connectors.http import FeedSource
from connectors.xmlguard import guard_xml

MAX_OPML_BYTES = 10 * 1024 * 1024
_DOCTYPE = re.compile(r"<!DOCTYPE", re.IGNORECASE)


class OpmlError(ValueError):
    """An OPML file that cannot be used; the message names the file (and line) and the fault."""


@dataclass(frozen=True)
class OpmlFeed:
    name: str
    url: str
    tags: tuple[str, ...] = ()  # the names of the enclosing outlines, outermost first
    line: int = 0  # where its outline starts in the file


def read_opml(path: Path) -> list[OpmlFeed]:
    """The feeds an OPML file lists, in document order, duplicates merged."""
    try:
        size = path.stat().st_size
        if size > MAX_OPML_BYTES:
            raise OpmlError(f"{path}: {size} bytes, more than the {MAX_OPML_BYTES} an OPML file may have")
        data = path.read_bytes()
    except OSError as exc:
        raise OpmlError(f"{path}: cannot read OPML: {exc.strerror or exc}") from exc
    return parse_opml(data, str(path))


def parse_opml(data: bytes, where: str) -> list[OpmlFeed]:
    """The feeds an OPML document lists; `where` (the file's name) starts every error."""
    text = decode_feed(data, None).text
    guarded = guard_xml(text)
    if any(p.reason == "dtd_internal_subset" for p in guarded.problems):
        found = _DOCTYPE.search(text)
        line = text.count("\n", 0, found.start()) + 1 if found else 1
        raise OpmlError(f"{where}:{line}: a DOCTYPE with an internal subset (entity declarations) is refused")
    reader = _Reader(where)
    try:
        reader.parse(guarded.data)
    except expat.ExpatError as exc:
        message = expat.ErrorString(exc.code) if exc.code is not None else str(exc)
        raise OpmlError(f"{where}:{exc.lineno}:{exc.offset + 1}: not well-formed XML: {message}") from exc
    if not reader.body_seen:
        raise OpmlError(f"{where}: no <body> element under <opml>: not an OPML subscription list")
    return _merge_duplicates(reader.feeds)


class _Reader:
    """expat callbacks: the outline path down to each feed; entities refused."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.parser = expat.ParserCreate()
        self.stack: list[str] = []  # element names, lowercased
        self.path: list[str] = []  # the names of the open outlines ("" for a nameless one)
        self.body_seen = False
        self.feeds: list[OpmlFeed] = []

    def parse(self, data: bytes) -> None:
        p = self.parser
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = self._entity
        p.UnparsedEntityDeclHandler = self._unparsed_entity
        p.ExternalEntityRefHandler = self._external_entity
        p.SkippedEntityHandler = self._skipped_entity
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.Parse(data, True)

    def _refuse(self, what: str) -> None:
        raise OpmlError(f"{self.where}:{self.parser.CurrentLineNumber}: {what} refused")

    def _doctype(self, name: str, system_id: str | None, public_id: str | None, internal: int) -> None:
        if internal:
            self._refuse("a DOCTYPE with an internal subset (entity declarations) is")
        if system_id or public_id:  # its entities would be left out silently
            self._refuse(f"a DOCTYPE naming an external DTD ({(system_id or public_id or '')[:200]!r}) is")

    def _entity(self, name: str, *_: object) -> None:
        self._refuse(f"entity declaration {name!r}:")

    def _unparsed_entity(self, name: str, *_: object) -> None:
        self._refuse(f"entity declaration {name!r}:")

    def _external_entity(self, *_: object) -> int:
        self._refuse("external entity reference:")
        return 0

    def _skipped_entity(self, name: str, is_parameter_entity: int) -> None:
        self._refuse(f"reference to &{name}; (an entity no DTD here declares):")

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        tag = name.lower()
        line = self.parser.CurrentLineNumber
        if not self.stack and tag != "opml":
            raise OpmlError(f"{self.where}:{line}: the root element is <{name}>, not <opml>")
        if len(self.stack) == 1 and tag == "body":
            self.body_seen = True
        self.stack.append(tag)
        if tag != "outline":
            return
        attrs = {k.lower(): v for k, v in attributes.items()}
        label = (attrs.get("text") or "").strip() or (attrs.get("title") or "").strip()
        in_body = len(self.stack) > 2 and self.stack[1] == "body"
        if in_body and "xmlurl" in attrs:
            url = attrs["xmlurl"].strip()
            if not _is_web_url(url):
                raise OpmlError(
                    f"{self.where}:{line}: outline {label or '(no text)'!r}: xmlUrl {url[:200]!r} "
                    "is not an absolute http(s) URL"
                )
            tags = tuple(t for t in self.path if t)
            self.feeds.append(OpmlFeed(label or FeedSource("", url).url, url, tags, line))
        self.path.append(label)

    def _end(self, name: str) -> None:
        if self.stack.pop() == "outline":
            self.path.pop()


def _is_web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def url_key(url: str) -> str:
    """What makes two feed URLs the same feed: the URL without credentials, the scheme and
    host in lower case (httpx's normal form); text that is no URL is its own key."""
    plain = FeedSource("", url).url
    try:
        return str(httpx.URL(plain))
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return plain


def _merged_tags(*groups: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t for group in groups for t in group))


def _merge_duplicates(feeds: list[OpmlFeed]) -> list[OpmlFeed]:
    """One feed per URL: the first outline's name, every outline's tags."""
    by_url: dict[str, OpmlFeed] = {}
    for feed in feeds:
        key = url_key(feed.url)
        first = by_url.get(key)
        by_url[key] = feed if first is None else replace(first, tags=_merged_tags(first.tags, feed.tags))
    return list(by_url.values())


def merge_feeds(configured: Sequence[FeedSource], imported: Sequence[OpmlFeed]) -> tuple[FeedSource, ...]:
    """The `[[feeds]]` entries (OPML tags added where a URL is in both), then the OPML feeds
    that are new, in document order, each with a name no other feed has."""
    position = {url_key(f.url): n for n, f in enumerate(configured)}
    merged = list(configured)
    new: list[OpmlFeed] = []
    for feed in _merge_duplicates(list(imported)):
        n = position.get(url_key(feed.url))
        if n is None:
            new.append(feed)
        else:
            merged[n] = replace(merged[n], tags=_merged_tags(merged[n].tags, feed.tags))
    names = _unique_names(new, {f.name for f in configured})
    merged += [FeedSource(name, f.url, tags=f.tags) for name, f in zip(names, new, strict=True)]
    return tuple(merged)


def _unique_names(feeds: list[OpmlFeed], taken: set[str]) -> list[str]:
    count: dict[str, int] = {}
    for feed in feeds:
        count[feed.name] = count.get(feed.name, 0) + 1
    # A name no other feed has is kept; every one of a clashing group gets its host added.
    used = taken | {f.name for f in feeds if count[f.name] == 1 and f.name not in taken}
    names: list[str] = []
    for feed in feeds:
        if count[feed.name] == 1 and feed.name not in taken:
            names.append(feed.name)
            continue
        base = f"{feed.name} ({urlsplit(feed.url).hostname or 'feed'})"
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base} {n}"
        used.add(name)
        names.append(name)
    return names


def write_opml(feeds: Iterable[FeedSource], title: str = "newsbeam feeds") -> bytes:
    """OPML 2.0 listing `feeds`, each nested in one category outline per tag."""
    opml = ET.Element("opml", version="2.0")
    ET.SubElement(ET.SubElement(opml, "head"), "title").text = title
    body = ET.SubElement(opml, "body")
    folders: dict[tuple[str, ...], ET.Element] = {(): body}
    for feed in feeds:
        for depth in range(1, len(feed.tags) + 1):
            path = feed.tags[:depth]
            if path not in folders:
                folders[path] = ET.SubElement(folders[path[:-1]], "outline", text=path[-1], title=path[-1])
        ET.SubElement(
            folders[feed.tags], "outline", type="rss", text=feed.name, title=feed.name, xmlUrl=feed.url
        )
    ET.indent(opml, space="  ")
    document: bytes = ET.tostring(opml, encoding="UTF-8", xml_declaration=True)
    return document + b"\n"

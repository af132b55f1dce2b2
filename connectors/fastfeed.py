"""A fast path for the common, well-formed RSS 2.0 and Atom 1.0 feed.

The stdlib's expat-backed ElementTree parses a feed ~50× faster than feedparser's
pure-Python handlers. This module reads only the fields newsbeam uses and gives the
same values feedparser would (same URL joining, same date parser, same text repairs);
whenever a feed holds anything whose meaning in feedparser it does not reproduce
exactly (xml:base, XHTML content, unknown elements in an item, repeated fields,
another feed format, any XML error) it declines by returning None, and the caller
uses feedparser. tests/test_fastfeed.py checks the two agree on every fixture and on
generated feeds.
"""

from __future__ import annotations

import contextlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from feedparser.datetimes import _parse_date  # the parser feedparser itself uses
from feedparser.html import _cp1252
from feedparser.urls import _urljoin

ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"
DC = "{http://purl.org/dc/elements/1.1/}"
MEDIA = "{http://search.yahoo.com/mrss/}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

# Item children that carry nothing newsbeam reads and that feedparser does not map onto
# a field newsbeam reads; any other child makes the fast path decline.
_RSS_IGNORED = {
    "author", "category", "comments", "enclosure", DC + "creator", DC + "subject",
    "{http://wellformedweb.org/CommentAPI/}commentRss", "{http://purl.org/rss/1.0/modules/slash/}comments",
}  # fmt: skip
_RSS_FIELDS = {"title", "link", "guid", "description", "pubDate", CONTENT_ENCODED, DC + "date"}
_ATOM_IGNORED = {ATOM + "author", ATOM + "category", ATOM + "contributor", ATOM + "rights"}
_ATOM_FIELDS = {ATOM + n for n in ("title", "id", "updated", "published", "content", "summary")}
_MEDIA_LEAVES = {MEDIA + "content", MEDIA + "thumbnail"}
_HTML_TYPES = {"text/html", "application/xhtml+xml", "html", "xhtml"}
_C1 = re.compile("[\x80-\x9f]")
_ENTITY_LIKE = re.compile("&([A-Za-z0-9_]+);")


class Decline(Exception):
    """The fast path does not reproduce this feed exactly; use feedparser."""


@dataclass
class FastItem:
    title: str = ""
    link: str | None = None
    guid: str | None = None
    html: str | None = None
    published: str | None = None
    published_parsed: object = None  # time.struct_time, as feedparser gives it


@dataclass
class FastFeed:
    title: str | None = None
    language: str | None = None
    items: list[FastItem] = field(default_factory=list)


def _repair(text: str) -> str:
    """feedparser's text repairs: UTF-8 read as Latin-1, and C1 controls as windows-1252."""
    if text.isascii():
        return text
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        text = text.encode("iso-8859-1").decode("utf-8")
    # str.translate with a dict is slow per character; C1 controls are rare.
    return text.translate(_cp1252) if _C1.search(text) else text


def _text(element: ET.Element) -> str:
    if len(element):
        raise Decline(f"markup inside <{element.tag}>")
    return _repair((element.text or "").strip())


def _one(found: dict[str, ET.Element], child: ET.Element) -> None:
    if child.tag in found:
        raise Decline(f"repeated <{child.tag}>")
    found[child.tag] = child


def _date(value: str | None) -> object:
    return _parse_date(value) if value else None


def parse_fast(body: bytes, base_url: str) -> FastFeed | None:
    """The feed's items, or None when feedparser must read it."""
    # xml:base changes how links resolve and a nested xml:lang an entry's language: both
    # are left to feedparser. A byte search is much cheaper than visiting every element.
    if b"xml:base" in body or body.count(b"xml:lang") > 1:
        return None
    try:
        root = ET.fromstring(body)
        if root.tag == "rss" and root.get("version", "").startswith("2."):
            return _rss(root, base_url)
        if root.tag == ATOM + "feed":
            return _atom(root, base_url)
    except (ET.ParseError, Decline, ValueError):
        pass
    return None


def _rss(root: ET.Element, base: str) -> FastFeed:
    channels = root.findall("channel")
    if len(channels) != 1:
        raise Decline("not one channel")
    feed = FastFeed(language=root.get(XML_LANG) or None)
    for child in channels[0]:
        if child.tag == "title":
            feed.title = _text(child)
        elif child.tag in ("language", DC + "language"):
            feed.language = _text(child) or feed.language
        elif child.tag == "item":
            feed.items.append(_rss_item(child, base))
        elif child.tag in ("textInput", "textinput", "source", "entry"):
            raise Decline(f"<{child.tag}> in the channel")
    return feed


def _rss_item(item: ET.Element, base: str) -> FastItem:
    found: dict[str, ET.Element] = {}
    for child in item:
        if child.tag in _RSS_FIELDS:
            _one(found, child)
        elif child.tag in _MEDIA_LEAVES:
            if len(child):
                raise Decline("media element with children")
        elif child.tag not in _RSS_IGNORED:
            raise Decline(f"<{child.tag}> in an item")
    out = FastItem()
    if "title" in found:
        out.title = _text(found["title"])
    if "guid" in found:
        guid = found["guid"]
        is_link = guid.get("isPermaLink", guid.get("ispermalink", "true")) == "true"
        if any(k.lower() == "ispermalink" for k in guid.attrib) and "isPermaLink" not in guid.attrib:
            raise Decline("isPermaLink in another case")
        value = _text(guid)
        out.guid = _urljoin(base, value) if is_link and value else value
        if is_link:
            out.link = out.guid
    if "link" in found:
        link = _urljoin(base, _text(found["link"])) if _text(found["link"]) else ""
        link = _ENTITY_LIKE.sub(r"&\g<1>", link.replace("&amp;", "&"))
        out.link = link
    content = _text(found[CONTENT_ENCODED]) if CONTENT_ENCODED in found else ""
    summary = _text(found["description"]) if "description" in found else ""
    out.html = content or summary or None
    published = _text(found["pubDate"]) if "pubDate" in found else None
    updated = _text(found[DC + "date"]) if DC + "date" in found else None
    out.published = published or updated or None
    out.published_parsed = _date(published) or _date(updated)
    return out


def _atom(root: ET.Element, base: str) -> FastFeed:
    feed = FastFeed(language=root.get(XML_LANG) or None)
    for child in root:
        if child.tag == ATOM + "title":
            feed.title = _atom_text(child)
        elif child.tag == ATOM + "entry":
            feed.items.append(_atom_entry(child, base))
        elif child.tag == ATOM + "source":
            raise Decline("<source> in the feed")
    return feed


def _atom_text(element: ET.Element) -> str:
    kind = element.get("type", "text")
    if kind not in ("text", "html", "text/plain", "text/html") or "src" in element.attrib:
        raise Decline(f"<{element.tag}> of type {kind}")
    return _text(element)


def _atom_entry(entry: ET.Element, base: str) -> FastItem:
    found: dict[str, ET.Element] = {}
    links: list[ET.Element] = []
    for child in entry:
        if child.tag in _ATOM_FIELDS:
            _one(found, child)
        elif child.tag == ATOM + "link":
            links.append(child)
        elif child.tag in _MEDIA_LEAVES:
            if len(child):
                raise Decline("media element with children")
        elif child.tag not in _ATOM_IGNORED:
            raise Decline(f"<{child.tag}> in an entry")
    out = FastItem()
    if ATOM + "title" in found:
        out.title = _atom_text(found[ATOM + "title"])
    if ATOM + "id" in found:
        value = _text(found[ATOM + "id"])
        out.guid = _urljoin(base, value) if value else value
        out.link = out.guid  # feedparser treats an Atom id like a permalink guid
    for link in links:
        if len(link) or "href" not in link.attrib:
            raise Decline("link without href")
        rel = link.get("rel", "alternate")
        kind = link.get("type", "application/atom+xml" if rel == "self" else "text/html").lower()
        if rel == "alternate" and kind in _HTML_TYPES:
            out.link = _urljoin(base, link.get("href", ""))
    content = _atom_text(found[ATOM + "content"]) if ATOM + "content" in found else ""
    summary = _atom_text(found[ATOM + "summary"]) if ATOM + "summary" in found else ""
    out.html = content or summary or None
    published = _text(found[ATOM + "published"]) if ATOM + "published" in found else None
    updated = _text(found[ATOM + "updated"]) if ATOM + "updated" in found else None
    out.published = published or updated or None
    out.published_parsed = _date(published) or _date(updated)
    return out

"""Parse feed bytes (RSS/Atom/RDF, JSON Feed, Google News sitemaps) into entries. No
parser ever touches the network here.

The format is chosen by content, not by Content-Type or extension: a body whose first
non-whitespace character is `{` is JSON (`connectors.jsonfeed`); any other body is
XML, and an XML document whose root is `<urlset>`/`<sitemapindex>` is a sitemap
(`connectors.sitemaps`). Every entry, whichever format it came from, is built and
checked by the same code below (links, dates, guids, empty items).

Every XML body goes through the same pre-pass first: decoded by `connectors.encoding`
(BOM, HTTP charset, XML declaration), made safe by `connectors.xmlguard` (internal DTD
subsets, characters XML forbids), re-encoded as UTF-8. Then the stdlib fast path
(`connectors.fastfeed`) reads the common well-formed RSS 2.0/Atom 1.0 feed, and
feedparser reads everything else, with HTML sanitising off (the cleaner reduces HTML
to text itself). Both give identical entries; tests/test_fastfeed.py holds them to it.
"""

from __future__ import annotations

import calendar
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import feedparser

from connectors.dates import EARLIEST_PLAUSIBLE, FUTURE_TOLERANCE
from connectors.encoding import decode_feed
from connectors.errors import Problem
from connectors.fastfeed import FastFeed, parse_fast
from connectors.jsonfeed import load_json_feed, looks_like_json
from connectors.sitemaps import might_be_sitemap, parse_sitemap, root_kind
from connectors.xmlguard import guard_xml
from schemas.records import Entry, RawFetch

_ITEM_TAGS = {
    "item",
    "entry",
    "{http://www.w3.org/2005/Atom}entry",
    "{http://purl.org/rss/1.0/}item",
    "{http://my.netscape.com/rdf/simple/0.9/}item",
    "{http://purl.org/atom/ns#}entry",
}
_WEB_SCHEMES = ("http", "https")


@dataclass
class ParseResult:
    entries: list[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    parser: str = ""  # "fast" | "feedparser" | "jsonfeed" | "sitemap": which one read the document


@dataclass
class _Item:
    """The fields of one parsed item, whichever parser read it."""

    title: str
    link: str | None
    guid: str | None
    html: str | None
    published: str | None
    published_at: datetime | None
    language: str | None
    text: str | None = None  # plain text (JSON Feed content_text/summary), when there is no HTML
    publisher: str | None = None  # the item's own (a news sitemap's publication name)
    page_only: bool = False  # has no text of its own: its page gives it (a news sitemap's <url>)


def _struct_to_utc(value: time.struct_time | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=timezone.utc)
    except (OverflowError, ValueError, OSError):
        return None


def prepare_body(body: bytes, content_type: str | None) -> tuple[bytes, list[Problem]]:
    """The body as safe UTF-8 XML, and what had to be repaired on the way."""
    decoded = decode_feed(body, content_type)
    guarded = guard_xml(decoded.text)
    return guarded.data, decoded.problems + guarded.problems


def parse_feed_bytes(raw: RawFetch, body: bytes, *, mode: str = "auto") -> ParseResult:
    """Entries of one feed document; a malformed but readable feed keeps its entries.

    `mode`: "auto" (fast path, feedparser when it declines); "feedparser" (always
    feedparser, after the same pre-pass); "feedparser-default" (feedparser with its own
    defaults on the untouched body: the reference the equivalence tests and the
    benchmark compare against; unguarded, never used on fetched data).
    """
    if mode == "feedparser-default":
        result = ParseResult(parser=mode)
        items, publisher, language = _feedparser_items(raw, body, result, defaults=True)
    elif looks_like_json(body):
        result = ParseResult(parser="jsonfeed")
        items, publisher, language = _json_items(raw, body, result)
    else:
        prepared, problems = prepare_body(body, raw.content_type)
        kind = root_kind(prepared)
        if kind is not None:
            result = ParseResult(problems=problems, parser="sitemap")
            items, publisher, language = _sitemap_items(raw, prepared, kind, result)
        else:
            feed = parse_fast(prepared, raw.origin) if mode == "auto" else None
            result = ParseResult(problems=problems, parser="fast" if feed is not None else "feedparser")
            if feed is not None:
                items, publisher, language = _fast_items(feed)
            else:
                items, publisher, language = _feedparser_items(raw, prepared, result)
    seen_guids: dict[str, int] = {}
    for position, item in enumerate(items):
        if item is None:
            continue
        has_content = bool(item.title or item.html or item.text)
        if not has_content and not (item.page_only and item.link):
            result.problems.append(
                Problem("empty_entry", "entry has neither title nor content", position=position)
            )
            continue
        # A local feed file has no URL to resolve links against, and its fetch time is the
        # file's mtime: relative links and dates after it are expected there, not problems.
        flags = result.problems if raw.source_kind == "feed" else []
        url = _checked_link(item.link, position, flags)
        if not has_content and url is None:
            result.problems.append(
                Problem("empty_entry", "entry has no title and no usable link to its page", position=position)
            )
            continue
        _check_date(item.published_at, raw.fetched_at, position, flags)
        if item.guid:
            if item.guid in seen_guids:
                result.problems.append(
                    Problem(
                        "duplicate_guid",
                        f"guid also used by item {seen_guids[item.guid]}; both kept",
                        position=position,
                    )
                )
            seen_guids.setdefault(item.guid, position)
        result.entries.append(
            Entry(
                raw_id=raw.raw_id,
                source=raw.source,
                source_kind=raw.source_kind,
                origin=raw.origin,
                fetched_at=raw.fetched_at,
                position=position,
                title=item.title,
                url=url,
                guid=item.guid or None,
                html=item.html,
                text=item.text,
                published=item.published,
                published_at=item.published_at,
                language_hint=item.language or language,
                publisher=item.publisher or publisher,
            )
        )
    return result


def sitemap_kind(body: bytes, content_type: str | None) -> str | None:
    """The sitemap kind ("urlset" or "sitemapindex") parse_feed_bytes would read `body` as,
    or None; cheap for a body that is no sitemap (a byte search in its first 64 KB)."""
    if looks_like_json(body) or not might_be_sitemap(body):
        return None
    return root_kind(prepare_body(body, content_type)[0])


def _json_items(
    raw: RawFetch, body: bytes, result: ParseResult
) -> tuple[list[_Item | None], str | None, str | None]:
    decoded = decode_feed(body, raw.content_type)
    result.problems.extend(decoded.problems)
    feed = load_json_feed(decoded.text, raw.origin)
    if isinstance(feed, Problem):
        result.problems.append(feed)
        return [], None, None
    result.problems.extend(feed.problems)
    items: list[_Item | None] = [
        None
        if i is None
        else _Item(
            title=i.title,
            link=i.link,
            guid=i.guid,
            html=i.html,
            text=i.text,
            published=i.published,
            published_at=_struct_to_utc(i.published_parsed),  # type: ignore[arg-type]
            language=i.language,
        )
        for i in feed.items
    ]
    return items, feed.title or None, feed.language or None


def _sitemap_items(
    raw: RawFetch, prepared: bytes, kind: str, result: ParseResult
) -> tuple[list[_Item | None], str | None, str | None]:
    sitemap = parse_sitemap(prepared, kind, raw.origin)
    result.problems.extend(sitemap.problems)
    items: list[_Item | None] = [
        None
        if i is None
        else _Item(
            title=i.title,
            link=i.link or None,
            guid=None,
            html=None,
            published=i.published,
            published_at=_struct_to_utc(i.published_parsed),  # type: ignore[arg-type]
            language=i.language,
            publisher=i.publisher,
            page_only=True,
        )
        for i in sitemap.items
    ]
    return items, None, None


def _fast_items(feed: FastFeed) -> tuple[list[_Item | None], str | None, str | None]:
    items: list[_Item | None] = [
        _Item(
            title=i.title.strip(),
            link=i.link or None,
            guid=i.guid or None,
            html=i.html,
            published=i.published,
            published_at=_struct_to_utc(i.published_parsed),  # type: ignore[arg-type]
            language=None,
        )
        for i in feed.items
    ]
    return items, feed.title or None, feed.language or None


def _entry_html(item: Any) -> str | None:
    contents = item.get("content") or []
    for content in contents:
        value = content.get("value")
        if value:
            return str(value)
    summary = item.get("summary")
    return str(summary) if summary else None


def _feedparser_items(
    raw: RawFetch, prepared: bytes, result: ParseResult, defaults: bool = False
) -> tuple[list[_Item | None], str | None, str | None]:
    headers = {"content-location": raw.origin}
    if raw.content_type:
        # The body is UTF-8 now, whatever the server said.
        charset = "" if defaults else "; charset=utf-8"
        headers["content-type"] = raw.content_type if defaults else raw.content_type.split(";")[0] + charset
    parsed = feedparser.parse(
        prepared,
        response_headers=headers,
        resolve_relative_uris=defaults,  # links inside HTML are never used: the cleaner keeps text
        sanitize_html=defaults,  # the cleaner reduces HTML to text itself
    )
    exception = parsed.get("bozo_exception")
    complete = complete_items(prepared) if parsed.get("bozo") else None
    items: list[_Item | None] = []
    for position, item in enumerate(parsed.entries):
        if complete is not None and position >= complete:
            # The document ends inside this item: what the loose parser recovered of it is
            # a fragment (a cut title, no body), not an article.
            result.problems.append(
                Problem("truncated_entry", "the document ends inside this item", position=position)
            )
            items.append(None)
            continue
        published = item.get("published") or item.get("updated")
        items.append(
            _Item(
                title=str(item.get("title") or "").strip(),
                link=item.get("link") or None,
                guid=item.get("id") or None,
                html=_entry_html(item),
                published=str(published) if published else None,
                published_at=_struct_to_utc(item.get("published_parsed") or item.get("updated_parsed")),
                language=item.get("language") or None,
            )
        )
    kept = sum(1 for i in items if i is not None and (i.title or i.html))
    # A feed served as text/html or text/plain is common and harmless once it parsed; a page
    # with no feed structure at all is `not_a_feed` whatever type it was served as.
    wrong_type_only = isinstance(exception, feedparser.NonXMLContentType)
    no_feed = not parsed.entries and not parsed.get("version")
    if parsed.get("bozo") and not (wrong_type_only and (kept or no_feed)):
        reason = "malformed_feed" if not kept else "malformed_feed_partial"
        detail = f"{type(exception).__name__}: {exception}"
        if kept:
            detail += f" ({kept} entries kept)"
        result.problems.append(Problem(reason, detail[:500]))
    elif no_feed:
        result.problems.append(Problem("not_a_feed", "no RSS/Atom structure found"))
    return items, parsed.feed.get("title") or None, parsed.feed.get("language") or None


def complete_items(prepared: bytes) -> int | None:
    """How many items closed before the document was cut off; None unless it was cut off.

    Only a document that ends early is judged: after an error in the middle (a stray
    `&`), feedparser's loose parser recovers the later items, and they are whole.
    """
    parser: Any = ET.XMLPullParser(events=("end",))

    def closed_items() -> int:
        events: Any = parser.read_events()
        return sum(1 for _, element in events if element.tag in _ITEM_TAGS)

    closed = 0
    try:
        parser.feed(prepared)
        closed += closed_items()
        parser.close()
    except ET.ParseError as error:
        closed += closed_items()
        # expat: 3 = no element found, 5 = unclosed token; both mean the input ran out.
        return closed if error.code in (3, 5) else None
    return None


def _checked_link(link: str | None, position: int, problems: list[Problem]) -> str | None:
    """The link if it is an absolute http(s) URL; otherwise None and a problem."""
    if not link:
        return None
    try:
        parts = urlsplit(link.strip())
    except ValueError:
        problems.append(Problem("bad_link", f"unparsable link {link[:200]!r}", position=position))
        return None
    scheme = parts.scheme.lower()
    if scheme in _WEB_SCHEMES and parts.netloc:
        return link
    reason = "unsafe_link" if scheme and scheme not in _WEB_SCHEMES else "relative_link"
    problems.append(Problem(reason, f"link {link[:200]!r} not used as the article URL", position=position))
    return None


def _check_date(
    published: datetime | None, fetched_at: datetime, position: int, problems: list[Problem]
) -> None:
    if published is None:
        return
    if published > fetched_at + FUTURE_TOLERANCE:
        problems.append(
            Problem(
                "implausible_date",
                f"published {published.isoformat()} is more than {FUTURE_TOLERANCE} after the fetch; "
                "the fetch date partitions the article",
                position=position,
            )
        )
    elif published < EARLIEST_PLAUSIBLE:
        problems.append(
            Problem(
                "implausible_date",
                f"published {published.isoformat()} is before {EARLIEST_PLAUSIBLE.year}; "
                "the fetch date partitions the article",
                position=position,
            )
        )

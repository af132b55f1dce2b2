"""Parse RSS/Atom bytes into entries. feedparser never touches the network here."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import feedparser

from connectors.errors import Problem
from schemas.records import Entry, RawFetch


@dataclass
class ParseResult:
    entries: list[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _struct_to_utc(value: time.struct_time | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=timezone.utc)
    except (OverflowError, ValueError, OSError):
        return None


def _entry_html(item: Any) -> str | None:
    contents = item.get("content") or []
    for content in contents:
        value = content.get("value")
        if value:
            return str(value)
    summary = item.get("summary")
    return str(summary) if summary else None


def parse_feed_bytes(raw: RawFetch, body: bytes) -> ParseResult:
    """Entries of one feed document; a malformed but readable feed keeps its entries."""
    headers = {"content-location": raw.origin}
    if raw.content_type:
        headers["content-type"] = raw.content_type
    parsed = feedparser.parse(
        body,
        response_headers=headers,
        resolve_relative_uris=True,
        sanitize_html=False,  # the cleaner reduces HTML to text itself
    )
    result = ParseResult()
    for position, item in enumerate(parsed.entries):
        title = str(item.get("title") or "").strip()
        html = _entry_html(item)
        if not title and not html:
            result.problems.append(
                Problem("empty_entry", "entry has neither title nor content", position=position)
            )
            continue
        published = item.get("published") or item.get("updated")
        result.entries.append(
            Entry(
                raw_id=raw.raw_id,
                source=raw.source,
                source_kind=raw.source_kind,
                origin=raw.origin,
                fetched_at=raw.fetched_at,
                position=position,
                title=title,
                url=item.get("link") or None,
                guid=item.get("id") or None,
                html=html,
                published=str(published) if published else None,
                published_at=_struct_to_utc(item.get("published_parsed") or item.get("updated_parsed")),
                language_hint=(item.get("language") or parsed.feed.get("language") or None),
                publisher=parsed.feed.get("title") or None,
            )
        )
    # A feed served as text/html or text/plain is common and harmless once it parsed; a page
    # with no feed structure at all is `not_a_feed` whatever type it was served as.
    wrong_type_only = isinstance(parsed.get("bozo_exception"), feedparser.NonXMLContentType)
    no_feed = not result.entries and not parsed.get("version")
    if parsed.get("bozo") and not (wrong_type_only and (result.entries or no_feed)):
        reason = "malformed_feed" if not result.entries else "malformed_feed_partial"
        detail = f"{type(parsed.get('bozo_exception')).__name__}: {parsed.get('bozo_exception')}"
        if result.entries:
            detail += f" ({len(result.entries)} entries kept)"
        result.problems.append(Problem(reason, detail[:500]))
    elif no_feed:
        result.problems.append(Problem("not_a_feed", "no RSS/Atom structure found"))
    return result

"""Typed records, one per stage boundary.

raw fetch (connectors) -> Entry (parsed item) -> Article (cleaned, tagged)
and, beside them, Reject (dead letter) and Duplicate (a dropped copy with the
reason it was dropped). Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple


class _Compact:
    """Pickles as (class, field values): records cross every Beam shuffle, and the
    default dataclass pickling (a dict of field names per record) costs twice as much."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self.__class__, tuple(getattr(self, f.name) for f in fields(self)))  # type: ignore[arg-type]


@dataclass(frozen=True)
class RawFetch(_Compact):
    """One fetched document (a feed body or a seed file) as it arrived."""

    raw_id: str
    source: str
    source_kind: str  # "feed" | "seed"
    origin: str  # feed URL or seed path
    fetched_at: datetime
    status: str  # "ok" | "error"
    http_status: int | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    body: bytes | None = None
    error_kind: str | None = None  # "retryable" | "permanent"
    error: str | None = None
    meta_json: str | None = None


@dataclass(frozen=True)
class Entry(_Compact):
    """One item parsed out of a raw document, before cleaning."""

    raw_id: str
    source: str
    source_kind: str
    origin: str
    fetched_at: datetime
    position: int
    title: str
    url: str | None = None
    guid: str | None = None
    html: str | None = None
    text: str | None = None
    published: str | None = None
    published_at: datetime | None = None
    language_hint: str | None = None
    publisher: str | None = None


# The two value types nested in an Article are named tuples rather than dataclasses:
# the tagger makes a dozen per article, and a frozen dataclass takes 4x as long to build.
class EntityMention(NamedTuple):
    id: str
    type: str
    mentions: int
    first_offset: int | None  # into `text`; None when only the title names it


class TopicMatch(NamedTuple):
    id: str
    score: float
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class Article(_Compact):
    article_id: str
    url: str | None
    canonical_url: str | None
    source: str
    source_kind: str
    title: str
    text: str
    language: str | None
    published_at: datetime | None
    fetched_at: datetime
    date_source: str  # "published" | "fetched": which date partitions the row
    content_hash: str
    guid: str | None
    raw_id: str
    publisher: str | None = None
    entities: tuple[EntityMention, ...] = ()
    topics: tuple[TopicMatch, ...] = ()
    countries: tuple[str, ...] = ()
    taxonomy_version: str | None = None
    # "headline": the source's own title; "lead": the source gave none, the title is the
    # text's first sentence (and the tagger weighs the lead once, not twice).
    title_source: str | None = None
    position: int = 0  # the entry's place in its raw document; not written, tells identical copies apart

    @property
    def headline(self) -> str:
        """The title as the source gave it ("" when it gave none): what the tagger reads."""
        return "" if self.title_source == "lead" else self.title

    @property
    def partition_date(self) -> str:
        when = self.published_at if self.date_source == "published" else None
        return (when or self.fetched_at).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Reject(_Compact):
    """A dead letter: something that could not become an article, and why."""

    reject_id: str
    stage: str  # "fetch" | "read" | "parse" | "clean" | "tag"
    reason: str
    error_type: str
    retryable: bool
    source: str
    origin: str
    payload_hash: str
    fetched_at: datetime
    detail: str = ""

    @property
    def partition_date(self) -> str:
        return self.fetched_at.strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Duplicate(_Compact):
    """A copy that was not written as an article, and the article it duplicates."""

    article_id: str
    url: str | None
    source: str
    fetched_at: datetime
    duplicate_of: str
    reason: str  # "same_url" | "same_content"
    similarity: float = 1.0
    content_hash: str = ""

    @property
    def partition_date(self) -> str:
        return self.fetched_at.strftime("%Y-%m-%d")


__all__ = [
    "Article",
    "Duplicate",
    "EntityMention",
    "Entry",
    "RawFetch",
    "Reject",
    "TopicMatch",
]


@dataclass(frozen=True)
class IndexEntry(_Compact):
    """An article as later runs' deduplication sees it."""

    article_id: str
    content_hash: str
    fetched_at: datetime
    published_at: datetime | None
    signature: bytes | None
    signature_scheme: str
    partition_date: str = ""

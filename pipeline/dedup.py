"""Exact deduplication decisions (pure).

Rule: an article already committed by an earlier run always wins. Among new
copies, the survivor is the earliest published (undated copies after dated
ones), then the earliest fetched, then the smallest article_id, content hash
and raw id: a total order, so the choice never depends on input order or on
how the runner splits bundles.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from schemas.records import Article, Duplicate


@dataclass(frozen=True)
class Existing:
    """Marks a key as taken by an article committed in an earlier run."""

    article_id: str


def survivor_order(a: Article) -> tuple[bool, datetime, datetime, str, str, str]:
    return (
        a.published_at is None,
        a.published_at or a.fetched_at,
        a.fetched_at,
        a.article_id,
        a.content_hash,
        a.raw_id,
    )


def as_duplicate(copy: Article, of: str, reason: str) -> Duplicate:
    return Duplicate(
        article_id=copy.article_id,
        url=copy.url,
        source=copy.source,
        fetched_at=copy.fetched_at,
        duplicate_of=of,
        reason=reason,
        similarity=1.0,
        content_hash=copy.content_hash,
    )


def resolve_group(items: Iterable[Article | Existing], reason: str) -> tuple[Article | None, list[Duplicate]]:
    """The surviving new article of one key group (None if an earlier run owns the key)
    and a duplicate record for every other copy."""
    items = list(items)
    existing = sorted(x.article_id for x in items if isinstance(x, Existing))
    articles = sorted((x for x in items if isinstance(x, Article)), key=survivor_order)
    if existing:
        return None, [as_duplicate(a, existing[0], reason) for a in articles]
    if not articles:
        return None, []
    survivor, *copies = articles
    return survivor, [as_duplicate(a, survivor.article_id, reason) for a in copies]

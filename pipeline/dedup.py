"""Exact deduplication decisions (pure).

Rule: the first-seen copy is the article. An article committed by an earlier
run always wins; among new copies the survivor is the earliest fetched, then
the earliest published (undated last), then the smallest article_id, content
hash and raw id: a total order, so the choice never depends on input order or
on how the runner splits bundles, and runs in fetch order agree with one run
over their union.

Reasons recorded for the copies that are not written:
- `same_url`: same canonical URL, same content;
- `revised`: same canonical URL, different content (an edited article);
- `same_content`: same normalised content under another URL;
- `near_duplicate`: similar content (see `pipeline.near_dup`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from schemas.records import Article, Duplicate

_END_OF_TIME = datetime.max


@dataclass(frozen=True)
class Existing:
    """Marks a key as taken by an article committed in an earlier run."""

    article_id: str
    content_hash: str


def survivor_order(a: Article) -> tuple[datetime, bool, datetime, str, str, str]:
    published = a.published_at or a.fetched_at
    return (a.fetched_at, a.published_at is None, published, a.article_id, a.content_hash, a.raw_id)


def as_duplicate(copy: Article, of: str, reason: str, similarity: float = 1.0) -> Duplicate:
    return Duplicate(
        article_id=copy.article_id,
        url=copy.url,
        source=copy.source,
        fetched_at=copy.fetched_at,
        duplicate_of=of,
        reason=reason,
        similarity=similarity,
        content_hash=copy.content_hash,
    )


def resolve_group(items: Iterable[Article | Existing], reason: str) -> tuple[Article | None, list[Duplicate]]:
    """The surviving new article of one key group (None if an earlier run owns the key)
    and a duplicate record for every other copy.

    With reason `same_url`, a copy whose content differs from the survivor's is
    recorded as `revised`.
    """
    items = list(items)
    existing = sorted((x for x in items if isinstance(x, Existing)), key=lambda e: e.article_id)
    articles = sorted((x for x in items if isinstance(x, Article)), key=survivor_order)
    if not articles:
        return None, []
    if existing:
        keeper_id, keeper_hash = existing[0].article_id, existing[0].content_hash
        survivor, copies = None, articles
    else:
        survivor, *copies = articles
        keeper_id, keeper_hash = survivor.article_id, survivor.content_hash

    def why(copy: Article) -> str:
        return "revised" if reason == "same_url" and copy.content_hash != keeper_hash else reason

    return survivor, [as_duplicate(c, keeper_id, why(c)) for c in copies]

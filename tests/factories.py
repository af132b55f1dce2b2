"""Records for tests, with defaults for every field a test does not care about."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pipeline.steps.clean import clean_entry
from schemas.records import Article, Entry

T0 = datetime(2024, 6, 19, 12, 0, tzinfo=timezone.utc)


def make_entry(**fields: Any) -> Entry:
    values: dict[str, Any] = dict(
        raw_id="raw-1", source="wire", source_kind="feed", origin="http://127.0.0.1/feed",
        fetched_at=T0, position=0, title="Title", text="Body.",
    )  # fmt: skip
    values.update(fields)
    return Entry(**values)


def make_article(**fields: Any) -> Article:
    """An entry as CleanArticles turns it into an article."""
    result = clean_entry(make_entry(**fields))
    assert isinstance(result, Article), result
    return result

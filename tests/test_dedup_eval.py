"""Labelled real-looking cases (tests/eval/dedup_cases.json): what must and must not merge."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from schemas.records import Article
from tests.factories import make_article
from tests.test_near_dup import dedup

CASES = json.loads((Path(__file__).parent / "eval" / "dedup_cases.json").read_text(encoding="utf-8"))
T0 = datetime(2025, 6, 4, 6, 0, tzinfo=timezone.utc)


def article(spec: dict) -> Article:
    return make_article(
        raw_id=f"raw-{spec['key']}",
        source=f"feed-{spec['key']}",
        fetched_at=T0 + timedelta(minutes=spec["minute"]),
        title=spec["title"],
        text=spec["text"],
        url=spec["url"],
    )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: dict) -> None:
    articles = {spec["key"]: article(spec) for spec in case["articles"]}
    dropped = dedup(list(articles.values()))
    for copy, original, *reason in case.get("same", []):
        assert articles[copy].article_id in dropped, f"{copy} should be a copy of {original}"
        kept, why = dropped[articles[copy].article_id]
        assert kept == articles[original].article_id
        if reason:
            assert why == reason[0]
    for a, b in case.get("separate", []):
        assert articles[a].article_id not in dropped and articles[b].article_id not in dropped

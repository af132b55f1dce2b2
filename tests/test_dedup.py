"""Survivor choice is a function of the set of copies: order, repeats and grouping don't matter."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.clean import clean_entry
from pipeline.dedup import Existing, resolve_group
from schemas.records import Article, Duplicate, Entry

T0 = datetime(2024, 6, 1, tzinfo=timezone.utc)


def make_article(url_n: int, text_n: int, day: int, hour: int) -> Article:
    result = clean_entry(
        Entry(
            raw_id=f"raw-{url_n}-{text_n}-{day}-{hour}",
            source=f"src-{hour % 3}",
            source_kind="feed",
            origin="o",
            fetched_at=T0 + timedelta(days=5, hours=hour),
            position=0,
            title=f"Story {text_n}",
            text=f"Body number {text_n}.",
            url=f"https://example.com/{url_n}",
            published_at=T0 + timedelta(days=day),
        )
    )
    assert isinstance(result, Article)
    return result


articles = st.lists(
    st.builds(
        make_article,
        st.integers(0, 4),
        st.integers(0, 4),
        st.integers(0, 3),
        st.integers(0, 5),
    ),
    max_size=12,
)


def dedup(items: list[Article], existing: frozenset[str] = frozenset()) -> tuple[set, list]:
    """Both passes of DeduplicateArticles, without Beam."""
    kept: list[Article] = []
    dups: list[Duplicate] = []
    for reason, key in (("same_url", "article_id"), ("same_content", "content_hash")):
        groups: dict[str, list] = defaultdict(list)
        for a in items:
            groups[getattr(a, key)].append(a)
        for k in existing if key == "article_id" else ():
            if k in groups:
                groups[k].append(Existing(k))
        kept = []
        for group in groups.values():
            survivor, copies = resolve_group(group, reason)
            dups.extend(copies)
            if survivor is not None:
                kept.append(survivor)
        items = kept
    return {a.raw_id for a in kept}, dups


@settings(max_examples=200, deadline=None)
@given(articles, st.randoms())
def test_shuffling_changes_nothing(items: list[Article], rnd) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert dedup(shuffled)[0] == dedup(items)[0]


@settings(max_examples=200, deadline=None)
@given(articles)
def test_dedup_of_doubled_input_keeps_the_same_articles(items: list[Article]) -> None:
    assert dedup(items + items)[0] == dedup(items)[0]


@settings(max_examples=200, deadline=None)
@given(articles)
def test_survivors_are_unique_by_url_and_content(items: list[Article]) -> None:
    kept_ids, dups = dedup(items)
    kept = list({a.raw_id: a for a in items if a.raw_id in kept_ids}.values())
    assert len({a.article_id for a in kept}) == len(kept)
    assert len({a.content_hash for a in kept}) == len(kept)
    assert len(kept) + len(dups) == len(items)  # every copy is kept or recorded, none vanishes


def test_the_first_seen_copy_survives_then_the_earliest_published() -> None:
    seen_later, seen_first = make_article(1, 1, day=1, hour=4), make_article(1, 1, day=3, hour=0)
    survivor, copies = resolve_group([seen_later, seen_first], "same_url")
    assert survivor is seen_first
    assert [(c.duplicate_of, c.fetched_at, c.reason) for c in copies] == [
        (seen_first.article_id, seen_later.fetched_at, "same_url")
    ]
    published_later, published_first = make_article(1, 1, day=3, hour=2), make_article(1, 1, day=1, hour=2)
    survivor, _ = resolve_group([published_later, published_first], "same_url")
    assert survivor is published_first


def test_a_changed_copy_of_the_same_url_is_a_revision() -> None:
    first, edited = make_article(1, 1, day=1, hour=0), make_article(1, 2, day=1, hour=1)
    survivor, copies = resolve_group([edited, first], "same_url")
    assert survivor is first
    assert [(c.reason, c.content_hash) for c in copies] == [("revised", edited.content_hash)]


def test_an_article_in_the_lake_always_wins() -> None:
    new = make_article(1, 1, day=0, hour=0)
    survivor, copies = resolve_group([new, Existing(new.article_id, new.content_hash)], "same_url")
    assert survivor is None
    assert [(c.duplicate_of, c.reason) for c in copies] == [(new.article_id, "same_url")]

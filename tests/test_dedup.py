"""Dedup decisions (pipeline.dedup.decide): first seen wins, reasons, and order-independence."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.dedup.decide import day_number, decide, indexed_member, member
from pipeline.dedup.near import NearDupSettings
from schemas.records import Article
from tests.factories import make_article

T0 = datetime(2024, 6, 1, tzinfo=timezone.utc)
SETTINGS = NearDupSettings()


def article(url_n: int, text_n: int, day: int, hour: int) -> Article:
    return make_article(
        raw_id=f"raw-{url_n}-{text_n}-{day}-{hour}",
        source=f"src-{hour % 3}",
        fetched_at=T0 + timedelta(days=5, hours=hour),
        title=f"Story {text_n}",
        text=f"Body number {text_n}.",
        url=f"https://example.com/{url_n}",
        published_at=T0 + timedelta(days=day),
    )


def dropped(articles: list[Article], index: list = (), lookback_days: int = 7) -> dict[str, tuple[str, str]]:
    """{dropped copy's raw id: (article id it duplicates, reason)}."""
    members = [member(a, SETTINGS) for a in articles]
    raw_of = {m[0]: a.raw_id for m, a in zip(members, articles, strict=True)}
    drops = decide([*members, *index], SETTINGS, lookback_days)
    return {raw_of[o]: (kept, reason) for o, (kept, reason, _) in drops.items()}


articles = st.lists(
    st.builds(article, st.integers(0, 4), st.integers(0, 4), st.integers(0, 3), st.integers(0, 5)),
    max_size=12,
    unique_by=lambda a: a.raw_id,
)


@settings(max_examples=200, deadline=None)
@given(articles, st.randoms(use_true_random=False))
def test_shuffling_changes_nothing(items: list[Article], rnd) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert dropped(shuffled) == dropped(items)


@settings(max_examples=200, deadline=None)
@given(articles)
def test_kept_articles_are_unique_by_url_and_content(items: list[Article]) -> None:
    drops = dropped(items)
    kept = [a for a in items if a.raw_id not in drops]
    assert len({a.article_id for a in kept}) == len(kept)
    assert len({a.content_hash for a in kept}) == len(kept)
    # Every copy points at a kept article.
    assert {of for of, _ in drops.values()} <= {a.article_id for a in kept}


def test_the_first_seen_copy_survives_then_the_earliest_published() -> None:
    seen_later, seen_first = article(1, 1, day=1, hour=4), article(1, 1, day=3, hour=0)
    assert dropped([seen_later, seen_first]) == {seen_later.raw_id: (seen_first.article_id, "same_url")}
    published_later, published_first = article(1, 1, day=3, hour=2), article(1, 1, day=1, hour=2)
    assert set(dropped([published_later, published_first])) == {published_later.raw_id}


def test_a_changed_copy_of_the_same_url_is_a_revision() -> None:
    first, edited = article(1, 1, day=1, hour=0), article(1, 2, day=1, hour=1)
    assert dropped([edited, first]) == {edited.raw_id: (first.article_id, "revised")}


def test_same_content_under_another_url() -> None:
    first, mirror = article(1, 1, day=1, hour=0), article(2, 1, day=1, hour=1)
    assert dropped([mirror, first]) == {mirror.raw_id: (first.article_id, "same_content")}


def test_an_article_in_the_lake_always_wins() -> None:
    new = article(1, 1, day=0, hour=0)
    day = day_number(new.partition_date)
    old = indexed_member(T0 + timedelta(days=30), new.article_id, "other-hash", None, day)
    assert dropped([new], [old]) == {new.raw_id: (new.article_id, "revised")}


def test_exact_keys_see_the_whole_index_whatever_the_lookback() -> None:
    new = article(1, 1, day=3, hour=0)
    day = day_number(new.partition_date)

    def against(days_apart: int, lookback_days: int = 7) -> dict[str, tuple[str, str]]:
        old = indexed_member(T0, new.article_id, new.content_hash, None, day + days_apart)
        return dropped([new], [old], lookback_days)

    same_url = {new.raw_id: (new.article_id, "same_url")}
    assert against(-7) == against(7) == against(-8) == against(400) == same_url
    assert against(-30, lookback_days=1) == same_url


@settings(max_examples=200, deadline=None)
@given(articles)
def test_seeing_everything_again_later_keeps_the_same_articles(items: list[Article]) -> None:
    """dedup(x ++ x) == dedup(x): a later copy of every item (a re-fetch) changes nothing kept."""
    again = [
        dataclasses.replace(a, raw_id=f"{a.raw_id}-again", fetched_at=a.fetched_at + timedelta(days=1))
        for a in items
    ]
    kept_once = {a.raw_id for a in items} - set(dropped(items))
    kept_twice = {a.raw_id for a in items + again} - set(dropped(items + again))
    assert kept_twice == kept_once


def bulletin(n: int, rnd: random.Random) -> Article:
    """Issue n of a market bulletin: the same boilerplate, a few figures changed."""
    figures = [f"{rnd.uniform(0, 100):.1f}" for _ in range(8)]
    text = (
        "Market bulletin. The index closed at {} points, up {} percent, on volume of {} million "
        "shares. Exporters led the session while financial stocks were mixed ahead of the central "
        "bank meeting next week. The currency traded at {} per dollar and the ten year yield stood "
        "at {} percent. Brent crude was quoted at {} dollars a barrel and gold at {} dollars an "
        "ounce. Analysts said the market would watch inflation data due on Friday and earnings "
        "from large technology companies for direction. Figures are provisional: {}."
    ).format(*figures)
    return make_article(
        raw_id=f"bulletin-{n}",
        source="markets",
        fetched_at=T0 + timedelta(minutes=7 * (n % 50)),
        title=f"Market bulletin {n}",
        text=text,
        url=f"https://markets.example.com/{n}",
    )


@settings(max_examples=20, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 6), st.integers(1, 8))
def test_a_flood_of_template_copies_is_decided_the_same_whatever_the_order_and_shards(
    rnd, shards: int, cap: int
) -> None:
    """Near copies of one template fill band buckets far past a small comparison cap: what is
    dropped, and as a copy of what, still depends only on the set of copies."""
    items = [bulletin(n, random.Random(n)) for n in range(120)]
    settings_ = dataclasses.replace(SETTINGS, max_bucket_comparisons=cap)
    expected = decide([member(a, settings_) for a in items], settings_)
    assert len(expected) >= 100  # most are near copies of one another
    shuffled = list(items)
    rnd.shuffle(shuffled)
    again = decide([member(a, settings_) for a in shuffled], dataclasses.replace(settings_, shards=shards))
    assert again == expected

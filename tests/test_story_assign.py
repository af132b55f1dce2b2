"""Story ids: founded by the first report, joined by later ones, merged oldest-first only
when an article is strongly linked to two stories; deterministic whatever the order."""

from __future__ import annotations

import random

from pipeline.stories.assign import (
    MERGE_THRESHOLD,
    Member,
    NewArticle,
    assign_stories,
    story_id_of,
)
from pipeline.stories.link import THRESHOLD, Rarity, same_story
from pipeline.stories.signals import StorySignature

DAY = 739_000  # a proleptic ordinal


def sig(
    entities: tuple[str, ...],
    names: tuple[str, ...] = (),
    numbers: tuple[str, ...] = (),
    day: int | None = DAY,
    language: str = "en",
    terms: tuple[str, ...] = (),
) -> StorySignature:
    return StorySignature(
        language=language,
        day=day,
        entities=tuple((e, 1.0) for e in sorted(entities)),
        names=frozenset(names),
        numbers=frozenset(numbers),
        days=frozenset({day} if day is not None else ()),
        terms=tuple((t, 1.0) for t in terms),
    )


SUMMIT = sig(
    ("kim-jong-un", "vladimir-putin", "pyongyang"), ("shoigu",), ("1961",), terms=("summit", "treaty")
)
SUMMIT_FR = sig(
    ("kim-jong-un", "vladimir-putin", "pyongyang"), ("shoigu",), ("1961",), language="fr", terms=("sommet",)
)
# Fewer shared entities and no event day: linked, but not strongly.
WEAK_FR = StorySignature(
    language="fr",
    day=DAY,
    entities=(("kim-jong-un", 1.0), ("pyongyang", 1.0)),
    names=frozenset({"shoigu"}),
    numbers=frozenset({"1961"}),
    days=frozenset(),
    terms=(("sommet", 1.0),),
)
FLOODS = sig(("jakarta",), ("widodo",), ("4500",), day=DAY + 1, terms=("flood", "rain"))


# Other stories of the lake, weeks earlier: what makes a shared name or number rare.
BACKGROUND = [
    Member(
        f"bg{n}",
        f"s-bg{n}",
        ("2024-05-01T00:00:00Z", f"bg{n}"),
        sig((f"place-{n}",), (f"name{n}",), (str(100 + n),), day=DAY - 30 - n, terms=(f"term{n}",)),
    )
    for n in range(20)
]


def linked_in(a: StorySignature, b: StorySignature, *others: StorySignature) -> float:
    """Points of a and b with rarity counted as assign_stories counts it."""
    return same_story(a, b, Rarity.of([m.signature for m in BACKGROUND] + [a, b, *others]))


def new(article_id: str, signature: StorySignature, hour: int = 0) -> NewArticle:
    return NewArticle(article_id, (f"2024-06-{10 + hour:02d}T00:00:00Z", article_id), signature)


def test_the_first_report_founds_a_story_and_later_reports_join_it() -> None:
    assert linked_in(SUMMIT, SUMMIT_FR, FLOODS) >= THRESHOLD > linked_in(SUMMIT, FLOODS, SUMMIT_FR)
    articles = [new("a", SUMMIT), new("b", SUMMIT_FR, 1), new("c", FLOODS, 2)]
    story, merges = assign_stories(articles, BACKGROUND)
    assert story == {"a": story_id_of("a"), "b": story_id_of("a"), "c": story_id_of("c")}
    assert merges == []
    assert story_id_of("a") != story_id_of("c")


def test_a_new_report_joins_a_story_of_the_lake_and_never_renames_it() -> None:
    known = [*BACKGROUND, Member("old", "story-of-old", ("2024-06-09T00:00:00Z", "old"), SUMMIT)]
    story, merges = assign_stories([new("b", SUMMIT_FR)], known)
    assert story == {"b": "story-of-old"} and merges == []
    # A story merged earlier: the article joins the story it went into.
    story, _ = assign_stories([new("b", SUMMIT_FR)], known, merged={"story-of-old": "story-older"})
    assert story == {"b": "story-older"}


def test_two_stories_merge_only_on_a_strong_link_and_the_older_id_goes_on() -> None:
    older = Member("x", "s-older", ("2024-06-08T00:00:00Z", "x"), SUMMIT)
    younger = Member("y", "s-younger", ("2024-06-09T00:00:00Z", "y"), SUMMIT)
    assert linked_in(SUMMIT, SUMMIT, SUMMIT) >= MERGE_THRESHOLD
    story, merges = assign_stories([new("z", SUMMIT)], [*BACKGROUND, younger, older])
    assert story == {"z": "s-older"}
    assert [(m.story_id, m.into, m.article_id) for m in merges] == [("s-younger", "s-older", "z")]
    # Linked to the second story only weakly: no merge, the best-linked story is joined.
    assert THRESHOLD <= linked_in(WEAK_FR, SUMMIT, SUMMIT) < MERGE_THRESHOLD
    story, merges = assign_stories([new("z", WEAK_FR)], [*BACKGROUND, younger, older])
    assert merges == [] and story["z"] in {"s-older", "s-younger"}


def test_reports_more_than_three_days_apart_are_different_stories() -> None:
    later = sig(("kim-jong-un", "vladimir-putin", "pyongyang"), ("shoigu",), ("1961",), day=DAY + 5)
    story, _ = assign_stories([new("a", SUMMIT), new("b", later, 5)], BACKGROUND)
    assert story["a"] != story["b"]


def test_the_same_inputs_in_any_order_give_the_same_story_ids() -> None:
    articles = [new(f"n{i}", s, i % 3) for i, s in enumerate([SUMMIT, SUMMIT_FR, FLOODS] * 4)]
    known = [*BACKGROUND, Member("old", "story-of-old", ("2024-06-01T00:00:00Z", "old"), FLOODS)]
    expected = assign_stories(articles, known)
    for seed in range(5):
        shuffled = articles[:]
        random.Random(seed).shuffle(shuffled)
        assert assign_stories(shuffled, known) == expected
    assert set(expected[0].values()) == {story_id_of("n0"), "story-of-old"}

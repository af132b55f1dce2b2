"""Story ids for new articles, against the stories they may join (pure, deterministic).

New articles are taken in a fixed order (their `key`: publication or fetch time, then
article id). Each is compared with the members of earlier stories (articles of the
lake within the lookback, and the new articles before it) that share a blocking key
with it and were published within `link.MAX_GAP` days; it joins the story of the member
it is linked with best (`link.THRESHOLD`). Linked with none, it founds a story whose id
derives from its own article id. Linked strongly (`MERGE_THRESHOLD`) with members of
other stories too, those stories merge: the oldest (the earliest founding key, then
the smallest id) goes on, and each other one is recorded as merged into it. Ids already
given are never changed: readers follow the merges.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pipeline.stories.link import MAX_GAP, THRESHOLD, Rarity, Weighed, score, weigh
from pipeline.stories.signals import StorySignature
from schemas.ids import stable_id

# A key shared by more members than this says little about a story (a country in a
# national press): it is not used to find candidates. Candidates per article are capped,
# the ones sharing the most keys first, so an article costs at most MAX_CANDIDATES scores.
MAX_POSTING = 400
MAX_CANDIDATES = 60
MERGE_THRESHOLD = 2.0  # points with a member of a second story for the two to merge


@dataclass(frozen=True)
class Member:
    """An article already in a story: from the lake's story index, or earlier in the batch."""

    article_id: str
    story_id: str
    story_key: tuple[str, str]  # the founding article's key: the older story wins a merge
    signature: StorySignature


@dataclass(frozen=True)
class NewArticle:
    article_id: str
    key: tuple[str, str]  # (publication or fetch time, ISO 8601 UTC; article id)
    signature: StorySignature


@dataclass(frozen=True)
class Merge:
    story_id: str  # the story that ends
    into: str  # the story that goes on
    article_id: str  # the article that linked them


def story_id_of(article_id: str) -> str:
    """The id of a story founded by `article_id`: the same on every rerun."""
    return stable_id("story", article_id)


def blocking_keys(signature: StorySignature) -> set[str]:
    """What two reports of one story are likely to share: entities, names, numbers, event
    days, and lead terms within one language."""
    keys = {"e:" + e for e, _ in signature.entities}
    keys.update("n:" + n for n in signature.names)
    keys.update("#:" + n for n in signature.numbers)
    keys.update(f"d:{d}" for d in signature.days)
    keys.update(f"t:{signature.language}:{t}" for t, _ in signature.terms)
    return keys


class _Stories:
    """Merges so far: each story id -> the story it goes on as."""

    def __init__(self, merged: Mapping[str, str], founded: dict[str, tuple[str, str]]) -> None:
        self.parent = dict(merged)
        self.founded = founded

    def current(self, story_id: str) -> str:
        seen = set()
        while story_id in self.parent and story_id not in seen:
            seen.add(story_id)
            story_id = self.parent[story_id]
        return story_id

    def oldest(self, story_ids: Iterable[str]) -> str:
        return min(story_ids, key=lambda s: (self.founded.get(s, ("", "")), s))


def assign_stories(
    new: Sequence[NewArticle], known: Sequence[Member], merged: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[Merge]]:
    """Each new article's story id, and the merges the new articles caused. `merged`:
    the merges recorded before (story id -> the story it went into)."""
    signatures = [m.signature for m in known] + [a.signature for a in new]
    rarity = Rarity.of(signatures)
    stories = _Stories(merged or {}, {})
    for m in known:
        founded = stories.founded.get(m.story_id)
        if founded is None or m.story_key < founded:
            stories.founded[m.story_id] = m.story_key
    members: list[tuple[str, Weighed]] = []  # (story id as given, weighed signature)
    postings: dict[str, list[int]] = {}

    def file(story_id: str, signature: StorySignature) -> None:
        number = len(members)
        members.append((story_id, weigh(signature, rarity)))
        for key in blocking_keys(signature):
            postings.setdefault(key, []).append(number)

    for m in sorted(known, key=lambda m: m.article_id):
        file(m.story_id, m.signature)
    assigned: dict[str, str] = {}
    merges: list[Merge] = []
    for article in sorted(new, key=lambda a: a.key):
        mine = weigh(article.signature, rarity)
        best: dict[str, float] = {}  # story -> the best score with one of its members
        for n in _candidates(article.signature, postings, members):
            points = score(mine, members[n][1])
            if points >= THRESHOLD:
                story = stories.current(members[n][0])
                best[story] = max(points, best.get(story, 0.0))
        if best:
            # The story of the best-linked member; another story merges in only when the
            # article is strongly linked to it too (single links would chain a week of
            # reports on one subject into one story).
            joined = max(best, key=lambda s: (best[s], s))
            strong = {s for s, points in best.items() if points >= MERGE_THRESHOLD} | {joined}
            story = stories.oldest(strong)
            for other in sorted(strong - {story}):
                stories.parent[other] = story
                merges.append(Merge(other, story, article.article_id))
        else:
            story = story_id_of(article.article_id)
            stories.founded[story] = article.key
        assigned[article.article_id] = story
        file(story, article.signature)
    # Not yet written: a new article follows merges made after it in this batch.
    return {a: stories.current(s) for a, s in assigned.items()}, merges


def _candidates(
    signature: StorySignature, postings: Mapping[str, list[int]], members: Sequence[tuple[str, Weighed]]
) -> list[int]:
    """Members sharing the most blocking keys with `signature` (rare keys only), published
    within MAX_GAP days of it when both are dated; at most MAX_CANDIDATES."""
    shared: Counter[int] = Counter()
    for key in blocking_keys(signature):
        posted = postings.get(key, ())
        if len(posted) <= MAX_POSTING:
            shared.update(posted)
    day = signature.day
    if day is not None:
        for n in list(shared):
            other = members[n][1].day
            if other is not None and abs(other - day) > MAX_GAP:
                del shared[n]
    ranked = sorted(shared.items(), key=lambda kv: (-kv[1], kv[0]))
    return [n for n, _ in ranked[:MAX_CANDIDATES]]

"""The stage chain over raw documents held in memory: parse and clean, join article
pages, clean the joined entries, deduplicate, tag.

The batch graph (`pipeline/graph.py`) runs these same functions inside its Beam steps
(`ParseAndClean` -> `JoinArticlePages` -> `CleanArticles` -> `DeduplicateArticles` ->
`TagTopics`), with shuffles between them because a run's raw documents are spread over
workers. The streaming job commits a pane whose raw documents are all in one place, so it
calls `run_chain` on them: one chain, two drivers. Only deduplication differs in where
its state comes from (the lake's index in a run, the job's dedup memory in a pane), so the
caller passes it in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from connectors.articles import PAGE_KIND
from pipeline.steps.pages import STAGE, join_page
from pipeline.steps.parse import clean_or_reject, parse_and_clean
from pipeline.steps.tag import tag_article
from pipeline.tagging.tagger import Tagger
from schemas.records import Article, Duplicate, Entry, IndexEntry, RawFetch, Reject

Deduplicate = Callable[[list[Article]], Iterable[Article | Duplicate | IndexEntry]]


def pages_by_link(raws: Iterable[RawFetch]) -> dict[str, list[RawFetch]]:
    """The article pages among raw documents, by the entry link they were fetched for."""
    pages: dict[str, list[RawFetch]] = {}
    for raw in raws:
        if raw.source_kind == PAGE_KIND:
            pages.setdefault(raw.origin, []).append(raw)
    return pages


def parse_join_clean(
    raws: Sequence[RawFetch], min_chars: int, counts: Counter[str]
) -> tuple[list[Article], list[Reject]]:
    """Untagged articles and rejects of raw documents (feeds, seeds and the article pages
    fetched for their entries), counted in `counts` under the names the graph's steps use."""
    pages = pages_by_link(raws)
    articles: list[Article] = []
    rejects: list[Reject] = []
    waiting: dict[str, list[Entry]] = {}  # entries whose link has a page, by link
    for out in parse_and_clean(raws, frozenset(pages), counts):
        if isinstance(out, Reject):
            rejects.append(out)
        elif isinstance(out, Entry):
            assert out.url is not None, "only entries with a link wait for their page"
            waiting.setdefault(out.url, []).append(out)
        else:
            articles.append(out)
    for url in sorted(waiting):
        entries = waiting[url]
        for joined in join_page(url, entries, pages[url], min_chars):
            if isinstance(joined, Reject):
                counts[f"rejected.{STAGE}.{joined.reason}"] += 1
                rejects.append(joined)
                continue
            if all(joined is not e for e in entries):
                counts["article_pages.joined"] += 1
            cleaned = clean_or_reject(joined)
            counts[f"rejected.clean.{cleaned.reason}" if isinstance(cleaned, Reject) else "articles"] += 1
            (rejects if isinstance(cleaned, Reject) else articles).append(cleaned)
    return articles, rejects


def tag_all(
    tagger: Tagger, keep_topics: frozenset[str], articles: Iterable[Article], counts: Counter[str]
) -> tuple[list[Article], list[Reject]]:
    """Tagged articles, and the off-topic rejects when `keep_topics` asks."""
    tagged: list[Article] = []
    rejects: list[Reject] = []
    for article in articles:
        result = tag_article(tagger, keep_topics, article)
        if isinstance(result, Reject):
            counts["rejected.tag.off_topic"] += 1
            rejects.append(result)
        else:
            counts.update(f"topic.{t.id}" for t in result.topics)
            tagged.append(result)
    return tagged, rejects


def run_chain(
    raws: Sequence[RawFetch],
    deduplicate: Deduplicate,
    tagger: Tagger,
    keep_topics: Iterable[str],
    min_chars: int,
    counts: Counter[str] | None = None,
) -> dict[str, list[Any]]:
    """The four tables' records of a set of raw documents: articles, rejects, duplicates
    and dedup index entries."""
    counts = Counter() if counts is None else counts
    articles, rejects = parse_join_clean(raws, min_chars, counts)
    routed = list(deduplicate(articles))
    kept = [a for a in routed if isinstance(a, Article)]
    tagged, off_topic = tag_all(tagger, frozenset(keep_topics), kept, counts)
    return {
        "articles": tagged,
        "rejects": rejects + off_topic,
        "duplicates": [d for d in routed if isinstance(d, Duplicate)],
        "dedup_index": [e for e in routed if isinstance(e, IndexEntry)],
    }

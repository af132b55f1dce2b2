"""TagTopics: entities, topics and countries of each article; off-topic ones rejected
when `keep_topics` asks."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from pipeline.steps.common import count, split_by_type
from pipeline.tagging.tagger import Tagger
from pipeline.tagging.taxonomy import Taxonomy
from schemas.ids import sha256_hex, stable_id
from schemas.records import Article, Reject, TopicMatch

# --- tag -------------------------------------------------------------------


def off_topic_reject(article: Article, topics: tuple[TopicMatch, ...]) -> Reject:
    """The dead letter for an article outside the topics a lake keeps."""
    found = ",".join(t.id for t in topics) or "none"
    return Reject(
        reject_id=stable_id("reject", article.article_id, "tag", "off_topic"),
        stage="tag",
        reason="off_topic",
        error_type="OffTopic",
        retryable=False,
        source=article.source,
        origin=article.url or article.raw_id,
        payload_hash=article.content_hash,
        fetched_at=article.fetched_at,
        detail=f"article_id={article.article_id} topics={found}",
    )


def tag_article(tagger: Tagger, keep_topics: frozenset[str], article: Article) -> Article | Reject:
    """The article with its entities, topics and countries, or the off-topic Reject."""
    entities, topics, countries = tagger.tag(article.headline, article.text, article.language)
    if keep_topics and not keep_topics & {t.id for t in topics}:
        return off_topic_reject(article, topics)
    return dataclasses.replace(
        article,
        entities=entities,
        topics=topics,
        countries=countries,
        taxonomy_version=tagger.taxonomy.version,
    )


# Taggers built in this process, by taxonomy digest. Some runners unpickle and set up
# a DoFn for every bundle (the DaskRunner: every partition), and building a Tagger
# (folding every alias, then the automaton) costs more than tagging a bundle.
_TAGGERS: dict[str, Tagger] = {}
_TAGGERS_LOCK = threading.Lock()
_TAGGERS_KEPT = 4


def taxonomy_digest(taxonomy: Taxonomy) -> str:
    """A content hash of everything a Tagger is built from."""
    return sha256_hex(repr(taxonomy).encode())


def process_tagger(digest: str, taxonomy: Taxonomy) -> Tagger:
    """This process's Tagger for `taxonomy` (whose digest is `digest`), built once, ready."""
    with _TAGGERS_LOCK:
        tagger = _TAGGERS.get(digest)
        if tagger is None:
            tagger = Tagger(taxonomy)
            tagger.find("")  # builds the automaton here, under the lock, not in a race
            while len(_TAGGERS) >= _TAGGERS_KEPT:
                del _TAGGERS[next(iter(_TAGGERS))]
            _TAGGERS[digest] = tagger
        return tagger


class TagDoFn(beam.DoFn):
    """Pickled with its taxonomy, not its Tagger: the Tagger comes from the process cache."""

    def __init__(self, tagger: Tagger, keep_topics: tuple[str, ...]) -> None:
        self.taxonomy, self.digest = tagger.taxonomy, taxonomy_digest(tagger.taxonomy)
        self.keep_topics = frozenset(keep_topics)
        self.tagger: Tagger | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "tagger": None}

    def setup(self) -> None:
        self.tagger = process_tagger(self.digest, self.taxonomy)

    def process(self, article: Article) -> Iterator[Article | Reject]:
        assert self.tagger is not None, "set up before processing"
        result = tag_article(self.tagger, self.keep_topics, article)
        if isinstance(result, Reject):
            count("rejected.tag.off_topic")
        else:
            for topic in result.topics:
                count(f"topic.{topic.id}")
        yield result


class TagTopics(beam.PTransform):
    """Article -> Article with entities, topics, countries and the taxonomy version.

    With `keep_topics`, an article matching none of them becomes a Reject
    (`off_topic`): {"articles": ..., "rejects": ...}.
    """

    def __init__(self, tagger: Tagger, keep_topics: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.tagger, self.keep_topics = tagger, keep_topics

    def expand(self, articles: beam.PCollection) -> dict[str, beam.PCollection]:
        tagged = articles | "Tag" >> beam.ParDo(TagDoFn(self.tagger, self.keep_topics))
        return split_by_type(tagged, "Tagged", articles=Article, rejects=Reject)

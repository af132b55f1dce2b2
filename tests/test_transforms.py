"""Each Beam step on its own: TestPipeline + assert_that, dead-letter outputs included."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.dedup.near import NearDupSettings
from pipeline.lake.files import stage_partition
from pipeline.lake.store import Lake
from pipeline.steps.clean import clean_entry
from pipeline.steps.deduplicate import DeduplicateArticles
from pipeline.steps.parse import CleanArticles, ParseEntries
from pipeline.steps.tag import TagDoFn, TagTopics
from pipeline.tagging.tagger import Tagger, load_taxonomy
from schemas.records import Article, Entry, IndexEntry, RawFetch

T0 = datetime(2024, 6, 19, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def pipeline() -> TestPipeline:
    return TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))


def raw(name: str, body: bytes | None, **kw: object) -> RawFetch:
    fields = dict(
        raw_id=f"raw-{name}",
        source=f"seeds/{name}",
        source_kind="seed",
        origin=name,
        fetched_at=T0,
        status="ok" if body is not None else "error",
        body=body,
    )
    fields.update(kw)
    return RawFetch(**fields)  # type: ignore[arg-type]


def entry(title: str, text: str, url: str | None = None, **kw: object) -> Entry:
    fields = dict(
        raw_id="raw-1", source="wire", source_kind="feed", origin="http://127.0.0.1/feed",
        fetched_at=T0, position=0, title=title, url=url, text=text,
    )  # fmt: skip
    fields.update(kw)
    return Entry(**fields)  # type: ignore[arg-type]


def article(title: str, text: str, url: str | None = None, **kw: object) -> Article:
    kw.setdefault("raw_id", f"raw-{kw.get('source', 'wire')}")  # each source is its own raw document
    result = clean_entry(entry(title, text, url, **kw))
    assert isinstance(result, Article)
    return result


def test_parse_entries_routes_entries_and_dead_letters() -> None:
    raws = [
        raw("a.txt", b"Title A\nBody of A."),
        raw("b.jsonl", b'{"title": "B", "text": "Body B"}\nnot json\n'),
        raw("gone.txt", None, error="unreadable: FileNotFoundError: gone", error_kind="permanent"),
        raw(
            "feed",
            None,
            source_kind="feed",
            source="wire",
            error="timeout: ReadTimeout",
            error_kind="retryable",
        ),
    ]
    with pipeline() as p:
        out = p | beam.Create(raws) | ParseEntries()
        assert_that(
            out["entries"] | "Titles" >> beam.Map(lambda e: (e.source, e.title)),
            equal_to([("seeds/a.txt", "Title A"), ("seeds/b.jsonl", "B")]),
            label="entries",
        )
        assert_that(
            out["rejects"] | "Reasons" >> beam.Map(lambda r: (r.source, r.stage, r.reason, r.retryable)),
            equal_to(
                [
                    ("seeds/b.jsonl", "parse", "bad_json", False),
                    ("seeds/gone.txt", "read", "unreadable", False),
                    ("wire", "fetch", "timeout", True),
                ]
            ),
            label="rejects",
        )


def test_clean_articles_cleans_and_rejects_empty_entries() -> None:
    entries = [
        entry("<b>Putin</b> in Pyongyang", "<p>One.</p><script>x()</script><p>> Read more: elsewhere</p>"),
        entry("", "   ", url="https://example.com/empty"),
    ]
    with pipeline() as p:
        out = p | beam.Create(entries) | CleanArticles()
        assert_that(
            out["articles"] | beam.Map(lambda a: (a.title, a.text)),
            equal_to([("Putin in Pyongyang", "One.")]),
            label="articles",
        )
        assert_that(
            out["rejects"] | beam.Map(lambda r: (r.stage, r.reason)),
            equal_to([("clean", "empty_article")]),
            label="rejects",
        )


def _indexed(tmp_path: Path, articles: list[Article]) -> list[str]:
    """A lake whose index holds `articles`, as an earlier run leaves it; returns the index files."""
    out = tmp_path / "lake"
    entries = [
        IndexEntry(a.article_id, a.content_hash, a.fetched_at, a.published_at, None, "", a.partition_date)
        for a in articles
    ]
    staged = stage_partition(str(out), "r" * 32, "dedup_index", "2024-06-19", entries)
    Lake(out).commit("r" * 32, [], [staged])
    return [str(p) for p in Lake(out).committed_files("dedup_index")]


def test_deduplicate_within_run_and_against_the_lake(tmp_path: Path) -> None:
    old = article("Old story", "Already in the lake.", "https://example.com/old")
    index = _indexed(tmp_path, [old])
    first = article("Treaty", "Signed today.", "https://example.com/t", fetched_at=T0)
    later_copy = article(
        "Treaty", "Signed today.", "http://www.example.com/t?utm_source=x", source="b", fetched_at=T0 + HOUR
    )
    mirror = article(
        "Treaty", "Signed  today.", "https://mirror.example.net/t", source="c", fetched_at=T0 + HOUR
    )
    again = article("Old story", "Already in the lake, edited.", "https://example.com/old", source="d")
    fresh = article("Fresh", "Nothing like it.", None)
    inputs = [first, later_copy, mirror, again, fresh]
    random.Random(7).shuffle(inputs)
    with pipeline() as p:
        out_pcolls = p | beam.Create(inputs) | DeduplicateArticles(index, 7, NearDupSettings())
        assert_that(
            out_pcolls["articles"] | beam.Map(lambda a: a.title),
            equal_to(["Treaty", "Fresh"]),
            label="survivors",
        )
        assert_that(
            out_pcolls["duplicates"] | beam.Map(lambda d: (d.source, d.reason, d.duplicate_of)),
            equal_to(
                [
                    ("b", "same_url", first.article_id),
                    ("c", "same_content", first.article_id),
                    ("d", "revised", old.article_id),
                ]
            ),
            label="duplicates",
        )


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger(load_taxonomy())


def test_tag_topics_adds_entities_topics_and_version(tagger: Tagger) -> None:
    a = article(
        "Шойгу прибыл в Пхеньян",
        "Министр обороны России Сергей Шойгу провёл переговоры с Ким Чен Ыном в Пхеньяне.",
    )
    with pipeline() as p:
        tagged = p | beam.Create([a]) | TagTopics(tagger)
        assert_that(tagged["rejects"], equal_to([]), label="NoRejects")
        assert_that(
            tagged["articles"]
            | beam.Map(
                lambda t: (
                    sorted(e.id for e in t.entities),
                    [x.id for x in t.topics if x.id == "nk-russia"],
                    t.countries,
                    t.taxonomy_version,
                )
            ),
            equal_to(
                [
                    (
                        ["kim-jong-un", "pyongyang", "russia", "sergei-shoigu"],
                        ["nk-russia"],
                        ("KP", "RU"),
                        tagger.taxonomy.version,
                    )
                ]
            ),
        )


def test_tag_topics_keeps_only_wanted_topics_and_rejects_the_rest(tagger: Tagger) -> None:
    on_topic = article(
        "Шойгу прибыл в Пхеньян",
        "Министр обороны России Сергей Шойгу провёл переговоры с Ким Чен Ыном в Пхеньяне.",
    )
    off_topic = article("Weather", "Rain is expected in Lyon on Sunday, with a cold front.")
    with pipeline() as p:
        tagged = p | beam.Create([on_topic, off_topic]) | TagTopics(tagger, ("nk-russia", "nk-cyber"))
        assert_that(
            tagged["articles"] | "Ids" >> beam.Map(lambda t: t.article_id),
            equal_to([on_topic.article_id]),
            label="Kept",
        )
        assert_that(
            tagged["rejects"] | "Reasons" >> beam.Map(lambda r: (r.stage, r.reason, r.detail)),
            equal_to([("tag", "off_topic", f"article_id={off_topic.article_id} topics=none")]),
            label="Rejected",
        )


def test_tag_dofn_travels_without_its_tagger_and_shares_one_per_taxonomy(tagger: Tagger) -> None:
    # A runner that unpickles the DoFn for every bundle must not rebuild the automaton each time.
    fn = pickler.dumps(TagDoFn(tagger, ()))
    first, second = pickler.loads(fn), pickler.loads(fn)
    assert first.tagger is None  # what travels is the taxonomy
    first.setup()
    second.setup()
    assert first.tagger is second.tagger
    assert first.tagger is not None and first.tagger.taxonomy == tagger.taxonomy

    revised = dataclasses.replace(tagger.taxonomy, version="revised", topics=tagger.taxonomy.topics[:1])
    other = pickler.loads(pickler.dumps(TagDoFn(Tagger(revised), ())))
    other.setup()
    assert other.tagger is not first.tagger
    assert other.tagger is not None and [t.id for t in other.tagger.taxonomy.topics] == [
        tagger.taxonomy.topics[0].id
    ]


def test_parse_and_clean_hostile_feeds_route_problems_to_dead_letters() -> None:
    feeds = Path(__file__).resolve().parent / "fixtures" / "feeds"
    raws = [
        raw(
            name,
            (feeds / f"{name}.xml").read_bytes(),
            source_kind="feed",
            source=name,
            origin="https://h.example/f",
        )
        for name in ("billion_laughs", "truncated", "links_dates_guids")
    ]
    with pipeline() as p:
        parsed = p | beam.Create(raws) | ParseEntries()
        cleaned = parsed["entries"] | CleanArticles()
        assert_that(
            parsed["rejects"] | "Reasons" >> beam.Map(lambda r: (r.source, r.reason)),
            equal_to(
                [
                    ("billion_laughs", "dtd_internal_subset"),
                    ("truncated", "malformed_feed_partial"),
                    ("truncated", "truncated_entry"),
                    ("links_dates_guids", "duplicate_guid"),
                    *[("links_dates_guids", "unsafe_link")] * 4,
                    *[("links_dates_guids", "implausible_date")] * 2,
                ]
            ),
            label="parse rejects",
        )
        assert_that(
            cleaned["articles"] | "Sources" >> beam.Map(lambda a: a.source),
            equal_to(["billion_laughs", "truncated", *["links_dates_guids"] * 8]),
            label="articles",
        )


def test_commit_run_commits_every_staged_file_and_a_run_that_staged_nothing(tmp_path: Path) -> None:
    from pipeline.steps.commit import CommitRun, StageTable
    from tests.factories import make_article

    articles = [make_article(url=f"https://n.example/{n}", title=f"Story {n}", position=n) for n in range(3)]
    for run_id, records in (("a" * 32, articles), ("b" * 32, [])):
        with TestPipeline(options=PipelineOptions(["--runner", "FnApiRunner"])) as p:
            staged = (
                p
                | f"Create{run_id[0]}" >> beam.Create(records, reshuffle=False)
                | StageTable("articles", str(tmp_path), run_id),
                p
                | "NoRejects" >> beam.Create([])
                | "StageRejects" >> StageTable("rejects", str(tmp_path), run_id),
            )
            committed = staged | CommitRun(str(tmp_path), run_id, [f"batch-{run_id[0]}"])
            assert_that(committed, equal_to([run_id]))
    manifests = Lake(tmp_path).manifests_by_id()
    assert {f["table"] for f in manifests["a" * 32]["files"]} == {"articles"}
    assert manifests["a" * 32]["stats"]["rows"]["articles"] == 3
    assert manifests["b" * 32]["files"] == [] and manifests["b" * 32]["raw_batches"] == ["batch-b"]

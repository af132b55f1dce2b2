"""ParseAndClean (parse and clean fused over batches of raw documents) gives what
ParseEntries then CleanArticles give: the same articles, the same dead letters, the
same counters; and ReadRawBatches reads every fetch once, in batches."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from connectors.articles import PAGE_KIND, ArticleSettings
from connectors.seeds import read_seed_dir
from pipeline.lake.store import Lake
from pipeline.steps.pages import JoinArticlePages
from pipeline.steps.parse import CleanArticles, ParseAndClean, ParseEntries, clean_or_reject, parse_raw
from pipeline.steps.read import RAW_GROUPS, ReadRawBatches, one_per_fetch, raw_group
from schemas.records import Article, Entry, RawFetch, Reject
from tests.conftest import FIXTURES, ROOT

T0 = datetime(2024, 6, 21, 12, 0, tzinfo=timezone.utc)
FEEDS = FIXTURES / "feeds"


def pipeline() -> TestPipeline:
    return TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))


def feed_raw(path: Path, **kw: Any) -> RawFetch:
    fields: dict[str, Any] = dict(
        raw_id=f"feed-{path.name}",
        source=path.stem,
        source_kind="feed",
        origin=f"https://{path.stem.replace('_', '-')}.example/feed",
        fetched_at=T0,
        status="ok",
        http_status=200,
        content_type="application/xml",
        body=path.read_bytes(),
    )
    fields.update(kw)
    return RawFetch(**fields)


@pytest.fixture(scope="module")
def raws(tmp_path_factory: pytest.TempPathFactory) -> list[RawFetch]:
    """Every fixture feed as a fetched feed, every fixture seed as a seed, and failures."""
    seeds = tmp_path_factory.mktemp("seeds")
    for path in (ROOT / "seeds").iterdir():
        shutil.copyfile(path, seeds / path.name)
    shutil.copyfile(FIXTURES / "near_duplicates.jsonl", seeds / "near.jsonl")
    for path in (FIXTURES / "jsonfeed").iterdir():
        shutil.copyfile(path, seeds / f"jsonfeed-{path.name}")
    (seeds / "broken.jsonl").write_text(
        '{"title": "B", "text": "Body B"}\nnot json\n{"title": ""}\n'
        '{"title": " ", "text": "<p> </p>", "url": "https://x.example/empty"}\n'  # cleaned to nothing
    )
    (seeds / "empty.txt").write_text("   \n")
    (seeds / "big.txt").write_text("x" * 300_000)  # over seeds_max_bytes: a read reject
    feeds = [feed_raw(p) for p in sorted(FEEDS.iterdir()) if p.suffix in (".xml", ".html")]
    failed = feed_raw(
        FEEDS / "rss2.xml", raw_id="feed-down", status="error", body=None, error="timeout: ReadTimeout",
        error_kind="retryable",
    )  # fmt: skip
    return [*feeds, failed, *read_seed_dir(seeds, T0, max_bytes=200_000)]


def in_batches(records: list[RawFetch], size: int) -> list[list[RawFetch]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


def matches(name: str, separate: beam.PCollection, fused: beam.PCollection) -> beam.PCollection:
    """(record, times in `separate`, times in `fused`) for every record the two differ on."""

    def differ(kv: tuple[str, dict[str, Iterable[Any]]]) -> list[tuple[str, int, int]]:
        a, b = len(list(kv[1]["separate"])), len(list(kv[1]["fused"]))
        return [] if a == b else [(kv[0], a, b)]

    return (
        {
            "separate": separate | f"{name}KeySeparate" >> beam.Map(lambda r: (repr(r), r)),
            "fused": fused | f"{name}KeyFused" >> beam.Map(lambda r: (repr(r), r)),
        }
        | f"{name}Join" >> beam.CoGroupByKey()
        | f"{name}Differ" >> beam.FlatMap(differ)
    )


def expected(raws: list[RawFetch]) -> tuple[list[Article], list[Reject]]:
    """What the stage functions give, without Beam."""
    articles, rejects = [], []
    for out in (o for r in raws for o in parse_raw(r)):
        result = out if isinstance(out, Reject) else clean_or_reject(out)
        (rejects if isinstance(result, Reject) else articles).append(result)
    return articles, rejects


@pytest.mark.parametrize("batch_size", [1, 4, 1000])
def test_parse_and_clean_gives_what_parse_entries_then_clean_articles_give(
    raws: list[RawFetch], batch_size: int
) -> None:
    articles, rejects = expected(raws)
    assert len(articles) > 20 and {r.stage for r in rejects} == {"fetch", "read", "parse", "clean"}
    with pipeline() as p:
        parsed = p | "Raws" >> beam.Create(raws) | ParseEntries()
        cleaned = parsed["entries"] | CleanArticles()
        separate_rejects = (parsed["rejects"], cleaned["rejects"]) | "SeparateRejects" >> beam.Flatten()
        fused = p | "Batches" >> beam.Create(in_batches(raws, batch_size)) | ParseAndClean()
        assert set(fused) == {"articles", "rejects"}
        assert_that(
            matches("Articles", cleaned["articles"], fused["articles"]), equal_to([]), label="Articles"
        )
        assert_that(matches("Rejects", separate_rejects, fused["rejects"]), equal_to([]), label="Rejects")
        assert_that(
            fused["articles"] | "ArticleIds" >> beam.Map(lambda a: (type(a), a.article_id)),
            equal_to([(Article, a.article_id) for a in articles]),
            label="FusedArticles",
        )
        assert_that(
            fused["rejects"] | "RejectIds" >> beam.Map(lambda r: (type(r), r.stage, r.reason, r.reject_id)),
            equal_to([(Reject, r.stage, r.reason, r.reject_id) for r in rejects]),
            label="FusedRejects",
        )


def _pages(entries: list[Entry]) -> tuple[list[RawFetch], frozenset[str]]:
    """A good page, a page without text and a failed fetch for three entries' links, and
    a page for a link no entry has."""
    good = (FIXTURES / "articles" / "good.html").read_bytes()
    no_text = (FIXTURES / "articles" / "no_text.html").read_bytes()
    urls = sorted({e.url for e in entries if e.url})[:3]
    assert len(urls) == 3
    page: dict[str, Any] = dict(source="wire", source_kind=PAGE_KIND, fetched_at=T0, content_type="text/html")
    pages = [
        RawFetch(raw_id="page-good", origin=urls[0], status="ok", http_status=200, body=good, **page),
        RawFetch(raw_id="page-empty", origin=urls[1], status="ok", http_status=200, body=no_text, **page),
        RawFetch(
            raw_id="page-down",
            origin=urls[2],
            status="error",
            error="http_503: Service Unavailable",
            error_kind="retryable",
            **page,
        ),  # fmt: skip
        RawFetch(raw_id="page-alone", origin="https://nowhere.example/x", status="ok", body=good, **page),
    ]
    return pages, frozenset(p.origin for p in pages)


def test_entries_with_a_landed_page_leave_uncleaned_and_the_join_gives_the_same_lake(
    raws: list[RawFetch],
) -> None:
    entries = [o for r in raws for o in parse_raw(r) if isinstance(o, Entry)]
    pages, page_urls = _pages(entries)
    settings = ArticleSettings()
    with_page = sorted(e.raw_id + str(e.position) for e in entries if e.url in page_urls)
    assert len(with_page) >= 3
    everything = [*raws, *pages]
    with pipeline() as p:
        # As the graph was: ParseEntries -> JoinArticlePages -> CleanArticles.
        documents = p | "Raws" >> beam.Create([r for r in everything if r.source_kind != PAGE_KIND])
        page_records = p | "Pages" >> beam.Create(pages)
        parsed = documents | "Parse" >> ParseEntries()
        joined = (parsed["entries"], page_records) | "Join" >> JoinArticlePages(page_urls, settings)
        cleaned = joined["entries"] | "Clean" >> CleanArticles()
        separate_rejects = (
            parsed["rejects"],
            joined["rejects"],
            cleaned["rejects"],
        ) | "SeparateRejects" >> beam.Flatten()
        # As the graph is: ParseAndClean over batches (pages in them), then the join.
        batches = p | "Batches" >> beam.Create(in_batches(everything, 5))
        fused = batches | "Fused" >> ParseAndClean(page_urls)
        assert_that(
            fused["entries"] | "ToJoin" >> beam.Map(lambda e: (type(e), e.raw_id + str(e.position))),
            equal_to([(Entry, k) for k in with_page]),
            label="EntriesToJoin",
        )
        batch_pages = batches | "BatchPages" >> beam.FlatMap(
            lambda b: [r for r in b if r.source_kind == PAGE_KIND]
        )
        fused_joined = (fused["entries"], batch_pages) | "FusedJoin" >> JoinArticlePages(page_urls, settings)
        fused_cleaned = fused_joined["entries"] | "FusedClean" >> CleanArticles()
        fused_articles = (fused["articles"], fused_cleaned["articles"]) | "FusedArticles" >> beam.Flatten()
        fused_rejects = (
            fused["rejects"],
            fused_joined["rejects"],
            fused_cleaned["rejects"],
        ) | "FusedRejects" >> beam.Flatten()
        assert_that(matches("Articles", cleaned["articles"], fused_articles), equal_to([]), label="Articles")
        assert_that(matches("Rejects", separate_rejects, fused_rejects), equal_to([]), label="Rejects")
        assert_that(
            fused_rejects
            | "ArticleReasons" >> beam.FlatMap(lambda r: [r.reason] if r.stage == "article" else []),
            equal_to(["http_503", "extraction_failed"]),
            label="PageRejects",
        )


def _counters(result: Any) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for counter in result.metrics().query(MetricsFilter().with_namespace("newsbeam"))["counters"]:
        totals[counter.key.metric.name] += counter.committed
    return dict(totals)


def test_parse_and_clean_counts_what_the_two_steps_count(raws: list[RawFetch]) -> None:
    separate = pipeline()
    parsed = separate | beam.Create(raws) | ParseEntries()
    _ = parsed["entries"] | CleanArticles()
    separate_result = separate.run()
    separate_result.wait_until_finish()

    fused = pipeline()
    _ = fused | beam.Create(in_batches(raws, 3)) | ParseAndClean()
    fused_result = fused.run()
    fused_result.wait_until_finish()

    counts = _counters(separate_result)
    articles, rejects = expected(raws)
    assert counts["articles"] == len(articles)
    assert sum(n for name, n in counts.items() if name.startswith("rejected.")) == len(rejects)
    assert _counters(fused_result) == counts


def test_one_per_fetch_keeps_one_copy_whatever_the_order() -> None:
    a = feed_raw(FEEDS / "rss2.xml")
    b = feed_raw(FEEDS / "atom.xml")
    differs = feed_raw(FEEDS / "rss2.xml", etag='"other"')  # same fetch, landed with another header
    first = one_per_fetch([a, b, a, differs])
    assert [r.raw_id for r in first] == sorted([a.raw_id, b.raw_id])
    assert one_per_fetch([differs, a, b, a]) == first == one_per_fetch([b, differs, a])


def test_read_raw_batches_reads_every_fetch_once_in_batches(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    docs = [feed_raw(p) for p in sorted(FEEDS.glob("*.xml"))]
    page = RawFetch(
        raw_id="page-1", source="wire", source_kind=PAGE_KIND, origin="https://wire.example.org/p",
        fetched_at=T0, status="ok", body=b"<html></html>",
    )  # fmt: skip
    # A run that died after landing, and the next one landing the same fetches again.
    lake.land_raw([*docs[:10], page], datetime(2024, 6, 21, tzinfo=timezone.utc))
    lake.land_raw(docs, datetime(2024, 6, 22, tzinfo=timezone.utc))
    files = [str(p) for p in lake.raw_batches().values()]
    assert len(files) == 2
    with pipeline() as p:
        batches = p | ReadRawBatches(files)
        assert_that(
            batches | "Ids" >> beam.FlatMap(lambda b: [r.raw_id for r in b]),
            equal_to([*(d.raw_id for d in docs), page.raw_id]),
            label="EachOnce",
        )
        assert_that(
            batches | "Lists" >> beam.Map(lambda b: isinstance(b, list) and len(b) > 0),
            equal_to([True] * _groups([*docs, page])),
            label="Batches",
        )


def _groups(records: list[RawFetch]) -> int:
    """How many batches the records make: one per group that holds any."""
    groups = {raw_group(r) for r in records}
    assert len(groups) <= RAW_GROUPS
    return len(groups)

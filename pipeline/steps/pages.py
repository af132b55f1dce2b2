"""Article pages: fetched by the driver and landed as raw data, joined to their entries here.

Driver side (`fetch_new_pages`, `landed_page_urls`): which pages to fetch this
run, and which landed pages the run's graph must join. A news sitemap's entries
have no text of their own, so a sitemap's pages are fetched whether or not its
feed sets `fetch_articles`. Graph side (`JoinArticlePages`): entries whose link
has a landed page get the page's main text (and its date when the feed gave
none); when the page could not be fetched or its text not extracted, the entry
keeps its teaser (a sitemap entry: its headline) and a reject row (stage
`article`) says why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.articles import (
    PAGE_KIND,
    ArticleSettings,
    ExtractedPage,
    extract_article,
    fetch_pages,
    load_fetched_pages,
    new_page_requests,
    page_error,
    page_key,
    save_fetched_pages,
    worth_remembering,
)
from connectors.errors import RETRYABLE, Problem
from connectors.feeds import sitemap_kind
from connectors.fetch import HttpSettings
from connectors.http import FetchOutcome, per_document
from pipeline.lake.store import Lake
from pipeline.steps.clean import clean_title, fold_text, html_to_text, normalize_text
from pipeline.steps.common import count
from schemas.ids import sha256_hex, stable_id
from schemas.records import Entry, RawFetch, Reject

STAGE = "article"
PAGES_STATE = "article_pages.json"  # under _state/: pages fetched by committed runs

# --- driver ---------------------------------------------------------------


@dataclass(frozen=True)
class LandedPages:
    """The article pages in a set of landed raw batches."""

    urls: frozenset[str] = frozenset()  # entry links with a page: what the graph joins
    to_remember: tuple[tuple[str, datetime], ...] = ()  # (link, fetched_at), once committed


def landed_pages(batch_files: Iterable[str | Path]) -> LandedPages:
    """The article pages of landed raw batch files (read without their bodies)."""
    rows: list[dict[str, Any]] = []
    for path in batch_files:
        table = pq.read_table(path, columns=["source_kind", "origin", "status", "error_kind", "fetched_at"])
        rows += table.filter(pc.equal(table["source_kind"], PAGE_KIND)).to_pylist()
    return _pages(rows)


def pages_to_remember(raws: Iterable[RawFetch]) -> LandedPages:
    """The article pages among raw documents held in memory (a streaming pane's)."""
    fields = ("origin", "status", "error_kind", "fetched_at")
    return _pages([{f: getattr(r, f) for f in fields} for r in raws if r.source_kind == PAGE_KIND])


def _pages(rows: list[dict[str, Any]]) -> LandedPages:
    urls = {row["origin"] for row in rows}
    remember = [
        (row["origin"], row["fetched_at"])
        for row in rows
        if worth_remembering(row["status"], row["error_kind"])
    ]
    return LandedPages(frozenset(urls), tuple(sorted(remember)))


def remember_pages(
    lake: Lake, pages: LandedPages, clock: Callable[[], datetime], settings: ArticleSettings
) -> None:
    """After the commit: the pages the committed run processed are not fetched again."""
    if pages.to_remember:
        save_fetched_pages(lake.state_path(PAGES_STATE), pages.to_remember, clock(), settings.remember_days)


def wants_pages(outcome: FetchOutcome) -> FetchOutcome:
    """The outcome, as a feed with `fetch_articles` when its document is a news sitemap:
    a sitemap entry has only a headline, its page is its text."""
    raw = outcome.raw
    if outcome.source.fetch_articles or raw is None or raw.status != "ok" or not raw.body:
        return outcome
    if sitemap_kind(raw.body, raw.content_type) != "urlset":
        return outcome
    return dataclasses.replace(outcome, source=dataclasses.replace(outcome.source, fetch_articles=True))


def fetch_new_pages(
    outcomes: list[FetchOutcome],
    settings: ArticleSettings,
    http: HttpSettings,
    lake: Lake,
    clock: Callable[[], datetime],
    on_done: Callable[[int, int], None] | None = None,
) -> list[RawFetch]:
    """Pages of the new entries of changed feeds with `fetch_articles`, and of changed news
    sitemaps, at most `max_per_run`.

    Pages fetched by a committed run, or landed by a run that did not commit
    yet, are not fetched again.
    """
    outcomes = [wants_pages(o) for o in per_document(outcomes)]
    if not any(o.source.fetch_articles and o.raw is not None for o in outcomes):
        return []
    seen = set(load_fetched_pages(lake.state_path(PAGES_STATE)))
    seen.update(page_key(u) for u in landed_pages(lake.pending_raw_batches().values()).urls)
    requests = new_page_requests(outcomes, seen)
    fetched = fetch_pages(requests[: settings.max_per_run], settings, http, clock, on_done=on_done)
    # Over the cap: landed as retryable skips, so each kept teaser says why.
    detail = f"more than max_per_run = {settings.max_per_run} new pages in this run"
    return fetched + [
        page_error(r, clock(), "skipped", detail, RETRYABLE) for r in requests[settings.max_per_run :]
    ]


# --- graph ----------------------------------------------------------------


def _page_order(page: RawFetch) -> tuple[Any, ...]:
    # Several landed pages for one link (a crashed run's and a later one's): the same one wins
    # whatever order they arrive in.
    return (page.status != "ok", page.fetched_at, page.raw_id)


def _teaser_length(entry: Entry) -> int:
    teaser = entry.text if entry.text is not None else html_to_text(entry.html or "")
    return len(normalize_text(teaser))


def article_reject(entry: Entry, page: RawFetch, problem: Problem) -> Reject:
    return Reject(
        reject_id=stable_id("reject", page.raw_id, entry.raw_id, str(entry.position), STAGE, problem.reason),
        stage=STAGE,
        reason=problem.reason,
        error_type="FetchError" if page.status != "ok" else "ExtractionError",
        retryable=problem.retryable,
        source=entry.source,
        origin=page.origin,
        payload_hash=sha256_hex(page.body or b""),
        fetched_at=entry.fetched_at,
        detail=f"{problem.detail}; the article keeps the feed's teaser",
    )


def without_headline(text: str, title: str) -> str:
    """The text without a first line repeating the headline (extractors keep the page's <h1>)."""
    first, _, rest = text.partition("\n")
    same = " ".join(fold_text(first).split()) == " ".join(fold_text(clean_title(title)).split())
    return rest.lstrip("\n") if same and rest.strip() else text


def page_problem(page: RawFetch) -> Problem | None:
    if page.status == "ok" and page.body is not None:
        return None
    reason, _, detail = (page.error or "error").partition(":")
    return Problem(reason.strip() or "error", detail.strip() or reason, page.error_kind == "retryable")


def join_page(
    url: str, entries: list[Entry], pages: list[RawFetch], min_chars: int
) -> Iterator[Entry | Reject]:
    """Entries of one link with its page's text, or unchanged plus a reject saying why."""
    if not pages:
        yield from entries
        return
    page = min(pages, key=_page_order)
    problem = page_problem(page)
    extracted: ExtractedPage | Problem | None = problem
    if problem is None:
        assert page.body is not None
        want_date = any(e.published_at is None and not e.published for e in entries)
        extracted = extract_article(page.body, url, page.fetched_at, min_chars, want_date)
    for entry in sorted(entries, key=lambda e: (e.raw_id, e.position)):
        result = extracted
        if isinstance(result, ExtractedPage) and len(result.text) < _teaser_length(entry):
            result = Problem(
                "extraction_shorter",
                f"extracted {len(result.text)} characters, fewer than the feed's teaser",
            )
        if isinstance(result, ExtractedPage):
            dated = entry.published_at is not None or bool(entry.published)
            yield dataclasses.replace(
                entry,
                text=without_headline(result.text, entry.title),
                published=entry.published if dated else result.published,
            )
        else:
            assert result is not None
            yield article_reject(entry, page, result)
            yield entry


class _JoinDoFn(beam.DoFn):
    def __init__(self, min_chars: int) -> None:
        self.min_chars = min_chars

    def process(self, kv: tuple[str, dict[str, Iterable[Any]]]) -> Iterator[Entry | Reject]:
        url, groups = kv
        entries, pages = list(groups["entries"]), list(groups["pages"])
        for out in join_page(url, entries, pages, self.min_chars):
            if isinstance(out, Reject):
                count(f"rejected.{STAGE}.{out.reason}")
            elif all(out is not e for e in entries):
                count("article_pages.joined")
            yield out


class JoinArticlePages(beam.PTransform):
    """(entries, article-page RawFetches) -> {"entries": Entry, "rejects": Reject}.

    Only entries whose link has a landed page are shuffled; the others pass by.
    """

    def __init__(self, page_urls: frozenset[str], settings: ArticleSettings) -> None:
        super().__init__()
        self.page_urls, self.min_chars = page_urls, settings.min_chars

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> dict[str, beam.PCollection]:
        entries, pages = inputs
        urls = self.page_urls
        with_page = entries | "WithPage" >> beam.Filter(lambda e: e.url is not None and e.url in urls)
        without = entries | "WithoutPage" >> beam.Filter(lambda e: e.url is None or e.url not in urls)
        joined = (
            {
                "entries": with_page | "KeyEntries" >> beam.Map(lambda e: (e.url, e)),
                "pages": pages | "KeyPages" >> beam.Map(lambda p: (p.origin, p)),
            }
            | "GroupByLink" >> beam.CoGroupByKey()
            | "Join" >> beam.ParDo(_JoinDoFn(self.min_chars))
        )
        rejects = joined | "JoinRejects" >> beam.Filter(lambda r: isinstance(r, Reject))
        joined_entries = joined | "JoinEntries" >> beam.Filter(lambda r: isinstance(r, Entry))
        return {
            "entries": (joined_entries, without) | "AllEntries" >> beam.Flatten(),
            "rejects": rejects,
        }

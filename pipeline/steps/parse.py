"""ParseEntries, CleanArticles and the fused ParseAndClean: raw documents -> entries ->
articles, or rejects with a reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from connectors.articles import PAGE_KIND
from connectors.feeds import ParseResult, parse_feed_bytes
from connectors.seeds import parse_seed
from pipeline.steps.clean import clean_entry, make_reject
from pipeline.steps.common import NAMESPACE, count, split_by_type
from schemas.ids import sha256_hex, stable_id
from schemas.records import Article, Entry, RawFetch, Reject

# --- parse -----------------------------------------------------------------


def raw_reject(raw: RawFetch, stage: str, reason: str, detail: str, retryable: bool) -> Reject:
    return Reject(
        reject_id=stable_id("reject", raw.raw_id, stage, reason, detail),
        stage=stage,
        reason=reason,
        error_type="FetchError" if stage == "fetch" else "ParseError",
        retryable=retryable,
        source=raw.source,
        origin=raw.origin,
        payload_hash=sha256_hex(raw.body or b""),
        fetched_at=raw.fetched_at,
        detail=detail,
    )


def parse_raw(raw: RawFetch) -> Iterator[Entry | Reject]:
    """Entries of one raw document, and a Reject for each failure or flagged problem."""
    if raw.status != "ok" or raw.body is None:
        stage = "fetch" if raw.source_kind == "feed" else "read"
        reason = (raw.error or "error").split(":", 1)[0].strip() or "error"
        yield raw_reject(raw, stage, reason, raw.error or "", raw.error_kind == "retryable")
        return
    try:
        result: ParseResult = (
            parse_seed(raw) if raw.source_kind == "seed" else parse_feed_bytes(raw, raw.body)
        )
    except Exception as exc:  # a parser bug must cost one document, not the run
        result = ParseResult(problems=[])
        yield raw_reject(raw, "parse", "parser_error", f"{type(exc).__name__}: {exc}"[:500], False)
    for problem in result.problems:
        detail = problem.detail if problem.position is None else f"item {problem.position}: {problem.detail}"
        yield raw_reject(raw, "parse", problem.reason, detail, problem.retryable)
    yield from result.entries


class _ParseDoFn(beam.DoFn):
    def process(self, raw: RawFetch) -> Iterator[Any]:
        for out in parse_raw(raw):
            if isinstance(out, Reject):
                count(f"rejected.{out.stage}.{out.reason}")
            else:
                count("entries")
            yield out


class ParseEntries(beam.PTransform):
    """RawFetch -> {"entries": Entry, "rejects": Reject}."""

    def expand(self, raws: beam.PCollection) -> dict[str, beam.PCollection]:
        parsed = raws | "Parse" >> beam.ParDo(_ParseDoFn())
        return split_by_type(parsed, "Parsed", entries=Entry, rejects=Reject)


# --- clean -----------------------------------------------------------------


def clean_or_reject(entry: Entry) -> Article | Reject:
    """The cleaned article, or the Reject saying why not (a cleaner bug included)."""
    try:
        return clean_entry(entry)
    except Exception as exc:  # one bad entry must not fail the run
        return make_reject(
            entry, "clean", "cleaner_error", f"{type(exc).__name__}: {exc}"[:500], type(exc).__name__
        )


class _CleanDoFn(beam.DoFn):
    def process(self, entry: Entry) -> Iterator[Any]:
        result = clean_or_reject(entry)
        count(f"rejected.clean.{result.reason}" if isinstance(result, Reject) else "articles")
        yield result


class CleanArticles(beam.PTransform):
    """Entry -> {"articles": Article (untagged), "rejects": Reject}."""

    def expand(self, entries: beam.PCollection) -> dict[str, beam.PCollection]:
        cleaned = entries | "Clean" >> beam.ParDo(_CleanDoFn())
        return split_by_type(cleaned, "Cleaned", articles=Article, rejects=Reject)


# --- parse and clean, fused --------------------------------------------------


def parse_and_clean(
    batch: Iterable[RawFetch], page_urls: frozenset[str], counts: Counter[str]
) -> Iterator[Entry | Article | Reject]:
    """`parse_raw` then `clean_or_reject` over a batch of raw documents, as ParseEntries
    then CleanArticles give them: articles and rejects, and the entries whose link has a
    landed article page unchanged (they are cleaned after JoinArticlePages). Article pages
    in the batch are skipped. `counts` gets the counts those two steps count."""
    for raw in batch:
        if raw.source_kind == PAGE_KIND:
            continue
        for out in parse_raw(raw):
            if isinstance(out, Reject):
                counts[f"rejected.{out.stage}.{out.reason}"] += 1
                yield out
                continue
            counts["entries"] += 1
            if out.url is not None and out.url in page_urls:
                yield out
                continue
            result = clean_or_reject(out)
            counts[f"rejected.clean.{result.reason}" if isinstance(result, Reject) else "articles"] += 1
            yield result


class _ParseCleanDoFn(beam.DoFn):
    def __init__(self, page_urls: frozenset[str]) -> None:
        self.page_urls = page_urls

    def process(self, batch: list[RawFetch]) -> Iterator[Entry | Article | Reject]:
        counts: Counter[str] = Counter()
        yield from parse_and_clean(batch, self.page_urls, counts)
        # Once per batch and name, after the batch: the totals ParseEntries and CleanArticles count.
        for name, n in sorted(counts.items()):
            Metrics.counter(NAMESPACE, name).inc(n)


class ParseAndClean(beam.PTransform):
    """Batches of RawFetch -> {"articles": Article (untagged), "rejects": Reject} and, with
    `page_urls`, "entries": the Entry records whose link has a landed page, for the join.

    ParseEntries and CleanArticles fused into one call per batch (nothing between them
    needs a shuffle): the same records, rejects and counters, without a Beam element and
    a split per record in between.
    """

    def __init__(self, page_urls: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.page_urls = frozenset(page_urls)

    def expand(self, batches: beam.PCollection) -> dict[str, beam.PCollection]:
        out = batches | "ParseClean" >> beam.ParDo(_ParseCleanDoFn(self.page_urls))
        types: dict[str, type] = {"articles": Article, "rejects": Reject}
        if self.page_urls:
            types["entries"] = Entry
        return split_by_type(out, "ParsedCleaned", **types)

"""Full-article fetching for feeds that carry only a teaser (`fetch_articles = true`).

The driver picks the new entries of feed documents that changed this poll,
fetches each page once through the fetch core (robots.txt honoured, the
configured User-Agent sent, every hop checked by the address policy), and returns the pages as `RawFetch`
records of kind `article_page` to be landed with the feeds. A page that could
not be fetched is landed too, as an error record with its reason, so the
pipeline can say why that article kept its teaser. Text extraction
(`extract_article`) is a pure function of the landed bytes: replays never refetch.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urldefrag

import httpx
from protego import Protego

from connectors.errors import PERMANENT, RETRYABLE, Problem
from connectors.feeds import parse_feed_bytes
from connectors.fetch import (
    FETCH_ERRORS,
    Fetcher,
    FetchFailure,
    HttpSettings,
    default_headers,
    describe,
    failure,
    within,
    without_userinfo,
)
from connectors.http import FetchOutcome
from connectors.netguard import Resolver, system_resolver
from connectors.state import write_json_atomic
from schemas.ids import sha256_hex, stable_id
from schemas.records import RawFetch

PAGE_KIND = "article_page"
ACCEPT_HTML = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"
ROBOTS_MAX_BYTES = 512 * 1024  # what the big crawlers read of a robots.txt


@dataclass(frozen=True)
class ArticleSettings:
    max_per_run: int = 50  # pages fetched per run, over all feeds
    max_bytes: int = 5 * 1024 * 1024
    page_deadline: float = 30.0  # seconds for one page, redirects included
    run_deadline: float = 300.0  # seconds for all pages of a run; the rest wait for a later poll
    concurrency: int = 2  # hosts fetched at once; one request at a time per host
    min_chars: int = 200  # shorter extracted text counts as a failed extraction
    remember_days: int = 30  # fetched URLs are not fetched again for this long
    allow_hosts: tuple[str, ...] = ()  # an alias of `[http] allow_hosts`, added to it for pages


@dataclass(frozen=True)
class PageRequest:
    source: str  # the feed the entry came from
    url: str  # the entry's link as the feed gives it: the join key in the pipeline


# --- which pages ----------------------------------------------------------


def page_key(url: str) -> str:
    """What identifies a page for 'already fetched': the link without its fragment."""
    return urldefrag(url.strip())[0]


def new_page_requests(
    outcomes: Iterable[FetchOutcome], seen: Iterable[str], limit: int | None = None
) -> list[PageRequest]:
    """Links of the entries of feed documents that changed this poll, not fetched before.

    Unchanged feeds (304, same body) are not even parsed: their entries are not new.
    """
    known = set(seen)
    requests: list[PageRequest] = []
    for outcome in outcomes:
        raw = outcome.raw
        if not outcome.source.fetch_articles or raw is None or raw.status != "ok" or raw.body is None:
            continue
        for entry in parse_feed_bytes(raw, raw.body).entries:
            if not entry.url:
                continue
            key = page_key(entry.url)
            if key not in known:
                known.add(key)
                requests.append(PageRequest(outcome.source.name, entry.url))
    return requests if limit is None else requests[:limit]


# --- fetching -------------------------------------------------------------


class PageFetcher:
    """Fetches article pages and their robots.txt through the fetch core: one request at a
    time per host, `concurrency` hosts at once, every hop checked by the address policy."""

    def __init__(
        self,
        settings: ArticleSettings,
        http: HttpSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        page_http = replace(
            http,
            allow_hosts=(*http.allow_hosts, *settings.allow_hosts),
            concurrency=settings.concurrency,
            per_host_concurrency=1,
        )
        self.fetcher = Fetcher(page_http, transport, resolver)
        self.headers = default_headers(http, ACCEPT_HTML)
        self.robots_agent = http.user_agent.split("/", 1)[0].split()[0] if http.user_agent else "*"
        self._robots: dict[str, Protego | FetchFailure | None] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}

    async def aclose(self) -> None:
        await self.fetcher.aclose()

    async def robots(self, url: str) -> Protego | FetchFailure | None:
        """The parsed robots.txt of url's origin (None: no rules), or why it counts as disallowing all.

        Fetched once per origin per run; 4xx means no rules, 5xx or a network
        failure means stay away for this run.
        """
        parsed = httpx.URL(url)
        origin = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"
        lock = self._robots_locks.setdefault(origin, asyncio.Lock())
        async with lock:
            if origin not in self._robots:
                self._robots[origin] = await self._fetch_robots(origin)
            return self._robots[origin]

    async def _fetch_robots(self, origin: str) -> Protego | FetchFailure | None:
        deadline = self.settings.page_deadline
        try:
            got = await within(
                deadline, self.fetcher.get(f"{origin}/robots.txt", self.headers, max_bytes=ROBOTS_MAX_BYTES)
            )
        except FETCH_ERRORS as exc:
            problem = failure(exc, deadline)
            if problem.reason == "too_large":
                return None  # nobody serves half a megabyte of rules; treat as none
            if problem.reason.startswith("refused"):
                return FetchFailure(PERMANENT, problem.reason, f"robots.txt: {problem.detail}")
            return FetchFailure(RETRYABLE, "robots_unavailable", f"robots.txt: {problem.message}")
        status = got.status
        if status >= 500:
            return FetchFailure(RETRYABLE, "robots_unavailable", f"robots.txt: HTTP {status}", status)
        if status >= 400 or status in (204, 304):
            return None
        try:
            return Protego.parse(got.body.decode("utf-8", "replace"))
        except Exception:  # a parser bug in someone's robots.txt: no rules is what browsers see
            return None

    async def check_robots(self, url: str) -> None:
        rules = await self.robots(url)
        if isinstance(rules, FetchFailure):
            raise rules
        if rules is not None and not rules.can_fetch(url, self.robots_agent):
            raise FetchFailure(PERMANENT, "robots_disallowed", f"robots.txt disallows {url}")

    async def fetch(self, request: PageRequest, clock: Callable[[], datetime]) -> RawFetch:
        """One article page as a RawFetch: the page, or an error record saying why not."""
        fetched_at = clock()
        deadline = self.settings.page_deadline
        try:
            got = await within(
                deadline,
                self.fetcher.get(
                    request.url,
                    self.headers,
                    max_bytes=self.settings.max_bytes,
                    read_below=400,
                    before_hop=self.check_robots,
                ),
            )
            status = got.status
            if status >= 400:
                kind = RETRYABLE if status in (408, 425, 429) or status >= 500 else PERMANENT
                raise FetchFailure(kind, f"HTTP {status}", f"HTTP {status} for {got.url}", status)
            content_type = got.headers.get("content-type")
            if content_type and "html" not in content_type.lower():
                raise FetchFailure(PERMANENT, "not_html", f"served as {content_type}", status)
        except FETCH_ERRORS as exc:
            problem = failure(exc, deadline)
            return page_error(
                request, fetched_at, problem.reason, problem.detail, problem.kind, problem.http_status
            )
        return RawFetch(
            raw_id=stable_id(PAGE_KIND, request.url, sha256_hex(got.body)),
            source=request.source,
            source_kind=PAGE_KIND,
            origin=without_userinfo(request.url),
            fetched_at=fetched_at,
            status="ok",
            http_status=status,
            content_type=content_type,
            etag=got.headers.get("etag"),
            last_modified=got.headers.get("last-modified"),
            body=got.body,
            meta_json=json.dumps({"final_url": got.url}) if got.url != request.url else None,
        )


def page_error(
    request: PageRequest,
    fetched_at: datetime,
    reason: str,
    detail: str,
    kind: str,
    http_status: int | None = None,
) -> RawFetch:
    return RawFetch(
        raw_id=stable_id(PAGE_KIND + "-error", request.url, fetched_at.isoformat()),
        source=request.source,
        source_kind=PAGE_KIND,
        origin=without_userinfo(request.url),
        fetched_at=fetched_at,
        status="error",
        http_status=http_status,
        error_kind=kind,
        error=f"{reason}: {detail}"[:500],
    )


def fetch_pages(
    requests: list[PageRequest],
    settings: ArticleSettings,
    http: HttpSettings,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    transport: httpx.AsyncBaseTransport | None = None,
    on_done: Callable[[int, int], None] | None = None,
) -> list[RawFetch]:
    """Every requested page, in request order; never raises. `on_done(done, total)` is
    told after each page.

    Hosts are fetched in parallel, one request at a time per host. Pages not
    started before the run deadline come back as `skipped` error records.
    """
    if not requests:
        return []
    return asyncio.run(_fetch_all(requests, settings, http, clock, transport, on_done))


async def _fetch_all(
    requests: list[PageRequest],
    settings: ArticleSettings,
    http: HttpSettings,
    clock: Callable[[], datetime],
    transport: httpx.AsyncBaseTransport | None,
    on_done: Callable[[int, int], None] | None = None,
) -> list[RawFetch]:
    run_deadline = time.monotonic() + settings.run_deadline
    by_host: OrderedDict[str, list[int]] = OrderedDict()
    for i, r in enumerate(requests):
        try:
            host = httpx.URL(r.url).host
        except (httpx.InvalidURL, UnicodeError, ValueError):
            host = ""
        by_host.setdefault(host, []).append(i)
    results: list[RawFetch | None] = [None] * len(requests)
    fetcher = PageFetcher(settings, http, transport)
    groups = iter(by_host.values())

    async def worker() -> None:
        # `concurrency` workers share one iterator of hosts: each host's pages in turn.
        for indexes in groups:
            for i in indexes:
                if time.monotonic() > run_deadline:
                    detail = f"article fetching stopped at its run deadline of {settings.run_deadline:g}s"
                    results[i] = page_error(requests[i], clock(), "skipped", detail, RETRYABLE)
                    continue
                try:
                    results[i] = await fetcher.fetch(requests[i], clock)
                except Exception as exc:  # a bug while fetching one page must cost that page only
                    results[i] = page_error(requests[i], clock(), "fetch_error", describe(exc), RETRYABLE)
                if on_done is not None:
                    on_done(sum(r is not None for r in results), len(requests))

    try:
        await asyncio.gather(*(worker() for _ in range(min(settings.concurrency, len(by_host)))))
    finally:
        await fetcher.aclose()
    return [r for r in results if r is not None]


# --- extraction (pure) ----------------------------------------------------


@dataclass(frozen=True)
class ExtractedPage:
    text: str
    published: str | None = None  # YYYY-MM-DD, when asked for and found


def extract_article(
    body: bytes, url: str, fetched_at: datetime, min_chars: int, want_date: bool = False
) -> ExtractedPage | Problem:
    """The main text of an article page (trafilatura), and its date (htmldate) if wanted.

    Depends on the bytes only: the date search is bounded by the fetch time, not the clock.
    """
    # Imported here: trafilatura costs ~0.7 s to import, paid only by runs that fetch pages.
    import htmldate
    import trafilatura

    try:
        text = trafilatura.extract(
            body,
            url=url,
            output_format="txt",
            include_comments=False,
            include_tables=False,
            include_images=False,
            favor_precision=True,
            deduplicate=False,
            with_metadata=False,
        )
    except Exception as exc:  # a page that breaks the extractor costs its full text only
        return Problem("extraction_error", describe(exc))
    text = (text or "").strip()
    if len(text) < min_chars:
        return Problem(
            "extraction_failed", f"{len(text)} characters of main text extracted (minimum {min_chars})"
        )
    published = None
    if want_date:
        try:
            published = htmldate.find_date(
                body,
                extensive_search=False,
                original_date=True,
                outputformat="%Y-%m-%d",
                url=url,
                max_date=(fetched_at + timedelta(days=1)).strftime("%Y-%m-%d"),
            )
        except Exception:  # no date is an answer; the entry keeps the fetch date
            published = None
    return ExtractedPage(text=text, published=published)


# --- what has been fetched --------------------------------------------------


def load_fetched_pages(path: Path) -> dict[str, str]:
    """Page key -> when it was fetched (ISO), for pages fetched by committed runs."""
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")))


def worth_remembering(status: str, error_kind: str | None) -> bool:
    """Pages fetched, or refused for good, are not fetched again; retryable failures are
    tried again when their feed next changes."""
    return status == "ok" or error_kind == PERMANENT


def save_fetched_pages(
    path: Path, pages: Iterable[tuple[str, datetime]], now: datetime, remember_days: int
) -> None:
    """Add (url, fetched_at) pairs; entries older than `remember_days` are forgotten.

    Called once the run that processed the pages has committed, like the feed state."""
    merged = load_fetched_pages(path)
    for url, fetched_at in pages:
        merged.setdefault(page_key(url), fetched_at.isoformat())
    horizon = (now - timedelta(days=remember_days)).isoformat()
    write_json_atomic(path, {k: v for k, v in sorted(merged.items()) if v >= horizon})


__all__ = [
    "PAGE_KIND",
    "ArticleSettings",
    "ExtractedPage",
    "PageFetcher",
    "PageRequest",
    "extract_article",
    "fetch_pages",
    "load_fetched_pages",
    "new_page_requests",
    "page_error",
    "save_fetched_pages",
    "worth_remembering",
]

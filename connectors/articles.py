"""Full-article fetching for feeds that carry only a teaser (`fetch_articles = true`).

The driver picks the new entries of feed documents that changed this poll,
fetches each page once (robots.txt honoured, the configured User-Agent sent,
every connection through `netguard`), and returns the pages as `RawFetch`
records of kind `article_page` to be landed with the feeds. A page that could
not be fetched is landed too, as an error record with its reason, so the
pipeline can say why that article kept its teaser. Text extraction
(`extract_article`) is a pure function of the landed bytes: replays never refetch.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urldefrag

import httpx
from protego import Protego

from connectors.errors import PERMANENT, RETRYABLE, Problem
from connectors.feeds import parse_feed_bytes
from connectors.http import FetchOutcome, HttpSettings
from connectors.netguard import GuardedTransport, NetPolicy, Refused
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
    allow_hosts: tuple[str, ...] = ()  # hosts, addresses, networks (host:port for one port) to let through


@dataclass(frozen=True)
class PageRequest:
    source: str  # the feed the entry came from
    url: str  # the entry's link as the feed gives it: the join key in the pipeline


class _Failure(Exception):
    def __init__(self, reason: str, detail: str, kind: str, http_status: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.kind, self.http_status = reason, detail, kind, http_status


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


# --- reading a body -------------------------------------------------------


def _decoder(encoding: str) -> Callable[[bytes, int], bytes] | None:
    """An incremental decoder that never returns more than `limit` bytes per call."""
    if encoding in ("", "identity"):
        return lambda chunk, limit: chunk
    if encoding in ("gzip", "x-gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
        inflater = zlib.decompressobj(wbits)
        return lambda chunk, limit: inflater.decompress(chunk, limit + 1)
    return None


def read_capped(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
    """The decoded body, cut off past `max_bytes` decoded bytes or past `deadline`.

    Decoding is done here, bounded per chunk: a few KB of gzip that inflate to
    gigabytes never get the chance to.
    """
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _Failure("too_large", f"Content-Length {declared} exceeds {max_bytes} bytes", PERMANENT)
    encoding = response.headers.get("content-encoding", "").strip().lower()
    decode = _decoder(encoding)
    if decode is None:
        raise _Failure("bad_encoding", f"unsupported Content-Encoding {encoding!r}", PERMANENT)
    parts: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        try:
            data = decode(chunk, max_bytes - size)
        except zlib.error as exc:
            raise _Failure("bad_encoding", f"corrupt {encoding} body: {exc}", PERMANENT) from exc
        size += len(data)
        if size > max_bytes:
            raise _Failure("too_large", f"body exceeds {max_bytes} bytes", PERMANENT)
        if time.monotonic() > deadline:
            raise _Failure("deadline", "body not complete within the page deadline", RETRYABLE)
        parts.append(data)
    return b"".join(parts)


# --- fetching -------------------------------------------------------------


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc) or type(exc).__name__}"[:300]


class PageFetcher:
    """Fetches article pages and their robots.txt through one guarded client."""

    def __init__(
        self,
        settings: ArticleSettings,
        http: HttpSettings,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings, self.http = settings, http
        self.policy = NetPolicy.from_entries(settings.allow_hosts)
        self.client = httpx.Client(
            transport=transport or GuardedTransport(self.policy),
            timeout=httpx.Timeout(
                connect=http.connect_timeout, read=http.read_timeout, write=http.read_timeout, pool=None
            ),
            follow_redirects=False,  # followed by hand: each hop is checked before it is requested
            headers={
                "User-Agent": http.user_agent,
                "Accept": ACCEPT_HTML,
                "Accept-Encoding": "gzip, deflate",
            },
            trust_env=False,
        )
        self.robots_agent = http.user_agent.split("/", 1)[0].split()[0] if http.user_agent else "*"
        self._robots: dict[str, Protego | _Failure | None] = {}
        self._robots_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> PageFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(
        self, url: str, deadline: float, max_bytes: int, obey_robots: bool = False
    ) -> tuple[httpx.Response, bytes, str]:
        """GET with redirects followed by hand, each hop checked before it is requested;
        returns the final response, body and URL."""
        target = self.policy.check_url(url)
        for _ in range(self.http.max_redirects + 1):
            if time.monotonic() > deadline:
                raise _Failure("deadline", "page not fetched within the page deadline", RETRYABLE)
            if obey_robots:
                self._check_robots(str(target))
            with self.client.stream("GET", target) as response:
                location = response.headers.get("location")
                if response.is_redirect and location:
                    target = self.policy.check_url(target.join(location))
                    continue
                body = read_capped(response, max_bytes, deadline) if response.status_code < 400 else b""
                return response, body, str(target)
        raise _Failure("redirects", f"more than {self.http.max_redirects} redirects", PERMANENT)

    def robots(self, url: str) -> Protego | _Failure | None:
        """The parsed robots.txt of url's origin (None: no rules), or why it counts as disallowing all.

        Fetched once per origin per run; 4xx means no rules, 5xx or a network
        failure means stay away for this run.
        """
        parsed = httpx.URL(url)
        origin = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"
        with self._lock:
            lock = self._robots_locks.setdefault(origin, threading.Lock())
        with lock:
            if origin not in self._robots:
                self._robots[origin] = self._fetch_robots(origin)
            return self._robots[origin]

    def _fetch_robots(self, origin: str) -> Protego | _Failure | None:
        deadline = time.monotonic() + self.settings.page_deadline
        try:
            response, body, _ = self._get(f"{origin}/robots.txt", deadline, ROBOTS_MAX_BYTES)
        except _Failure as exc:
            if exc.reason == "too_large":
                return None  # nobody serves half a megabyte of rules; treat as none
            return _Failure("robots_unavailable", f"robots.txt: {exc}", RETRYABLE)
        except Refused as exc:
            return _Failure(exc.reason, f"robots.txt: {exc.detail}", PERMANENT)
        except httpx.HTTPError as exc:
            return _Failure("robots_unavailable", f"robots.txt: {_describe(exc)}", RETRYABLE)
        status = response.status_code
        if status >= 500:
            return _Failure("robots_unavailable", f"robots.txt: HTTP {status}", RETRYABLE, status)
        if status >= 400 or status in (204, 304):
            return None
        try:
            return Protego.parse(body.decode("utf-8", "replace"))
        except Exception:  # a parser bug in someone's robots.txt: no rules is what browsers see
            return None

    def _check_robots(self, url: str) -> None:
        rules = self.robots(url)
        if isinstance(rules, _Failure):
            raise rules
        if rules is not None and not rules.can_fetch(url, self.robots_agent):
            raise _Failure("robots_disallowed", f"robots.txt disallows {url}", PERMANENT)

    def fetch(self, request: PageRequest, clock: Callable[[], datetime]) -> RawFetch:
        """One article page as a RawFetch: the page, or an error record saying why not."""
        fetched_at = clock()
        deadline = time.monotonic() + self.settings.page_deadline
        try:
            response, body, final_url = self._get(request.url, deadline, self.settings.max_bytes, True)
            status = response.status_code
            if status >= 400:
                kind = RETRYABLE if status in (408, 425, 429) or status >= 500 else PERMANENT
                raise _Failure(f"HTTP {status}", f"HTTP {status} for {final_url}", kind, status)
            content_type = response.headers.get("content-type")
            if content_type and "html" not in content_type.lower():
                raise _Failure("not_html", f"served as {content_type}", PERMANENT, status)
        except _Failure as exc:
            return page_error(request, fetched_at, exc.reason, exc.detail, exc.kind, exc.http_status)
        except Refused as exc:
            return page_error(request, fetched_at, exc.reason, exc.detail, PERMANENT)
        except httpx.TimeoutException as exc:
            return page_error(request, fetched_at, "timeout", _describe(exc), RETRYABLE)
        except (httpx.HTTPError, UnicodeError, ValueError) as exc:
            return page_error(request, fetched_at, "network", _describe(exc), RETRYABLE)
        return RawFetch(
            raw_id=stable_id(PAGE_KIND, request.url, sha256_hex(body)),
            source=request.source,
            source_kind=PAGE_KIND,
            origin=request.url,
            fetched_at=fetched_at,
            status="ok",
            http_status=status,
            content_type=content_type,
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            body=body,
            meta_json=json.dumps({"final_url": final_url}) if final_url != request.url else None,
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
        origin=request.url,
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
    transport: httpx.BaseTransport | None = None,
) -> list[RawFetch]:
    """Every requested page, in request order; never raises.

    Hosts are fetched in parallel, one request at a time per host. Pages not
    started before the run deadline come back as `skipped` error records.
    """
    if not requests:
        return []
    run_deadline = time.monotonic() + settings.run_deadline
    by_host: OrderedDict[str, list[int]] = OrderedDict()
    for i, r in enumerate(requests):
        try:
            host = httpx.URL(r.url).host
        except (httpx.InvalidURL, UnicodeError, ValueError):
            host = ""
        by_host.setdefault(host, []).append(i)
    results: list[RawFetch | None] = [None] * len(requests)

    with PageFetcher(settings, http, transport) as fetcher:

        def work(indexes: list[int]) -> None:
            for i in indexes:
                if time.monotonic() > run_deadline:
                    detail = f"article fetching stopped at its run deadline of {settings.run_deadline:g}s"
                    results[i] = page_error(requests[i], clock(), "skipped", detail, RETRYABLE)
                    continue
                try:
                    results[i] = fetcher.fetch(requests[i], clock)
                except Exception as exc:  # a bug while fetching one page must cost that page only
                    results[i] = page_error(requests[i], clock(), "fetch_error", _describe(exc), RETRYABLE)

        with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
            for future in [pool.submit(work, idx) for idx in by_host.values()]:
                future.result()
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
        return Problem("extraction_error", _describe(exc))
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

"""Polling feeds over HTTP with httpx: timeouts, a total deadline, a size cap,
conditional GET. One call returns one typed outcome; it never raises."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx

from connectors.errors import PERMANENT, RETRYABLE
from connectors.state import FeedState
from schemas.ids import sha256_hex, stable_id
from schemas.records import RawFetch

USER_AGENT = "newsbeam/0.1 (+https://github.com/newsbeam/newsbeam; news ingestion)"
ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"


@dataclass(frozen=True)
class FeedSource:
    name: str
    url: str
    fetch_articles: bool = False  # fetch each new entry's page for its full text (connectors/articles.py)


@dataclass(frozen=True)
class HttpSettings:
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_deadline: float = 60.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    concurrency: int = 4
    user_agent: str = USER_AGENT


@dataclass(frozen=True)
class FetchOutcome:
    """What one poll of one feed produced.

    `raw` is the document to land (None for 304 or an unchanged body);
    `state` is what the feed state becomes once the run is committed.
    """

    source: FeedSource
    status: str  # "ok" | "not_modified" | "unchanged" | "error"
    detail: str
    raw: RawFetch | None
    state: FeedState


class _TooLarge(Exception):
    pass


class _DeadlineExceeded(Exception):
    pass


def make_client(settings: HttpSettings, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.total_deadline,
    )
    return httpx.Client(
        timeout=timeout,
        follow_redirects=True,
        max_redirects=settings.max_redirects,
        headers={"User-Agent": settings.user_agent, "Accept": ACCEPT},
        limits=httpx.Limits(max_connections=settings.concurrency * 2),
        transport=transport,
        verify=True,
    )


def _read_capped(response: httpx.Response, settings: HttpSettings, deadline: float) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_bytes:
        raise _TooLarge(f"Content-Length {declared} exceeds {settings.max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    # httpx's read timeout applies per chunk; the total deadline is ours to enforce.
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > settings.max_bytes:
            raise _TooLarge(f"body exceeds {settings.max_bytes} bytes")
        if time.monotonic() > deadline:
            raise _DeadlineExceeded(f"body not complete within {settings.total_deadline:g}s")
        chunks.append(chunk)
    return b"".join(chunks)


def _error(
    source: FeedSource,
    state: FeedState,
    fetched_at: datetime,
    kind: str,
    reason: str,
    http_status: int | None = None,
) -> FetchOutcome:
    raw = RawFetch(
        raw_id=stable_id("feed-error", source.url, fetched_at.isoformat()),
        source=source.name,
        source_kind="feed",
        origin=source.url,
        fetched_at=fetched_at,
        status="error",
        http_status=http_status,
        error_kind=kind,
        error=reason,
    )
    return FetchOutcome(source, "error", reason, raw, state.failed(fetched_at, http_status, reason))


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def fetch_feed(
    client: httpx.Client,
    source: FeedSource,
    state: FeedState,
    settings: HttpSettings,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> FetchOutcome:
    """Poll one feed once. Never raises: every failure is a typed outcome."""
    fetched_at = clock()
    headers: dict[str, str] = {}
    # Validators are echoed back as-is; a non-ASCII one (httpx decodes UTF-8 headers) cannot be
    # sent again, so it is skipped: the body hash still detects an unchanged feed.
    if state.etag and state.etag.isascii():
        headers["If-None-Match"] = state.etag
    if state.last_modified and state.last_modified.isascii():
        headers["If-Modified-Since"] = state.last_modified
    deadline = time.monotonic() + settings.total_deadline
    try:
        with client.stream("GET", source.url, headers=headers) as response:
            status = response.status_code
            if status == 304:
                return FetchOutcome(
                    source, "not_modified", "304 Not Modified", None, state.succeeded(fetched_at, 304)
                )
            if status >= 400:
                kind = RETRYABLE if status in (408, 425, 429) or status >= 500 else PERMANENT
                return _error(source, state, fetched_at, kind, f"HTTP {status}", status)
            body = _read_capped(response, settings, deadline)
            etag = response.headers.get("etag")
            last_modified = response.headers.get("last-modified")
            content_type = response.headers.get("content-type")
    except _TooLarge as exc:
        return _error(source, state, fetched_at, PERMANENT, f"too_large: {exc}")
    except _DeadlineExceeded as exc:
        return _error(source, state, fetched_at, RETRYABLE, f"deadline: {exc}")
    except httpx.TimeoutException as exc:
        return _error(source, state, fetched_at, RETRYABLE, f"timeout: {_describe(exc)}")
    except httpx.TooManyRedirects as exc:
        return _error(source, state, fetched_at, PERMANENT, f"redirects: {_describe(exc)}")
    except (httpx.UnsupportedProtocol, httpx.InvalidURL, UnicodeError) as exc:  # UnicodeError: IDNA host
        return _error(source, state, fetched_at, PERMANENT, f"bad_url: {_describe(exc)}")
    except httpx.HTTPError as exc:
        return _error(source, state, fetched_at, RETRYABLE, f"network: {_describe(exc)}")

    digest = sha256_hex(body)
    new_state = state.succeeded(fetched_at, status, etag, last_modified, digest)
    if digest == state.body_sha256:
        # Some servers ignore conditional requests; an identical body is a 304 in effect.
        return FetchOutcome(source, "unchanged", "same body as last poll", None, new_state)
    raw = RawFetch(
        raw_id=stable_id("feed", source.url, digest),
        source=source.name,
        source_kind="feed",
        origin=source.url,
        fetched_at=fetched_at,
        status="ok",
        http_status=status,
        content_type=content_type,
        etag=etag,
        last_modified=last_modified,
        body=body,
    )
    return FetchOutcome(source, "ok", f"HTTP {status}, {len(body)} bytes", raw, new_state)


def poll_feeds(
    sources: list[FeedSource],
    states: dict[str, FeedState],
    settings: HttpSettings,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> list[FetchOutcome]:
    """Poll every feed concurrently; results come back in the order of `sources`."""
    if not sources:
        return []
    with (
        make_client(settings, transport) as client,
        ThreadPoolExecutor(max_workers=settings.concurrency) as pool,
    ):
        futures = [
            pool.submit(fetch_feed, client, s, states.get(s.url, FeedState()), settings, clock)
            for s in sources
        ]
        return [f.result() for f in futures]

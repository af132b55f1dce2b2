"""Polling feeds over HTTP: one typed outcome per feed, never an exception.

Each poll has connect and read timeouts and a total deadline over connect, headers
and body; the decoded body is capped while it is decoded; redirects are followed
here, hop by hop (bounded, loop-checked, http(s) only, credentials kept to their
origin); each host gets a bounded number of requests at a gap; feeds that fail are
backed off (`connectors/retry.py`). Any httpx transport can carry the requests;
by default they go through the aiohttp-backed one (`connectors/transport.py`),
called through its lean `open` rather than as httpx Request/Response objects, on
one event loop.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import httpx

from connectors import retry
from connectors.decoding import ACCEPT_ENCODING, BadEncoding, CappedBody, TooLarge
from connectors.errors import PERMANENT, RETRYABLE
from connectors.politeness import HostGate, interleave_by_host
from connectors.state import FeedState
from connectors.transport import AiohttpTransport, Reply, TlsError, header_map
from schemas.ids import sha256_hex, stable_id
from schemas.records import RawFetch

USER_AGENT = "newsbeam/0.1 (+https://github.com/newsbeam/newsbeam; news ingestion)"
ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
T = TypeVar("T")
REDIRECTS = (301, 302, 303, 307, 308)
PERMANENT_REDIRECTS = (301, 308)


@dataclass(frozen=True)
class FeedSource:
    name: str
    url: str
    verify_tls: bool = True  # false only when configured so for this one feed
    fetch_articles: bool = False  # fetch each new entry's page for its full text (connectors/articles.py)
    poll_interval: float | None = None  # `newsbeam stream`: this feed's own period (None: `[stream]`'s)


@dataclass(frozen=True)
class HttpSettings:
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_deadline: float = 60.0  # connect + headers + body, per poll
    max_bytes: int = 10 * 1024 * 1024  # decoded body
    max_redirects: int = 5
    concurrency: int = 4
    user_agent: str = USER_AGENT
    per_host_concurrency: int = 2
    per_host_min_gap: float = 0.5  # seconds between request starts to one host
    poll_interval: float = 900.0  # the schedule's period; the shortest backoff
    backoff_max: float = 86_400.0  # the longest wait, whatever Retry-After says
    dead_after: int = 10  # consecutive failures before a feed is dead
    dead_poll_interval: float = 86_400.0
    permanent_redirect_polls: int = 3  # 301/308 seen this many polls in a row moves the feed
    refresh_after: float = 43_200.0  # validators are ignored once the last 200 is this old

    def retry_policy(self) -> retry.RetryPolicy:
        return retry.RetryPolicy(
            self.poll_interval, self.backoff_max, self.dead_after, self.dead_poll_interval
        )


@dataclass(frozen=True)
class FetchOutcome:
    """What one poll of one feed produced.

    `status` is ok | not_modified | unchanged | error (polled) or skipped_backoff |
    skipped_dead | retired (not polled); `raw` is the document to land (None unless
    ok or error); `state` is what the feed state becomes once the run is committed.
    """

    source: FeedSource
    status: str
    detail: str
    raw: RawFetch | None
    state: FeedState


class _Failure(Exception):
    def __init__(self, kind: str, reason: str, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.http_status = kind, reason, http_status


@dataclass
class _Response:
    status: int
    headers: dict[str, str]  # lowercased names (connectors.transport.header_map)
    body: bytes
    permanent_target: str | None  # where an unbroken run of 301/308 from the first hop led


class _Opener(Protocol):
    async def open(
        self, url: str, headers: list[tuple[str, str]], connect_timeout: float, read_timeout: float
    ) -> Reply: ...


class _HttpxReply(Reply):
    __slots__ = ("_response",)

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code, header_map(response.headers.raw))
        self._response = response

    def chunks(self) -> AsyncIterator[bytes]:
        # The transport's own stream, as aiter_raw would read it, but readable even when
        # the transport has read it already (httpx.MockTransport does): a content stream
        # gives its bytes again, still content-encoded.
        stream = self._response.stream
        if isinstance(stream, httpx.AsyncByteStream):
            return stream.__aiter__()
        return self._response.aiter_raw()  # raises httpx's own error for a sync-only stream

    async def aclose(self) -> None:
        await self._response.aclose()


class ViaHttpx:
    """Any httpx transport behind the `open` that AiohttpTransport offers natively."""

    def __init__(self, transport: httpx.AsyncBaseTransport, pool_timeout: float) -> None:
        self._transport = transport
        self._pool_timeout = pool_timeout

    async def open(
        self, url: str, headers: list[tuple[str, str]], connect_timeout: float, read_timeout: float
    ) -> Reply:
        timeout = {
            "connect": connect_timeout,
            "read": read_timeout,
            "write": read_timeout,
            "pool": self._pool_timeout,
        }
        request = httpx.Request("GET", url, headers=headers, extensions={"timeout": timeout})
        return _HttpxReply(await self._transport.handle_async_request(request))


class Poller:
    """Transports (verified, and unverified for feeds that opt out), the global and
    per-host limits of one poll. Lives inside one event loop."""

    def __init__(self, settings: HttpSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._injected = transport
        self._transports: dict[bool, httpx.AsyncBaseTransport] = {}
        self._openers: dict[bool, _Opener] = {}
        self.gate = HostGate(settings.per_host_concurrency, settings.per_host_min_gap, settings.concurrency)
        self.slots = asyncio.Semaphore(settings.concurrency)
        # Sent with every request; conditional and Authorization headers are added per request.
        self.headers = [
            ("User-Agent", settings.user_agent),
            ("Accept", ACCEPT),
            ("Accept-Encoding", ACCEPT_ENCODING),
        ]
        if transport is None:
            self.transport(True)  # built before any request: its setup must not delay the first one

    def transport(self, verify_tls: bool) -> httpx.AsyncBaseTransport:
        if self._injected is not None:
            return self._injected
        if verify_tls not in self._transports:
            self._transports[verify_tls] = AiohttpTransport(verify=verify_tls)
        return self._transports[verify_tls]

    def opener(self, verify_tls: bool) -> _Opener:
        """The transport for a feed, called directly when it is ours, through httpx otherwise."""
        opener = self._openers.get(verify_tls)
        if opener is None:
            transport = self.transport(verify_tls)
            if isinstance(transport, AiohttpTransport):
                opener = transport
            else:
                opener = ViaHttpx(transport, self.settings.total_deadline)
            self._openers[verify_tls] = opener
        return opener

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _checked_url(text: str, redirected_from: httpx.URL | None = None) -> httpx.URL:
    """`text` as an absolute http(s) URL: a feed's URL, or a redirect's Location resolved
    against the URL that answered with it."""
    shown = repr(text[:200])
    try:
        url = httpx.URL(text) if redirected_from is None else redirected_from.join(text)
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        where = "" if redirected_from is None else f"redirect to {shown}: "
        raise _Failure(PERMANENT, f"bad_url: {where}{_describe(exc)}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        if redirected_from is None:
            raise _Failure(PERMANENT, f"bad_url: not an absolute http(s) URL: {shown}")
        raise _Failure(PERMANENT, f"bad_url: redirect to a non-http(s) URL {shown}")
    return url


def _without_userinfo(url: httpx.URL) -> httpx.URL:
    return url.copy_with(username=None, password=None) if url.userinfo else url


def _basic_auth(url: httpx.URL) -> str | None:
    if not url.username:
        return None
    pair = f"{unquote(url.username)}:{unquote(url.password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


async def _get(
    poller: Poller, source: FeedSource, url_text: str, headers: list[tuple[str, str]]
) -> _Response:
    """GET with redirects followed by hand, each hop through the host's politeness gate."""
    settings = poller.settings
    opener = poller.opener(source.verify_tls)
    url = _checked_url(url_text)
    auth, auth_origin = _basic_auth(url), _origin(url)
    target = _without_userinfo(url)
    target_text = str(target)
    seen = {target_text}
    permanent: str | None = None
    permanent_unbroken = True
    for _hop in range(settings.max_redirects + 1):
        hop_headers = headers
        if auth and _origin(url) == auth_origin:  # credentials never go to another origin
            hop_headers = [*headers, ("Authorization", auth)]
        async with poller.gate.slot(f"{url.host}:{url.port}"):
            reply = await opener.open(
                target_text, hop_headers, settings.connect_timeout, settings.read_timeout
            )
            try:
                if reply.status not in REDIRECTS:
                    body = b""
                    if reply.status < 300:
                        body = await _read_capped(reply, settings)
                    return _Response(reply.status, reply.headers, body, permanent)
            finally:
                await reply.aclose()
        location = reply.headers.get("location")
        if not location:
            raise _Failure(PERMANENT, f"redirects: HTTP {reply.status} without Location")
        url = _checked_url(location, redirected_from=target)
        target = _without_userinfo(url)
        target_text = str(target)
        if target_text in seen:
            raise _Failure(PERMANENT, f"redirects: loop back to {target_text[:200]}")
        seen.add(target_text)
        if permanent_unbroken and reply.status in PERMANENT_REDIRECTS:
            permanent = target_text
        else:
            permanent_unbroken = False
    raise _Failure(PERMANENT, f"redirects: more than {settings.max_redirects}")


async def _within(seconds: float, work: Coroutine[Any, Any, T]) -> T:
    """`work`, cancelled after `seconds` with TimeoutError: one deadline over every hop,
    connect, headers and body of a poll."""
    if sys.version_info >= (3, 11):  # a timeout context costs far less than wait_for's task
        async with asyncio.timeout(seconds):
            return await work
    return await asyncio.wait_for(work, seconds)


async def _read_capped(reply: Reply, settings: HttpSettings) -> bytes:
    declared = reply.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_bytes:
        raise TooLarge(f"Content-Length {declared} exceeds {settings.max_bytes} bytes")
    body = CappedBody(reply.headers.get("content-encoding"), settings.max_bytes)
    async for chunk in reply.chunks():
        body.feed(chunk)
    return body.finish()


def _validators_trusted(state: FeedState, now: datetime, settings: HttpSettings) -> bool:
    """Validators are sent only while the last full (200) fetch is recent: a server
    that answers 304 forever, or lies with its ETag, is fetched in full now and then."""
    if state.last_full_fetch_at is None:
        return False
    age = (now - datetime.fromisoformat(state.last_full_fetch_at)).total_seconds()
    return age < settings.refresh_after


def _conditional_headers(state: FeedState, now: datetime, settings: HttpSettings) -> dict[str, str]:
    headers: dict[str, str] = {}
    if not _validators_trusted(state, now, settings):
        return headers
    # Validators are echoed back as-is; a non-ASCII one (httpx decodes UTF-8 headers) cannot be
    # sent again, so it is skipped: the body hash still detects an unchanged feed.
    if state.etag and state.etag.isascii():
        headers["If-None-Match"] = state.etag
    if state.last_modified and state.last_modified.isascii():
        headers["If-Modified-Since"] = state.last_modified
    return headers


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def _error(
    source: FeedSource,
    state: FeedState,
    at: datetime,
    failure: _Failure,
    settings: HttpSettings,
    retry_after: float | None = None,
) -> FetchOutcome:
    raw = RawFetch(
        raw_id=stable_id("feed-error", source.url, at.isoformat()),
        source=source.name,
        source_kind="feed",
        origin=source.url,
        fetched_at=at,
        status="error",
        http_status=failure.http_status,
        error_kind=failure.kind,
        error=failure.reason,
    )
    failed = state.failed(at, failure.http_status, failure.reason)
    new_state = retry.after_failure(failed, source.url, at, retry_after, settings.retry_policy())
    if failure.http_status == 410:
        new_state = dataclasses.replace(new_state, retired=True, next_poll_at=None)
    return FetchOutcome(source, "error", failure.reason, raw, new_state)


def _follow_permanent_redirect(state: FeedState, target: str | None, settings: HttpSettings) -> FeedState:
    """A 301/308 seen on enough polls in a row becomes the URL polled from then on."""
    if target is None:
        if state.redirect_target is None and state.redirect_polls == 0:
            return state
        return dataclasses.replace(state, redirect_target=None, redirect_polls=0)
    polls = state.redirect_polls + 1 if target == state.redirect_target else 1
    if polls >= settings.permanent_redirect_polls:
        return dataclasses.replace(state, url=target, redirect_target=None, redirect_polls=0)
    return dataclasses.replace(state, redirect_target=target, redirect_polls=polls)


async def fetch_feed(poller: Poller, source: FeedSource, state: FeedState, now: datetime) -> FetchOutcome:
    """Poll one feed once at `now`. Never raises: every failure is a typed outcome."""
    settings = poller.settings
    conditional = _conditional_headers(state, now, settings)
    headers = [*poller.headers, *conditional.items()] if conditional else poller.headers
    try:
        async with poller.slots:
            got = await _within(
                settings.total_deadline, _get(poller, source, state.url or source.url, headers)
            )
    except _Failure as failure:
        return _error(source, state, now, failure, settings)
    except TooLarge as exc:
        return _error(source, state, now, _Failure(PERMANENT, f"too_large: {exc}"), settings)
    except BadEncoding as exc:
        return _error(source, state, now, _Failure(RETRYABLE, f"bad_encoding: {exc}"), settings)
    except asyncio.TimeoutError:
        reason = f"deadline: response not complete within {settings.total_deadline:g}s"
        return _error(source, state, now, _Failure(RETRYABLE, reason), settings)
    except httpx.TimeoutException as exc:
        return _error(source, state, now, _Failure(RETRYABLE, f"timeout: {_describe(exc)}"), settings)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL, UnicodeError) as exc:  # UnicodeError: IDNA host
        return _error(source, state, now, _Failure(PERMANENT, f"bad_url: {_describe(exc)}"), settings)
    except httpx.ConnectError as exc:
        if isinstance(exc, TlsError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):  # ours, or httpcore's
            return _error(source, state, now, _Failure(PERMANENT, f"tls: {_describe(exc)}"), settings)
        return _error(source, state, now, _Failure(RETRYABLE, f"network: {_describe(exc)}"), settings)
    except httpx.HTTPError as exc:
        return _error(source, state, now, _Failure(RETRYABLE, f"network: {_describe(exc)}"), settings)

    status, digest = got.status, None
    if status == 304:
        if not conditional:
            bad_304 = _Failure(RETRYABLE, "protocol: 304 Not Modified to an unconditional request", 304)
            return _error(source, state, now, bad_304, settings)
        new_state = state.succeeded(now, 304)
    elif status >= 300:
        kind = RETRYABLE if status in (408, 425, 429) or status >= 500 else PERMANENT
        retry_after = None
        if status in (429, 503):
            retry_after = retry.parse_retry_after(got.headers.get("retry-after"), now)
        return _error(source, state, now, _Failure(kind, f"HTTP {status}", status), settings, retry_after)
    else:
        digest = sha256_hex(got.body)
        new_state = state.succeeded(
            now, status, got.headers.get("etag"), got.headers.get("last-modified"), digest
        )
    new_state = _follow_permanent_redirect(retry.after_success(new_state), got.permanent_target, settings)
    if status == 304:
        return FetchOutcome(source, "not_modified", "304 Not Modified", None, new_state)
    if digest == state.body_sha256:
        # Some servers ignore conditional requests; an identical body is a 304 in effect.
        return FetchOutcome(source, "unchanged", "same body as last poll", None, new_state)
    raw = RawFetch(
        raw_id=stable_id("feed", source.url, digest),
        source=source.name,
        source_kind="feed",
        origin=source.url,
        fetched_at=now,
        status="ok",
        http_status=status,
        content_type=got.headers.get("content-type"),
        etag=got.headers.get("etag"),
        last_modified=got.headers.get("last-modified"),
        body=got.body,
    )
    return FetchOutcome(source, "ok", f"HTTP {status}, {len(got.body)} bytes", raw, new_state)


def not_polled(source: FeedSource, state: FeedState) -> FetchOutcome:
    """The outcome of a feed that is not due: retired, dead or backing off."""
    if state.retired:
        return FetchOutcome(source, "retired", f"gone ({state.last_error}); not polled again", None, state)
    status = "skipped_dead" if state.dead else "skipped_backoff"
    detail = (
        f"{state.consecutive_failures} failures, last: {state.last_error}; next poll {state.next_poll_at}"
    )
    return FetchOutcome(source, status, detail, None, state)


_NEVER_POLLED = FeedState()


async def _poll_all(
    sources: list[FeedSource],
    states: dict[str, FeedState],
    settings: HttpSettings,
    transport: httpx.AsyncBaseTransport | None,
    now: datetime,
) -> list[FetchOutcome]:
    poller = Poller(settings, transport)
    outcomes: list[FetchOutcome | None] = [None] * len(sources)
    feed_states = [states.get(s.url, _NEVER_POLLED) for s in sources]
    if poller.gate.active:  # with no per-host limit to wait on, the order makes no difference
        hosts = [_host(st.url or s.url) for s, st in zip(sources, feed_states, strict=True)]
        order = iter(interleave_by_host(hosts))
    else:
        order = iter(range(len(sources)))

    async def worker() -> None:
        # `concurrency` workers share one iterator: each feed is taken once, in order, and
        # no more than `concurrency` polls run at a time, without a task per feed.
        for index in order:
            source, state = sources[index], feed_states[index]
            if retry.is_due(state, now):
                outcomes[index] = await fetch_feed(poller, source, state, now)
            else:
                outcomes[index] = not_polled(source, state)

    try:
        await asyncio.gather(*(worker() for _ in range(min(settings.concurrency, len(sources)))))
    finally:
        await poller.aclose()
    return [o for o in outcomes if o is not None]


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def poll_feeds(
    sources: list[FeedSource],
    states: dict[str, FeedState],
    settings: HttpSettings,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> list[FetchOutcome]:
    """Poll every feed that is due, concurrently; outcomes come back in the order of `sources`.
    The clock is read once: that time is every poll's `fetched_at` and every schedule's base."""
    if not sources:
        return []
    return asyncio.run(_poll_all(sources, states, settings, transport, clock()))

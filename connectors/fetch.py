"""The fetch core: every HTTP request newsbeam makes (feeds, article pages, robots.txt).

One transport (`connectors/transport.py`, aiohttp under the httpx API), one
redirect walker, one capped body reader and one failure vocabulary. Every hop
of every request is checked by one address policy (`connectors/netguard.py`):
its URL before any I/O, and the address actually connected to at connect time
(the transport resolves host names through `GuardedResolver`). Each request
has connect and read timeouts and its caller's total deadline; redirects are
followed here, hop by hop (bounded, loop-checked, http(s) only, credentials
kept to their origin); each host gets a bounded number of requests at a gap.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote

import httpx

from connectors import retry
from connectors.decoding import ACCEPT_ENCODING, BadEncoding, CappedBody, TooLarge
from connectors.errors import PERMANENT, RETRYABLE
from connectors.netguard import GuardedResolver, NetPolicy, Refused, Resolver, system_resolver
from connectors.politeness import HostGate
from connectors.transport import AiohttpTransport, Reply, TlsError, header_map

USER_AGENT = "newsbeam/0.1 (+https://github.com/newsbeam/newsbeam; news ingestion)"
T = TypeVar("T")
REDIRECTS = (301, 302, 303, 307, 308)
PERMANENT_REDIRECTS = (301, 308)


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
    # Hosts, addresses, networks (host:port for one port) that every request may reach
    # although they are not public; cloud metadata endpoints stay closed whatever it says.
    allow_hosts: tuple[str, ...] = ()

    @property
    def longest_wait(self) -> float:
        """No poll is ever scheduled further ahead than this."""
        return max(self.backoff_max, self.dead_poll_interval, self.poll_interval)

    def retry_policy(self) -> retry.RetryPolicy:
        return retry.RetryPolicy(
            self.poll_interval, self.backoff_max, self.dead_after, self.dead_poll_interval
        )


class FetchFailure(Exception):
    """Why a request gave no usable response: `kind` is retryable or permanent, `reason` a
    short code (bad_url, refused_address, redirects, too_large, deadline, timeout, tls,
    network, HTTP 404, …), `detail` the rest. `message` is `reason: detail`."""

    def __init__(self, kind: str, reason: str, detail: str = "", http_status: int | None = None) -> None:
        self.message = f"{reason}: {detail}" if detail else reason
        super().__init__(self.message)
        self.kind, self.reason, self.detail, self.http_status = kind, reason, detail, http_status


@dataclass
class Fetched:
    status: int
    headers: dict[str, str]  # lowercased names (connectors.transport.header_map)
    body: bytes  # decoded; empty unless the status is below the caller's `read_below`
    url: str  # the URL that answered, after redirects, without userinfo
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
    """Any httpx transport behind the `open` that AiohttpTransport offers natively. Such a
    transport resolves names itself: only the per-hop URL check applies to it."""

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


HopCheck = Callable[[str], Awaitable[None]]


class Fetcher:
    """Transports (verified, and unverified for feeds that opt out), the address policy,
    and the global and per-host limits of one batch of requests. Lives inside one event loop."""

    def __init__(
        self,
        settings: HttpSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self.policy = NetPolicy.from_entries(settings.allow_hosts)
        self._resolver = resolver
        self._injected = transport
        self._transports: dict[bool, httpx.AsyncBaseTransport] = {}
        self._openers: dict[bool, _Opener] = {}
        self.gate = HostGate(settings.per_host_concurrency, settings.per_host_min_gap, settings.concurrency)
        self.slots = asyncio.Semaphore(settings.concurrency)
        if transport is None:
            self.transport(True)  # built before any request: its setup must not delay the first one

    def transport(self, verify_tls: bool) -> httpx.AsyncBaseTransport:
        if self._injected is not None:
            return self._injected
        if verify_tls not in self._transports:
            guard = GuardedResolver(self.policy, self._resolver)
            self._transports[verify_tls] = AiohttpTransport(verify=verify_tls, resolver=guard)
        return self._transports[verify_tls]

    def opener(self, verify_tls: bool) -> _Opener:
        """The transport, called directly when it is ours, through httpx otherwise."""
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

    async def get(
        self,
        url_text: str,
        headers: list[tuple[str, str]],
        *,
        max_bytes: int | None = None,
        read_below: int = 300,
        verify_tls: bool = True,
        before_hop: HopCheck | None = None,
    ) -> Fetched:
        """GET with redirects followed by hand: each hop's URL checked by the policy (and
        by `before_hop`, e.g. robots.txt), each hop through its host's politeness gate; the
        body read, capped, when the final status is below `read_below`. Raises httpx
        errors, Refused, TooLarge and BadEncoding; `failure()` types them."""
        settings = self.settings
        cap = settings.max_bytes if max_bytes is None else max_bytes
        opener = self.opener(verify_tls)
        url = _checked_url(url_text)
        auth, auth_origin = _basic_auth(url), _origin(url)
        target = _without_userinfo(url)
        target_text = str(target)
        seen = {target_text}
        permanent: str | None = None
        permanent_unbroken = True
        for _hop in range(settings.max_redirects + 1):
            self.policy.check_url(target)
            if before_hop is not None:
                await before_hop(target_text)
            hop_headers = headers
            if auth and _origin(url) == auth_origin:  # credentials never go to another origin
                hop_headers = [*headers, ("Authorization", auth)]
            async with self.gate.slot(f"{url.host}:{url.port}"):
                reply = await opener.open(
                    target_text, hop_headers, settings.connect_timeout, settings.read_timeout
                )
                try:
                    if reply.status not in REDIRECTS:
                        body = b""
                        if reply.status < read_below:
                            body = await read_capped(reply, cap)
                        return Fetched(reply.status, reply.headers, body, target_text, permanent)
                finally:
                    await reply.aclose()
            location = reply.headers.get("location")
            if not location:
                raise FetchFailure(PERMANENT, "redirects", f"HTTP {reply.status} without Location")
            url = _checked_url(location, redirected_from=target)
            target = _without_userinfo(url)
            target_text = str(target)
            if target_text in seen:
                raise FetchFailure(PERMANENT, "redirects", f"loop back to {target_text[:200]}")
            seen.add(target_text)
            if permanent_unbroken and reply.status in PERMANENT_REDIRECTS:
                permanent = target_text
            else:
                permanent_unbroken = False
        raise FetchFailure(PERMANENT, "redirects", f"more than {settings.max_redirects}")


def default_headers(settings: HttpSettings, accept: str) -> list[tuple[str, str]]:
    """Sent with every request; conditional and Authorization headers are added per request."""
    return [("User-Agent", settings.user_agent), ("Accept", accept), ("Accept-Encoding", ACCEPT_ENCODING)]


def failure(exc: BaseException, deadline: float) -> FetchFailure:
    """Any exception `Fetcher.get` (under `within`) raises, as one typed failure."""
    if isinstance(exc, FetchFailure):
        return exc
    if isinstance(exc, Refused):
        return FetchFailure(PERMANENT, exc.reason, exc.detail)
    if isinstance(exc, TooLarge):
        return FetchFailure(PERMANENT, "too_large", str(exc))
    if isinstance(exc, BadEncoding):
        return FetchFailure(RETRYABLE, "bad_encoding", str(exc))
    if isinstance(exc, asyncio.TimeoutError):
        return FetchFailure(RETRYABLE, "deadline", f"response not complete within {deadline:g}s")
    if isinstance(exc, httpx.TimeoutException):
        return FetchFailure(RETRYABLE, "timeout", describe(exc))
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL, UnicodeError)):  # UnicodeError: IDNA
        return FetchFailure(PERMANENT, "bad_url", describe(exc))
    if isinstance(exc, httpx.ConnectError):
        if isinstance(exc, TlsError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):  # ours, or httpcore's
            return FetchFailure(PERMANENT, "tls", describe(exc))
        return FetchFailure(RETRYABLE, "network", describe(exc))
    if isinstance(exc, (httpx.HTTPError, httpx.StreamError)):
        return FetchFailure(RETRYABLE, "network", describe(exc))
    raise exc


FETCH_ERRORS = (
    FetchFailure,
    Refused,
    TooLarge,
    BadEncoding,
    asyncio.TimeoutError,
    httpx.HTTPError,
    httpx.InvalidURL,  # not an HTTPError
    httpx.StreamError,
    UnicodeError,
)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _checked_url(text: str, redirected_from: httpx.URL | None = None) -> httpx.URL:
    """`text` as an absolute http(s) URL: a request's URL, or a redirect's Location resolved
    against the URL that answered with it."""
    shown = repr(text[:200])
    try:
        url = httpx.URL(text) if redirected_from is None else redirected_from.join(text)
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        where = "" if redirected_from is None else f"redirect to {shown}: "
        raise FetchFailure(PERMANENT, "bad_url", f"{where}{describe(exc)}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        if redirected_from is None:
            raise FetchFailure(PERMANENT, "bad_url", f"not an absolute http(s) URL: {shown}")
        raise FetchFailure(PERMANENT, "bad_url", f"redirect to a non-http(s) URL {shown}")
    return url


def _without_userinfo(url: httpx.URL) -> httpx.URL:
    return url.copy_with(username=None, password=None) if url.userinfo else url


def without_userinfo(url: str) -> str:
    """`url` with any `user:password@` removed: what may be stored or shown. Text that is
    not a URL comes back as it is."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return url
    return str(_without_userinfo(parsed)) if parsed.userinfo else url


def _basic_auth(url: httpx.URL) -> str | None:
    if not url.username:
        return None
    pair = f"{unquote(url.username)}:{unquote(url.password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


async def within(seconds: float, work: Coroutine[Any, Any, T]) -> T:
    """`work`, cancelled after `seconds` with TimeoutError: one deadline over every hop,
    connect, headers and body of a request."""
    if sys.version_info >= (3, 11):  # a timeout context costs far less than wait_for's task
        async with asyncio.timeout(seconds):
            return await work
    return await asyncio.wait_for(work, seconds)


async def read_capped(reply: Reply, max_bytes: int) -> bytes:
    """The decoded body; TooLarge past `max_bytes` decoded bytes, checked while decoding."""
    declared = reply.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"Content-Length {declared} exceeds {max_bytes} bytes")
    body = CappedBody(reply.headers.get("content-encoding"), max_bytes)
    async for chunk in reply.chunks():
        body.feed(chunk)
    return body.finish()


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]

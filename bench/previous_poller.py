"""The poller as it was before the lean transport call, kept for `bench.polling` only.

Each hop built an httpx Request and Response (headers normalised both ways), parsed
its URL four times, went through the per-host gate even with limits off, and armed a
timeout for the headers and another for the body; every feed had its own task waiting
on a semaphore. The state bookkeeping after the response is today's, shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime
from typing import TypeVar

import httpx

from connectors import retry
from connectors.decoding import ACCEPT_ENCODING, BadEncoding, CappedBody, TooLarge
from connectors.errors import PERMANENT, RETRYABLE
from connectors.http import (
    ACCEPT,
    PERMANENT_REDIRECTS,
    REDIRECTS,
    FeedSource,
    FetchOutcome,
    HttpSettings,
    _basic_auth,
    _checked_url,
    _conditional_headers,
    _describe,
    _error,
    _Failure,
    _follow_permanent_redirect,
    _origin,
    not_polled,
)
from connectors.politeness import HostGate, interleave_by_host
from connectors.state import FeedState
from connectors.transport import AiohttpTransport
from schemas.ids import sha256_hex, stable_id
from schemas.records import RawFetch

T = TypeVar("T")


class _Poller:
    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self.transport = AiohttpTransport()
        self.gate = HostGate(settings.per_host_concurrency, settings.per_host_min_gap)
        self.slots = asyncio.Semaphore(settings.concurrency)


async def _before(deadline: float, work: Awaitable[T]) -> T:
    async with asyncio.timeout_at(deadline):
        return await work


async def _read_capped(response: httpx.Response, settings: HttpSettings) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_bytes:
        raise TooLarge(f"Content-Length {declared} exceeds {settings.max_bytes} bytes")
    body = CappedBody(response.headers.get("content-encoding"), settings.max_bytes)
    async for chunk in response.aiter_raw():
        body.feed(chunk)
    return body.finish()


async def _get(
    poller: _Poller, url_text: str, headers: dict[str, str], deadline: float
) -> tuple[int, httpx.Headers, bytes, str | None]:
    settings = poller.settings
    url = _checked_url(url_text)
    auth, auth_origin = _basic_auth(url), _origin(url)
    seen = {str(url.copy_with(username=None, password=None))}
    permanent: str | None = None
    permanent_unbroken = True
    timeout = {
        "connect": settings.connect_timeout,
        "read": settings.read_timeout,
        "write": settings.read_timeout,
        "pool": settings.total_deadline,
    }
    for _hop in range(settings.max_redirects + 1):
        target = url.copy_with(username=None, password=None)
        hop_headers = dict(headers)
        if auth and _origin(url) == auth_origin:
            hop_headers["Authorization"] = auth
        request = httpx.Request("GET", target, headers=hop_headers, extensions={"timeout": timeout})
        async with poller.gate.slot(f"{url.host}:{url.port}"):
            response = await _before(deadline, poller.transport.handle_async_request(request))
            try:
                if response.status_code not in REDIRECTS:
                    body = b""
                    if response.status_code < 300:
                        body = await _before(deadline, _read_capped(response, settings))
                    return response.status_code, response.headers, body, permanent
            finally:
                await response.aclose()
        location = response.headers.get("location")
        if not location:
            raise _Failure(PERMANENT, f"redirects: HTTP {response.status_code} without Location")
        url = target.join(location)
        next_text = str(url.copy_with(username=None, password=None))
        if next_text in seen:
            raise _Failure(PERMANENT, f"redirects: loop back to {next_text[:200]}")
        seen.add(next_text)
        if permanent_unbroken and response.status_code in PERMANENT_REDIRECTS:
            permanent = next_text
        else:
            permanent_unbroken = False
    raise _Failure(PERMANENT, f"redirects: more than {settings.max_redirects}")


async def _fetch_feed(poller: _Poller, source: FeedSource, state: FeedState, now: datetime) -> FetchOutcome:
    settings = poller.settings
    headers = {"User-Agent": settings.user_agent, "Accept": ACCEPT, "Accept-Encoding": ACCEPT_ENCODING}
    conditional = _conditional_headers(state, now, settings)
    headers.update(conditional)
    try:
        deadline = asyncio.get_running_loop().time() + settings.total_deadline
        status, got_headers, body, permanent_target = await _get(
            poller, state.url or source.url, headers, deadline
        )
    except _Failure as failure:
        return _error(source, state, now, failure, settings)
    except (TooLarge, BadEncoding, asyncio.TimeoutError, httpx.HTTPError) as exc:
        return _error(source, state, now, _Failure(RETRYABLE, _describe(exc)), settings)
    digest = None
    if status == 304:
        new_state = state.succeeded(now, 304)
    elif status >= 300:
        return _error(source, state, now, _Failure(RETRYABLE, f"HTTP {status}", status), settings)
    else:
        digest = sha256_hex(body)
        new_state = state.succeeded(
            now, status, got_headers.get("etag"), got_headers.get("last-modified"), digest
        )
    new_state = _follow_permanent_redirect(retry.after_success(new_state), permanent_target, settings)
    if status == 304:
        return FetchOutcome(source, "not_modified", "304 Not Modified", None, new_state)
    if digest == state.body_sha256:
        return FetchOutcome(source, "unchanged", "same body as last poll", None, new_state)
    raw = RawFetch(
        raw_id=stable_id("feed", source.url, digest),
        source=source.name,
        source_kind="feed",
        origin=source.url,
        fetched_at=now,
        status="ok",
        http_status=status,
        content_type=got_headers.get("content-type"),
        etag=got_headers.get("etag"),
        last_modified=got_headers.get("last-modified"),
        body=body,
    )
    return FetchOutcome(source, "ok", f"HTTP {status}, {len(body)} bytes", raw, new_state)


async def _poll_all(
    sources: list[FeedSource], states: dict[str, FeedState], settings: HttpSettings, now: datetime
) -> list[FetchOutcome]:
    poller = _Poller(settings)
    outcomes: list[FetchOutcome | None] = [None] * len(sources)

    async def one(index: int) -> None:
        source = sources[index]
        state = states.get(source.url, FeedState())
        if not retry.is_due(state, now):
            outcomes[index] = not_polled(source, state)
            return
        async with poller.slots:
            outcomes[index] = await _fetch_feed(poller, source, state, now)

    hosts = [httpx.URL(states.get(s.url, FeedState()).url or s.url).host for s in sources]
    try:
        await asyncio.gather(*(one(i) for i in interleave_by_host(hosts)))
    finally:
        await poller.transport.aclose()
    return [o for o in outcomes if o is not None]


def poll_feeds_previous(
    sources: list[FeedSource], states: dict[str, FeedState], settings: HttpSettings, now: datetime
) -> list[FetchOutcome]:
    return asyncio.run(_poll_all(sources, states, settings, now))

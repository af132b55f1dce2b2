"""Polling feeds: one typed outcome per feed, never an exception.

Requests go through the fetch core (`connectors/fetch.py`: the address policy,
timeouts and a total deadline, redirects hop by hop, a capped body); this
module decides what a poll means for the feed: conditional requests, backoff
(`connectors/retry.py`), permanent redirects, feed discovery, and the raw document to land.
A configured URL that serves a web page is searched for the feed it links
(`connectors/discovery.py`), and that feed is fetched in the same poll, under the same
deadline, through the same fetch core; its URL is kept in the feed state and polled from
then on, until it fails for good (a permanent 4xx, or a page again without a feed link):
then the next poll starts over from the configured URL.
A feed URL that serves a sitemap index is followed in the same poll, under the same deadline,
through the same fetch core: the child sitemaps it lists (`connectors.sitemaps.children_to_follow`:
at most `MAX_CHILDREN`, news ones and the newest first) are fetched and each lands as a
document of its own (`FetchOutcome.extra_raws`), or as a typed error record of its own.
A feed URL's `user:password@` is kept out of everything stored: `FeedSource.url`
never holds it; it is sent as Basic credentials to the feed's own origin only.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit

import httpx

from connectors import discovery, retry
from connectors.errors import PERMANENT, RETRYABLE
from connectors.feeds import prepare_body, sitemap_kind
from connectors.fetch import (
    FETCH_ERRORS,
    Fetched,
    Fetcher,
    FetchFailure,
    HttpSettings,
    default_headers,
    failure,
    within,
)
from connectors.politeness import interleave_by_host
from connectors.sitemaps import (
    MAX_CHILDREN,
    SITEMAP_INDEX,
    URLSET,
    ChildSitemap,
    children_to_follow,
    parse_sitemap,
)
from connectors.state import FeedState
from schemas.ids import sha256_hex, stable_id
from schemas.records import RawFetch

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)


@dataclass(frozen=True)
class FeedSource:
    name: str
    url: str
    verify_tls: bool = True  # false only when configured so for this one feed
    fetch_articles: bool = False  # fetch each new entry's page for its full text (connectors/articles.py)
    poll_interval: float | None = None  # `newsbeam stream`: this feed's own period (None: `[stream]`'s)
    tags: tuple[str, ...] = ()  # `[[feeds]] tags` and the OPML categories it is filed under
    userinfo: str | None = field(default=None, repr=False, compare=False)  # from the configured URL

    def __post_init__(self) -> None:
        try:
            parsed = httpx.URL(self.url)
        except (httpx.InvalidURL, UnicodeError, ValueError):
            return  # polled as given: the fetch core reports it as a bad URL
        if parsed.userinfo:
            object.__setattr__(self, "userinfo", parsed.userinfo.decode("ascii"))
            object.__setattr__(self, "url", str(parsed.copy_with(username=None, password=None)))

    def request_url(self) -> str:
        """The URL to request: `url` with the configured credentials, if any."""
        if not self.userinfo:
            return self.url
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{self.userinfo}@{rest}"


@dataclass(frozen=True)
class FetchOutcome:
    """What one poll of one feed produced.

    `status` is ok | not_modified | unchanged | error (polled) or skipped_backoff |
    skipped_dead | retired (not polled); `raw` is the document to land (None unless
    ok or error); `extra_raws` more documents to land with it (the child sitemaps of a
    sitemap index, fetched or failed: `landed_raws` gives them all); `state` is what the
    feed state becomes once the run is committed.
    """

    source: FeedSource
    status: str
    detail: str
    raw: RawFetch | None
    state: FeedState
    extra_raws: tuple[RawFetch, ...] = ()


def landed_raws(outcomes: Iterable[FetchOutcome]) -> list[RawFetch]:
    """Every document the outcomes have to land: each one's `raw` and `extra_raws`."""
    return [r for o in outcomes for r in ((o.raw,) if o.raw is not None else ()) + o.extra_raws]


def per_document(outcomes: Iterable[FetchOutcome]) -> list[FetchOutcome]:
    """The outcomes with one outcome more per extra raw (the same source, status and state,
    that raw as its `raw`): for code that reads one document per outcome, e.g. the
    entries whose pages are fetched."""
    return [
        dataclasses.replace(o, raw=r, extra_raws=()) if r is not o.raw else o
        for o in outcomes
        for r in (o.raw, *o.extra_raws)
    ]


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


def _error(
    source: FeedSource,
    state: FeedState,
    at: datetime,
    failure: FetchFailure,
    settings: HttpSettings,
    retry_after: float | None = None,
    retire: bool = True,
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
        error=failure.message,
    )
    failed = state.failed(at, failure.http_status, failure.message)
    new_state = retry.after_failure(failed, source.url, at, retry_after, settings.retry_policy())
    if failure.http_status == 410 and retire:
        new_state = dataclasses.replace(new_state, retired=True, next_poll_at=None)
    return FetchOutcome(source, "error", failure.message, raw, new_state)


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


async def _get_feed(
    fetcher: Fetcher,
    source: FeedSource,
    state: FeedState,
    headers: list[tuple[str, str]],
    plain_headers: list[tuple[str, str]],
) -> tuple[Fetched, str | None]:
    """The response of the URL polled, or, when that is a web page, of the feed it links;
    with the feed URL discovered (None when there was no page). Raises what `Fetcher.get`
    raises, and FetchFailure `no_feed_found` for a page that links no feed."""
    got = await fetcher.get(state.url or source.request_url(), headers, verify_tls=source.verify_tls)
    if not _is_page(got):
        return got, None
    found = discovery.find_feed_url(got.body, got.url, got.headers.get("content-type"))
    if found is None:
        raise FetchFailure(PERMANENT, "no_feed_found", discovery.not_found_detail(got.url), got.status)
    # Validators belong to the URL that gave them: the discovered feed is asked unconditionally.
    feed = await fetcher.get(found, plain_headers, verify_tls=source.verify_tls)
    if _is_page(feed):
        detail = f"{found[:300]}, linked as the feed of {got.url[:300]}, is a web page, not a feed"
        raise FetchFailure(PERMANENT, "no_feed_found", detail, feed.status)
    return feed, found


def _is_page(got: Fetched) -> bool:
    return 200 <= got.status < 300 and discovery.is_html_page(got.body, got.headers.get("content-type"))


def _forget_discovery(state: FeedState) -> FeedState:
    """The state once a discovered feed has failed for good: the next poll asks the configured
    URL again (unconditionally: the validators were the lost feed's)."""
    return dataclasses.replace(
        state,
        url=None,
        discovered_url=None,
        redirect_target=None,
        redirect_polls=0,
        etag=None,
        last_modified=None,
        last_full_fetch_at=None,
    )


def _failed(
    source: FeedSource,
    state: FeedState,
    at: datetime,
    failure: FetchFailure,
    settings: HttpSettings,
    retry_after: float | None = None,
    discovered_now: bool = False,
) -> FetchOutcome:
    """`_error`, except for a discovered feed that failed for good (a permanent 4xx, or a page
    without a feed link): then the discovery is forgotten, so that the next poll reads the
    configured URL's page again, and a 410 retires nothing (that page is still there)."""
    discovered = discovered_now or (state.discovered_url is not None and state.url is not None)
    status = failure.http_status or 0
    for_good = failure.kind == PERMANENT and (failure.reason == "no_feed_found" or 400 <= status < 500)
    if not (discovered and for_good):
        return _error(source, state, at, failure, settings, retry_after)
    outcome = _error(source, state, at, failure, settings, retry_after, retire=False)
    return dataclasses.replace(outcome, state=_forget_discovery(outcome.state))


async def fetch_feed(fetcher: Fetcher, source: FeedSource, state: FeedState, now: datetime) -> FetchOutcome:
    """Poll one feed once at `now`, and the sitemaps it lists when it is a sitemap index.
    Never raises: every failure is a typed outcome."""
    settings = fetcher.settings
    conditional = _conditional_headers(state, now, settings)
    plain_headers = default_headers(settings, ACCEPT)
    headers = plain_headers
    if conditional:
        headers = [*plain_headers, *conditional.items()]
    async with fetcher.slots:
        deadline = asyncio.get_running_loop().time() + settings.total_deadline
        try:
            got, found = await within(
                settings.total_deadline, _get_feed(fetcher, source, state, headers, plain_headers)
            )
        except FETCH_ERRORS as exc:
            return _failed(source, state, now, failure(exc, settings.total_deadline), settings)
        if found is not None:
            conditional = {}  # the discovered feed was asked without validators
        outcome = _outcome(source, state, now, settings, got, found, conditional)
        raw = outcome.raw
        if outcome.status != "ok" or raw is None or raw.body is None:
            return outcome
        if sitemap_kind(raw.body, raw.content_type) == SITEMAP_INDEX:
            return await _follow_index(fetcher, outcome, got.url, deadline, plain_headers)
    if outcome.state.sitemap_children is not None:  # no longer an index
        outcome = dataclasses.replace(
            outcome, state=dataclasses.replace(outcome.state, sitemap_children=None)
        )
    return outcome


def _outcome(
    source: FeedSource,
    state: FeedState,
    now: datetime,
    settings: HttpSettings,
    got: Fetched,
    found: str | None,
    conditional: dict[str, str],
) -> FetchOutcome:
    """What the response of a poll means for the feed."""
    status, digest = got.status, None
    if status == 304:
        if not conditional:
            bad_304 = FetchFailure(RETRYABLE, "protocol", "304 Not Modified to an unconditional request", 304)
            return _error(source, state, now, bad_304, settings)
        new_state = state.succeeded(now, 304)
    elif status >= 300:
        kind = RETRYABLE if status in (408, 425, 429) or status >= 500 else PERMANENT
        retry_after = None
        if status in (429, 503):
            retry_after = retry.parse_retry_after(got.headers.get("retry-after"), now)
        detail = "" if found is None else f"from {found[:300]}, the feed linked by the page"
        http_failure = FetchFailure(kind, f"HTTP {status}", detail, status)
        return _failed(source, state, now, http_failure, settings, retry_after, found is not None)
    else:
        if found is not None:
            # The feed is polled from now on; the page's own redirects no longer matter.
            state = dataclasses.replace(
                state, url=found, discovered_url=found, redirect_target=None, redirect_polls=0
            )
        digest = sha256_hex(got.body)
        new_state = state.succeeded(
            now, status, got.headers.get("etag"), got.headers.get("last-modified"), digest
        )
    new_state = _follow_permanent_redirect(retry.after_success(new_state), got.permanent_target, settings)
    if status == 304:
        return FetchOutcome(source, "not_modified", "304 Not Modified", None, new_state)
    if digest == state.body_sha256:
        # Some servers ignore conditional requests; an identical body is a 304 in effect.
        # (A sitemap index's children are fetched again only when the index changes.)
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
    detail = f"HTTP {status}, {len(got.body)} bytes"
    if found is not None:
        detail += f" from {found[:300]}, the feed linked by the page"
    return FetchOutcome(source, "ok", detail, raw, new_state)


# --- sitemap indexes -------------------------------------------------------------


async def _follow_index(
    fetcher: Fetcher, outcome: FetchOutcome, index_url: str, deadline: float, headers: list[tuple[str, str]]
) -> FetchOutcome:
    """The outcome of a poll that fetched a sitemap index (ok, changed), with the sitemaps it
    lists fetched one after another until the poll's deadline: each one an ok record (a
    `<urlset>`, unless its body is the one landed last time) or an error record (a failed
    request, a nested index, not a sitemap). The poll stays ok whatever its children do."""
    raw = outcome.raw
    assert raw is not None and raw.body is not None
    prepared, _ = prepare_body(raw.body, raw.content_type)
    listed = parse_sitemap(prepared, SITEMAP_INDEX, index_url).children
    chosen, _left_out = children_to_follow(listed)
    before = outcome.state.sitemap_children or {}
    hashes: dict[str, str] = {}
    extra: list[RawFetch] = []
    unchanged = failed = 0
    for child in chosen:
        result = await _fetch_child(fetcher, outcome.source, child, index_url, deadline, headers)
        if isinstance(result, FetchFailure):
            extra.append(_child_error(outcome.source, child.loc, raw.fetched_at, result))
            failed += 1
            continue
        digest = sha256_hex(result.body)
        hashes[child.loc] = digest
        if before.get(child.loc) == digest:
            unchanged += 1
            continue
        extra.append(_child_raw(outcome.source, child.loc, raw.fetched_at, result, digest))
    landed = len(chosen) - unchanged - failed
    detail = (
        f"{outcome.detail}; a sitemap index listing {len(listed)} sitemaps, {len(chosen)} followed"
        f" (at most {MAX_CHILDREN}): {landed} landed, {unchanged} unchanged, {failed} failed"
    )
    state = dataclasses.replace(outcome.state, sitemap_children=hashes)
    return dataclasses.replace(outcome, detail=detail, state=state, extra_raws=tuple(extra))


async def _fetch_child(
    fetcher: Fetcher,
    source: FeedSource,
    child: ChildSitemap,
    index_url: str,
    deadline: float,
    headers: list[tuple[str, str]],
) -> Fetched | FetchFailure:
    """One child sitemap, within what is left of the poll's deadline; a `<urlset>` or why not."""
    settings = fetcher.settings
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        detail = f"not fetched: the poll's total_deadline of {settings.total_deadline:g}s ran out"
        return FetchFailure(RETRYABLE, "deadline", detail)
    try:
        got = await within(
            left, fetcher.get(_child_request_url(source, child.loc), headers, verify_tls=source.verify_tls)
        )
    except FETCH_ERRORS as exc:
        return failure(exc, settings.total_deadline)
    if got.status >= 300:
        kind = RETRYABLE if got.status in (408, 425, 429) or got.status >= 500 else PERMANENT
        return FetchFailure(kind, f"HTTP {got.status}", "", got.status)
    content_type = got.headers.get("content-type")
    kind_of = sitemap_kind(got.body, content_type)
    if kind_of == URLSET:
        return got
    if kind_of == SITEMAP_INDEX:
        nested = parse_sitemap(prepare_body(got.body, content_type)[0], SITEMAP_INDEX, got.url).children
        shown = ", ".join(c.loc for c in nested[:5]) + (
            f" and {len(nested) - 5} more" if len(nested) > 5 else ""
        )
        detail = (
            f"a sitemap index inside the sitemap index {index_url[:300]}, not followed (one level only);"
            f" it lists {len(nested)} sitemaps: {shown or '(none)'}"
        )
        return FetchFailure(PERMANENT, "sitemap_index_nested", detail[:1000], got.status)
    what = f"{len(got.body)} bytes whose root element is not <urlset>"
    if got.body[:2] == b"\x1f\x8b":
        what = "a gzip file served without Content-Encoding: gzip, not decompressed"
    return FetchFailure(
        PERMANENT, "not_a_sitemap", f"listed by the sitemap index {index_url[:300]}: {what}", got.status
    )


def _child_request_url(source: FeedSource, url: str) -> str:
    """`url` with the feed's credentials when it is on the feed's own origin."""
    if not source.userinfo:
        return url
    try:
        child, feed = httpx.URL(url), httpx.URL(source.url)
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return url  # the fetch core reports it as a bad URL
    if (child.scheme, child.host, child.port) != (feed.scheme, feed.host, feed.port) or child.userinfo:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{source.userinfo}@{rest}"


def _child_raw(source: FeedSource, url: str, at: datetime, got: Fetched, digest: str) -> RawFetch:
    return RawFetch(
        raw_id=stable_id("sitemap-child", source.url, url, digest),
        source=source.name,
        source_kind="feed",
        origin=url,
        fetched_at=at,
        status="ok",
        http_status=got.status,
        content_type=got.headers.get("content-type"),
        etag=got.headers.get("etag"),
        last_modified=got.headers.get("last-modified"),
        body=got.body,
    )


def _child_error(source: FeedSource, url: str, at: datetime, failure: FetchFailure) -> RawFetch:
    return RawFetch(
        raw_id=stable_id("sitemap-child-error", source.url, url, at.isoformat()),
        source=source.name,
        source_kind="feed",
        origin=url,
        fetched_at=at,
        status="error",
        http_status=failure.http_status,
        error_kind=failure.kind,
        error=failure.message,
    )


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


async def poll_all(
    sources: list[FeedSource],
    states: dict[str, FeedState],
    settings: HttpSettings,
    transport: httpx.AsyncBaseTransport | None,
    now: datetime,
    on_done: Callable[[int, int], None] | None = None,
) -> list[FetchOutcome]:
    """`poll_feeds` inside a running event loop; a given transport is left open."""
    fetcher = Fetcher(settings, transport)
    outcomes: list[FetchOutcome | None] = [None] * len(sources)
    feed_states = [states.get(s.url, _NEVER_POLLED) for s in sources]
    if fetcher.gate.active:  # with no per-host limit to wait on, the order makes no difference
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
                outcomes[index] = await fetch_feed(fetcher, source, state, now)
            else:
                outcomes[index] = not_polled(source, state)
            if on_done is not None:
                on_done(sum(o is not None for o in outcomes), len(sources))

    try:
        await asyncio.gather(*(worker() for _ in range(min(settings.concurrency, len(sources)))))
    finally:
        await fetcher.aclose()
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
    on_done: Callable[[int, int], None] | None = None,
) -> list[FetchOutcome]:
    """Poll every feed that is due, concurrently; outcomes come back in the order of `sources`.
    The clock is read once: that time is every poll's `fetched_at` and every schedule's base.
    `on_done(done, total)` is told after each feed (progress on a terminal)."""
    if not sources:
        return []
    return asyncio.run(poll_all(sources, states, settings, transport, clock(), on_done))

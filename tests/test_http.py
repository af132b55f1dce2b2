"""Feed polling against real HTTP servers on 127.0.0.1: statuses, validators, limits, concurrency."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from connectors.errors import PERMANENT, RETRYABLE
from connectors.fetch import Fetcher, HttpSettings
from connectors.http import FeedSource, FetchOutcome, fetch_feed, poll_feeds
from connectors.state import FeedState
from schemas.ids import sha256_hex
from tests.conftest import FAST_HTTP, feed_fixture
from tests.feedserver import FeedServer, Route
from tests.hostile import HostileServer

FIXED = datetime(2024, 6, 19, 12, 0, tzinfo=timezone.utc)
RSS = feed_fixture("rss2.xml")
RSS_UPDATE = feed_fixture("rss2_update.xml")
ETAG = '"v1-rss"'
LAST_MODIFIED = "Wed, 19 Jun 2024 10:00:00 GMT"
QUICK = replace(FAST_HTTP, connect_timeout=1.0, read_timeout=0.5, total_deadline=1.0)


def clock() -> datetime:
    return FIXED


# --- a scripted server: each route is a function of the request handler ------------------------

Handler = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture
def server() -> Iterator[HostileServer]:
    srv = HostileServer()
    yield srv
    srv.close()


def respond(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    content_length: bool = True,
) -> None:
    h.send_response(status)
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    if content_length:
        h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def conditional(body: bytes, etag: str = ETAG, last_modified: str = LAST_MODIFIED) -> Handler:
    """Honours If-None-Match and If-Modified-Since, like a well-behaved feed server."""

    def route(h: BaseHTTPRequestHandler) -> None:
        validators = {"ETag": etag, "Last-Modified": last_modified}
        if h.headers.get("If-None-Match") == etag or h.headers.get("If-Modified-Since") == last_modified:
            respond(h, 304, headers=validators, content_length=False)
            return
        respond(h, 200, body, {"Content-Type": "application/rss+xml", **validators})

    return route


def redirect(location: str) -> Handler:
    def route(h: BaseHTTPRequestHandler) -> None:
        respond(h, 302, headers={"Location": location})

    return route


def poll(
    url: str,
    state: FeedState | None = None,
    settings: HttpSettings = QUICK,
    name: str = "wire",
    transport: httpx.AsyncBaseTransport | None = None,
) -> FetchOutcome:
    """One poll of one feed at FIXED, whatever its schedule says."""

    async def one() -> FetchOutcome:
        fetcher = Fetcher(settings, transport)
        try:
            return await fetch_feed(fetcher, FeedSource(name, url), state or FeedState(), FIXED)
        finally:
            await fetcher.aclose()

    return asyncio.run(one())


def assert_error(
    outcome: FetchOutcome, kind: str, reason_prefix: str, http_status: int | None = None
) -> None:
    assert outcome.status == "error", outcome
    assert outcome.detail.startswith(reason_prefix), outcome.detail
    raw = outcome.raw
    assert raw is not None
    assert (raw.status, raw.error_kind, raw.http_status, raw.body) == ("error", kind, http_status, None)
    assert raw.error == outcome.detail
    assert (raw.source, raw.source_kind, raw.origin, raw.fetched_at) == (
        outcome.source.name,
        "feed",
        outcome.source.url,
        FIXED,
    )
    assert outcome.state.last_status == "error"
    assert outcome.state.last_error == outcome.detail
    assert outcome.state.last_http_status == http_status


# --- success and conditional GET ---------------------------------------------------------------


def test_ok_returns_raw_document_and_new_state(server: HostileServer) -> None:
    server.routes["/rss"] = conditional(RSS)
    url = server.url("/rss")

    outcome = poll(url)

    assert outcome.status == "ok"
    assert outcome.detail == f"HTTP 200, {len(RSS)} bytes"
    raw = outcome.raw
    assert raw is not None
    assert (raw.status, raw.http_status, raw.error_kind, raw.error) == ("ok", 200, None, None)
    assert (raw.source, raw.source_kind, raw.origin) == ("wire", "feed", url)
    assert raw.body == RSS
    assert raw.etag == ETAG
    assert raw.last_modified == LAST_MODIFIED
    assert raw.content_type == "application/rss+xml"
    assert raw.fetched_at == FIXED
    state = outcome.state
    assert (state.etag, state.last_modified, state.body_sha256) == (ETAG, LAST_MODIFIED, sha256_hex(RSS))
    assert (state.last_status, state.last_http_status, state.consecutive_failures) == ("ok", 200, 0)
    assert state.last_polled_at == state.last_success_at == FIXED.isoformat()
    assert server.headers_of("/rss")[0].get("if-none-match") is None  # a new feed sends no validators


def test_raw_id_depends_on_url_and_body_only(server: HostileServer) -> None:
    server.routes["/a"] = conditional(RSS)
    server.routes["/b"] = conditional(RSS)

    first = poll(server.url("/a")).raw
    again = poll(server.url("/a"), name="other").raw
    other_url = poll(server.url("/b")).raw
    server.routes["/a"] = conditional(RSS_UPDATE, etag='"v2"')
    other_body = poll(server.url("/a")).raw

    assert first is not None and again is not None and other_url is not None and other_body is not None
    assert first.raw_id == again.raw_id
    assert len({first.raw_id, other_url.raw_id, other_body.raw_id}) == 3


def test_second_poll_sends_validators_and_gets_not_modified(server: HostileServer) -> None:
    server.routes["/rss"] = conditional(RSS)
    first = poll(server.url("/rss"))

    second = poll(server.url("/rss"), first.state)

    sent = server.headers_of("/rss")[1]
    assert sent["if-none-match"] == ETAG
    assert sent["if-modified-since"] == LAST_MODIFIED
    assert (second.status, second.detail, second.raw) == ("not_modified", "304 Not Modified", None)
    assert (second.state.etag, second.state.last_modified) == (ETAG, LAST_MODIFIED)
    assert second.state.body_sha256 == sha256_hex(RSS)
    assert (second.state.last_http_status, second.state.consecutive_failures) == (304, 0)


def test_last_modified_alone_is_enough_for_not_modified(server: HostileServer) -> None:
    server.routes["/rss"] = conditional(RSS)
    state = FeedState(
        last_modified=LAST_MODIFIED, body_sha256=sha256_hex(RSS), last_full_fetch_at=FIXED.isoformat()
    )

    outcome = poll(server.url("/rss"), state)

    assert "if-none-match" not in server.headers_of("/rss")[0]
    assert (outcome.status, outcome.raw) == ("not_modified", None)
    assert outcome.state.last_modified == LAST_MODIFIED


def test_server_ignoring_validators_with_same_body_is_unchanged(server: HostileServer) -> None:
    counter = iter(range(100))

    def ignores_validators(h: BaseHTTPRequestHandler) -> None:
        respond(h, 200, RSS, {"ETag": f'"{next(counter)}"'})  # a new ETag every time, same body

    server.routes["/rss"] = ignores_validators
    first = poll(server.url("/rss"))
    second = poll(server.url("/rss"), first.state)

    assert server.headers_of("/rss")[1]["if-none-match"] == '"0"'
    assert (second.status, second.detail, second.raw) == ("unchanged", "same body as last poll", None)
    assert second.state.body_sha256 == first.state.body_sha256 == sha256_hex(RSS)
    assert (second.state.etag, second.state.last_http_status) == ('"1"', 200)

    server.routes["/rss"] = lambda h: respond(h, 200, RSS_UPDATE)
    third = poll(server.url("/rss"), second.state)
    assert third.status == "ok"
    assert third.raw is not None and third.raw.body == RSS_UPDATE


def test_non_ascii_validator_is_not_sent_back_and_does_not_crash(server: HostileServer) -> None:
    def utf8_validators(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h._headers_buffer.append(b'ETag: "caf\xc3\xa9"\r\nLast-Modified: mi\xc3\xa9rcoles\r\n')  # type: ignore[attr-defined]
        h.send_header("Content-Length", str(len(RSS)))
        h.end_headers()
        h.wfile.write(RSS)

    server.routes["/rss"] = utf8_validators
    first = poll(server.url("/rss"))
    assert first.status == "ok"
    assert first.state.etag == '"café"'

    second = poll(server.url("/rss"), first.state)

    assert (second.status, second.raw) == ("unchanged", None)
    sent = server.headers_of("/rss")[1]
    assert "if-none-match" not in sent and "if-modified-since" not in sent


# --- HTTP errors and the failure streak ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (404, PERMANENT),
        (410, PERMANENT),
        (403, PERMANENT),
        (500, RETRYABLE),
        (503, RETRYABLE),
        (429, RETRYABLE),
    ],
)
def test_http_error_statuses_are_typed(server: HostileServer, status: int, kind: str) -> None:
    server.routes["/feed"] = lambda h: respond(h, status, b"nope", {"Content-Type": "text/plain"})

    outcome = poll(server.url("/feed"))

    assert_error(outcome, kind, f"HTTP {status}", http_status=status)
    assert outcome.detail == f"HTTP {status}"
    assert outcome.state.consecutive_failures == 1


def test_failure_streak_counts_up_keeps_validators_and_resets_on_success(feed_server: FeedServer) -> None:
    feed_server.routes["/feed"] = Route(RSS)
    url = feed_server.url("/feed")
    ok = poll(url)
    etag = ok.state.etag
    assert etag

    feed_server.routes["/feed"] = Route(b"busy", status=503, content_type="text/plain")
    state = ok.state
    for expected in (1, 2, 3):
        outcome = poll(url, state)
        state = outcome.state
        assert outcome.status == "error"
        assert state.consecutive_failures == expected
    assert (state.etag, state.body_sha256, state.last_error) == (etag, sha256_hex(RSS), "HTTP 503")
    assert state.last_success_at == FIXED.isoformat()

    feed_server.routes["/feed"] = Route(RSS)  # back, same body and ETag: answered with a 304
    recovered = poll(url, state)

    assert recovered.status == "not_modified"
    assert (recovered.state.consecutive_failures, recovered.state.last_error) == (0, None)
    assert recovered.state.last_status == "ok"


def test_error_raw_id_is_stable_for_the_same_poll_time(server: HostileServer) -> None:
    server.routes["/feed"] = lambda h: respond(h, 500)
    first, second = poll(server.url("/feed")), poll(server.url("/feed"))
    assert first.raw is not None and second.raw is not None
    assert first.raw.raw_id == second.raw.raw_id


# --- time limits --------------------------------------------------------------------------------


def test_server_that_never_answers_times_out_quickly(feed_server: FeedServer) -> None:
    feed_server.routes["/hang"] = Route(hang=30)
    settings = replace(QUICK, read_timeout=0.3)

    started = time.monotonic()
    outcome = poll(feed_server.url("/hang"), settings=settings)
    elapsed = time.monotonic() - started

    assert_error(outcome, RETRYABLE, "timeout: ReadTimeout")
    assert elapsed < 1.5


def test_dripping_body_hits_the_total_deadline(server: HostileServer) -> None:
    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "25")
        h.end_headers()
        h.wfile.flush()
        for _ in range(25):  # one byte every 0.2 s: each read is quick, the whole (5 s) is not
            if server.stop_event.wait(0.2):
                return
            h.wfile.write(b"x")
            h.wfile.flush()

    server.routes["/drip"] = drip
    settings = replace(QUICK, read_timeout=0.5, total_deadline=1.0)

    started = time.monotonic()
    outcome = poll(server.url("/drip"), settings=settings)
    elapsed = time.monotonic() - started

    assert_error(outcome, RETRYABLE, "deadline: response not complete within 1s")
    assert 0.9 <= elapsed < settings.total_deadline + settings.read_timeout + 0.5


# --- size cap -----------------------------------------------------------------------------------


def test_declared_content_length_over_cap_is_too_large_without_reading(server: HostileServer) -> None:
    def huge(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(50 * 1024**3))
        h.end_headers()
        h.wfile.write(b"<rss>")
        h.wfile.flush()
        server.stop_event.wait(5)  # never sends the rest: the client must not wait for it

    server.routes["/huge"] = huge
    started = time.monotonic()
    outcome = poll(server.url("/huge"), settings=replace(QUICK, max_bytes=1000))

    assert_error(outcome, PERMANENT, f"too_large: Content-Length {50 * 1024**3} exceeds 1000 bytes")
    assert time.monotonic() - started < 1.0


def test_undeclared_body_over_cap_is_too_large(server: HostileServer) -> None:
    def endless(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()  # no Content-Length: the body runs until the connection closes
        for _ in range(200):
            h.wfile.write(b"x" * 4096)

    server.routes["/endless"] = endless
    outcome = poll(server.url("/endless"), settings=replace(QUICK, max_bytes=10_000))
    assert_error(outcome, PERMANENT, "too_large: body exceeds 10000 bytes (decoded)")


def test_body_exactly_at_cap_is_accepted(server: HostileServer) -> None:
    body = b"y" * 10_000
    server.routes["/exact"] = lambda h: respond(h, 200, body, content_length=False)
    outcome = poll(server.url("/exact"), settings=replace(QUICK, max_bytes=10_000))
    assert outcome.status == "ok"
    assert outcome.raw is not None and outcome.raw.body == body


def test_gzip_body_is_decoded_and_the_cap_applies_to_decoded_bytes(server: HostileServer) -> None:
    bomb = gzip.compress(b"\0" * 2_000_000)
    assert len(bomb) < 10_000
    server.routes["/feed.gz"] = lambda h: respond(h, 200, gzip.compress(RSS), {"Content-Encoding": "gzip"})
    server.routes["/bomb.gz"] = lambda h: respond(h, 200, bomb, {"Content-Encoding": "gzip"})
    settings = replace(QUICK, max_bytes=100_000)

    fine = poll(server.url("/feed.gz"), settings=settings)
    bombed = poll(server.url("/bomb.gz"), settings=settings)

    assert fine.status == "ok"
    assert fine.raw is not None and fine.raw.body == RSS
    assert "gzip" in server.headers_of("/feed.gz")[0]["accept-encoding"]
    assert_error(bombed, PERMANENT, "too_large: body exceeds 100000 bytes (decoded)")


# --- redirects and URLs ------------------------------------------------------------------------


def test_redirect_within_limit_is_followed(server: HostileServer) -> None:
    server.routes["/old"] = redirect("/middle")
    server.routes["/middle"] = redirect(server.url("/rss"))
    server.routes["/rss"] = conditional(RSS)

    outcome = poll(server.url("/old"), settings=replace(QUICK, max_redirects=2))

    assert outcome.status == "ok"
    assert outcome.raw is not None and outcome.raw.body == RSS
    assert outcome.raw.origin == server.url("/old")  # the configured feed URL, not the final one


def test_redirect_loop_is_a_permanent_error(server: HostileServer) -> None:
    server.routes["/loop"] = redirect("/loop")
    outcome = poll(server.url("/loop"), settings=replace(QUICK, max_redirects=5))
    assert_error(outcome, PERMANENT, f"redirects: loop back to {server.url('/loop')}")
    assert len(server.headers_of("/loop")) == 1  # a loop is seen, not run until the limit


def test_too_many_redirects_is_a_permanent_error(server: HostileServer) -> None:
    for n in range(4):
        server.routes[f"/r{n}"] = redirect(f"/r{n + 1}")
    server.routes["/r4"] = conditional(RSS)
    outcome = poll(server.url("/r0"), settings=replace(QUICK, max_redirects=3))
    assert_error(outcome, PERMANENT, "redirects: more than 3")
    assert server.headers_of("/r4") == []


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://127.0.0.1/feed.xml", "gopher://127.0.0.1/", "http://xn--/"]
)
def test_redirect_to_a_non_http_url_is_an_error_not_a_crash(server: HostileServer, location: str) -> None:
    server.routes["/feed"] = redirect(location)
    outcome = poll(server.url("/feed"))
    assert_error(outcome, PERMANENT, "bad_url: ")


@pytest.mark.parametrize(
    "url",
    ["", "not a url", "mailto:news@example.org", "file:///etc/passwd", "http://[::1", "http://xn--/feed"],
)
def test_invalid_url_is_a_permanent_bad_url(url: str) -> None:
    outcome = poll(url)
    assert_error(outcome, PERMANENT, "bad_url: ")
    assert outcome.state.consecutive_failures == 1


def test_refused_connection_is_a_retryable_network_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/feed"
        outcome = poll(url)
    assert_error(outcome, RETRYABLE, "network: ConnectError")


def test_request_identifies_newsbeam(feed_server: FeedServer) -> None:
    feed_server.routes["/rss"] = Route(RSS)
    poll(feed_server.url("/rss"), settings=FAST_HTTP)
    headers = {k.lower(): v for k, v in feed_server.hits("/rss")[0].items()}
    assert headers["user-agent"].startswith("newsbeam/")
    assert "application/rss+xml" in headers["accept"]


def test_transport_level_failures_are_typed_outcomes() -> None:
    """Unit level (httpx.MockTransport): exceptions from the transport never escape."""

    def transport(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/proto":
            raise httpx.RemoteProtocolError("peer closed connection", request=request)
        raise httpx.WriteTimeout("write stalled", request=request)

    mock = httpx.MockTransport(transport)
    proto = poll("http://feeds.test/proto", name="a", transport=mock)
    stalled = poll("http://feeds.test/slow", name="b", transport=mock)

    assert_error(proto, RETRYABLE, "network: RemoteProtocolError: peer closed connection")
    assert_error(stalled, RETRYABLE, "timeout: WriteTimeout: write stalled")


def test_any_httpx_transport_gets_redirects_decoding_and_validators() -> None:
    """Unit level (httpx.MockTransport): a transport that is not ours goes through httpx
    Request/Response objects, with the same hand-followed redirects, decoding and state."""
    seen: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/old":
            return httpx.Response(301, headers={"Location": "/feed"})
        headers = [("ETag", ETAG), ("Content-Encoding", "gzip"), ("Vary", "A"), ("Vary", "B")]
        return httpx.Response(200, headers=headers, content=gzip.compress(RSS))

    outcome = poll("http://user:pw@feeds.test/old", transport=httpx.MockTransport(transport))

    assert outcome.status == "ok" and outcome.raw is not None and outcome.raw.body == RSS
    assert (outcome.state.etag, outcome.state.redirect_target) == (ETAG, "http://feeds.test/feed")
    assert [str(r.url) for r in seen] == ["http://feeds.test/old", "http://feeds.test/feed"]
    assert all(r.headers["authorization"].startswith("Basic ") for r in seen)  # same origin
    assert seen[0].headers["user-agent"].startswith("newsbeam/")


# --- poll_feeds ---------------------------------------------------------------------------------


def slow_feed(server: HostileServer, delay: float, body: bytes) -> Handler:
    """A feed answering after `delay`. `server.max_waiting` counts requests held at once;
    unlike `max_in_flight` it stops counting one before its response is written, so a
    client that reads the response and sends the next request is never counted twice."""

    def route(h: BaseHTTPRequestHandler) -> None:
        with server._lock:
            server.waiting += 1
            server.max_waiting = max(server.max_waiting, server.waiting)
        try:
            if server.stop_event.wait(delay):
                return
        finally:
            with server._lock:
                server.waiting -= 1
        respond(h, 200, body)

    return route


def test_poll_feeds_runs_concurrently_and_keeps_source_order(server: HostileServer) -> None:
    for n in range(4):
        server.routes[f"/f{n}"] = slow_feed(server, 0.5, f"<rss>{n}</rss>".encode())
    order = [2, 0, 3, 1]
    sources = [FeedSource(f"feed{n}", server.url(f"/f{n}")) for n in order]

    started = time.monotonic()
    outcomes = poll_feeds(sources, {}, replace(FAST_HTTP, concurrency=4), clock=clock)
    elapsed = time.monotonic() - started

    assert [o.source for o in outcomes] == sources
    assert [o.raw.body if o.raw else None for o in outcomes] == [f"<rss>{n}</rss>".encode() for n in order]
    assert server.max_waiting == 4
    assert elapsed < 1.5  # one after another would take 2 s


def test_poll_feeds_respects_the_concurrency_limit(server: HostileServer) -> None:
    for n in range(4):
        server.routes[f"/f{n}"] = slow_feed(server, 0.15, b"<rss/>")
    sources = [FeedSource(f"feed{n}", server.url(f"/f{n}")) for n in range(4)]

    outcomes = poll_feeds(sources, {}, replace(QUICK, concurrency=2), clock=clock)

    assert [o.status for o in outcomes] == ["ok"] * 4
    assert server.max_waiting == 2


def test_poll_feeds_uses_each_feeds_state_and_never_raises(server: HostileServer) -> None:
    server.routes["/known"] = conditional(RSS)
    server.routes["/new"] = conditional(RSS_UPDATE, etag='"v2"')
    known = server.url("/known")
    sources = [
        FeedSource("known", known),
        FeedSource("new", server.url("/new")),
        FeedSource("missing", server.url("/missing")),
        FeedSource("broken", "not a url"),
    ]
    states = {
        known: FeedState(
            etag=ETAG,
            body_sha256=sha256_hex(RSS),
            consecutive_failures=2,
            last_full_fetch_at=FIXED.isoformat(),
        )
    }

    outcomes = poll_feeds(sources, states, QUICK, clock=clock)

    assert [(o.source.name, o.status) for o in outcomes] == [
        ("known", "not_modified"),
        ("new", "ok"),
        ("missing", "error"),
        ("broken", "error"),
    ]
    assert server.headers_of("/known")[0]["if-none-match"] == ETAG
    assert "if-none-match" not in server.headers_of("/new")[0]
    assert outcomes[0].state.consecutive_failures == 0
    assert outcomes[2].detail == "HTTP 404" and outcomes[3].detail.startswith("bad_url: ")


def test_poll_feeds_with_no_sources_returns_nothing() -> None:
    assert poll_feeds([], {}, QUICK) == []

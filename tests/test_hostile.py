"""Feed polling against a hostile server on 127.0.0.1: every misbehaviour ends as a typed,
counted status for its feed, never a crashed run."""

from __future__ import annotations

import asyncio
import gzip
import time
import tracemalloc
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import brotli
import pytest

from connectors.errors import PERMANENT, RETRYABLE
from connectors.fetch import Fetcher, HttpSettings
from connectors.http import FeedSource, FetchOutcome, fetch_feed, poll_feeds
from connectors.retry import RetryPolicy, backoff_delay, jitter_fraction, parse_retry_after
from connectors.state import FeedState
from pipeline.run import format_report, run_cycle
from tests.conftest import FAST_HTTP, feed_fixture, make_config
from tests.hostile import RETRY_DATE, HostileServer, brotli_bomb, deflate_bomb, gzip_bomb, respond
from tests.lakeread import duck_rows

T0 = datetime(2024, 6, 19, 12, 0, tzinfo=timezone.utc)
RSS = feed_fixture("rss2.xml")
RSS_UPDATE = feed_fixture("rss2_update.xml")
QUICK = replace(FAST_HTTP, connect_timeout=1.0, read_timeout=0.5, total_deadline=1.0)


def poll(
    url: str, state: FeedState | None = None, settings: HttpSettings = QUICK, **kw: bool
) -> FetchOutcome:
    async def one() -> FetchOutcome:
        fetcher = Fetcher(settings)
        try:
            return await fetch_feed(fetcher, FeedSource("f", url, **kw), state or FeedState(), T0)
        finally:
            await fetcher.aclose()

    return asyncio.run(one())


def assert_error(outcome: FetchOutcome, kind: str, prefix: str) -> None:
    assert outcome.status == "error", outcome
    assert outcome.detail.startswith(prefix), outcome.detail
    assert outcome.raw is not None and outcome.raw.error_kind == kind
    assert outcome.state.consecutive_failures == 1


# --- 1. a total deadline over connect + headers + body ------------------------------------------


@pytest.mark.parametrize("path", ["/drip-headers", "/drip-body"])
def test_dripping_server_is_cut_off_at_the_total_deadline(hostile: HostileServer, path: str) -> None:
    started = time.monotonic()
    outcome = poll(hostile.url(path))
    elapsed = time.monotonic() - started

    assert_error(outcome, RETRYABLE, "deadline: response not complete within 1s")
    assert 0.9 <= elapsed < 1.5  # each byte came well within the read timeout


def test_silent_server_hits_the_read_timeout(hostile: HostileServer) -> None:
    started = time.monotonic()
    outcome = poll(hostile.url("/hang"), settings=replace(QUICK, read_timeout=0.3, total_deadline=3.0))
    assert_error(outcome, RETRYABLE, "timeout: ReadTimeout")
    assert time.monotonic() - started < 1.0


# --- 2. size caps on the decoded body ------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "make"),
    [
        ("gzip", lambda: gzip_bomb(256)),
        ("deflate", lambda: deflate_bomb(256)[0]),
        ("br", lambda: brotli_bomb(256)),
        ("gzip, gzip", lambda: gzip.compress(gzip_bomb(256))),
    ],
)
def test_compression_bomb_stops_at_the_cap_with_bounded_memory(
    hostile: HostileServer, encoding: str, make: object
) -> None:
    bomb = make()  # type: ignore[operator]
    assert len(bomb) < 300_000  # 256 MiB once decoded
    hostile.routes["/bomb"] = lambda h: respond(h, 200, bomb, {"Content-Encoding": encoding})
    settings = replace(QUICK, max_bytes=1_000_000, total_deadline=10.0, read_timeout=5.0)

    tracemalloc.start()
    try:
        outcome = poll(hostile.url("/bomb"), settings=settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert_error(outcome, PERMANENT, "too_large: body exceeds 1000000 bytes (decoded)")
    assert peak < 12 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while decoding"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "identity"])
def test_encoded_feeds_decode_exactly(hostile: HostileServer, encoding: str) -> None:
    packed = {
        "gzip": gzip.compress(RSS),
        "deflate": __import__("zlib").compress(RSS),
        "br": brotli.compress(RSS),
        "identity": RSS,
    }[encoding]
    hostile.routes["/enc"] = lambda h: respond(h, 200, packed, {"Content-Encoding": encoding})
    outcome = poll(hostile.url("/enc"))
    assert outcome.status == "ok", outcome.detail
    assert outcome.raw is not None and outcome.raw.body == RSS
    assert "br" in hostile.hits_of("/enc")[0].headers["accept-encoding"]


def test_truncated_compressed_body_is_a_typed_error(hostile: HostileServer) -> None:
    packed = gzip.compress(RSS)
    half = packed[: len(packed) // 2]
    hostile.routes["/half.gz"] = lambda h: respond(h, 200, half, {"Content-Encoding": "gzip"})
    assert_error(poll(hostile.url("/half.gz")), RETRYABLE, "bad_encoding: compressed body ended early")


def test_unknown_content_encoding_is_a_typed_error(hostile: HostileServer) -> None:
    hostile.routes["/zz"] = lambda h: respond(h, 200, b"??", {"Content-Encoding": "zstd-ish"})
    assert_error(poll(hostile.url("/zz")), RETRYABLE, "bad_encoding: unsupported Content-Encoding")


def test_lying_and_missing_content_length(hostile: HostileServer) -> None:
    # Says 10, sends 1,000: the 10 declared bytes, or a protocol error when the surplus
    # arrives with them (a race between two reads) - never the surplus itself.
    short = poll(hostile.url("/length-lies-short"))
    if short.status == "ok":
        assert short.raw is not None and short.raw.body == b"<rss>xxxxx"
    else:
        assert_error(short, RETRYABLE, "network: RemoteProtocolError")

    long = poll(hostile.url("/length-lies-long"))  # says 100,000, sends 14 and closes
    assert_error(long, RETRYABLE, "network: RemoteProtocolError")

    whole = poll(hostile.url("/no-length"))
    assert whole.status == "ok" and whole.raw is not None and len(whole.raw.body) == 50_005
    capped = poll(hostile.url("/no-length"), settings=replace(QUICK, max_bytes=10_000))
    assert_error(capped, PERMANENT, "too_large: body exceeds 10000 bytes")


# --- 3. redirects ----------------------------------------------------------------------------------


def test_bad_redirects_are_typed_errors(hostile: HostileServer) -> None:
    assert_error(
        poll(hostile.url("/redirect-no-location")), PERMANENT, "redirects: HTTP 302 without Location"
    )
    assert_error(poll(hostile.url("/loop-a")), PERMANENT, f"redirects: loop back to {hostile.url('/loop-a')}")
    assert [h.path for h in hostile.hits] == ["/redirect-no-location", "/loop-a", "/loop-b"]
    assert_error(poll(hostile.url("/to-file")), PERMANENT, "bad_url: redirect to a non-http(s) URL")


def test_credentials_never_follow_a_redirect_to_another_origin(
    hostile: HostileServer, other_origin: HostileServer
) -> None:
    other_origin.routes["/feed"] = lambda h: respond(h, 200, RSS)
    hostile.routes["/same"] = lambda h: respond(h, 302, headers={"Location": "/private"})
    hostile.routes["/private"] = lambda h: respond(
        h, 302, headers={"Location": other_origin.url("/feed"), "Set-Cookie": "session=secret; Path=/"}
    )
    url = hostile.url("/same").replace("://", "://reader:s3cret@")

    outcome = poll(url)

    assert outcome.status == "ok" and outcome.raw is not None and outcome.raw.body == RSS
    auth = "Basic cmVhZGVyOnMzY3JldA=="
    assert [h.headers.get("authorization") for h in hostile.hits] == [auth, auth]  # same origin: kept
    assert "reader" not in hostile.hits[0].path
    forwarded = other_origin.hits_of("/feed")[0].headers
    assert "authorization" not in forwarded and "cookie" not in forwarded


def test_permanent_redirect_moves_the_feed_after_n_polls(hostile: HostileServer) -> None:
    hostile.routes["/old"] = lambda h: respond(h, 301, headers={"Location": "/new"})
    hostile.routes["/new"] = lambda h: respond(h, 200, RSS)
    source = FeedSource("moved", hostile.url("/old"))
    settings = replace(QUICK, permanent_redirect_polls=3)
    state = FeedState()
    seen = []
    for n in range(4):
        outcome = poll_feeds(
            [source], {source.url: state}, settings, clock=lambda n=n: T0 + timedelta(hours=n)
        )[0]
        state = outcome.state
        seen.append((len(hostile.hits_of("/old")), state.url, state.redirect_polls))

    assert seen == [(1, None, 1), (2, None, 2), (3, hostile.url("/new"), 0), (3, hostile.url("/new"), 0)]
    assert outcome.source.url == hostile.url("/old")  # the configured URL stays the identity


def test_gone_retires_the_feed(hostile: HostileServer) -> None:
    source = FeedSource("gone", hostile.url("/gone"))
    first = poll_feeds([source], {}, QUICK, clock=lambda: T0)[0]
    later = poll_feeds([source], {source.url: first.state}, QUICK, clock=lambda: T0 + timedelta(days=30))[0]

    assert (first.status, first.detail, first.state.retired) == ("error", "HTTP 410", True)
    assert (later.status, later.raw) == ("retired", None)
    assert later.detail.startswith("gone (HTTP 410)")
    assert len(hostile.hits_of("/gone")) == 1


# --- 4. Retry-After, backoff, dead feeds -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "wait"),
    [
        ("/retry-seconds", timedelta(hours=2)),
        ("/retry-date", RETRY_DATE - T0),
        ("/retry-absurd", timedelta(hours=24)),  # clamped to the longest backoff
        ("/retry-past", timedelta(seconds=900)),  # clamped to the poll interval
    ],
)
def test_retry_after_in_both_forms_is_obeyed_and_clamped(
    hostile: HostileServer, path: str, wait: timedelta
) -> None:
    source = FeedSource("busy", hostile.url(path))
    first = poll_feeds([source], {}, QUICK, clock=lambda: T0)[0]
    assert first.status == "error" and first.raw is not None and first.raw.error_kind == RETRYABLE
    assert first.state.next_poll_at == (T0 + wait).isoformat()

    states = {source.url: first.state}
    early = poll_feeds([source], states, QUICK, clock=lambda: T0 + wait - timedelta(seconds=1))[0]
    due = poll_feeds([source], states, QUICK, clock=lambda: T0 + wait)[0]

    assert (early.status, early.raw, early.state) == ("skipped_backoff", None, first.state)
    assert due.status == "error"
    assert len(hostile.hits_of(path)) == 2


def test_garbage_retry_after_falls_back_to_jittered_backoff(hostile: HostileServer) -> None:
    source = FeedSource("busy", hostile.url("/retry-garbage"))
    outcome = poll_feeds([source], {}, QUICK, clock=lambda: T0)[0]
    assert outcome.state.next_poll_at is not None
    wait = datetime.fromisoformat(outcome.state.next_poll_at) - T0
    assert wait == timedelta(seconds=backoff_delay(source.url, 1, QUICK.retry_policy()))
    assert timedelta(seconds=900) <= wait <= timedelta(seconds=1125)


def test_retry_after_parsing() -> None:
    assert parse_retry_after("120", T0) == 120.0
    assert parse_retry_after("Wed, 19 Jun 2024 12:10:00 GMT", T0) == 600.0
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after("-5", T0) is None
    assert parse_retry_after(None, T0) is None


def test_backoff_is_exponential_capped_and_deterministic() -> None:
    policy = RetryPolicy(poll_interval=60.0, backoff_max=3600.0)
    delays = [backoff_delay("https://a.example/feed", n, policy) for n in range(1, 9)]
    assert delays == [backoff_delay("https://a.example/feed", n, policy) for n in range(1, 9)]
    assert all(60.0 <= d <= 3600.0 for d in delays)
    assert delays[3] > delays[2] > delays[1] > delays[0] * 1.1
    assert delays[-1] == 3600.0
    assert jitter_fraction("https://a.example/feed", 3) != jitter_fraction("https://b.example/feed", 3)


def test_long_failure_streak_marks_the_feed_dead_then_success_revives_it(hostile: HostileServer) -> None:
    source = FeedSource("flaky", hostile.url("/flaky"))
    hostile.routes["/flaky"] = lambda h: respond(h, 500)
    settings = replace(QUICK, dead_after=3, poll_interval=60.0)
    state, now = FeedState(), T0
    statuses = []
    for _ in range(3):
        outcome = poll_feeds([source], {source.url: state}, settings, clock=lambda now=now: now)[0]
        state = outcome.state
        statuses.append(outcome.status)
        assert state.next_poll_at is not None
        now = datetime.fromisoformat(state.next_poll_at)
    assert statuses == ["error"] * 3
    assert state.dead and state.consecutive_failures == 3
    assert now - T0 > timedelta(days=1)  # after the third failure, a day's wait

    resting = poll_feeds([source], {source.url: state}, settings, clock=lambda: now - timedelta(hours=1))[0]
    assert resting.status == "skipped_dead"
    hostile.routes["/flaky"] = lambda h: respond(h, 200, RSS)
    revived = poll_feeds([source], {source.url: state}, settings, clock=lambda: now)[0]

    assert revived.status == "ok"
    assert (revived.state.dead, revived.state.consecutive_failures, revived.state.next_poll_at) == (
        False,
        0,
        None,
    )
    assert len(hostile.hits_of("/flaky")) == 4


# --- 5. per-host politeness ------------------------------------------------------------------------


def test_many_feeds_on_one_host_never_hammer_it(hostile: HostileServer, other_origin: HostileServer) -> None:
    def slow(h: BaseHTTPRequestHandler) -> None:
        if not hostile.stop_event.wait(0.4):  # long enough that two requests overlap even under load
            respond(h, 200, RSS)

    for n in range(6):
        hostile.routes[f"/f{n}"] = slow
    other_origin.routes["/solo"] = lambda h: respond(h, 200, RSS)
    sources = [FeedSource(f"f{n}", hostile.url(f"/f{n}")) for n in range(6)]
    sources.append(FeedSource("solo", other_origin.url("/solo")))
    settings = replace(QUICK, concurrency=8, per_host_concurrency=2, per_host_min_gap=0.1, total_deadline=5.0)

    outcomes = poll_feeds(sources, {}, settings, clock=lambda: T0)

    assert [o.status for o in outcomes] == ["ok"] * 7
    assert hostile.max_in_flight == 2
    starts = sorted(h.started for h in hostile.hits)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 0.05, gaps  # 0.1 s apart when sent; arrival adds jitter on a busy machine
    # the other host is not kept waiting behind the busy one (whose last request starts after ~1 s)
    assert other_origin.hits[0].started - starts[0] < 0.5


# --- 6. validators that lie, end to end ----------------------------------------------------------


def _always_304(body: list[bytes]) -> object:
    def route(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("If-None-Match"):
            respond(h, 304, headers={"ETag": '"forever"'}, content_length=None)
        else:
            respond(h, 200, body[0], {"ETag": '"forever"', "Content-Type": "application/rss+xml"})

    return route


def test_server_that_always_answers_304_is_refetched_in_full_without_duplicates(
    tmp_path: Path, seeds_dir: Path, hostile: HostileServer
) -> None:
    body = [RSS]
    hostile.routes["/rss"] = _always_304(body)  # type: ignore[assignment]
    config = make_config(tmp_path, seeds_dir, [FeedSource("wire", hostile.url("/rss"))])

    def feed_rows() -> list[dict[str, object]]:
        return [r for r in duck_rows(config.output_dir, "articles") if r["source"] == "wire"]

    first = run_cycle(config, clock=lambda: T0)
    assert len(feed_rows()) == 3
    body[0] = RSS_UPDATE  # the feed changes; the server keeps saying 304
    stale = run_cycle(config, clock=lambda: T0 + timedelta(hours=1))
    assert len(feed_rows()) == 3
    refreshed = run_cycle(config, clock=lambda: T0 + timedelta(hours=13))
    again = run_cycle(config, clock=lambda: T0 + timedelta(hours=26))

    statuses = [
        next(s.status for s in r.sources if s.source == "wire") for r in (first, stale, refreshed, again)
    ]
    assert statuses == ["ok", "not_modified", "ok", "unchanged"]
    assert "if-none-match" not in hostile.hits_of("/rss")[2].headers
    rows = feed_rows()
    assert len(rows) == 4  # 3 items, then the update's 1 new one: nothing twice
    assert len({r["url"] for r in rows}) == len(rows)


def test_new_etag_with_the_same_body_lands_nothing_twice(
    tmp_path: Path, seeds_dir: Path, hostile: HostileServer
) -> None:
    counter = iter(range(100))
    hostile.routes["/rss"] = lambda h: respond(h, 200, RSS, {"ETag": f'"{next(counter)}"'})
    config = make_config(tmp_path, seeds_dir, [FeedSource("wire", hostile.url("/rss"))])

    reports = [run_cycle(config, clock=lambda n=n: T0 + timedelta(hours=n)) for n in range(3)]

    assert [next(s.status for s in r.sources if s.source == "wire") for r in reports] == [
        "ok",
        "unchanged",
        "unchanged",
    ]
    feed_rows = [r for r in duck_rows(config.output_dir, "articles") if r["source"] == "wire"]
    assert len(feed_rows) == 3 and len({r["url"] for r in feed_rows}) == 3


def test_report_shows_feeds_not_polled(tmp_path: Path, seeds_dir: Path, hostile: HostileServer) -> None:
    feeds = [FeedSource("busy", hostile.url("/retry-seconds")), FeedSource("gone", hostile.url("/gone"))]
    config = make_config(tmp_path, seeds_dir, feeds)
    run_cycle(config, clock=lambda: T0)
    report = run_cycle(config, clock=lambda: T0 + timedelta(minutes=30))

    assert [(s.source, s.status) for s in report.sources if s.kind == "feed"] == [
        ("busy", "skipped_backoff"),
        ("gone", "retired"),
    ]
    text = format_report(report)
    assert "skipped_backoff" in text and "not polled: skipped_backoff 1, retired 1" in text
    assert report.exit_code == 0  # nothing failed this run


# --- 7. TLS ----------------------------------------------------------------------------------------


def test_tls_is_verified_unless_the_feed_opts_out(tmp_path: Path) -> None:
    server = HostileServer(tls_dir=tmp_path)
    try:
        server.routes["/rss"] = lambda h: respond(h, 200, RSS)
        verified = poll(server.url("/rss"))
        opted_out = poll(server.url("/rss"), verify_tls=False)
    finally:
        server.close()

    assert_error(verified, PERMANENT, "tls: ")
    assert "certificate" in verified.detail.lower()
    assert opted_out.status == "ok" and opted_out.raw is not None and opted_out.raw.body == RSS

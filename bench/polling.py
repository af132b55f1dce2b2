"""Polling throughput and client CPU per request: 1,000 feeds on a local server, 50 at a time.

    python -m bench.polling [--feeds 1000] [--concurrency 50] [--repeat 3]

The server runs in its own process (asyncio, keep-alive), so the CPU time measured
(`time.process_time` of this process) is the client's alone. Variants:

- naive: the first poller - one shared sync httpx.Client with a pool of
  2 x concurrency connections, one thread per concurrent request (the baseline);
- httpcore: `poll_feeds` (async, every check on) over httpx's own async transport;
- via httpx: `poll_feeds` today, with the aiohttp transport hidden behind a plain
  httpx transport, so every exchange is an httpx Request and Response again;
- shipped: `poll_feeds` as shipped (the aiohttp transport called through `open`);
- plain aiohttp: GET and read with aiohttp alone, no checks, no state: the floor.

Each is timed for 200 responses (full bodies) and 304 responses (conditional GETs);
politeness is off (every feed is on 127.0.0.1), the other limits are the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from multiprocessing.queues import Queue
from typing import Any

import aiohttp
import httpx

from connectors.fetch import HttpSettings
from connectors.http import ACCEPT, FeedSource, FetchOutcome, poll_all, poll_feeds
from connectors.state import FeedState
from connectors.transport import AiohttpTransport

BODY = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>bench</title>'
    + (
        b"<item><title>An item</title><link>https://example.org/a</link><description>"
        + b"Words " * 40
        + b"</description></item>"
    )
    * 8
    + b"</channel></rss>"
)
ETAG = '"bench-v1"'
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    ok = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nETag: %s\r\nContent-Length: %d\r\n\r\n"
        % (ETAG.encode(), len(BODY))
        + BODY
    )
    not_modified = b"HTTP/1.1 304 Not Modified\r\nETag: %s\r\nContent-Length: 0\r\n\r\n" % ETAG.encode()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(not_modified if ETAG.encode() in head else ok)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _serve(ports: Queue[int]) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_handle, "127.0.0.1", 0, backlog=2048)
        ports.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def naive(sources: list[FeedSource], states: dict[str, FeedState], settings: HttpSettings) -> list[int]:
    """The former poll_feeds, reduced to its I/O: a shared sync client, a thread per request."""

    def fetch(client: httpx.Client, source: FeedSource) -> int:
        state = states.get(source.url)
        headers = {"If-None-Match": state.etag} if state and state.etag else {}
        with client.stream("GET", source.url, headers=headers) as response:
            size = sum(len(chunk) for chunk in response.iter_bytes())
            assert size == (0 if response.status_code == 304 else len(BODY))
            return response.status_code

    limits = httpx.Limits(max_connections=settings.concurrency * 2)
    headers = {"User-Agent": settings.user_agent, "Accept": ACCEPT}
    with (
        httpx.Client(limits=limits, headers=headers, timeout=settings.read_timeout) as client,
        ThreadPoolExecutor(max_workers=settings.concurrency) as pool,
    ):
        return list(pool.map(lambda s: fetch(client, s), sources))


class _HttpxOnly(httpx.AsyncBaseTransport):
    """The aiohttp transport seen only through httpx's transport interface."""

    def __init__(self) -> None:
        self._inner = AiohttpTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def plain_aiohttp(
    sources: list[FeedSource], states: dict[str, FeedState], settings: HttpSettings
) -> list[int]:
    """GET and read each feed with aiohttp alone: no deadline, cap, decoding, redirects or state."""

    async def main() -> list[int]:
        codes: list[int] = []
        queue = iter(sources)
        headers = {"User-Agent": settings.user_agent, "Accept": ACCEPT}

        async def worker(session: aiohttp.ClientSession) -> None:
            for source in queue:
                state = states.get(source.url)
                extra = {"If-None-Match": state.etag} if state and state.etag else {}
                async with session.get(source.url, headers={**headers, **extra}) as response:
                    body = await response.read()
                    assert len(body) == (0 if response.status == 304 else len(BODY))
                    codes.append(response.status)

        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            await asyncio.gather(*(worker(session) for _ in range(settings.concurrency)))
        return codes

    return asyncio.run(main())


def shipped(transport: Callable[[], httpx.AsyncBaseTransport | None]) -> Callable[..., list[int]]:
    def run(sources: list[FeedSource], states: dict[str, FeedState], settings: HttpSettings) -> list[int]:
        async def closing(given: httpx.AsyncBaseTransport) -> list[FetchOutcome]:
            try:  # poll_feeds leaves a given transport open: it belongs to the caller
                return await poll_all(sources, states, settings, given, NOW)
            finally:
                await given.aclose()

        given = transport()
        if given is None:
            outcomes = poll_feeds(sources, states, settings, clock=lambda: NOW)
        else:
            outcomes = asyncio.run(closing(given))
        codes = []
        for o in outcomes:
            assert o.status in ("ok", "not_modified", "unchanged"), o.detail
            codes.append(o.state.last_http_status or 0)
        return codes

    return run


VARIANTS: dict[str, Callable[..., list[int]]] = {
    "naive (sync httpx, shared pool)": naive,
    "httpcore (async httpx)": shipped(
        lambda: httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=100))
    ),
    "aiohttp via httpx Request/Response": shipped(_HttpxOnly),
    "aiohttp transport (shipped)": shipped(lambda: None),
    "plain aiohttp (floor, no checks)": plain_aiohttp,
}


def _measure(fn: Callable[..., list[int]], *args: Any) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    codes = fn(*args)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(codes) / wall, cpu * 1000 / len(codes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    ports: Queue[int] = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=30)
        sources = [FeedSource(f"f{n}", f"http://127.0.0.1:{port}/feed/{n}") for n in range(args.feeds)]
        settings = replace(
            HttpSettings(),
            concurrency=args.concurrency,
            per_host_concurrency=args.concurrency,
            per_host_min_gap=0.0,
            allow_hosts=("127.0.0.1",),  # the bench server
        )
        known = FeedState(etag=ETAG, last_full_fetch_at=NOW.isoformat())
        modes = {"200": {}, "304": {s.url: known for s in sources}}
        print(f"{args.feeds} feeds, concurrency {args.concurrency}, median of {args.repeat} runs")
        print(f"{'variant':<36} {'resp':>4} {'feeds/s':>8} {'cpu ms/req':>10} {'cpu vs naive':>12}")
        baseline: dict[str, float] = {}
        for name, fn in VARIANTS.items():
            for mode, states in modes.items():
                runs = [_measure(fn, sources, states, settings) for _ in range(args.repeat)]
                rate = statistics.median(r[0] for r in runs)
                cpu = statistics.median(r[1] for r in runs)
                baseline.setdefault(mode, cpu)
                ratio = baseline[mode] / cpu
                print(f"{name:<36} {mode:>4} {rate:>8.0f} {cpu:>10.2f} {ratio:>11.1f}x", flush=True)
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    main()

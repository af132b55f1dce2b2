"""The aiohttp-backed transport: its lean `open` and its httpx face agree, on a real server."""

from __future__ import annotations

import asyncio
import socket
import ssl

import httpx
import pytest

from connectors.transport import AiohttpTransport, header_map
from tests.feedserver import FeedServer, Route


def test_header_map_lowercases_joins_repeats_and_decodes_as_httpx_does() -> None:
    raw = [
        (b"ETag", b'"caf\xc3\xa9"'),
        (b"Vary", b"Accept"),
        (b"vary", b"Accept-Encoding"),
        (b"X-Old", b"caf\xe9"),  # not UTF-8: Latin-1
        (b"Content-Length", b"12"),
    ]
    got = header_map(raw)
    assert got == {
        "etag": '"café"',
        "vary": "Accept, Accept-Encoding",
        "x-old": "café",
        "content-length": "12",
    }
    httpx_view = httpx.Headers([r for r in raw if r[0] != b"X-Old"])
    assert all(got[name] == httpx_view.get(name) for name in ("etag", "vary", "content-length"))


def test_open_and_handle_async_request_see_the_same_response(feed_server: FeedServer) -> None:
    body = b"<rss>" + b"x" * 50_000 + b"</rss>"
    feed_server.routes["/feed"] = Route(body, headers={"Vary": "Accept", "Cache-Control": "max-age=60"})
    url = feed_server.url("/feed")
    sent = [("User-Agent", "newsbeam-test"), ("Accept", "application/rss+xml")]

    async def both() -> tuple[int, dict[str, str], bytes, httpx.Response, bytes]:
        transport = AiohttpTransport()
        try:
            reply = await transport.open(url, sent, 2.0, 2.0)
            try:
                lean = b"".join([chunk async for chunk in reply.chunks()])
            finally:
                await reply.aclose()
            request = httpx.Request("GET", url, headers=sent)
            response = await transport.handle_async_request(request)
            try:
                full = await response.aread()
            finally:
                await response.aclose()
            return reply.status, reply.headers, lean, response, full
        finally:
            await transport.aclose()

    status, headers, lean, response, full = asyncio.run(both())
    assert status == response.status_code == 200
    assert lean == full == body
    assert headers == header_map(response.headers.raw)
    assert headers["cache-control"] == "max-age=60" and headers["content-length"] == str(len(body))
    for hit in feed_server.hits("/feed"):  # exactly the headers given, no defaults of aiohttp's
        assert hit["User-Agent"] == "newsbeam-test" and "Accept-Encoding" not in hit


def test_open_raises_httpx_exceptions_that_name_the_request() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/feed"

        async def refused() -> None:
            transport = AiohttpTransport()
            try:
                await transport.open(url, [], 1.0, 1.0)
            finally:
                await transport.aclose()

        with pytest.raises(httpx.ConnectError) as caught:
            asyncio.run(refused())
    assert str(caught.value.request.url) == url


def test_tls_contexts_are_built_once_and_verify_unless_told_not_to() -> None:
    verified, again, unverified = AiohttpTransport(), AiohttpTransport(), AiohttpTransport(verify=False)
    assert verified._ssl is again._ssl  # the CA bundle is loaded once per process
    assert verified._ssl.verify_mode == ssl.CERT_REQUIRED and verified._ssl.check_hostname
    assert unverified._ssl.verify_mode == ssl.CERT_NONE and unverified._ssl is not verified._ssl

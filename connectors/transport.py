"""An httpx transport whose I/O is done by aiohttp.

httpx stays the API (requests, responses, exceptions), but httpcore's connection
pool costs milliseconds of CPU per request once it holds many connections, while
aiohttp's costs a fraction of one (`python -m bench.polling` measures both). The
transport does only I/O: no redirects, no decompression, no cookies, no auth taken
from the environment - those are decided by the caller, hop by hop.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx
import yarl


class TlsError(httpx.ConnectError):
    """The TLS handshake failed: an untrusted or mismatched certificate, or no common protocol."""


# Most specific first: the first matching class decides the httpx exception.
_ERRORS: list[tuple[type[BaseException], type[Exception]]] = [
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (asyncio.TimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorCertificateError, TlsError),
    (aiohttp.ClientSSLError, TlsError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.InvalidUrlClientError, httpx.InvalidURL),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # unparsable status line or headers
    (aiohttp.ClientError, httpx.ReadError),
    (OSError, httpx.ReadError),
]


def _mapped(exc: BaseException, request: httpx.Request) -> Exception:
    for source, target in _ERRORS:
        if isinstance(exc, source):
            message = str(exc) or type(exc).__name__
            if issubclass(target, httpx.RequestError):
                return target(message, request=request)
            return target(message)  # httpx.InvalidURL carries no request
    raise exc


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _mapped(exc, self._request) from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session per transport; TLS is verified unless `verify` is False."""

    def __init__(self, verify: bool = True, max_connections: int = 100) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # Made now, not at the first request: loading the CA bundle takes tens of ms.
        self._ssl: ssl.SSLContext = httpx.create_ssl_context(verify=verify)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("Accept-Encoding", "User-Agent"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        session = self._get_session()
        try:
            response = await session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                # Raw pairs keep the names' casing (multi_items() lowercases them).
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
                ),
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            if isinstance(exc, ValueError) and not isinstance(exc, aiohttp.ClientError):
                raise httpx.InvalidURL(str(exc)) from exc
            raise _mapped(exc, request) from exc
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),  # bytes: httpx decodes them as it always does
            stream=_Body(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

"""An httpx transport whose I/O is done by aiohttp, and the leaner call the poller uses.

httpx stays the API (requests, responses, exceptions), but httpcore's connection
pool costs milliseconds of CPU per request once it holds many connections, while
aiohttp's costs a fraction of one (`python -m bench.polling` measures both). The
transport does only I/O: no redirects, no decompression, no cookies, no auth taken
from the environment - those are decided by the caller, hop by hop.

Building an httpx Request and Response around every exchange costs about as much
CPU as the exchange itself, so the poller talks to this transport through `open`,
which returns a `Reply` (status, headers as a plain dict, raw body chunks) and
raises the same httpx exceptions. `handle_async_request` serves every other caller.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import ssl
from collections.abc import AsyncIterator, Iterable

import aiohttp
import aiohttp.abc
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
_IO_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def _mapped(exc: BaseException, method: str, url: str, request: httpx.Request | None) -> Exception:
    for source, target in _ERRORS:
        if isinstance(exc, source):
            message = str(exc) or type(exc).__name__
            if issubclass(target, httpx.RequestError):  # the poller's request is built only now
                return target(message, request=request or httpx.Request(method, url))
            return target(message)  # httpx.InvalidURL carries no request
    raise exc


def header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Response header fields by lowercased name, a repeated field's values joined with
    ", " (what httpx.Headers.get answers). Values are UTF-8 when they decode as such,
    else Latin-1, so any byte sequence a server sends comes back as some text."""
    headers: dict[str, str] = {}
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        try:
            value = value_bytes.decode("utf-8")
        except UnicodeDecodeError:
            value = value_bytes.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class Reply(abc.ABC):
    """A response whose status line and headers have arrived; its body is still to read."""

    __slots__ = ("status", "headers")

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers  # see header_map

    @abc.abstractmethod
    def chunks(self) -> AsyncIterator[bytes]:
        """The body as sent (still content-encoded), chunk by chunk; failures are httpx exceptions."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Give the connection back (or drop it if the body was not read to the end)."""


async def _chunks(
    response: aiohttp.ClientResponse, method: str, url: str, request: httpx.Request | None
) -> AsyncIterator[bytes]:
    content = response.content
    try:
        while chunk := await content.readany():
            yield chunk
    except _IO_ERRORS as exc:
        raise _mapped(exc, method, url, request) from exc


class _AiohttpReply(Reply):
    __slots__ = ("_response", "_url")

    def __init__(self, response: aiohttp.ClientResponse, url: str) -> None:
        super().__init__(response.status, header_map(response.raw_headers))
        self._response, self._url = response, url

    def chunks(self) -> AsyncIterator[bytes]:
        return _chunks(self._response, "GET", self._url, None)

    async def aclose(self) -> None:
        self._response.release()


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in _chunks(
            self._response, self._request.method, str(self._request.url), self._request
        ):
            yield chunk

    async def aclose(self) -> None:
        self._response.release()


@functools.cache
def _ssl_context(verify: bool) -> ssl.SSLContext:
    """httpx's context (its CA bundle, its protocol floor), built once per process: loading
    the bundle costs 50-100 ms of CPU, as much as a hundred polls. Contexts are not
    changed after this and are safe to share between sessions and event loops."""
    return httpx.create_ssl_context(verify=verify)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session per transport; TLS is verified unless `verify` is False."""

    def __init__(
        self,
        verify: bool = True,
        max_connections: int = 100,
        resolver: aiohttp.abc.AbstractResolver | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        # Made now, not at the first request: loading the CA bundle takes tens of ms.
        self._ssl: ssl.SSLContext = _ssl_context(verify)
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ssl=self._ssl, resolver=self._resolver
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("Accept-Encoding", "User-Agent"),
            )
        return self._session

    def _timeout(self, connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get((connect, read))
        if timeout is None:
            timeout = self._timeouts[(connect, read)] = aiohttp.ClientTimeout(
                total=None, sock_connect=connect, sock_read=read
            )
        return timeout

    async def _send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        connect_timeout: float | None,
        read_timeout: float | None,
        request: httpx.Request | None = None,
    ) -> aiohttp.ClientResponse:
        session = self._get_session()
        try:
            response = await session.request(
                method,
                yarl.URL(url, encoded=True),
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout(connect_timeout, read_timeout),
            )
        except (*_IO_ERRORS, ValueError) as exc:
            if isinstance(exc, ValueError) and not isinstance(exc, aiohttp.ClientError):
                raise httpx.InvalidURL(str(exc)) from exc
            raise _mapped(exc, method, url, request) from exc
        return response

    async def open(
        self,
        url: str,
        headers: list[tuple[str, str]],
        connect_timeout: float | None,
        read_timeout: float | None,
    ) -> Reply:
        """GET `url` (absolute, already percent-encoded) with exactly `headers`: the
        response once its headers are in. Failures raise httpx exceptions."""
        return _AiohttpReply(await self._send("GET", url, headers, connect_timeout, read_timeout), url)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        response = await self._send(
            request.method,
            str(request.url),
            # Raw pairs keep the names' casing (multi_items() lowercases them).
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            timeout.get("connect"),
            timeout.get("read"),
            request,
        )
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

"""Content-Encoding decoders that stop at a size cap while decoding.

A compression bomb (~50 KB of gzip or brotli that inflates to gigabytes) must fail
at the cap without ever holding more than about the cap in memory, so each
decoder is asked for at most `room + 1` bytes at a time.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Protocol

import brotli


class TooLarge(Exception):
    pass


class BadEncoding(Exception):
    pass


class _Layer(Protocol):
    def decode(self, data: bytes, limit: int) -> bytes:
        """Output for `data`, at most `limit` bytes; input not yet used is kept for later."""

    def pending(self) -> bool:
        """Whether more output can come without more input."""

    def finished(self) -> bool:
        """Whether the encoded stream ended properly with nothing left over."""


class _Zlib:
    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits)
        self._pending = b""

    def decode(self, data: bytes, limit: int) -> bytes:
        try:
            out = self._d.decompress(self._pending + data, limit)
        except zlib.error as exc:
            raise BadEncoding(str(exc)) from exc
        self._pending = self._d.unconsumed_tail
        return out

    def pending(self) -> bool:
        return bool(self._pending)

    def finished(self) -> bool:
        return self._d.eof and not self._pending


class _Deflate(_Zlib):
    """`deflate` is zlib-wrapped by the standard and raw by many servers: accept both."""

    def __init__(self) -> None:
        super().__init__(zlib.MAX_WBITS)
        self._first = True

    def decode(self, data: bytes, limit: int) -> bytes:
        if self._first:
            self._first = False
            probe = zlib.decompressobj(zlib.MAX_WBITS)
            try:
                probe.decompress(data[:64], 1)
            except zlib.error:
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
        return super().decode(data, limit)


class _Brotli:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()
        self._pending = b""

    def decode(self, data: bytes, limit: int) -> bytes:
        self._pending += data
        try:
            if self._d.can_accept_more_data():
                chunk, self._pending = self._pending, b""
            else:
                chunk = b""
            return bytes(self._d.process(chunk, output_buffer_limit=max(limit, 1)))
        except brotli.error as exc:
            raise BadEncoding(str(exc)) from exc

    def pending(self) -> bool:
        return bool(self._pending) or not self._d.can_accept_more_data()

    def finished(self) -> bool:
        return bool(self._d.is_finished()) and not self._pending


_DECODERS: dict[str, Callable[[], _Layer]] = {
    "gzip": lambda: _Zlib(zlib.MAX_WBITS | 16),
    "x-gzip": lambda: _Zlib(zlib.MAX_WBITS | 16),
    "deflate": _Deflate,
    "br": _Brotli,
}
_IDENTITY = "identity"  # no coding: nothing to undo
ACCEPT_ENCODING = "gzip, deflate, br"


def content_codings(content_encoding: str | None) -> list[str]:
    """The codings a Content-Encoding value lists, lowercased, in the order applied;
    `identity` (no coding) is dropped."""
    if not content_encoding:
        return []
    codings = (c.strip().lower() for c in content_encoding.split(","))
    return [c for c in codings if c and c != _IDENTITY]


class CappedBody:
    """Feed wire bytes in; decoded bytes accumulate, and TooLarge is raised past `max_bytes`."""

    def __init__(self, content_encoding: str | None, max_bytes: int) -> None:
        codings = content_codings(content_encoding)
        unknown = [c for c in codings if c not in _DECODERS]
        if unknown:
            raise BadEncoding(f"unsupported Content-Encoding {unknown[0]!r}")
        # Applied in the order listed, so undone in reverse; none at all for a plain body.
        self._layers: list[_Layer] = [_DECODERS[c]() for c in reversed(codings)]
        self._max = max_bytes
        self._parts: list[bytes] = []
        self.size = 0

    def feed(self, data: bytes) -> None:
        if self._layers:
            self._drain(data)
        elif data:  # a plain body: each chunk is kept as it came, only counted
            self._take(data)

    def _take(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max:
            raise TooLarge(f"body exceeds {self._max} bytes (decoded)")
        self._parts.append(chunk)

    def _drain(self, data: bytes) -> None:
        # Every layer is pumped until it has nothing more to give, each call bounded by
        # the room left under the cap (plus one byte, to tell "at the cap" from "over").
        while True:
            chunk = data
            for layer in self._layers:
                chunk = layer.decode(chunk, self._max - self.size + 1)
            data = b""
            if chunk:
                self._take(chunk)
            elif not any(layer.pending() for layer in self._layers):
                return

    def finish(self) -> bytes:
        if self._layers:
            self._drain(b"")
            if not all(layer.finished() for layer in self._layers):
                raise BadEncoding("compressed body ended early (truncated)")
        return self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)

"""Content-derived identifiers: the same input always gets the same id."""

from __future__ import annotations

import hashlib


def stable_id(*parts: str | bytes | None, length: int = 32) -> str:
    """A hex id from the SHA-256 of `parts`, unambiguous across part boundaries."""
    h = hashlib.sha256()
    for part in parts:
        data = b"\x00" if part is None else part if isinstance(part, bytes) else part.encode()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:length]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

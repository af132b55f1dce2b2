"""Typed failures: retryable ones may succeed on the next poll, permanent ones will not."""

from __future__ import annotations

from dataclasses import dataclass

RETRYABLE = "retryable"
PERMANENT = "permanent"


@dataclass(frozen=True)
class Problem:
    """Something wrong with (part of) a document; it becomes a reject row."""

    reason: str
    detail: str
    retryable: bool = False
    position: int | None = None

    @property
    def error_kind(self) -> str:
        return RETRYABLE if self.retryable else PERMANENT

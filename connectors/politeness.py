"""Per-host politeness: at most N requests in flight to one host, and a minimum gap
between the starts of two requests to it, however many feeds that host serves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field


@dataclass
class _Host:
    slots: asyncio.Semaphore
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_start: float = 0.0


def holds_back(per_host: int, min_gap: float, concurrency: int | None) -> bool:
    """Whether per-host limits can ever delay a request: a gap between starts is set, or
    a host gets fewer slots than all requests together (`concurrency`, None: unbounded)."""
    return min_gap > 0 or concurrency is None or per_host < concurrency


_OPEN: AbstractAsyncContextManager[None] = nullcontext()


class HostGate:
    """Lives for one poll (one event loop); hosts are keyed by name and port. Given the
    global `concurrency` that its caller enforces, it steps aside when it cannot bind."""

    def __init__(self, per_host: int, min_gap: float, concurrency: int | None = None) -> None:
        self._per_host = per_host
        self._min_gap = min_gap
        self._hosts: dict[str, _Host] = {}
        self.active = holds_back(per_host, min_gap, concurrency)

    def slot(self, host: str) -> AbstractAsyncContextManager[None]:
        return self._slot(host) if self.active else _OPEN

    @asynccontextmanager
    async def _slot(self, host: str) -> AsyncIterator[None]:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(asyncio.Semaphore(self._per_host))
        async with state.slots:
            async with state.lock:  # starts are spaced one after another
                loop = asyncio.get_running_loop()
                wait = state.next_start - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                state.next_start = loop.time() + self._min_gap
            yield


def interleave_by_host(hosts: list[str]) -> list[int]:
    """Indexes in round-robin order across hosts, so that the first requests started go
    to as many hosts as possible instead of queueing behind one busy host."""
    queues: dict[str, list[int]] = {}
    for index, host in enumerate(hosts):
        queues.setdefault(host, []).append(index)
    order: list[int] = []
    lanes = list(queues.values())
    depth = 0
    while len(order) < len(hosts):
        order.extend(lane[depth] for lane in lanes if depth < len(lane))
        depth += 1
    return order

"""The per-host gate: when it can hold requests back, and that it then does."""

from __future__ import annotations

import asyncio

import pytest

from connectors.politeness import HostGate, holds_back, interleave_by_host


@pytest.mark.parametrize(
    ("per_host", "min_gap", "concurrency", "expected"),
    [
        (2, 0.5, 4, True),  # the defaults
        (8, 0.0, 4, False),  # more per host than in all, no gap: can never bind
        (4, 0.0, 4, False),
        (3, 0.0, 4, True),
        (8, 0.1, 4, True),  # a gap always spaces starts
        (8, 0.0, None, True),  # no global limit known
    ],
)
def test_holds_back(per_host: int, min_gap: float, concurrency: int | None, expected: bool) -> None:
    assert holds_back(per_host, min_gap, concurrency) is expected


def _most_inside(gate: HostGate, requests: int) -> int:
    inside = most = 0

    async def one() -> None:
        nonlocal inside, most
        async with gate.slot("example.org:443"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(requests)))

    asyncio.run(main())
    return most


def test_an_active_gate_bounds_one_host_and_an_idle_one_steps_aside() -> None:
    active = HostGate(per_host=2, min_gap=0.0, concurrency=6)
    idle = HostGate(per_host=6, min_gap=0.0, concurrency=6)
    assert (active.active, idle.active) == (True, False)
    assert _most_inside(active, 6) == 2
    assert _most_inside(idle, 6) == 6


def test_interleave_by_host_round_robins() -> None:
    assert interleave_by_host(["a", "a", "a", "b", "c", "c"]) == [0, 3, 4, 1, 5, 2]

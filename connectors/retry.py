"""When to poll a feed again: Retry-After, exponential backoff with jitter, dead feeds.

Pure functions of their arguments: the time always comes in from the caller (the
run's start), so a rerun with the same inputs makes the same decisions.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

from connectors.state import FeedState

DAY = 86_400.0


@dataclass(frozen=True)
class RetryPolicy:
    poll_interval: float = 900.0  # the schedule's period: the shortest delay worth setting
    backoff_max: float = DAY  # no feed waits longer than this, whatever a server asks
    dead_after: int = 10  # consecutive failures before a feed is declared dead
    dead_poll_interval: float = DAY  # a dead feed is still tried, this rarely


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP-date); None if garbage."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT by definition
        when = when.replace(tzinfo=timezone.utc)
    return (when - now).total_seconds()


def clamp(seconds: float, policy: RetryPolicy) -> float:
    return min(max(seconds, policy.poll_interval), policy.backoff_max)


def jitter_fraction(url: str, streak: int) -> float:
    """A number in [0, 1) that looks random across feeds but is the same on every rerun."""
    digest = hashlib.sha256(f"{url}\n{streak}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def backoff_delay(url: str, streak: int, policy: RetryPolicy) -> float:
    """Exponential in the failure streak, spread by ±25 % so feeds that failed together
    are not retried together, then clamped to [poll interval, backoff max]."""
    base = policy.poll_interval * 2.0 ** min(max(streak - 1, 0), 30)
    return clamp(base * (0.75 + 0.5 * jitter_fraction(url, streak)), policy)


def after_failure(
    state: FeedState, url: str, at: datetime, retry_after: float | None, policy: RetryPolicy
) -> FeedState:
    """Schedule the next poll of a feed whose poll at `at` failed (`state` already counts it)."""
    streak = state.consecutive_failures
    dead = streak >= policy.dead_after
    if dead:
        delay = policy.dead_poll_interval
    elif retry_after is not None:
        delay = clamp(retry_after, policy)
    else:
        delay = backoff_delay(url, streak, policy)
    return dataclasses.replace(state, dead=dead, next_poll_at=(at + timedelta(seconds=delay)).isoformat())


def after_success(state: FeedState) -> FeedState:
    if not state.dead and state.next_poll_at is None:
        return state  # already so: a copy would cost more than the poll's own bookkeeping
    return dataclasses.replace(state, dead=False, next_poll_at=None)


def is_due(state: FeedState, now: datetime) -> bool:
    if state.retired:
        return False
    return state.next_poll_at is None or datetime.fromisoformat(state.next_poll_at) <= now

"""Per-feed poll state (validators, last status, failure streak).

It is saved only after the run that used it has committed its output:
saving an ETag before the items it covers are durable would turn a crash
plus a later 304 into items lost for good.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FeedState:
    etag: str | None = None
    last_modified: str | None = None
    body_sha256: str | None = None
    last_status: str | None = None
    last_http_status: int | None = None
    last_polled_at: str | None = None
    last_success_at: str | None = None
    consecutive_failures: int = 0  # the failure streak: backoff and "dead" are derived from it
    last_error: str | None = None
    # Scheduling (connectors/retry.py): no poll before next_poll_at; a dead feed is polled
    # rarely; a retired one (410 Gone) never again.
    next_poll_at: str | None = None
    dead: bool = False
    retired: bool = False
    # Where the feed is polled when a permanent redirect has been confirmed or a feed was
    # discovered on the configured page (None: the configured URL, which stays the feed's
    # identity), and the permanent redirect seen on the latest polls with how many polls
    # in a row it has been seen.
    url: str | None = None
    redirect_target: str | None = None
    redirect_polls: int = 0
    # The last 200 response: validators are ignored once this is old (servers lie).
    last_full_fetch_at: str | None = None
    # The feed URL found in a `<link rel="alternate">` of the page the configured URL serves
    # (connectors/discovery.py); `url` is where that led (the same, or where it moved since).
    # None: no discovery, `url` (if any) comes from a permanent redirect.
    discovered_url: str | None = None
    # When the feed serves a sitemap index (connectors/http.py follows it): each child sitemap
    # fetched by the last poll that followed it -> the SHA-256 of its body. A child whose
    # body is the same again is not landed again. None: not an index.
    sitemap_children: dict[str, str] | None = None

    def succeeded(
        self,
        at: datetime,
        http_status: int,
        etag: str | None = None,
        last_modified: str | None = None,
        body_sha256: str | None = None,
    ) -> FeedState:
        keep = http_status == 304
        return dataclasses.replace(
            self,
            etag=self.etag if keep else etag,
            last_modified=self.last_modified if keep else last_modified,
            body_sha256=self.body_sha256 if keep else body_sha256,
            last_status="ok",
            last_http_status=http_status,
            last_polled_at=at.isoformat(),
            last_success_at=at.isoformat(),
            consecutive_failures=0,
            last_error=None,
            last_full_fetch_at=self.last_full_fetch_at if keep else at.isoformat(),
        )

    def failed(self, at: datetime, http_status: int | None, reason: str) -> FeedState:
        return dataclasses.replace(
            self,
            last_status="error",
            last_http_status=http_status,
            last_polled_at=at.isoformat(),
            consecutive_failures=self.consecutive_failures + 1,
            last_error=reason,
        )


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Readers see the old file or the new one, never a torn one; no temp file is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True, ensure_ascii=False, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def load_feed_states(
    path: Path, now: datetime | None = None, longest_wait: float = 0.0
) -> dict[str, FeedState]:
    """States keyed by feed URL; a missing file means every feed is new. Given `now`,
    schedule times that no right clock could have stored are dropped (`trusted_schedule`)."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    known = {f.name for f in dataclasses.fields(FeedState)}
    states = {url: FeedState(**{k: v for k, v in d.items() if k in known}) for url, d in data.items()}
    if now is None:
        return states
    return {url: trusted_schedule(s, now, longest_wait) for url, s in states.items()}


def trusted_schedule(state: FeedState, now: datetime, longest_wait: float) -> FeedState:
    """`state` without a next poll further ahead than any wait is ever set (`longest_wait`
    seconds) and without a last poll in the future: both mean the clock was wrong when they
    were stored, and kept they would hold the feed back until that date. The feed is due."""
    changes: dict[str, Any] = {}
    horizon = now + timedelta(seconds=longest_wait)
    if state.next_poll_at is not None and datetime.fromisoformat(state.next_poll_at) > horizon:
        changes["next_poll_at"] = None
    if state.last_polled_at is not None and datetime.fromisoformat(state.last_polled_at) > now:
        changes["last_polled_at"] = None
    return dataclasses.replace(state, **changes) if changes else state


def save_feed_states(path: Path, states: dict[str, FeedState]) -> None:
    write_json_atomic(path, {url: dataclasses.asdict(s) for url, s in sorted(states.items())})


def load_seed_state(path: Path) -> dict[str, str]:
    """raw_id last ingested per seed path, so unchanged seeds are not landed again."""
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")))


def save_seed_state(path: Path, seeds: dict[str, str]) -> None:
    write_json_atomic(path, dict(sorted(seeds.items())))

"""`newsbeam feeds`: the configured feeds, OPML imports included.

`feeds export` writes them as OPML 2.0 (their tags as nested categories) to stdout;
`feeds list` shows each one's name, URL and tags with its health from the lake's feed
state (`_state/feeds.json` under the output dir): the last status, the last success, the
failure streak and the next poll, and where it is polled when that is not its own URL
(a feed discovered on its page, or a confirmed permanent redirect). Nothing is fetched.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime, timezone

from connectors.http import FeedSource
from connectors.opml import write_opml
from connectors.state import FeedState, load_feed_states
from pipeline.config import RunConfig
from pipeline.lake.store import Lake

COLUMNS = ("NAME", "URL", "TAGS", "STATUS", "LAST OK (UTC)", "FAILS", "NEXT POLL (UTC)")
MAX_WIDTH = {"NAME": 32, "URL": 64, "TAGS": 32, "STATUS": 28}


def main(config: RunConfig, args: argparse.Namespace) -> int:
    if args.feeds_command == "export":
        sys.stdout.buffer.write(write_opml(config.feeds))
        sys.stdout.flush()
        return 0
    path = Lake(config.output_dir).state_path("feeds.json")
    states = load_feed_states(path)
    print(f"{len(config.feeds)} feeds; state: {path}{'' if path.exists() else ' (no polls yet)'}")
    print(feed_table(config.feeds, states, datetime.now(timezone.utc)))
    return 0


def feed_table(feeds: Sequence[FeedSource], states: dict[str, FeedState], now: datetime) -> str:
    """One row per feed, and an indented line under it for where it is polled (when that is
    not its URL) and for its last error."""
    if not feeds:
        return "no feeds configured"
    rows: list[tuple[list[str], list[str]]] = []
    for feed in feeds:
        state = states.get(feed.url)
        rows.append((_row(feed, state, now), _notes(feed, state)))
    widths = [
        min(max(len(c), *(len(r[n]) for r, _ in rows)), MAX_WIDTH.get(c, 1000)) for n, c in enumerate(COLUMNS)
    ]
    lines = [_line(list(COLUMNS), widths)]
    for cells, notes in rows:
        lines.append(_line(cells, widths))
        lines += [f"  {'':<{widths[0]}}  -> {note}" for note in notes]
    configured = {f.url for f in feeds}
    stale = sorted(url for url in states if url not in configured)
    if stale:
        lines.append(f"no longer configured, state kept ({len(stale)}):")
        lines += [f"  {url}" for url in stale]
    return "\n".join(lines)


def _line(cells: list[str], widths: list[int]) -> str:
    fitted = [_fit(cell, width) for cell, width in zip(cells, widths, strict=True)]
    return "  ".join(f"{cell:<{width}}" for cell, width in zip(fitted, widths, strict=True)).rstrip()


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _row(feed: FeedSource, state: FeedState | None, now: datetime) -> list[str]:
    tags = ", ".join(feed.tags) or "-"
    if state is None:
        return [feed.name, feed.url, tags, "never polled", "-", "0", "due"]
    return [
        feed.name,
        feed.url,
        tags,
        _status(state),
        _when(state.last_success_at),
        str(state.consecutive_failures),
        _next_poll(state, now),
    ]


def _status(state: FeedState) -> str:
    if state.retired:
        return "retired"
    if state.dead:
        return "dead"
    if state.last_status is None:
        return "never polled"
    if state.last_status == "error":  # its reason: HTTP 404, no_feed_found, timeout...
        return f"error: {(state.last_error or '?').split(':', 1)[0]}"
    code = f" {state.last_http_status}" if state.last_http_status is not None else ""
    return f"{state.last_status}{code}"


def _next_poll(state: FeedState, now: datetime) -> str:
    if state.retired:
        return "never"
    if state.next_poll_at is None or _parse(state.next_poll_at) <= now:
        return "due"
    return _when(state.next_poll_at)


def _notes(feed: FeedSource, state: FeedState | None) -> list[str]:
    if state is None:
        return []
    notes = []
    if state.url and state.url != feed.url:
        if state.discovered_url is None:
            why = "moved there by a permanent redirect"
        elif state.url == state.discovered_url:
            why = "discovered on the page"
        else:
            why = f"discovered on the page as {state.discovered_url}, since moved"
        notes.append(f"polled at {state.url} ({why})")
    if state.last_status == "error" and state.last_error:
        notes.append(f"last error: {state.last_error[:200]}")
    return notes


def _parse(value: str) -> datetime:
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _when(value: str | None) -> str:
    if not value:
        return "-"
    try:
        return _parse(value).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value[:19]

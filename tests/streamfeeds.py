"""A feed that gains items over time, for streaming tests: each item records when it was
published on the (local) server, so a test can measure publication-to-readable latency."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from pipeline.run import load_tagger
from pipeline.streaming.panes import StreamPlan
from tests.feedserver import FeedServer, Route

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
]


def item_title(feed: str, n: int) -> str:
    return f"{feed} bulletin {n}: {WORDS[n % len(WORDS)]} {WORDS[(n * 7 + 3) % len(WORDS)]} report"


def item_body(feed: str, n: int) -> str:
    words = " ".join(WORDS[(n + i) % len(WORDS)] for i in range(n % 5 + 3))
    return f"Story {n} from {feed}: {words} number {n} of the {feed} desk."


def rss(feed: str, items: list[tuple[int, datetime]]) -> bytes:
    entries = "".join(
        f"<item><title>{escape(item_title(feed, n))}</title>"
        f"<link>https://{feed}.example.org/story/{n}</link><guid>{feed}-{n}</guid>"
        f"<pubDate>{format_datetime(at)}</pubDate>"
        f"<description>{escape(item_body(feed, n))}</description></item>"
        for n, at in items
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{feed}</title>'
        f"<link>https://{feed}.example.org/</link><description>t</description>{entries}</channel></rss>"
    ).encode()


@dataclass
class GrowingFeeds:
    """Publishes one new item on each feed every `every` seconds (in a thread) and keeps
    the wall-clock publication time of every item by title."""

    server: FeedServer
    names: list[str]
    every: float
    published: dict[str, float] = field(default_factory=dict)  # title -> time.time() of publication
    _items: dict[str, list[tuple[int, datetime]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def path(self, name: str) -> str:
        return f"/{name}.rss"

    def publish(self) -> None:
        for name in self.names:
            items = self._items.setdefault(name, [])
            n = len(items)
            now = time.time()
            items.append((n, datetime.fromtimestamp(now, timezone.utc).replace(microsecond=0)))
            self.server.routes[self.path(name)] = Route(rss(name, items[-20:]))
            self.published[item_title(name, n)] = now

    def start(self) -> GrowingFeeds:
        self.publish()

        def loop() -> None:
            while not self._stop.wait(self.every):
                self.publish()

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def pane_plan(config: Any, stop_file: Path, started_day: int | None = None) -> StreamPlan:
    """The streaming job's plan for committing panes of `config`'s lake directly (1 s polls,
    10 s windows); `started_day` defaults to today."""
    day = started_day if started_day is not None else datetime.now(timezone.utc).date().toordinal()
    return StreamPlan(
        output_dir=str(config.output_dir.resolve()),
        http=config.http,
        poll_interval=1.0,
        window_seconds=10.0,
        allowed_lateness=10.0,
        stop_file=str(stop_file),
        run_seconds=None,
        tagger=load_tagger(config),
        keep_topics=(),
        near_dup=config.near_dup,
        lookback_days=config.lookback_days,
        started_day=day,
        articles=config.articles,
    )

"""Prometheus metrics: a textfile after each `run`, an endpoint while `stream` runs.

`newsbeam run --metrics-file PATH` writes the run's metrics for node-exporter's
textfile collector (atomically: the collector never reads half a file): what the
run read, wrote, dropped and rejected, how long it took, whether each source
succeeded. `newsbeam stream --metrics-port N` serves `/metrics` while it runs,
updated after every window.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server, write_to_textfile

from pipeline.run import RunReport

_TOTALS = ("articles", "duplicates", "rejects")


def run_registry(report: RunReport, finished_at: float) -> CollectorRegistry:
    """The run's metrics; `finished_at` is a Unix time (the caller's clock, not read here)."""
    registry = CollectorRegistry()
    stats = (report.manifest or {}).get("stats", {})
    by_source: dict[str, dict[str, int]] = stats.get("by_source", {})
    rows = Gauge("newsbeam_run_rows", "Rows the last run wrote, by table", ["table"], registry=registry)
    for table in _TOTALS:
        rows.labels(table).set(sum(counts.get(table, 0) for counts in by_source.values()))
    Gauge("newsbeam_run_seconds", "Wall time of the last run", registry=registry).set(report.seconds)
    Gauge("newsbeam_run_last_finished_timestamp_seconds", "When the last run ended", registry=registry).set(
        finished_at
    )
    Gauge("newsbeam_run_exit_code", "0 clean, 1 partial", registry=registry).set(report.exit_code)
    up = Gauge(
        "newsbeam_source_up",
        "1 when the source's last poll or read did not fail, else 0",
        ["source", "kind", "status"],
        registry=registry,
    )
    for source in report.sources:
        up.labels(source.source, source.kind, source.status).set(0 if source.status == "error" else 1)
    topics = Gauge(
        "newsbeam_run_topic_articles", "Articles of the last run per topic", ["topic"], registry=registry
    )
    for topic, count in sorted((stats.get("topics") or {}).items()):
        topics.labels(topic).set(count)
    return registry


def write_run_metrics(report: RunReport, path: Path, finished_at: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), run_registry(report, finished_at))


class StreamMetrics:
    """The stream's metrics, served on `port` from a daemon thread; `observe` after each window."""

    def __init__(self, port: int, address: str = "0.0.0.0") -> None:
        self.registry = CollectorRegistry()
        self.windows = Counter("newsbeam_stream_windows", "Windows closed", registry=self.registry)
        self.rows = Counter(
            "newsbeam_stream_rows",
            "Rows committed by the stream, by table",
            ["table"],
            registry=self.registry,
        )
        self.failed = Gauge(
            "newsbeam_stream_sources_failed", "Sources that failed in the last window", registry=self.registry
        )
        self.last = Gauge(
            "newsbeam_stream_last_window_timestamp_seconds",
            "When the last window closed",
            registry=self.registry,
        )
        self.commit_seconds = Gauge(
            "newsbeam_stream_last_commit_seconds",
            "Wall time of the last window's commit",
            registry=self.registry,
        )
        start_http_server(port, addr=address, registry=self.registry)

    def observe(self, report: RunReport, closed_at: float) -> None:
        stats = (report.manifest or {}).get("stats", {})
        by_source: dict[str, dict[str, int]] = stats.get("by_source", {})
        self.windows.inc()
        for table in _TOTALS:
            self.rows.labels(table).inc(sum(counts.get(table, 0) for counts in by_source.values()))
        self.failed.set(len(report.failed_sources))
        self.last.set(closed_at)
        self.commit_seconds.set(report.seconds)

"""What `newsbeam report` shows, read from ONE committed state of the lake.

Filters: a window of days (`since`..`until`, inclusive, either end open; or the last N
`days`) and a `topic`. Articles are kept by publication date and topic; duplicates by
their fetch date, and by topic through the article they duplicate; rejects by fetch date
and raw fetches by landing date (neither carries a topic).

Everything comes from `pipeline.ops.maintenance.snapshot_connection` (DuckDB views over the
files the manifests list) plus `_state/feeds.json` for each feed's current poll state.
The manifests are read before and after the views are made: when a commit landed in
between, the views are made again, so every number belongs to the commit the header names.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pipeline.lake.store import Lake
from pipeline.ops.maintenance import MaintenanceError, snapshot_connection
from pipeline.ops.report_articles import IN_WINDOW, KEPT, ON_TOPIC, known_topics, read_articles, topic_label
from pipeline.ops.report_articles import rows as _rows
from pipeline.tagging.taxonomy import Taxonomy

TOP_REASONS = 10
SEED_FILES = "seed files"  # every seeds/… source, as one row of the feed health chart


class ReportError(ValueError):
    """Filters that cannot be met: a window ending before it starts, an unknown topic."""


@dataclass
class ReportData:
    lake: Path
    generated_at: datetime
    days: int | None
    since: date | None  # first day shown (None: from the first)
    until: date | None = None  # last day shown (None: up to the last)
    topic: str | None = None  # only the articles tagged with it (None: every article)
    topic_label: str = ""
    latest_commit: dict[str, Any] | None = None
    commits: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    published_range: tuple[date, date] | None = None
    fetched_range: tuple[date, date] | None = None
    languages: list[tuple[str, int]] = field(default_factory=list)
    language_days: list[tuple[date, str, int]] = field(default_factory=list)  # day, language, articles
    topic_days: list[tuple[date, str, int]] = field(default_factory=list)  # day, topic id, articles
    untagged_days: list[tuple[date, int]] = field(default_factory=list)
    topics: list[dict[str, Any]] = field(default_factory=list)
    topic_labels: dict[str, str] = field(default_factory=dict)
    entities: list[dict[str, Any]] = field(default_factory=list)
    intake: list[dict[str, Any]] = field(default_factory=list)  # per fetched day
    reject_days: list[tuple[date, str, int]] = field(default_factory=list)  # day, "stage: reason", rows
    reasons: list[dict[str, Any]] = field(default_factory=list)
    feed_days: list[tuple[str, date, int, int]] = field(default_factory=list)  # source, day, ok, error
    feed_errors: dict[str, str] = field(default_factory=dict)  # source -> its latest error
    feed_states: list[dict[str, Any]] = field(default_factory=list)
    recent: list[dict[str, Any]] = field(default_factory=list)
    detail_topics: list[str] = field(default_factory=list)  # the topics shown in detail
    topic_entities: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    topic_articles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def window(self) -> tuple[date | None, date | None]:
        """The first and last publication day shown (None: open), the last N days ending today."""
        return self.since, self.until or (self.generated_at.date() if self.days else None)

    @property
    def empty(self) -> bool:
        return not any(self.totals.values())


def _state_key(manifests: list[dict[str, Any]]) -> tuple[int, int, str]:
    last = manifests[-1] if manifests else {}
    return len(manifests), int(last.get("seq", 0)), str(last.get("run_id") or last.get("op_id") or "")


def open_snapshot(
    lake: Lake, taxonomy: Taxonomy | None = None, tries: int = 5
) -> tuple[Any, list[dict[str, Any]]]:
    """DuckDB views over one committed state (labels from `taxonomy`, the built-in one by
    default), and the manifests that make up that state."""
    for _ in range(tries):
        before = lake.manifests()
        con = snapshot_connection(lake, taxonomy)
        after = lake.manifests()
        if _state_key(before) == _state_key(after):
            return con, after
        con.close()
    raise MaintenanceError(f"{lake.root} kept changing while the report read it ({tries} tries)")


def _describe_commit(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": m.get("seq", 0),
        "kind": m.get("kind", "run"),
        "id": m.get("run_id") or m.get("op_id") or "?",
        "when": str(m.get("started_at") or m.get("committed_at") or "-"),
        "outcome": m.get("outcome", "ok" if m.get("kind", "run") == "run" else "-"),
    }


def _feed_states(lake: Lake, names: dict[str, str]) -> list[dict[str, Any]]:
    """Each feed's current poll state (`newsbeam status`'s fields), tolerant of older versions."""
    path = lake.state_path("feeds.json")
    try:
        states = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        return []
    out = []
    for url, s in sorted(states.items() if isinstance(states, dict) else []):
        s = s if isinstance(s, dict) else {}
        status = (s.get("last_status") or "-") + (" (dead)" if s.get("dead") else "")
        out.append(  # keyed by the report's column headers
            {
                "feed": names.get(url, "-"),
                "url": url,
                "last poll": status + (" (retired)" if s.get("retired") else ""),
                "last success": _when(s.get("last_success_at")),
                "failure streak": s.get("failure_streak", s.get("consecutive_failures", 0)),
                "next poll": _when(s.get("next_poll_at")),
                "last error": s.get("last_error") or "",
            }
        )
    return out


def _when(value: Any) -> str:
    """An ISO timestamp of the poll state as `YYYY-MM-DD HH:MM UTC` (anything else as it is)."""
    try:
        return datetime.fromisoformat(str(value)).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(value or "-")


def _source_row(source: str, kind: str) -> str:
    if kind == "seed":
        return SEED_FILES
    if kind == "article_page":
        return f"{source} · article pages"
    return source


def window(
    now: datetime, days: int | None = None, since: date | None = None, until: date | None = None
) -> tuple[date | None, date | None]:
    """The first and last day shown: `since`..`until`, or the `days` days up to `until`
    (up to `now`'s date when `until` is None; no last day then)."""
    if days is not None and days < 1:
        raise ReportError(f"days must be at least 1, not {days}")
    if days is not None and since is not None:
        raise ReportError("give either --days or --since, not both")
    if since is not None and until is not None and since > until:
        raise ReportError(f"--since {since} is after --until {until}: the window would be empty")
    if days:
        since = (until or now.date()) - timedelta(days=days - 1)
    return since, until


def check_topic(con: Any, topic: str) -> None:
    """ReportError naming the closest known topic ids when `topic` is none of them."""
    known = known_topics(con)
    if topic in known:
        return
    close = difflib.get_close_matches(topic, known, n=3, cutoff=0.5)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    listed = ", ".join(known) if known else "none (an empty taxonomy and no tagged article)"
    raise ReportError(f"unknown topic {topic!r}{hint}; known topics: {listed}")


def collect(
    lake_root: Path,
    now: datetime,
    days: int | None = None,
    taxonomy: Taxonomy | None = None,
    feed_names: Mapping[str, str] | None = None,
    since: date | None = None,
    until: date | None = None,
    topic: str | None = None,
) -> ReportData:
    """Everything the report shows. `feed_names`: feed URL -> configured name (the name its
    fetches were landed under when not given). Raises ReportError for filters that cannot
    be met (see `window`, `check_topic`)."""
    lake = Lake(lake_root)
    since, until = window(now, days, since, until)
    data = ReportData(lake=lake.root, generated_at=now, days=days, since=since, until=until, topic=topic)
    con, manifests = open_snapshot(lake, taxonomy)
    try:
        con.execute("SET TimeZone = 'UTC'")
        if topic is not None:
            check_topic(con, topic)
            data.topic_label = topic_label(con, topic)
        _read(con, data, manifests, {"since": since, "until": until, "topic": topic})
        data.feed_states = _feed_states(lake, {**_feed_names(con), **(feed_names or {})})
    finally:
        con.close()
    return data


def _has_raw(con: Any) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'raw'").fetchone()[0])


def _processed_raw(con: Any, manifests: list[dict[str, Any]]) -> str | None:
    """A view of the raw rows the committed runs processed (not a batch landed after the
    snapshot's last commit); None when no raw batch is left."""
    if not _has_raw(con):
        return None
    batches = sorted({b for m in manifests for b in m.get("raw_batches", [])})
    con.execute("CREATE TEMP TABLE _batches (batch_id VARCHAR)")
    if batches:
        con.executemany("INSERT INTO _batches VALUES (?)", [[b] for b in batches])
    con.execute(
        "CREATE TEMP VIEW raw_done AS SELECT source, source_kind, origin, status, error, fetched_at, "
        "landed_date FROM raw WHERE batch_id IN (SELECT batch_id FROM _batches)"
    )
    return "raw_done"


def _feed_names(con: Any) -> dict[str, str]:
    """Feed URL -> the name its fetches were landed under."""
    if not _has_raw(con):
        return {}
    rows = con.execute(
        "SELECT origin, min(source) FROM raw WHERE source_kind = 'feed' GROUP BY origin"
    ).fetchall()
    return {origin: source for origin, source in rows}


ARTICLES_IN = f"FROM articles WHERE {KEPT}"
ON_TOPIC_ONLY = f"FROM articles WHERE {ON_TOPIC}"  # intake: by fetch day, not publication day
FETCHED_IN = IN_WINDOW  # rejects, duplicates, raw: by their own date column
# Duplicates of an article the filters keep the topic of (any duplicate without --topic).
DUPLICATES_IN = (
    f"FROM duplicates WHERE {IN_WINDOW.format(col='fetched_date')} AND ($topic IS NULL OR duplicate_of IN "
    "(SELECT article_id FROM articles WHERE list_contains([t.id for t in coalesce(topics, [])], $topic)))"
)


def _read(
    con: Any,
    data: ReportData,
    manifests: list[dict[str, Any]],
    p: dict[str, Any],
) -> None:
    data.commits = len(manifests)
    data.latest_commit = _describe_commit(manifests[-1]) if manifests else None
    raw = _processed_raw(con, manifests)
    day = "CAST(fetched_at AS DATE)"
    totals = _rows(
        con,
        f"SELECT (SELECT count(*) {ARTICLES_IN}) AS articles,"
        f" (SELECT count(*) {DUPLICATES_IN}) AS duplicates,"
        f" (SELECT count(*) FROM rejects WHERE {FETCHED_IN.format(col='fetched_date')}) AS rejects",
        p,
    )[0]
    if raw:
        totals["fetches"] = _rows(
            con, f"SELECT count(*) AS n FROM {raw} WHERE {FETCHED_IN.format(col='landed_date')}", p
        )[0]["n"]
    data.totals = {k: int(v) for k, v in totals.items()}
    r = _rows(con, f"SELECT min(published_date) AS lo, max(published_date) AS hi {ARTICLES_IN}", p)[0]
    data.published_range = (r["lo"], r["hi"]) if r["lo"] else None
    fetched = _rows(
        con,
        f"SELECT min(d) AS lo, max(d) AS hi FROM (SELECT {day} AS d {ON_TOPIC_ONLY} UNION ALL "
        f"SELECT fetched_date {DUPLICATES_IN} UNION ALL SELECT fetched_date FROM rejects) "
        f"WHERE {FETCHED_IN.format(col='d')}",
        p,
    )[0]
    data.fetched_range = (fetched["lo"], fetched["hi"]) if fetched["lo"] else None
    read_articles(con, data, p)
    _intake(con, data, p)
    if raw:
        _feeds(con, data, raw, p)


def _intake(con: Any, data: ReportData, p: dict[str, Any]) -> None:
    where = FETCHED_IN.format(col="d")
    data.intake = _rows(
        con,
        f"WITH a AS (SELECT CAST(fetched_at AS DATE) AS d, count(*) AS n {ON_TOPIC_ONLY} GROUP BY 1), "
        f"du AS (SELECT fetched_date AS d, count(*) AS n {DUPLICATES_IN} GROUP BY 1), "
        "r AS (SELECT fetched_date AS d, count(*) AS n FROM rejects GROUP BY 1) "
        "SELECT d, coalesce(a.n, 0) AS articles, coalesce(du.n, 0) AS duplicates, "
        "coalesce(r.n, 0) AS rejects FROM a FULL JOIN du USING (d) FULL JOIN r USING (d) "
        f"WHERE {where} ORDER BY d",
        p,
    )
    for row in data.intake:
        kept = row["articles"] + row["duplicates"]
        row["duplicate_rate"] = row["duplicates"] / kept if kept else None
        everything = kept + row["rejects"]
        row["reject_rate"] = row["rejects"] / everything if everything else None
    reasons = _rows(
        con,
        "SELECT stage, reason, count(*) AS n, count(DISTINCT source) AS sources, "
        "max(fetched_date) AS last, arg_max(detail, fetched_at) AS example FROM rejects "
        f"WHERE {FETCHED_IN.format(col='fetched_date')} GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
        p,
    )
    data.reasons = reasons
    shown = {(r["stage"], r["reason"]) for r in reasons[:TOP_REASONS]}
    per_day: dict[tuple[date, str], int] = {}
    for r in _rows(
        con,
        "SELECT fetched_date AS d, stage, reason, count(*) AS n FROM rejects "
        f"WHERE {FETCHED_IN.format(col='fetched_date')} GROUP BY ALL ORDER BY 1",
        p,
    ):
        name = f"{r['stage']}: {r['reason']}" if (r["stage"], r["reason"]) in shown else "other reasons"
        per_day[(r["d"], name)] = per_day.get((r["d"], name), 0) + r["n"]
    data.reject_days = [(d, name, n) for (d, name), n in sorted(per_day.items())]


def _feeds(con: Any, data: ReportData, raw: str, p: dict[str, Any]) -> None:
    counts: dict[tuple[str, date], list[int]] = {}
    for r in _rows(
        con,
        "SELECT source, source_kind AS kind, landed_date AS d, count(*) FILTER (status = 'ok') AS ok, "
        f"count(*) FILTER (status <> 'ok') AS error FROM {raw} "
        f"WHERE {FETCHED_IN.format(col='landed_date')} GROUP BY ALL",
        p,
    ):
        cell = counts.setdefault((_source_row(r["source"], r["kind"]), r["d"]), [0, 0])
        cell[0] += r["ok"]
        cell[1] += r["error"]
    data.feed_days = [(s, d, ok, err) for (s, d), (ok, err) in sorted(counts.items())]
    for r in _rows(
        con,
        "SELECT source, source_kind AS kind, arg_max(error, fetched_at) AS error FROM "
        f"{raw} WHERE status <> 'ok' AND {FETCHED_IN.format(col='landed_date')} GROUP BY ALL ORDER BY 1, 2",
        p,
    ):
        data.feed_errors[_source_row(r["source"], r["kind"])] = r["error"] or ""

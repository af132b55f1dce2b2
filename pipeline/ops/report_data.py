"""What `newsbeam report` shows, read from ONE committed state of the lake.

Everything comes from `pipeline.ops.maintenance.snapshot_connection` (DuckDB views over the
files the manifests list) plus `_state/feeds.json` for each feed's current poll state.
The manifests are read before and after the views are made: when a commit landed in
between, the views are made again, so every number belongs to the commit the header names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pipeline.lake.store import Lake
from pipeline.ops.maintenance import MaintenanceError, snapshot_connection
from pipeline.tagging.taxonomy import Taxonomy

TOP_TOPICS = 12  # topics drawn one by one; the rest are summed as "other topics"
TOP_ENTITIES = 25
TOP_REASONS = 10
RECENT_ARTICLES = 20
SEED_FILES = "seed files"  # every seeds/… source, as one row of the feed health chart


@dataclass
class ReportData:
    lake: Path
    generated_at: datetime
    days: int | None
    since: date | None  # first day shown (None: everything)
    latest_commit: dict[str, Any] | None = None
    commits: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    published_range: tuple[date, date] | None = None
    fetched_range: tuple[date, date] | None = None
    languages: list[tuple[str, int]] = field(default_factory=list)
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

    @property
    def empty(self) -> bool:
        return not any(self.totals.values())


def _rows(con: Any, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    rel = con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql})
    names = [d[0] for d in rel.description]
    return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]


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


def collect(
    lake_root: Path,
    now: datetime,
    days: int | None = None,
    taxonomy: Taxonomy | None = None,
    feed_names: Mapping[str, str] | None = None,
) -> ReportData:
    """Everything the report shows. `feed_names`: feed URL -> configured name (the name its
    fetches were landed under when not given)."""
    lake = Lake(lake_root)
    since = now.date() - timedelta(days=days - 1) if days else None
    data = ReportData(lake=lake.root, generated_at=now, days=days, since=since)
    con, manifests = open_snapshot(lake, taxonomy)
    try:
        con.execute("SET TimeZone = 'UTC'")
        _read(con, data, manifests, {"since": since})
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


ARTICLES_IN = "FROM articles WHERE ($since IS NULL OR published_date >= $since)"
FETCHED_IN = "($since IS NULL OR {col} >= $since)"


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
        f" (SELECT count(*) FROM duplicates WHERE {FETCHED_IN.format(col='fetched_date')}) AS duplicates,"
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
        f"SELECT min(d) AS lo, max(d) AS hi FROM (SELECT {day} AS d FROM articles UNION ALL "
        "SELECT fetched_date FROM duplicates UNION ALL SELECT fetched_date FROM rejects) "
        f"WHERE {FETCHED_IN.format(col='d')}",
        p,
    )[0]
    data.fetched_range = (fetched["lo"], fetched["hi"]) if fetched["lo"] else None
    data.languages = [
        (r["lang"], r["n"])
        for r in _rows(
            con,
            f"SELECT coalesce(language, '?') AS lang, count(*) AS n {ARTICLES_IN} GROUP BY 1 "
            "ORDER BY 2 DESC, 1",
            p,
        )
    ]
    _topics(con, data, p)
    _entities(con, data, p)
    _intake(con, data, p)
    if raw:
        _feeds(con, data, raw, p)
    data.recent = _rows(
        con,
        "SELECT published_date, published_at, source, language, title, url, "
        f"[t.id for t in coalesce(topics, [])] AS topics {ARTICLES_IN} "
        f"ORDER BY published_date DESC, published_at DESC NULLS LAST, article_id LIMIT {RECENT_ARTICLES}",
        p,
    )


def _topics(con: Any, data: ReportData, p: dict[str, Any]) -> None:
    tagged = (
        "FROM (SELECT published_date, language, unnest(topics) AS t "
        "FROM articles WHERE ($since IS NULL OR published_date >= $since))"
    )
    data.topic_days = [
        (r["d"], r["topic"], r["n"])
        for r in _rows(
            con,
            f"SELECT published_date AS d, t.id AS topic, count(*) AS n {tagged} GROUP BY ALL ORDER BY 1, 2",
            p,
        )
    ]
    data.untagged_days = [
        (r["d"], r["n"])
        for r in _rows(
            con,
            f"SELECT published_date AS d, count(*) AS n {ARTICLES_IN} AND len(coalesce(topics, [])) = 0 "
            "GROUP BY 1 ORDER BY 1",
            p,
        )
    ]
    data.topics = _rows(
        con,
        "SELECT q.*, coalesce(l.label, q.id) AS label FROM (SELECT t.id AS id, count(*) AS articles, "
        "avg(t.score) AS score, string_agg(DISTINCT language, ', ' ORDER BY language) AS languages, "
        f"min(published_date) AS first, max(published_date) AS last {tagged} GROUP BY 1) AS q "
        "LEFT JOIN topic_labels AS l USING (id) ORDER BY q.articles DESC, q.id",
        p,
    )
    data.topic_labels = {t["id"]: t["label"] for t in data.topics}


def _entities(con: Any, data: ReportData, p: dict[str, Any]) -> None:
    """The most mentioned entities, named by the taxonomy's labels (`entity_labels`; the id
    when the taxonomy does not know it)."""
    data.entities = _rows(
        con,
        "SELECT q.*, coalesce(l.label, q.id) AS label FROM (SELECT e.id AS id, min(e.type) AS type, "
        "count(DISTINCT article_id) AS articles, sum(e.mentions) AS mentions "
        "FROM (SELECT article_id, unnest(entities) AS e FROM articles "
        "WHERE ($since IS NULL OR published_date >= $since)) "
        f"GROUP BY 1 ORDER BY 3 DESC, 4 DESC, 1 LIMIT {TOP_ENTITIES}) AS q "
        "LEFT JOIN entity_labels AS l USING (id) ORDER BY q.articles DESC, q.mentions DESC, q.id",
        p,
    )
    shown = [e["label"] for e in data.entities]
    for e in data.entities:  # two entities with one label: both keep their id beside it
        e["name"] = e["label"] if shown.count(e["label"]) == 1 else f"{e['label']} ({e['id']})"


def _intake(con: Any, data: ReportData, p: dict[str, Any]) -> None:
    where = FETCHED_IN.format(col="d")
    data.intake = _rows(
        con,
        "WITH a AS (SELECT CAST(fetched_at AS DATE) AS d, count(*) AS n FROM articles GROUP BY 1), "
        "du AS (SELECT fetched_date AS d, count(*) AS n FROM duplicates GROUP BY 1), "
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

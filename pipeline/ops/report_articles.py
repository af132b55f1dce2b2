"""The report's queries on `articles`: languages, topics, entities, and each shown topic's
entities and latest articles, all over the articles the filters keep.

The filters are query parameters: `$since`, `$until` (publication dates, inclusive; None:
open) and `$topic` (only articles tagged with that topic id; None: every article).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.ops.report_data import ReportData

TOP_TOPICS = 12  # topics drawn one by one; the rest are summed as "other topics"
TOP_ENTITIES = 25
RECENT_ARTICLES = 20
TOPIC_DETAILS = 3  # without --topic: the top topics each get their entities and latest articles
TOPIC_ENTITIES = 10
TOPIC_ARTICLES = 10

IN_WINDOW = "($since IS NULL OR {col} >= $since) AND ($until IS NULL OR {col} <= $until)"
ON_TOPIC = "($topic IS NULL OR list_contains([t.id for t in coalesce(topics, [])], $topic))"
KEPT = f"{IN_WINDOW.format(col='published_date')} AND {ON_TOPIC}"  # the articles shown
ARTICLES_IN = f"FROM articles WHERE {KEPT}"
NEWEST_FIRST = "published_date DESC, published_at DESC NULLS LAST, article_id"

# The label views hold every taxonomy version a lake has seen: one label per id (the
# newest version's), so a lake re-tagged under a new version does not count rows twice.
NEWEST = "QUALIFY row_number() OVER (PARTITION BY id ORDER BY taxonomy_version DESC) = 1"
NEWEST_ENTITY_LABELS = f"(SELECT * FROM entity_labels {NEWEST})"
NEWEST_TOPIC_LABELS = f"(SELECT * FROM topic_labels {NEWEST})"


def rows(con: Any, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of `sql` as dicts; only the parameters `sql` names are passed."""
    rel = con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql})
    names = [d[0] for d in rel.description]
    return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]


def known_topics(con: Any) -> list[str]:
    """Every topic id the taxonomy defines or some article of the lake carries."""
    return [
        r[0]
        for r in con.execute(
            "SELECT id FROM topic_labels UNION SELECT t.id FROM "
            "(SELECT unnest(topics) AS t FROM articles) ORDER BY 1"
        ).fetchall()
        if r[0]
    ]


def topic_label(con: Any, topic: str) -> str:
    found = con.execute("SELECT label FROM topic_labels WHERE id = ?", [topic]).fetchone()
    return str(found[0]) if found and found[0] else topic


def read_articles(con: Any, data: ReportData, p: dict[str, Any]) -> None:
    data.languages = [
        (r["lang"], r["n"])
        for r in rows(
            con,
            f"SELECT coalesce(language, '?') AS lang, count(*) AS n {ARTICLES_IN} "
            "GROUP BY 1 ORDER BY 2 DESC, 1",
            p,
        )
    ]
    data.language_days = [
        (r["d"], r["lang"], r["n"])
        for r in rows(
            con,
            f"SELECT published_date AS d, coalesce(language, '?') AS lang, count(*) AS n {ARTICLES_IN} "
            "GROUP BY ALL ORDER BY 1, 2",
            p,
        )
    ]
    _topics(con, data, p)
    _entities(con, data, p)
    _topic_details(con, data, p)
    data.recent = rows(
        con,
        "SELECT published_date, published_at, source, language, title, url, "
        f"[t.id for t in coalesce(topics, [])] AS topics {ARTICLES_IN} "
        f"ORDER BY {NEWEST_FIRST} LIMIT {RECENT_ARTICLES}",
        p,
    )


def _topics(con: Any, data: ReportData, p: dict[str, Any]) -> None:
    tagged = f"FROM (SELECT published_date, language, unnest(topics) AS t {ARTICLES_IN})"
    data.topic_days = [
        (r["d"], r["topic"], r["n"])
        for r in rows(
            con,
            f"SELECT published_date AS d, t.id AS topic, count(*) AS n {tagged} GROUP BY ALL ORDER BY 1, 2",
            p,
        )
    ]
    data.untagged_days = [
        (r["d"], r["n"])
        for r in rows(
            con,
            f"SELECT published_date AS d, count(*) AS n {ARTICLES_IN} AND len(coalesce(topics, [])) = 0 "
            "GROUP BY 1 ORDER BY 1",
            p,
        )
    ]
    data.topics = rows(
        con,
        "SELECT q.*, coalesce(l.label, q.id) AS label FROM (SELECT t.id AS id, count(*) AS articles, "
        "avg(t.score) AS score, string_agg(DISTINCT language, ', ' ORDER BY language) AS languages, "
        f"min(published_date) AS first, max(published_date) AS last {tagged} GROUP BY 1) AS q "
        f"LEFT JOIN {NEWEST_TOPIC_LABELS} AS l USING (id) ORDER BY q.articles DESC, q.id",
        p,
    )
    data.topic_labels = {t["id"]: t["label"] for t in data.topics}
    if data.topic:
        data.topic_labels.setdefault(data.topic, data.topic_label)


def _named(entities: list[dict[str, Any]]) -> None:
    """Each entity's `name`: its label, and its id beside it when another one shown has that label."""
    shown = [e["label"] for e in entities]
    for e in entities:
        e["name"] = e["label"] if shown.count(e["label"]) == 1 else f"{e['label']} ({e['id']})"


def _entities(con: Any, data: ReportData, p: dict[str, Any]) -> None:
    """The most mentioned entities, named by the taxonomy's labels (`entity_labels`; the id
    when the taxonomy does not know it)."""
    data.entities = rows(
        con,
        "SELECT q.*, coalesce(l.label, q.id) AS label FROM (SELECT e.id AS id, min(e.type) AS type, "
        "count(DISTINCT article_id) AS articles, sum(e.mentions) AS mentions "
        f"FROM (SELECT article_id, unnest(entities) AS e {ARTICLES_IN}) "
        f"GROUP BY 1 ORDER BY 3 DESC, 4 DESC, 1 LIMIT {TOP_ENTITIES}) AS q "
        f"LEFT JOIN {NEWEST_ENTITY_LABELS} AS l USING (id) ORDER BY q.articles DESC, q.mentions DESC, q.id",
        p,
    )
    _named(data.entities)


def _has_evidence(con: Any) -> bool:
    """Whether the topics of the articles carry the evidence of their match (older lakes may not)."""
    types = {r[0]: str(r[1]) for r in con.execute("DESCRIBE articles").fetchall()}
    return "evidence" in types.get("topics", "")


def _topic_details(con: Any, data: ReportData, p: dict[str, Any]) -> None:
    """For `--topic`, or else each of the top TOPIC_DETAILS topics: its most mentioned
    entities and its latest articles (with the evidence of the match when rows carry it)."""
    shown = [data.topic] if data.topic else [t["id"] for t in data.topics[:TOPIC_DETAILS]]
    data.detail_topics = shown
    if not shown:
        return
    q = {**p, "shown": shown}
    tagged = f"(SELECT *, unnest(topics) AS t {ARTICLES_IN}) WHERE list_contains($shown, t.id)"
    entities = rows(
        con,
        "SELECT q.*, coalesce(l.label, q.id) AS label FROM (SELECT topic, e.id AS id, min(e.type) AS type, "
        "count(DISTINCT article_id) AS articles, sum(e.mentions) AS mentions FROM "
        f"(SELECT t.id AS topic, article_id, unnest(entities) AS e FROM {tagged}) GROUP BY 1, 2 "
        "QUALIFY row_number() OVER (PARTITION BY topic ORDER BY count(DISTINCT article_id) DESC, "
        f"sum(e.mentions) DESC, e.id) <= {TOPIC_ENTITIES}) AS q "
        f"LEFT JOIN {NEWEST_ENTITY_LABELS} AS l USING (id) "
        "ORDER BY q.topic, q.articles DESC, q.mentions DESC, q.id",
        q,
    )
    data.topic_entities = {topic: [e for e in entities if e["topic"] == topic] for topic in shown}
    for listed in data.topic_entities.values():
        _named(listed)
    evidence = "t.evidence" if _has_evidence(con) else "CAST(NULL AS VARCHAR[])"
    latest = rows(
        con,
        "SELECT t.id AS topic, published_date, source, language, title, url, t.score AS score, "
        f"{evidence} AS evidence FROM {tagged} "
        f"QUALIFY row_number() OVER (PARTITION BY t.id ORDER BY {NEWEST_FIRST}) <= {TOPIC_ARTICLES} "
        f"ORDER BY t.id, {NEWEST_FIRST}",
        q,
    )
    data.topic_articles = {topic: [a for a in latest if a["topic"] == topic] for topic in shown}

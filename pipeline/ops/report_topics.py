"""The report's sections for "what happened in topic X between two dates": articles per
language per day, and for `--topic` (or each of the top topics) its most mentioned entities
and its latest articles with the evidence of the match."""

from __future__ import annotations

from datetime import date
from html import escape

from pipeline.ops.report_articles import TOPIC_ARTICLES, TOPIC_ENTITIES
from pipeline.ops.report_data import ReportData
from pipeline.ops.report_html import Html, day_axis, figure, note, section, stacked_bars, table, window_days


def languages_section(data: ReportData) -> str:
    if not data.language_days:
        return section("languages", "Articles per language", note("No articles in this window."))
    totals = dict(data.languages)  # language -> articles, largest first
    series: dict[str, dict[date, int]] = {f"{lang} · {n}": {} for lang, n in totals.items()}
    for day, lang, n in data.language_days:
        series[f"{lang} · {totals[lang]}"][day] = n
    fig, every_day = stacked_bars(series, labels=True)
    fig.update_layout(
        barmode="stack",
        showlegend=True,
        legend={"title": {"text": "language · articles"}},
        **day_axis(every_day + window_days(*data.window), 360, yaxis={"title": "articles"}),
    )
    return section(
        "languages",
        "Articles per language",
        note("By publication date, one bar segment per language and day; the legend gives each total."),
        figure(fig, "chart-languages"),
    )


def _link(title: str | None, url: str | None) -> Html:
    text = escape(title or "")
    if (url or "").startswith(("http://", "https://")):
        return Html(f'<a href="{escape(url or "")}" rel="noopener noreferrer">{text}</a>')
    return Html(text)


def _evidence(evidence: list[str] | None) -> str:
    return "; ".join(evidence) if evidence else "-"


def topic_details_section(data: ReportData) -> str:
    title = "Topic in detail" if data.topic else "Top topics in detail"
    if not data.detail_topics:
        return section("topic-details", title, note("No topic in this window."))
    parts = [
        note(
            f"For each topic: the {TOPIC_ENTITIES} entities mentioned in most of its articles, and its "
            f"{TOPIC_ARTICLES} latest articles by publication date, with the evidence of the match "
            "(the entities and cue words the tagger found)."
        )
    ]
    for topic in data.detail_topics:
        label = data.topic_labels.get(topic, topic)
        entities = data.topic_entities.get(topic, [])
        articles = data.topic_articles.get(topic, [])
        block = [f"<h3>{escape(label)} <code>{escape(topic)}</code></h3>"]
        if not articles:
            block.append(note("No article with this topic in this window."))
        else:
            block.append("<h4>Top entities</h4>")
            block.append(
                table(
                    ["entity", "id", "type", "articles", "mentions"],
                    ((e["name"], e["id"], e["type"], e["articles"], e["mentions"]) for e in entities),
                    numeric={3, 4},
                )
                if entities
                else note("No entity mentioned in these articles.")
            )
            block.append("<h4>Latest articles</h4>")
            block.append(
                table(
                    ["published", "title", "source", "language", "score", "evidence"],
                    (
                        (
                            a["published_date"],
                            _link(a["title"], a["url"]),
                            a["source"],
                            a["language"],
                            a["score"],
                            _evidence(a["evidence"]),
                        )
                        for a in articles
                    ),
                    numeric={4},
                )
            )
        parts.append(f'<div class="topic" data-topic="{escape(topic)}">' + "\n".join(block) + "</div>")
    return section("topic-details", title, *parts)

"""The report's sections on topics, feed health, entities, duplicates and rejects, and the
latest articles: each a function of the collected `ReportData` returning its `<section>`."""

from __future__ import annotations

from datetime import date
from html import escape

from pipeline.ops.report_articles import TOP_TOPICS
from pipeline.ops.report_data import ReportData
from pipeline.ops.report_html import (
    BAD,
    GOOD,
    Html,
    day_axis,
    figure,
    iso_days,
    note,
    plot_text,
    section,
    stacked_bars,
    table,
    window_days,
)


def topics_section(data: ReportData) -> str:
    if not data.topic_days and not data.untagged_days:
        return section("topics", "Articles per topic per day", note("No articles in this window."))
    shown = [t["id"] for t in data.topics[:TOP_TOPICS]]
    series: dict[str, dict[date, int]] = {data.topic_labels[t]: {} for t in shown}
    for day, topic, n in data.topic_days:
        by_day = series.setdefault(data.topic_labels[topic] if topic in shown else "other topics", {})
        by_day[day] = by_day.get(day, 0) + n
    if data.untagged_days:
        series["(no topic)"] = dict(data.untagged_days)
    fig, every_day = stacked_bars(series)
    axis = day_axis(every_day + window_days(*data.window), 420, yaxis={"title": "articles"})
    fig.update_layout(barmode="stack", showlegend=True, **axis)
    listing = table(
        ["topic", "id", "articles", "mean score", "languages", "first day", "last day"],
        (
            (t["label"], t["id"], t["articles"], t["score"], t["languages"], t["first"], t["last"])
            for t in data.topics
        ),
        numeric={2, 3},
    )
    return section(
        "topics",
        "Articles per topic per day",
        note(
            "By publication date; an article with several topics counts once in each."
            + (
                " Only the articles tagged with the topic shown, and the other topics they carry."
                if data.topic
                else ""
            )
        ),
        figure(fig, "chart-topics"),
        "<h3>Top topics</h3>",
        listing,
    )


def feeds_section(data: ReportData) -> str:
    import plotly.graph_objects as go

    parts = [note("Every fetch the committed runs landed (raw), per source and landing day: ok / error.")]
    if data.feed_days:
        sources = sorted({s for s, *_ in data.feed_days})
        layout = day_axis(
            [d for _, d, *_ in data.feed_days], 140 + 34 * len(sources), yaxis={"automargin": True}
        )
        # A column for every day of the axis: plotly places a heatmap's cell texts by column,
        # so a day without fetches is a column of gaps (or the texts after it shift left).
        days = [date.fromisoformat(d) for d in layout["xaxis"]["categoryarray"]]
        cell = {(s, d): (ok, err) for s, d, ok, err in data.feed_days}
        z, text = [], []
        for s in sources:
            counts = [cell.get((s, d)) for d in days]
            z.append([None if c is None else c[1] / (c[0] + c[1]) for c in counts])
            text.append(["" if c is None else f"{c[0]} ok / {c[1]} err" for c in counts])
        heatmap = {
            "x": iso_days(days),
            "y": [plot_text(s) for s in sources],
            "z": z,
            "text": text,
            "zmin": 0,
            "zmax": 1,
        }
        fig = go.Figure(
            go.Heatmap(
                **heatmap,
                texttemplate="%{text}",
                colorscale=[[0, GOOD], [0.5, "#f9a825"], [1, BAD]],
                colorbar={"title": {"text": "error share"}, "tickformat": ".0%"},
                hovertemplate="%{y}<br>%{x}<br>%{text}<extra></extra>",
                xgap=2,
                ygap=2,
            )
        )
        fig.update_layout(**layout)
        parts.append(figure(fig, "chart-feeds"))
        if data.feed_errors:
            parts.append("<h3>Latest error per source</h3>")
            parts.append(table(["source", "error"], sorted(data.feed_errors.items())))
    else:
        parts.append(note("No raw fetches left in this window (never landed, or vacuumed)."))
    if data.feed_states:
        parts.append("<h3>Feeds now</h3>")
        parts.append(note("From <code>_state/feeds.json</code>: the state after the latest committed run."))
        states = data.feed_states
        parts.append(table(list(states[0]), (list(state.values()) for state in states), numeric={4}))
    return section("feeds", "Feed health", *parts)


def entities_section(data: ReportData) -> str:
    import plotly.graph_objects as go

    if not data.entities:
        return section("entities", "Top entities", note("No entity mentioned in this window."))
    shown = [plot_text(e["name"]) for e in data.entities]
    fig = go.Figure()
    for etype in sorted({e["type"] or "?" for e in data.entities}):
        rows = [e for e in data.entities if (e["type"] or "?") == etype]
        fig.add_bar(
            orientation="h",
            y=[plot_text(e["name"]) for e in rows],
            x=[e["articles"] for e in rows],
            name=plot_text(etype),
            customdata=[[plot_text(e["id"]), e["mentions"]] for e in rows],
            hovertemplate="%{y} (%{customdata[0]}): %{x} articles, %{customdata[1]} mentions<extra></extra>",
        )
    fig.update_layout(
        height=120 + 24 * len(shown),
        yaxis={"categoryorder": "array", "categoryarray": shown, "autorange": "reversed", "automargin": True},
        xaxis={"title": "articles mentioning it"},
    )
    listing = table(
        ["entity", "id", "type", "articles", "mentions"],
        ((e["name"], e["id"], e["type"], e["articles"], e["mentions"]) for e in data.entities),
        numeric={3, 4},
    )
    return section("entities", "Top entities", figure(fig, "chart-entities"), listing)


def quality_section(data: ReportData) -> str:
    import plotly.graph_objects as go

    if not data.intake:
        return section("quality", "Duplicates and rejects", note("Nothing fetched in this window."))
    days = iso_days(r["d"] for r in data.intake)
    rates = go.Figure()
    for key, colour in (("duplicate_rate", None), ("reject_rate", BAD)):
        y = [r[key] for r in data.intake]
        rates.add_scatter(x=days, y=y, name=key.replace("_", " "), mode="lines+markers", line_color=colour)
    rates.update_layout(
        **day_axis([r["d"] for r in data.intake], 320, yaxis={"tickformat": ".0%", "range": [0, 1]})
    )
    parts = [
        note(
            "Per fetch day. Duplicate rate: duplicates / (articles + duplicates). Reject rate: reject rows / "
            "(articles + duplicates + reject rows); flags on items that were kept count as reject rows."
        ),
        figure(rates, "chart-rates"),
        table(
            ["fetch day", "articles", "duplicates", "reject rows", "duplicate rate", "reject rate"],
            (
                [r[k] for k in ("d", "articles", "duplicates", "rejects")]
                + [pct(r["duplicate_rate"]), pct(r["reject_rate"])]
                for r in data.intake
            ),
            numeric={1, 2, 3, 4, 5},
        ),
    ]
    if data.reject_days:
        series: dict[str, dict[date, int]] = {}
        for day, name, n in data.reject_days:
            series.setdefault(name, {})[day] = n
        ordered = dict(sorted(series.items(), key=lambda item: (item[0] == "other reasons", item[0])))
        fig, every_day = stacked_bars(ordered)
        fig.update_layout(barmode="stack", **day_axis(every_day, 360, yaxis={"title": "reject rows"}))
        parts += [
            "<h3>Rejects by reason</h3>",
            figure(fig, "chart-rejects"),
            table(
                ["stage", "reason", "rows", "sources", "last day", "latest detail"],
                (
                    (r["stage"], r["reason"], r["n"], r["sources"], r["last"], cut(r["example"]))
                    for r in data.reasons
                ),
                numeric={2, 3},
            ),
        ]
    else:
        parts.append(note("No rejects in this window."))
    return section("quality", "Duplicates and rejects", *parts)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def cut(text: str | None, limit: int = 160) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def recent_section(data: ReportData) -> str:
    rows = []
    for a in data.recent:
        title = escape(a["title"] or "")
        url = a["url"] or ""
        if url.startswith(("http://", "https://")):
            title = f'<a href="{escape(url)}" rel="noopener noreferrer">{title}</a>'
        topics = ", ".join(data.topic_labels.get(t, t) for t in a["topics"])
        rows.append((a["published_date"], a["source"], a["language"], Html(title), topics))
    return section(
        "recent", "Latest articles", table(["published", "source", "language", "title", "topics"], rows)
    )

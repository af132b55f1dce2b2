"""`newsbeam report`: one self-contained static HTML page about one committed state of the lake.

    write_report(Path("data"), Path("report.html"), days=14)

The page needs no network when it is opened: plotly.js is inlined once in the page's
head (~4.8 MB of the file), and every chart is a plotly figure drawn from JSON that
plotly escapes for a `<script>` element. Every text from the lake (titles, sources,
reasons, details, labels) is HTML-escaped, in the tables and in the charts alike
(plotly draws `&lt;` as `<` and would otherwise read `<b>`, `<a href>` as markup).
The data come from `pipeline.ops.report_data.collect`; this module only draws.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from html import escape
from pathlib import Path
from typing import Any

from pipeline.ops.report_data import TOP_TOPICS, ReportData, collect
from pipeline.tagging.taxonomy import Taxonomy

GOOD, BAD, OTHER = "#2e7d32", "#c62828", "#9e9e9e"
CATCH_ALL = {"other topics", "(no topic)", "other reasons"}  # drawn grey
MAX_SPAN = 92  # days: longer spans of sparse data show only the days that have data
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       margin: 0 auto; max-width: 1200px; padding: 0 24px 48px; background: #fafbfc; }
h1 { font-size: 26px; margin: 24px 0 8px; } h2 { font-size: 20px; margin: 0 0 8px; }
section, header { background: #fff; border: 1px solid #e3e6ea; border-radius: 8px; padding: 16px 20px;
                  margin: 16px 0; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 8px 0; }
dl.meta dt { color: #5b6472; } dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 12px; }
.card { border: 1px solid #e3e6ea; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 22px; } .card span { color: #5b6472; font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin-top: 8px; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eef0f2; vertical-align: top; }
th { color: #5b6472; font-weight: 600; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #5b6472; font-size: 12px; margin: 4px 0; } td.d { white-space: nowrap; }
code { font-size: 12px; overflow-wrap: anywhere; } .empty { font-size: 18px; padding: 24px 0; }
"""


def write_report(
    lake_root: Path,
    out: Path,
    days: int | None = None,
    now: datetime | None = None,
    taxonomy: Taxonomy | None = None,
    feed_names: Mapping[str, str] | None = None,
) -> Path:
    """Write the report of the lake at `lake_root` to `out` (atomically) and return `out`.

    `days`: only the last N days up to `now`'s date (by publication date for topics and
    entities, by fetch or landing date for intake, rejects and feed health). `now`: the
    generation time shown (default: the clock). `taxonomy`: where the topic and entity
    labels come from (default: the built-in one). `feed_names`: feed URL -> configured name.
    Raises MaintenanceError for a folder no
    run has written; a lake with nothing committed yet gets a page saying so.
    """
    if days is not None and days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    data = collect(Path(lake_root), now, days, taxonomy, feed_names)
    page = render(data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out


# --- page --------------------------------------------------------------------------


def render(data: ReportData) -> str:
    if data.empty:
        what = f"in the last {data.days} days" if data.days else "in this lake yet"
        body = f'<section><p class="empty">Nothing {what}: no articles, duplicates, rejects or fetches.</p>'
        body += "</section>"
        scripts = ""
    else:
        from plotly.offline import get_plotlyjs

        body = "\n".join([_topics(data), _feeds(data), _entities(data), _quality(data), _recent(data)])
        scripts = "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        scripts += f"<script>{get_plotlyjs()}</script>"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>newsbeam report: {escape(str(data.lake))}</title>\n<style>{CSS}</style>\n{scripts}\n"
        f"</head>\n<body>\n{_header(data)}\n{body}\n</body>\n</html>\n"
    )


def _header(data: ReportData) -> str:
    c = data.latest_commit
    commit = (
        f"#{c['seq']} {escape(c['kind'])} <code>{escape(str(c['id']))}</code> at {escape(c['when'])} "
        f"({escape(str(c['outcome']))}); {data.commits} commit{'s' if data.commits != 1 else ''} in all"
        if c
        else "none yet"
    )
    plural = "s" if data.days != 1 else ""
    window = (
        f"the last {data.days} day{plural} ({data.since} to {data.generated_at.date()})"
        if data.days
        else "everything"
    )
    meta = [
        ("Lake", f"<code>{escape(str(data.lake))}</code>"),
        ("Snapshot", commit),
        ("Window", window),
        ("Published", _range(data.published_range)),
        ("Fetched", _range(data.fetched_range)),
        ("Generated", escape(data.generated_at.isoformat(timespec="seconds"))),
    ]
    cards = [
        (data.totals.get("articles", 0), "articles"),
        (data.totals.get("duplicates", 0), "duplicates"),
        (data.totals.get("rejects", 0), "reject rows"),
        (data.totals.get("fetches", 0), "fetches (raw)"),
        (len(data.topics), "topics seen"),
        (len(data.languages), "languages"),
    ]
    langs = ", ".join(f"{escape(lang)} {n}" for lang, n in data.languages)
    return (
        '<header><h1>newsbeam report</h1>\n<dl class="meta">'
        + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in meta)
        + (f"<dt>Languages</dt><dd>{langs}</dd>" if langs else "")
        + '</dl>\n<div class="cards">'
        + "".join(f'<div class="card"><b>{n:,}</b><span>{label}</span></div>' for n, label in cards)
        + "</div></header>"
    )


def _range(r: tuple[date, date] | None) -> str:
    return f"{r[0]} to {r[1]}" if r else "-"


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]], numeric: Collection[int] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="n"' if i in numeric else ' class="d"' if isinstance(cell, date) else ""
            cells.append(f"<td{cls}>{cell if isinstance(cell, _Html) else escape(_text(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Html(str):
    """Markup built here (already escaped): `_table` puts it in as it is."""


def _text(value: Any) -> str:
    formats = {float: "{:.2f}", int: "{:,}", type(None): "-"}
    return formats.get(type(value), "{}").format(value)


def _figure(fig: Any, div_id: str) -> str:
    import plotly.io as pio

    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 30, "b": 40}, font={"size": 12})
    options = {"full_html": False, "config": PLOTLY_CONFIG, "div_id": div_id, "default_height": "auto"}
    return f'<div class="chart">{pio.to_html(fig, include_plotlyjs=False, **options)}</div>'


def _stacked_bars(series: dict[str, dict[date, int]]) -> tuple[Any, list[date]]:
    """One bar trace per series (in the order given, the catch-all ones grey), stacked by day."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, by_day in series.items():
        points = sorted(by_day.items())
        colour = OTHER if name in CATCH_ALL else None
        fig.add_bar(
            x=_days(d for d, _ in points),
            y=[n for _, n in points],
            name=_plot_text(name),
            marker_color=colour,
        )
    return fig, [d for by_day in series.values() for d in by_day]


def _plot_text(text: str) -> str:
    """Text for a plotly label: plotly reads `<b>`, `<a href>`… in labels and decodes `&lt;`,
    `&gt;`, `&amp;` and numeric references, but not `&quot;`, so quotes stay as they are."""
    return escape(text, quote=False)


def _days(values: Iterable[date]) -> list[str]:
    return [d.isoformat() for d in values]


def _day_axis(days: Iterable[date], height: int, **layout: Any) -> dict[str, Any]:
    """Layout of a chart by day: every day of a span up to MAX_SPAN days (a day without data
    shows as a gap), otherwise only the days with data (a date axis over years of sparse
    data would draw each day a hair wide)."""
    present = sorted(set(days))
    span = (present[-1] - present[0]).days + 1 if present else 0
    if span <= MAX_SPAN:
        present = [present[0] + timedelta(days=n) for n in range(span)]
    axis = {"type": "category", "categoryorder": "array", "categoryarray": _days(present)}
    return {"height": height, "xaxis": axis, **layout}


# --- sections ------------------------------------------------------------------------


def _topics(data: ReportData) -> str:
    if not data.topic_days and not data.untagged_days:
        return _section("topics", "Articles per topic per day", _note("No articles in this window."))
    shown = [t["id"] for t in data.topics[:TOP_TOPICS]]
    series: dict[str, dict[date, int]] = {data.topic_labels[t]: {} for t in shown}
    for day, topic, n in data.topic_days:
        by_day = series.setdefault(data.topic_labels[topic] if topic in shown else "other topics", {})
        by_day[day] = by_day.get(day, 0) + n
    if data.untagged_days:
        series["(no topic)"] = dict(data.untagged_days)
    fig, every_day = _stacked_bars(series)
    fig.update_layout(barmode="stack", **_day_axis(every_day, 420, yaxis={"title": "articles"}))
    table = _table(
        ["topic", "id", "articles", "mean score", "languages", "first day", "last day"],
        (
            (t["label"], t["id"], t["articles"], t["score"], t["languages"], t["first"], t["last"])
            for t in data.topics
        ),
        numeric={2, 3},
    )
    return _section(
        "topics",
        "Articles per topic per day",
        _note("By publication date; an article with several topics counts once in each."),
        _figure(fig, "chart-topics"),
        "<h3>Top topics</h3>",
        table,
    )


def _feeds(data: ReportData) -> str:
    import plotly.graph_objects as go

    parts = [_note("Every fetch the committed runs landed (raw), per source and landing day: ok / error.")]
    if data.feed_days:
        sources = sorted({s for s, *_ in data.feed_days})
        days = sorted({d for _, d, *_ in data.feed_days})
        cell = {(s, d): (ok, err) for s, d, ok, err in data.feed_days}
        z, text = [], []
        for s in sources:
            counts = [cell.get((s, d)) for d in days]
            z.append([None if c is None else c[1] / (c[0] + c[1]) for c in counts])
            text.append(["" if c is None else f"{c[0]} ok / {c[1]} err" for c in counts])
        heatmap = {
            "x": _days(days),
            "y": [_plot_text(s) for s in sources],
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
        fig.update_layout(**_day_axis(days, 140 + 34 * len(sources), yaxis={"automargin": True}))
        parts.append(_figure(fig, "chart-feeds"))
        if data.feed_errors:
            parts.append("<h3>Latest error per source</h3>")
            parts.append(_table(["source", "error"], sorted(data.feed_errors.items())))
    else:
        parts.append(_note("No raw fetches left in this window (never landed, or vacuumed)."))
    if data.feed_states:
        parts.append("<h3>Feeds now</h3>")
        parts.append(_note("From <code>_state/feeds.json</code>: the state after the latest committed run."))
        states = data.feed_states
        parts.append(_table(list(states[0]), (list(state.values()) for state in states), numeric={4}))
    return _section("feeds", "Feed health", *parts)


def _entities(data: ReportData) -> str:
    import plotly.graph_objects as go

    if not data.entities:
        return _section("entities", "Top entities", _note("No entity mentioned in this window."))
    shown = [_plot_text(e["name"]) for e in data.entities]
    fig = go.Figure()
    for etype in sorted({e["type"] or "?" for e in data.entities}):
        rows = [e for e in data.entities if (e["type"] or "?") == etype]
        fig.add_bar(
            orientation="h",
            y=[_plot_text(e["name"]) for e in rows],
            x=[e["articles"] for e in rows],
            name=_plot_text(etype),
            customdata=[[_plot_text(e["id"]), e["mentions"]] for e in rows],
            hovertemplate="%{y} (%{customdata[0]}): %{x} articles, %{customdata[1]} mentions<extra></extra>",
        )
    fig.update_layout(
        height=120 + 24 * len(shown),
        yaxis={"categoryorder": "array", "categoryarray": shown, "autorange": "reversed", "automargin": True},
        xaxis={"title": "articles mentioning it"},
    )
    table = _table(
        ["entity", "id", "type", "articles", "mentions"],
        ((e["name"], e["id"], e["type"], e["articles"], e["mentions"]) for e in data.entities),
        numeric={3, 4},
    )
    return _section("entities", "Top entities", _figure(fig, "chart-entities"), table)


def _quality(data: ReportData) -> str:
    import plotly.graph_objects as go

    if not data.intake:
        return _section("quality", "Duplicates and rejects", _note("Nothing fetched in this window."))
    days = _days(r["d"] for r in data.intake)
    rates = go.Figure()
    for key, colour in (("duplicate_rate", None), ("reject_rate", BAD)):
        y = [r[key] for r in data.intake]
        rates.add_scatter(x=days, y=y, name=key.replace("_", " "), mode="lines+markers", line_color=colour)
    rates.update_layout(
        **_day_axis([r["d"] for r in data.intake], 320, yaxis={"tickformat": ".0%", "range": [0, 1]})
    )
    parts = [
        _note(
            "Per fetch day. Duplicate rate: duplicates / (articles + duplicates). Reject rate: reject rows / "
            "(articles + duplicates + reject rows); flags on items that were kept count as reject rows."
        ),
        _figure(rates, "chart-rates"),
        _table(
            ["fetch day", "articles", "duplicates", "reject rows", "duplicate rate", "reject rate"],
            (
                [r[k] for k in ("d", "articles", "duplicates", "rejects")]
                + [_pct(r["duplicate_rate"]), _pct(r["reject_rate"])]
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
        fig, every_day = _stacked_bars(ordered)
        fig.update_layout(barmode="stack", **_day_axis(every_day, 360, yaxis={"title": "reject rows"}))
        parts += [
            "<h3>Rejects by reason</h3>",
            _figure(fig, "chart-rejects"),
            _table(
                ["stage", "reason", "rows", "sources", "last day", "latest detail"],
                (
                    (r["stage"], r["reason"], r["n"], r["sources"], r["last"], _cut(r["example"]))
                    for r in data.reasons
                ),
                numeric={2, 3},
            ),
        ]
    else:
        parts.append(_note("No rejects in this window."))
    return _section("quality", "Duplicates and rejects", *parts)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _cut(text: str | None, limit: int = 160) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _recent(data: ReportData) -> str:
    rows = []
    for a in data.recent:
        title = escape(a["title"] or "")
        url = a["url"] or ""
        if url.startswith(("http://", "https://")):
            title = f'<a href="{escape(url)}" rel="noopener noreferrer">{title}</a>'
        topics = ", ".join(data.topic_labels.get(t, t) for t in a["topics"])
        rows.append((a["published_date"], a["source"], a["language"], _Html(title), topics))
    return _section(
        "recent", "Latest articles", _table(["published", "source", "language", "title", "topics"], rows)
    )

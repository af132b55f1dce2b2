"""The report's page parts: sections, tables, plotly figures and the day axis.

Every text from the lake goes through `html.escape` (tables) or `plot_text` (charts);
`Html` marks markup built here, already escaped.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import date, timedelta
from html import escape
from typing import Any

GOOD, BAD, OTHER = "#2e7d32", "#c62828", "#9e9e9e"
CATCH_ALL = {"other topics", "(no topic)", "other reasons"}  # drawn grey
MAX_SPAN = 92  # days: longer spans of sparse data show only the days that have data
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def day_range(r: tuple[date, date] | None) -> str:
    return f"{r[0]} to {r[1]}" if r else "-"


def section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], numeric: Collection[int] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="n"' if i in numeric else ' class="d"' if isinstance(cell, date) else ""
            cells.append(f"<td{cls}>{cell if isinstance(cell, Html) else escape(cell_text(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Html(str):
    """Markup built here (already escaped): `table` puts it in as it is."""


def cell_text(value: Any) -> str:
    formats = {float: "{:.2f}", int: "{:,}", type(None): "-"}
    return formats.get(type(value), "{}").format(value)


def figure(fig: Any, div_id: str) -> str:
    import plotly.io as pio

    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 30, "b": 40}, font={"size": 12})
    options = {"full_html": False, "config": PLOTLY_CONFIG, "div_id": div_id, "default_height": "auto"}
    return f'<div class="chart">{pio.to_html(fig, include_plotlyjs=False, **options)}</div>'


def stacked_bars(series: dict[str, dict[date, int]], labels: bool = False) -> tuple[Any, list[date]]:
    """One bar trace per series (in the order given, the catch-all ones grey), stacked by day;
    with `labels`, each bar segment shows its count."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, by_day in series.items():
        points = sorted(by_day.items())
        colour = OTHER if name in CATCH_ALL else None
        text = {"texttemplate": "%{y}", "textposition": "inside", "insidetextanchor": "middle"}
        fig.add_bar(
            x=iso_days(d for d, _ in points),
            y=[n for _, n in points],
            name=plot_text(name),
            marker_color=colour,
            **(text if labels else {}),
        )
    return fig, [d for by_day in series.values() for d in by_day]


def plot_text(text: str) -> str:
    """Text for a plotly label: plotly reads `<b>`, `<a href>`… in labels and decodes `&lt;`,
    `&gt;`, `&amp;` and numeric references, but not `&quot;`, so quotes stay as they are."""
    return escape(text, quote=False)


def iso_days(values: Iterable[date]) -> list[str]:
    return [d.isoformat() for d in values]


def day_axis(days: Iterable[date], height: int, **layout: Any) -> dict[str, Any]:
    """Layout of a chart by day: every day of a span up to MAX_SPAN days (a day without data
    shows as a gap), otherwise only the days with data (a date axis over years of sparse
    data would draw each day a hair wide)."""
    present = sorted(set(days))
    span = (present[-1] - present[0]).days + 1 if present else 0
    if span <= MAX_SPAN:
        present = [present[0] + timedelta(days=n) for n in range(span)]
    axis = {"type": "category", "categoryorder": "array", "categoryarray": iso_days(present)}
    axis["range"] = [-0.5, len(present) - 0.5]  # every day listed, those without data at the ends too
    return {"height": height, "xaxis": axis, **layout}


def window_days(first: date | None, last: date | None) -> list[date]:
    """The ends of a window with both (added to the days of a chart by publication day, it
    then spans the whole window); nothing for an open window or one over MAX_SPAN days."""
    if first is None or last is None or (last - first).days + 1 > MAX_SPAN:
        return []
    return [first, last]

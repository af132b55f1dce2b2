"""`newsbeam report`: one self-contained static HTML page about one committed state of the lake.

    write_report(Path("data"), Path("report.html"), days=14)
    write_report(Path("data"), Path("report.html"), since=date(2024, 6, 1), until=date(2024, 6, 30),
                 topic="nk-russia")

The page needs no network when it is opened: plotly.js is inlined once in the page's
head (~4.8 MB of the file), and every chart is a plotly figure drawn from JSON that
plotly escapes for a `<script>` element. Every text from the lake (titles, sources,
reasons, details, labels) is HTML-escaped, in the tables and in the charts alike
(plotly draws `&lt;` as `<` and would otherwise read `<b>`, `<a href>` as markup).
The data come from `pipeline.ops.report_data.collect`; this module lays out the page and
its header, and the sections come from `report_sections` and `report_topics`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date, datetime, timezone
from html import escape
from pathlib import Path

from pipeline.ops.report_data import ReportData, ReportError, collect
from pipeline.ops.report_html import day_range
from pipeline.ops.report_sections import (
    entities_section,
    feeds_section,
    quality_section,
    recent_section,
    topics_section,
)
from pipeline.ops.report_topics import languages_section, topic_details_section
from pipeline.tagging.taxonomy import Taxonomy

__all__ = ["ReportError", "render", "write_report"]

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
h3 { font-size: 16px; margin: 16px 0 4px; } h4 { font-size: 13px; margin: 10px 0 0; color: #5b6472; }
.topic + .topic { border-top: 1px solid #e3e6ea; margin-top: 16px; }
"""


def write_report(
    lake_root: Path,
    out: Path,
    days: int | None = None,
    now: datetime | None = None,
    taxonomy: Taxonomy | None = None,
    feed_names: Mapping[str, str] | None = None,
    since: date | None = None,
    until: date | None = None,
    topic: str | None = None,
) -> Path:
    """Write the report of the lake at `lake_root` to `out` (atomically) and return `out`.

    The window: `since`..`until` (inclusive, either end open), or the last `days` days up
    to `until` (default: `now`'s date); by publication date for topics, languages and
    entities, by fetch or landing date for intake, rejects and feed health. `topic`: only
    the articles tagged with that topic id (and the duplicates of such articles). `now`:
    the generation time shown (default: the clock). `taxonomy`: where the topic and entity
    labels come from (default: the built-in one). `feed_names`: feed URL -> configured name.
    Raises ReportError (a ValueError) for `days` < 1, `days` with `since`, `since` after
    `until` or an unknown topic, MaintenanceError for a folder no run has written; a lake
    with nothing committed yet gets a page saying so.
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    data = collect(Path(lake_root), now, days, taxonomy, feed_names, since=since, until=until, topic=topic)
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
        filtered = data.days or data.since or data.until or data.topic
        what = f"in the last {data.days} days" if data.days else "in this window" if filtered else ""
        what = (f"about {data.topic_label} " if data.topic else "") + (what or "in this lake yet")
        body = f'<section><p class="empty">Nothing {escape(what)}: '
        body += "no articles, duplicates, rejects or fetches.</p></section>"
        scripts = ""
    else:
        from plotly.offline import get_plotlyjs

        sections = [
            topics_section(data),
            languages_section(data),
            topic_details_section(data),
            feeds_section(data),
            entities_section(data),
            quality_section(data),
        ]
        if not data.topic:  # with --topic, its latest articles are in the topic's own section
            sections.append(recent_section(data))
        body = "\n".join(sections)
        scripts = "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        scripts += f"<script>{get_plotlyjs()}</script>"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>newsbeam report: {escape(str(data.lake))}</title>\n<style>{CSS}</style>\n{scripts}\n"
        f"</head>\n<body>\n{_header(data)}\n{body}\n</body>\n</html>\n"
    )


def _window(data: ReportData) -> str:
    if data.days:
        plural = "s" if data.days != 1 else ""
        return f"the last {data.days} day{plural} ({data.since} to {data.until or data.generated_at.date()})"
    if data.since and data.until:
        n = (data.until - data.since).days + 1
        return f"{data.since} to {data.until} ({n} day{'s' if n != 1 else ''})"
    if data.since:
        return f"from {data.since}"
    if data.until:
        return f"up to {data.until}"
    return "everything"


def _header(data: ReportData) -> str:
    c = data.latest_commit
    commit = (
        f"#{c['seq']} {escape(c['kind'])} <code>{escape(str(c['id']))}</code> at {escape(c['when'])} "
        f"({escape(str(c['outcome']))}); {data.commits} commit{'s' if data.commits != 1 else ''} in all"
        if c
        else "none yet"
    )
    meta = [
        ("Lake", f"<code>{escape(str(data.lake))}</code>"),
        ("Snapshot", commit),
        ("Window", _window(data)),
    ]
    if data.topic:
        topic = f"{escape(data.topic_label)} <code>{escape(data.topic)}</code>"
        meta.append(("Topic", topic + " (articles tagged with it, and their duplicates)"))
    meta += [
        ("Published", day_range(data.published_range)),
        ("Fetched", day_range(data.fetched_range)),
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

"""`pipeline.ops.report`: a real lake (two runs on a local feed server), the HTML report, and
that report opened in a real headless Chromium: what it shows is read from the rendered DOM."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from connectors.http import FeedSource
from pipeline.lake.files import stage_arrow
from pipeline.lake.store import Lake
from pipeline.ops.maintenance import MaintenanceError, snapshot_connection
from pipeline.ops.report import write_report
from pipeline.run import run_cycle
from pipeline.tagging.tagger import load_taxonomy
from pipeline.tagging.taxonomy import Taxonomy
from schemas.arrow import ARTICLE_SCHEMA
from schemas.ids import stable_id
from schemas.records import RawFetch
from tests.conftest import SEED, feed_fixture, make_config
from tests.feedserver import FeedServer, Route

DAY1 = datetime(2024, 6, 20, 12, 0, tzinfo=timezone.utc)
DAY2 = datetime(2024, 6, 21, 12, 0, tzinfo=timezone.utc)
NOW = datetime(2024, 6, 21, 18, 30, tzinfo=timezone.utc)
# Run as page script, either would mark <body>: neither may ever run.
HOSTILE_TITLE = (
    '<script>document.body.setAttribute("data-pwned", "title")</script>'
    "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\"> Kim Jong Un in Moscow"
)
HOSTILE_LABEL = '<i>Yonhap</i> & "news"'  # a taxonomy is configuration: its labels are text too
HOSTILE_FEED = "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'feed')\">wire <b>&</b> co"
# The first test to ask for the browser may install it (apt-get) in its setup.
pytestmark = pytest.mark.timeout(1200)
CHARTS = ("chart-topics", "chart-languages", "chart-feeds", "chart-entities", "chart-rates", "chart-rejects")


# --- a browser -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium; installed with apt-get when missing (root here and in CI)."""
    found = shutil.which("chromium")
    if found is None:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
            if done.returncode != 0:
                pytest.fail(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
        found = shutil.which("chromium")
        if found is None:
            pytest.fail("apt-get install -y chromium succeeded but no `chromium` is on PATH")
    return found


def browse(chromium: str, page: Path, scratch: Path, *action: str) -> subprocess.CompletedProcess[str]:
    profile = scratch / f"profile-{len(list(scratch.glob('profile-*')))}"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *action,
        page.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def dump_dom(chromium: str, page: Path, scratch: Path) -> HTMLParser:
    return HTMLParser(browse(chromium, page, scratch, "--dump-dom").stdout)


# --- a lake --------------------------------------------------------------------------


def commit_hostile_article(out: Path) -> str:
    """A committed article whose title is markup, by the lake's own commit (the pipeline's
    cleaning strips markup from titles; a report must not rely on that)."""
    lake = Lake(out)
    rel = sorted(lake.live_files("articles"))[0]
    row = pq.read_table(out / rel).to_pylist()[0]
    run_id = stable_id("report-test-hostile")
    row.update(article_id=stable_id("hostile"), title=HOSTILE_TITLE, url="javascript:alert(1)", run_id=run_id)
    row["published_at"] = DAY2
    with lake.lock():
        staged = stage_arrow(
            out, run_id, "articles", "2024-06-21", pa.Table.from_pylist([row], ARTICLE_SCHEMA)
        )
        lake.commit(run_id, [], [staged], {"started_at": DAY2.isoformat()})
    return run_id


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two daily runs: feeds in en/ru/ko, a French seed and a JSONL seed with a broken line
    (a reject), a feed failing with HTTP 500 both days, a mirror of a feed (duplicates),
    then a third commit: an article whose title is markup."""
    tmp = tmp_path_factory.mktemp("report")
    seeds = tmp / "seeds"
    seeds.mkdir()
    shutil.copyfile(SEED, seeds / SEED.name)
    (seeds / "wires.jsonl").write_text(
        json.dumps({"title": "Kim Jong Un meets Putin", "text": "Kim Jong Un met Vladimir Putin in Moscow."})
        + "\n{not json\n",
        encoding="utf-8",
    )
    server = FeedServer().start()
    try:
        server.routes["/rss"] = Route(feed_fixture("rss2.xml"))
        server.routes["/atom"] = Route(feed_fixture("atom.xml"), content_type="application/atom+xml")
        server.routes["/500"] = Route(b"oops", status=500, content_type="text/plain")
        feeds = [
            FeedSource("wire", server.url("/rss")),
            FeedSource("east", server.url("/atom")),
            FeedSource(HOSTILE_FEED, server.url("/500")),
        ]
        run_cycle(make_config(tmp, seeds, feeds), clock=lambda: DAY1)
        server.routes["/rss"] = Route(feed_fixture("rss2_update.xml"))
        server.routes["/mirror"] = Route(feed_fixture("rss2.xml"))
        feeds.append(FeedSource("mirror", server.url("/mirror")))
        run_cycle(make_config(tmp, seeds, feeds), clock=lambda: DAY2)
    finally:
        server.stop()
    commit_hostile_article(tmp / "data")
    yield tmp / "data"


def taxonomy() -> Taxonomy:
    """The built-in taxonomy (the lake was tagged with it), one label made of markup."""
    built_in = load_taxonomy()
    entities = tuple(
        dataclasses.replace(e, label=HOSTILE_LABEL) if e.id == "yonhap" else e for e in built_in.entities
    )
    return dataclasses.replace(built_in, entities=entities)


def feed_names(lake: Path) -> dict[str, str]:
    """Configured names by URL (as `newsbeam report` passes them): the Atom feed renamed."""
    urls = json.loads((lake / "_state" / "feeds.json").read_text(encoding="utf-8"))
    return {url: "East Herald" for url in urls if url.endswith("/atom")}


def write(lake: Path, out: Path, **kwargs: Any) -> Path:
    return write_report(lake, out, now=NOW, taxonomy=taxonomy(), feed_names=feed_names(lake), **kwargs)


@pytest.fixture(scope="module")
def report(lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(lake, tmp_path_factory.mktemp("out") / "report.html")


@pytest.fixture(scope="module")
def dom(chromium: str, report: Path, tmp_path_factory: pytest.TempPathFactory) -> HTMLParser:
    return dump_dom(chromium, report, tmp_path_factory.mktemp("browser"))


def texts(tree: HTMLParser, selector: str) -> list[str]:
    return [node.text(deep=True).strip() for node in tree.css(selector)]


def column(tree: HTMLParser, section: str, header: str) -> list[str]:
    """The cells under `header` in the first table of a section."""
    table = tree.css_first(f"#{section} table")
    assert table is not None, section
    index = texts(table, "thead th").index(header)
    return [row.css("td")[index].text(deep=True) for row in table.css("tbody tr")]


def snapshot_count(lake: Path, sql: str) -> int:
    return int(snapshot_connection(Lake(lake)).execute(sql).fetchone()[0])


# --- the report in a browser -------------------------------------------------------------


def test_charts_render_with_labels_in_the_browser(dom: HTMLParser, lake: Path) -> None:
    for chart in CHARTS:
        assert dom.css(f"#{chart} svg.main-svg"), f"{chart} was not drawn"
    assert len(dom.css("#chart-topics g.trace.bars path")) >= 3, "no bars in the topic chart"
    assert len(dom.css("#chart-entities g.trace.bars path")) >= 5
    assert dom.css("#chart-feeds g.hm image"), "the feed heatmap has no cells"

    legend = texts(dom, "#chart-topics .legendtext")
    assert "North Korea–Russia relations" in legend and "(no topic)" in legend
    assert "North Korea–Russia relations" in texts(dom, "#topics td")
    assert "nk-russia" not in legend, "topics are shown by their label"

    ticks = texts(dom, "#chart-entities .ytick text")
    # Labels from the taxonomy, not ids: kcna's label is nothing like its id.
    assert {"North Korea", "Russia", "Kim Jong-un", "Korean Central News Agency"} <= set(ticks)
    assert not {"north-korea", "kcna"} & set(ticks)
    assert "Korean Central News Agency" in column(dom, "entities", "entity")

    days = texts(dom, "#chart-topics .xtick text")
    assert days[0] == "2024-06-18" and days[-1] == "2024-06-21", days

    # One trace per language, its total in the legend: the header's counts.
    meta = dict(zip(texts(dom, "dl.meta dt"), texts(dom, "dl.meta dd"), strict=True))
    by_language = [part.rsplit(" ", 1) for part in meta["Languages"].split(", ")]
    assert sorted(texts(dom, "#chart-languages .legendtext")) == sorted(f"{k} · {n}" for k, n in by_language)
    assert len(dom.css("#chart-languages g.trace.bars")) == len(by_language) >= 4
    # The top topics in detail: nk-russia, the largest, first; its entities by their labels.
    blocks = dom.css("#topic-details .topic")
    assert blocks and blocks[0].attributes["data-topic"] == "nk-russia"
    assert {"North Korea", "Russia"} <= set(texts(blocks[0].css("table")[0], "tbody td:first-child"))


def test_feed_health_rejects_and_duplicates_are_shown(dom: HTMLParser, lake: Path) -> None:
    sources = texts(dom, "#chart-feeds .ytick text")
    assert {"wire", "east", "mirror", "seed files", HOSTILE_FEED} <= set(sources)
    cells = texts(dom, "#chart-feeds text")
    assert "0 ok / 1 err" in cells and "1 ok / 0 err" in cells, cells
    feeds_now = dom.css("#feeds table")[-1]
    rows = {r.css("td")[0].text(): [c.text() for c in r.css("td")] for r in feeds_now.css("tbody tr")}
    assert rows[HOSTILE_FEED][4] == "2", "the failing feed's streak after two failed polls"
    assert rows[HOSTILE_FEED][6] == "HTTP 500" and rows["wire"][2].startswith("ok")
    assert rows["East Herald"][1].endswith("/atom"), "a feed is shown by its configured name"

    reasons = texts(dom, "#chart-rejects .legendtext")
    assert {"fetch: HTTP 500", "parse: bad_json"} <= set(reasons)
    table = dom.css("#quality table")[-1]
    assert {"HTTP 500", "bad_json"} <= set(texts(table, "tbody td:nth-child(2)"))

    intake = dom.css_first("#quality table")
    by_day = {r.css("td")[0].text(): [c.text() for c in r.css("td")] for r in intake.css("tbody tr")}
    duplicates = snapshot_count(lake, "SELECT count(*) FROM duplicates WHERE fetched_date = '2024-06-21'")
    assert duplicates > 0 and by_day["2024-06-21"][2] == str(duplicates)
    assert by_day["2024-06-20"][2] == "0" and by_day["2024-06-20"][4] == "0.0%"
    assert dom.css("#chart-rates g.scatterlayer path.js-line")


def test_markup_from_the_lake_is_text_and_never_runs(dom: HTMLParser, report: Path) -> None:
    body = dom.css_first("body")
    assert body is not None and "data-pwned" not in body.attributes, body.attributes
    assert not dom.css("#recent img, #feeds img, header img, #quality img, #topic-details img")
    assert HOSTILE_TITLE in column(dom, "recent", "title")
    assert not dom.css('#recent a[href^="javascript"], #topic-details a[href^="javascript"]'), (
        "a javascript: URL became a link"
    )
    assert HOSTILE_FEED in texts(dom, "#chart-feeds .ytick text")
    assert HOSTILE_FEED in column(dom, "feeds", "source")
    assert HOSTILE_LABEL in texts(dom, "#chart-entities .ytick text")
    assert HOSTILE_LABEL in column(dom, "entities", "entity")
    source = report.read_text(encoding="utf-8")
    assert "<script>document.body" not in source and "&lt;script&gt;document.body" in source


def test_header_names_the_snapshot(dom: HTMLParser, lake: Path) -> None:
    meta = dict(zip(texts(dom, "dl.meta dt"), texts(dom, "dl.meta dd"), strict=True))
    latest = Lake(lake).manifests()[-1]
    assert meta["Lake"] == str(lake)
    assert latest["run_id"] in meta["Snapshot"] and meta["Snapshot"].startswith(f"#{latest['seq']} run")
    assert meta["Published"] == "2024-06-18 to 2024-06-21"
    assert meta["Fetched"] == "2024-06-20 to 2024-06-21"
    assert meta["Generated"] == "2024-06-21T18:30:00+00:00"
    assert {"en", "fr", "ru", "ko"} <= {part.split()[0] for part in meta["Languages"].split(", ")}
    cards = dict(zip(texts(dom, ".card span"), texts(dom, ".card b"), strict=True))
    assert cards["articles"] == str(snapshot_count(lake, "SELECT count(*) FROM articles"))
    assert cards["reject rows"] == str(snapshot_count(lake, "SELECT count(*) FROM rejects"))


def test_screenshot_is_a_readable_page(chromium: str, report: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    browse(chromium, report, tmp_path, f"--screenshot={shot}", "--window-size=1280,1800")
    assert shot.stat().st_size > 60_000, shot.stat().st_size
    width, height = struct.unpack(">II", shot.read_bytes()[16:24])
    assert (width, height) == (1280, 1800)
    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 500, "a blank or nearly blank page"


# --- without a browser -----------------------------------------------------------------


def card(page: str, label: str) -> int:
    tree = HTMLParser(page)
    cards = dict(zip(texts(tree, ".card span"), texts(tree, ".card b"), strict=True))
    return int(cards[label].replace(",", ""))


def test_days_keeps_only_the_window(lake: Path, tmp_path: Path) -> None:
    page = write_report(lake, tmp_path / "r.html", days=1, now=NOW).read_text(encoding="utf-8")
    since = "DATE '2024-06-21'"
    articles = snapshot_count(lake, f"SELECT count(*) FROM articles WHERE published_date >= {since}")
    everything = snapshot_count(lake, "SELECT count(*) FROM articles")
    assert 0 < articles < everything
    assert card(page, "articles") == articles
    rejects = snapshot_count(lake, f"SELECT count(*) FROM rejects WHERE fetched_date >= {since}")
    assert card(page, "reject rows") == rejects
    assert "2024-06-20" not in HTMLParser(page).css_first("#quality table").text()
    assert "the last 1 day (2024-06-21 to 2024-06-21)" in page
    with pytest.raises(ValueError, match="at least 1"):
        write_report(lake, tmp_path / "r.html", days=0, now=NOW)


def test_same_snapshot_same_bytes(lake: Path, report: Path, tmp_path: Path) -> None:
    again = write(lake, tmp_path / "again.html")
    assert again.read_bytes() == report.read_bytes()
    assert 3_000_000 < len(again.read_bytes()) < 8_000_000, "plotly.js inlined once"
    assert again.read_text(encoding="utf-8").count("Plotly.newPlot(") == len(CHARTS)


def test_a_batch_not_yet_committed_is_not_in_the_report(lake: Path, tmp_path: Path) -> None:
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    late = RawFetch("late-1", "late-feed", "feed", "http://127.0.0.1:9/late", DAY2, "error", error="boom")
    Lake(copy).land_raw([late], DAY2)  # landed by a run that has not committed (or died)
    assert snapshot_count(copy, "SELECT count(*) FROM raw WHERE source = 'late-feed'") == 1
    page = write_report(copy, tmp_path / "r.html", now=NOW).read_text(encoding="utf-8")
    assert "late-feed" not in page
    assert card(page, "fetches (raw)") == card(
        write_report(lake, tmp_path / "o.html", now=NOW).read_text(), "fetches (raw)"
    )


def test_a_commit_while_reading_is_read_again(lake: Path, tmp_path: Path, monkeypatch) -> None:
    import pipeline.ops.report_data as report_data

    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    calls = []
    real = report_data.snapshot_connection

    def commit_meanwhile(*args):  # a writer commits between the two manifest reads
        calls.append(1)
        if len(calls) == 1:
            with Lake(copy).lock():
                Lake(copy).commit(stable_id("meanwhile"), [], [])
        return real(*args)

    monkeypatch.setattr(report_data, "snapshot_connection", commit_meanwhile)
    page = write_report(copy, tmp_path / "r.html", now=NOW).read_text(encoding="utf-8")
    assert len(calls) == 2
    assert stable_id("meanwhile") in page


def test_an_empty_lake_says_so(chromium: str, tmp_path: Path) -> None:
    (tmp_path / "seeds").mkdir()
    run_cycle(make_config(tmp_path, tmp_path / "seeds"), clock=lambda: DAY1)  # nothing to read
    out = write_report(tmp_path / "data", tmp_path / "empty.html", now=NOW)
    assert out.stat().st_size < 20_000, "no charts, no plotly.js"
    tree = dump_dom(chromium, out, tmp_path)
    assert "Nothing in this lake yet" in tree.css_first(".empty").text()
    assert texts(tree, "dl.meta dd")[1] == "none yet"
    with pytest.raises(MaintenanceError, match="not a newsbeam lake"):
        write_report(tmp_path / "seeds", tmp_path / "nowhere.html", now=NOW)

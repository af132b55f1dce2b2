"""`newsbeam report --since/--until/--topic`: a real lake from three real `newsbeam run`s over
seed files written here (two topics, four languages, articles published over four weeks,
duplicates and rejects on three fetch days), the filtered report written by the command
line, and that report opened in a real headless Chromium: what it shows is read from the
rendered DOM, and checked against what the seeds were written to hold."""

from __future__ import annotations

import functools
import json
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser

import pipeline.run
from pipeline import cli
from pipeline.lake.store import Lake
from pipeline.ops.maintenance import snapshot_connection
from pipeline.ops.report import ReportError, write_report
from pipeline.tagging.tagger import load_taxonomy
from tests.test_report import chromium, dump_dom, texts  # noqa: F401  (chromium: a fixture)

pytestmark = pytest.mark.timeout(1200)

M, C = "nk-missiles-nuclear", "china-russia"
M_LABEL, C_LABEL = "North Korean missile and nuclear programmes", "China–Russia relations"
HOST = "https://news.example.org"
SINCE, UNTIL = "2024-05-02", "2024-05-20"
RUN1 = datetime(2024, 5, 10, 12, 0, tzinfo=timezone.utc)
RUN2 = datetime(2024, 5, 20, 12, 0, tzinfo=timezone.utc)
RUN3 = datetime(2024, 5, 30, 12, 0, tzinfo=timezone.utc)

# slug (its URL's path), language, published, title, text. The tagger finds: every `m-` one
# nk-missiles-nuclear only (North Korea, and KCNA where named), every `c-` one china-russia
# only (China, Russia, Xi Jinping, Vladimir Putin, a city), `x-` nothing.
EARLY = [  # the first run's seed file
    ("m-en-0501", "en", "2024-05-01T08:00:00Z", "North Korea fires ballistic missile into the sea",
     "North Korea fired a ballistic missile into the sea on Wednesday, state media KCNA said."),
    ("m-fr-0502", "fr", "2024-05-02T09:00:00Z", "La Corée du Nord tire un missile balistique",
     "La Corée du Nord a tiré un missile balistique en mer, selon l'agence KCNA."),
    ("m-ko-0503", "ko", "2024-05-03T10:00:00Z", "북한, 탄도미사일 발사",
     "북한이 동해상으로 탄도미사일을 발사했다고 조선중앙통신이 보도했다."),
    ("c-ru-0502", "ru", "2024-05-02T11:00:00Z", "Си Цзиньпин и Владимир Путин провели переговоры",
     "Китай и Россия подписали соглашение о газопроводе после переговоров Си Цзиньпина и "
     "Владимира Путина в Пекине."),
    ("c-en-0504", "en", "2024-05-04T12:00:00Z", "Xi Jinping and Vladimir Putin hold talks in Beijing",
     "China and Russia signed a gas pipeline deal after talks in Beijing between Xi Jinping and "
     "Vladimir Putin."),
]  # fmt: skip
LATE = [  # the second run's
    ("m-en-0515", "en", "2024-05-15T08:00:00Z", "North Korea launches hypersonic missile from Pyongyang",
     "North Korea launched a hypersonic missile from near Pyongyang on Wednesday, KCNA reported."),
    ("m-ko-0516a", "ko", "2024-05-16T07:00:00Z", "북한, 정찰위성 발사",
     "북한이 군사정찰위성을 발사했다고 조선중앙통신이 밝혔다."),
    ("m-ko-0516b", "ko", "2024-05-16T15:00:00Z", "북한, 순항미사일 여러 발 발사",
     "북한이 서해상으로 순항미사일 여러 발을 발사했다."),
    ("c-fr-0517", "fr", "2024-05-17T09:00:00Z", "Xi Jinping et Vladimir Poutine en visite",
     "La Chine et la Russie ont signé un accord gazier lors d'une visite de Xi Jinping à Moscou, "
     "où il a rencontré Vladimir Poutine."),
    ("x-en-0516", "en", "2024-05-16T10:00:00Z", "Cherry trees bloom early in the city park",
     "Cherry trees bloomed early this year in the city park, gardeners said."),
]  # fmt: skip
AFTER = [  # the third run's: published after the window, or before it
    ("m-en-0525", "en", "2024-05-25T08:00:00Z", "North Korea tests a new solid-fuel missile engine",
     "North Korea tested a new solid-fuel engine for its missiles, KCNA said on Saturday."),
    ("m-ko-0428", "ko", "2024-04-28T08:00:00Z", "북한, 핵실험장 복구 정황",
     "북한이 풍계리 핵실험장을 복구하는 정황이 포착됐다."),
]  # fmt: skip
BY_SLUG = {a[0]: a for a in EARLY + LATE + AFTER}


def title(slug: str) -> str:
    return BY_SLUG[slug][3]


def record(slug: str, url: str | None = None) -> str:
    _, language, published, head, text = BY_SLUG[slug]
    return json.dumps(
        {
            "title": head,
            "text": text,
            "language": language,
            "published": published,
            "url": url or f"{HOST}/{slug}",
        },
        ensure_ascii=False,
    )


def seed_file(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def newsbeam(*argv: str) -> int:
    return cli.main(list(argv))


def newsbeam_run(config: Path, when: datetime) -> None:
    """`newsbeam run --config FILE`, the command as it is, with the run's clock at `when`
    (fetch dates, which duplicates and rejects are filtered by, are the run's)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            pipeline.run, "run_cycle", functools.partial(pipeline.run.run_cycle, clock=lambda: when)
        )
        assert newsbeam("run", "--config", str(config)) == 0


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three runs. Each new seed file holds a broken line (a reject on its fetch day) and
    exact copies under other URLs (duplicates): of m-fr-0502 on 2024-05-10, of m-en-0501
    (published before the window) and of c-ru-0502 on 2024-05-20."""
    base = tmp_path_factory.mktemp("report-filters")
    seeds = base / "seeds"
    seeds.mkdir()
    config = base / "newsbeam.toml"
    config.write_text(f'seeds_dir = "{seeds}"\noutput_dir = "{base / "data"}"\n', encoding="utf-8")
    early = [record(a[0]) for a in EARLY]
    seed_file(
        seeds / "early.jsonl", [*early, record("m-fr-0502", "https://mirror.example.org/fr"), "{broken"]
    )
    newsbeam_run(config, RUN1)
    late = [record(a[0]) for a in LATE]
    copies = [record("m-en-0501", f"{HOST}/copy-en"), record("c-ru-0502", f"{HOST}/copy-ru")]
    seed_file(seeds / "late.jsonl", [*late, *copies, "{broken"])
    newsbeam_run(config, RUN2)
    seed_file(seeds / "after.jsonl", [record(a[0]) for a in AFTER] + ["{broken"])
    newsbeam_run(config, RUN3)
    return config


def lake_of(config: Path) -> Path:
    return config.parent / "data"


def report(config: Path, out: Path, *flags: str) -> Path:
    assert newsbeam("report", "--config", str(config), "--html", str(out), *flags) == 0
    return out


@pytest.fixture(scope="module")
def topic_dom(chromium: str, config: Path, tmp_path_factory: pytest.TempPathFactory) -> HTMLParser:  # noqa: F811
    out = tmp_path_factory.mktemp("out") / "topic.html"
    report(config, out, "--since", SINCE, "--until", UNTIL, "--topic", M)
    return dump_dom(chromium, out, tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def window_dom(chromium: str, config: Path, tmp_path_factory: pytest.TempPathFactory) -> HTMLParser:  # noqa: F811
    out = tmp_path_factory.mktemp("out") / "window.html"
    report(config, out, "--since", SINCE, "--until", UNTIL)
    return dump_dom(chromium, out, tmp_path_factory.mktemp("browser"))


# --- reading the rendered page ---------------------------------------------------------


def meta(dom: HTMLParser) -> dict[str, str]:
    return dict(zip(texts(dom, "dl.meta dt"), texts(dom, "dl.meta dd"), strict=True))


def cards(dom: HTMLParser) -> dict[str, int]:
    return {k: int(v) for k, v in zip(texts(dom, ".card span"), texts(dom, ".card b"), strict=True)}


def rows(node: Any) -> list[list[str]]:
    return [[c.text(deep=True).strip() for c in r.css("td")] for r in node.css("tbody tr")]


def fill(node: Any) -> str:
    found = re.search(r"fill: (rgb\([^)]*\))", node.attributes.get("style") or "")
    assert found, node.attributes
    return found.group(1)


def language_series(dom: HTMLParser) -> dict[str, list[str]]:
    """Each legend entry of the language chart -> the counts drawn on its bar segments, day
    by day: a trace's bars and its legend swatch share their colour."""
    legend = {
        fill(item.css_first("g.legendpoints path")): item.css_first("text.legendtext").text()
        for item in dom.css("#chart-languages g.legend g.traces")
    }
    series = {}
    for trace in dom.css("#chart-languages g.trace.bars"):
        series[legend[fill(trace.css_first("g.point path"))]] = texts(trace, "text.bartext")
    return series


def day_ticks(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [date.fromordinal(n).isoformat() for n in range(start.toordinal(), end.toordinal() + 1)]


def evidence(config: Path, slug: str, topic: str) -> str:
    """The evidence of `topic` on the article at `slug`'s URL, as the lake holds it."""
    con = snapshot_connection(Lake(lake_of(config)))
    found = con.execute(
        "SELECT t.evidence FROM (SELECT url, unnest(topics) AS t FROM articles) WHERE url = ? AND t.id = ?",
        [f"{HOST}/{slug}", topic],
    ).fetchall()
    assert len(found) == 1 and found[0][0], (slug, found)
    return "; ".join(found[0][0])


IN_WINDOW_M = ["m-ko-0516b", "m-ko-0516a", "m-en-0515", "m-ko-0503", "m-fr-0502"]  # newest first
IN_WINDOW_C = ["c-fr-0517", "c-en-0504", "c-ru-0502"]
OUT_OF_WINDOW = ["m-en-0501", "m-en-0525", "m-ko-0428"]  # published before or after it
M_ENTITIES = [  # entity, id, type, articles, mentions: over the five in the window
    ["North Korea", "north-korea", "country", "5", "10"],
    ["Korean Central News Agency", "kcna", "organisation", "4", "4"],
    ["Pyongyang", "pyongyang", "place", "1", "2"],
]
C_ENTITIES = [
    ["Vladimir Putin", "vladimir-putin", "person", "3", "6"],
    ["Xi Jinping", "xi-jinping", "person", "3", "6"],
    ["China", "china", "country", "3", "3"],
    ["Russia", "russia", "country", "3", "3"],
    ["Beijing", "beijing", "place", "2", "3"],
    ["Moscow", "moscow", "place", "1", "1"],
]


# --- --since --until --topic, in a browser ------------------------------------------------


def test_the_lake_holds_what_the_seeds_were_written_to(config: Path) -> None:
    con = snapshot_connection(Lake(lake_of(config)))
    assert con.execute("SELECT count(*) FROM articles").fetchone()[0] == 12
    dups = con.execute(
        "SELECT fetched_date::VARCHAR, count(*) FROM duplicates GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert dups == [("2024-05-10", 1), ("2024-05-20", 2)]
    rejects = con.execute(
        "SELECT fetched_date::VARCHAR, count(*) FROM rejects GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rejects == [("2024-05-10", 1), ("2024-05-20", 1), ("2024-05-30", 1)]
    tagged = con.execute(
        "SELECT [t.id for t in topics], count(*) FROM articles GROUP BY 1 ORDER BY 2 DESC"
    ).fetchall()
    assert tagged == [([M], 8), ([C], 3), ([], 1)]


def test_topic_header_counts_only_the_topic_in_the_window(topic_dom: HTMLParser) -> None:
    shown = meta(topic_dom)
    assert shown["Window"] == "2024-05-02 to 2024-05-20 (19 days)"
    assert shown["Topic"].startswith(f"{M_LABEL} {M}")
    assert shown["Published"] == "2024-05-02 to 2024-05-16"
    assert shown["Fetched"] == "2024-05-10 to 2024-05-20"
    assert shown["Languages"] == "ko 3, en 1, fr 1"
    counted = cards(topic_dom)
    # Duplicates: of m-fr-0502 (05-10) and m-en-0501 (05-20), not of c-ru-0502 (05-20).
    # Rejects carry no topic: the two fetched in the window, not the one of 05-30.
    assert {k: counted[k] for k in ("articles", "duplicates", "reject rows", "topics seen", "languages")} == {
        "articles": 5,
        "duplicates": 2,
        "reject rows": 2,
        "topics seen": 1,
        "languages": 3,
    }


def test_topic_languages_chart_per_day(topic_dom: HTMLParser) -> None:
    assert topic_dom.css("#chart-languages svg.main-svg"), "the language chart was not drawn"
    # ko: 1 on 05-03, 2 on 05-16; en: 1 on 05-15; fr: 1 on 05-02.
    assert language_series(topic_dom) == {"ko · 3": ["1", "2"], "en · 1": ["1"], "fr · 1": ["1"]}
    window = day_ticks(SINCE, UNTIL)  # the whole window, its days without articles too
    assert texts(topic_dom, "#chart-languages .xtick text") == window
    assert texts(topic_dom, "#chart-topics .xtick text") == window
    assert texts(topic_dom, "#chart-topics .legendtext") == [M_LABEL]


def test_topic_entities_and_latest_articles_with_evidence(topic_dom: HTMLParser, config: Path) -> None:
    blocks = topic_dom.css("#topic-details .topic")
    assert [b.attributes["data-topic"] for b in blocks] == [M]
    block = blocks[0]
    assert block.css_first("h3").text(deep=True) == f"{M_LABEL} {M}"
    entities, latest = block.css("table")
    assert rows(entities) == M_ENTITIES
    assert rows(topic_dom.css_first("#entities table")) == M_ENTITIES  # the top entities too
    listed = rows(latest)
    assert [r[1] for r in listed] == [title(s) for s in IN_WINDOW_M]
    assert [r[0] for r in listed] == ["2024-05-16", "2024-05-16", "2024-05-15", "2024-05-03", "2024-05-02"]
    assert [r[3] for r in listed] == ["ko", "ko", "en", "ko", "fr"]
    assert [r[2] for r in listed] == ["seeds/late.jsonl"] * 3 + ["seeds/early.jsonl"] * 2
    links = [a.attributes["href"] for a in latest.css("tbody a")]
    assert links[:4] == [f"{HOST}/{s}" for s in IN_WINDOW_M[:4]]
    assert links[4] in (f"{HOST}/m-fr-0502", "https://mirror.example.org/fr"), "one of the two copies"
    for row, slug in zip(listed[:4], IN_WINDOW_M[:4], strict=True):
        assert row[5] == evidence(config, slug, M), slug
    assert listed[2][5].startswith("North Korea; ") and listed[3][5].startswith("북한; ")
    page = topic_dom.css_first("body").text(deep=True)
    for slug in OUT_OF_WINDOW + IN_WINDOW_C + ["x-en-0516"]:
        assert title(slug) not in page, slug
    assert not topic_dom.css("#recent"), "with --topic the latest articles are the topic's own"


def test_topic_intake_duplicates_and_rejects(topic_dom: HTMLParser) -> None:
    intake, reasons = topic_dom.css("#quality table")
    # By fetch day: the topic's articles fetched that day (m-en-0501 too: fetched on 05-10),
    # the duplicates of the topic's articles, every reject.
    assert [r[:4] for r in rows(intake)] == [["2024-05-10", "3", "1", "1"], ["2024-05-20", "3", "1", "1"]]
    assert [r[:4] for r in rows(reasons)] == [["parse", "bad_json", "2", "2"]]
    topics = rows(topic_dom.css_first("#topics table"))
    assert [r[:3] for r in topics] == [[M_LABEL, M, "5"]]
    assert topics[0][5:] == ["2024-05-02", "2024-05-16"]


def test_feed_cells_sit_on_their_landing_days(topic_dom: HTMLParser) -> None:
    """Seeds were landed on 05-10 and 05-20 only: each cell's text is under its own day's tick
    (a heatmap places its texts by column, so the days between need columns of their own)."""
    ticks = {
        n.text(): float(n.attributes["transform"].split("(")[1].split(",")[0])
        for n in topic_dom.css("#chart-feeds .xtick text")
    }
    labels = [(n.text(), float(n.attributes["x"])) for n in topic_dom.css("#chart-feeds .heatmap-label text")]
    assert [text for text, _ in labels] == ["1 ok / 0 err", "1 ok / 0 err"]
    offsets = [x - ticks[day] for (_, x), day in zip(labels, ["2024-05-10", "2024-05-20"], strict=True)]
    assert abs(offsets[0] - offsets[1]) < 1, (labels, ticks)


def test_window_without_topic(window_dom: HTMLParser) -> None:
    counted = cards(window_dom)
    assert (counted["articles"], counted["duplicates"], counted["reject rows"]) == (9, 3, 2)
    assert meta(window_dom)["Languages"] == "en 3, ko 3, fr 2, ru 1"
    # en: c-en-0504, m-en-0515, x-en-0516; ko: m-ko-0503, then both m-ko-0516; fr: m-fr-0502,
    # c-fr-0517; ru: c-ru-0502.
    assert language_series(window_dom) == {
        "en · 3": ["1", "1", "1"],
        "ko · 3": ["1", "2"],
        "fr · 2": ["1", "1"],
        "ru · 1": ["1"],
    }
    assert set(texts(window_dom, "#chart-topics .legendtext")) == {M_LABEL, C_LABEL, "(no topic)"}
    blocks = window_dom.css("#topic-details .topic")
    assert [b.attributes["data-topic"] for b in blocks] == [M, C], "the top topics, largest first"
    assert rows(blocks[0].css("table")[0]) == M_ENTITIES
    assert rows(blocks[1].css("table")[0]) == C_ENTITIES
    assert [r[1] for r in rows(blocks[1].css("table")[1])] == [title(s) for s in IN_WINDOW_C]
    recent = [r[3] for r in rows(window_dom.css_first("#recent table"))]
    assert sorted(recent) == sorted(title(s) for s in IN_WINDOW_M + IN_WINDOW_C + ["x-en-0516"])
    page = window_dom.css_first("body").text(deep=True)
    for slug in OUT_OF_WINDOW:
        assert title(slug) not in page, slug
    intake = rows(window_dom.css_first("#quality table"))
    assert [r[:4] for r in intake] == [["2024-05-10", "5", "1", "1"], ["2024-05-20", "5", "2", "1"]]


# --- other windows, without a browser ----------------------------------------------------


def page_of(path: Path) -> HTMLParser:
    return HTMLParser(path.read_text(encoding="utf-8"))


def test_days_up_to_until(config: Path, tmp_path: Path) -> None:
    page = page_of(report(config, tmp_path / "r.html", "--days", "3", "--until", "2024-05-04"))
    assert meta(page)["Window"] == "the last 3 days (2024-05-02 to 2024-05-04)"
    assert cards(page)["articles"] == 4
    recent = [r[3] for r in rows(page.css_first("#recent table"))]
    assert recent == [title(s) for s in ("c-en-0504", "m-ko-0503", "c-ru-0502", "m-fr-0502")]
    assert (cards(page)["duplicates"], cards(page)["reject rows"]) == (0, 0), "nothing fetched 05-02..05-04"


def test_a_topic_with_no_article_in_the_window(config: Path, tmp_path: Path) -> None:
    flags = ("--since", "2024-05-05", "--until", "2024-05-14", "--topic", M)
    page = page_of(report(config, tmp_path / "r.html", *flags))
    assert (cards(page)["articles"], cards(page)["duplicates"], cards(page)["reject rows"]) == (0, 1, 1)
    assert "No article with this topic in this window." in page.css_first("#topic-details").text()
    assert "No articles in this window." in page.css_first("#languages").text()
    quiet = ("--since", "2024-05-21", "--until", "2024-05-29", "--topic", "sanctions")
    empty = page_of(report(config, tmp_path / "e.html", *quiet))
    assert empty.css_first(".empty").text() == (
        "Nothing about Sanctions on North Korea and Russia in this window: "
        "no articles, duplicates, rejects or fetches."
    )


def test_filters_that_cannot_be_met_exit_2(config: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.html"
    base = ["report", "--config", str(config), "--html", str(out)]
    assert cli.main([*base, "--since", "2024-05-20", "--until", "2024-05-02"]) == 2
    assert capsys.readouterr().err == (
        "newsbeam report: --since 2024-05-20 is after --until 2024-05-02: the window would be empty\n"
    )
    assert cli.main([*base, "--days", "7", "--since", "2024-05-02"]) == 2
    assert capsys.readouterr().err == "newsbeam report: give either --days or --since, not both\n"

    known = sorted(t.id for t in load_taxonomy().topics)
    assert cli.main([*base, "--topic", "nk-missile"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("newsbeam report: unknown topic 'nk-missile' (did you mean nk-missiles-nuclear")
    assert err.endswith(f"; known topics: {', '.join(known)}\n"), err
    assert cli.main([*base, "--topic", "weather"]) == 2
    assert (
        capsys.readouterr().err
        == f"newsbeam report: unknown topic 'weather'; known topics: {', '.join(known)}\n"
    )
    assert not out.exists(), "no page for filters that cannot be met"

    with pytest.raises(SystemExit) as exit_:
        cli.main([*base, "--since", "2024-02-30"])
    assert exit_.value.code == 2 and "not a YYYY-MM-DD date: '2024-02-30'" in capsys.readouterr().err
    with pytest.raises(ReportError, match="after"):
        write_report(lake_of(config), out, since=date(2024, 5, 3), until=date(2024, 5, 2))

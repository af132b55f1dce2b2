"""End-to-end scheduled cycles on real parts: a local HTTP server, Beam, Parquet read back."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from connectors.http import FeedSource
from pipeline.config import ConfigError
from pipeline.run import EXIT_OK, EXIT_PARTIAL, format_report, run_cycle
from schemas import ARTICLE_SCHEMA, DUPLICATE_SCHEMA, REJECT_SCHEMA
from tests.conftest import SEED, feed_fixture, make_config
from tests.feedserver import Route
from tests.lakeread import arrow_table, duck_rows

SEED_TITLE = (
    "La rencontre entre le dirigeant nord-coréen Kim Jong-un et le ministre russe de la Défense "
    "Sergueï Choïgou s’est déroulée dans une atmosphère amicale et militante."
)


def parquet_files(out: Path, table: str) -> list[Path]:
    return sorted((out / table).glob("*/*.parquet"))


def test_seed_article_comes_out_clean_and_tagged(tmp_path: Path, seeds_dir: Path) -> None:
    report = run_cycle(make_config(tmp_path, seeds_dir))
    out = tmp_path / "data"

    rows = duck_rows(out, "articles")
    assert len(rows) == 1
    article = rows[0]
    assert article["language"] == "fr"
    assert article["title"] == SEED_TITLE
    assert "lire aussi" not in article["text"].lower()
    assert "En visite en Corée du Nord" not in article["text"]
    assert article["text"].startswith("Kim Jong-un, le dirigeant de la Corée du Nord")
    entity_ids = {e["id"] for e in article["entities"]}
    assert {"kim-jong-un", "sergei-shoigu", "vladimir-putin", "pyongyang"} <= entity_ids
    topics = {t["id"]: t for t in article["topics"]}
    assert "nk-russia" in topics
    assert 0 < topics["nk-russia"]["score"] <= 1
    assert topics["nk-russia"]["evidence"], "a topic must carry the spans that triggered it"
    assert {"KP", "RU"} <= set(article["countries"])
    assert article["taxonomy_version"]
    assert report.exit_code == EXIT_OK
    assert "articles written 1" in format_report(report)


def test_keep_topics_moves_other_articles_to_rejects(tmp_path: Path, seeds_dir: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path, seeds_dir), keep_topics=("nk-cyber",))
    run_cycle(config)
    out = tmp_path / "data"
    assert duck_rows(out, "articles") == []
    rejects = [r for r in duck_rows(out, "rejects") if r["reason"] == "off_topic"]
    assert len(rejects) == 1 and rejects[0]["stage"] == "tag"
    assert "nk-russia" in rejects[0]["detail"]
    with pytest.raises(ConfigError, match="unknown topic 'no-such-topic'"):
        run_cycle(dataclasses.replace(config, keep_topics=("no-such-topic",)))


def test_feeds_conditional_get_and_only_new_items(tmp_path: Path, seeds_dir: Path, feed_server) -> None:
    feed_server.routes["/rss"] = Route(feed_fixture("rss2.xml"))
    feed_server.routes["/atom"] = Route(feed_fixture("atom.xml"), content_type="application/atom+xml")
    feeds = [
        FeedSource("wire", feed_server.url("/rss")),
        FeedSource("east", feed_server.url("/atom")),
    ]
    config = make_config(tmp_path, seeds_dir, feeds)
    out = config.output_dir

    first = run_cycle(config)
    assert first.exit_code == EXIT_OK
    rows = duck_rows(out, "articles", "source, title, url, canonical_url, language, published_at")
    by_source = {s: sorted(r["title"] for r in rows if r["source"] == s) for s in ("wire", "east")}
    assert len(by_source["wire"]) == 3 and len(by_source["east"]) == 2
    treaty = next(r for r in rows if r["title"].startswith("Putin and Kim"))
    assert treaty["canonical_url"] == "https://wire.example.org/2024/06/19/treaty"
    assert treaty["published_at"] == datetime(2024, 6, 19, 0, 30, tzinfo=timezone.utc)
    languages = {r["title"][:5]: r["language"] for r in rows if r["source"] == "east"}
    assert sorted(languages.values()) == ["ko", "ru"]
    files_after_first = parquet_files(out, "articles")

    second = run_cycle(config)
    for path in ("/rss", "/atom"):
        conditional = feed_server.hits(path)[-1]
        assert conditional.get("If-None-Match"), "second poll must be a conditional GET"
    assert {s.status for s in second.sources if s.kind == "feed"} == {"not_modified"}
    assert parquet_files(out, "articles") == files_after_first
    assert second.run_id is None

    feed_server.routes["/rss"] = Route(feed_fixture("rss2_update.xml"))
    third = run_cycle(config)
    after = duck_rows(out, "articles", "title")
    new_titles = {r["title"] for r in after} - {r["title"] for r in rows}
    assert new_titles == {"Russian delegation arrives in Pyongyang for munitions talks"}
    assert len(after) == len(rows) + 1
    dups = duck_rows(out, "duplicates", "reason, source")
    assert [d["reason"] for d in dups] == ["same_url"] * 3
    assert third.manifest is not None and third.manifest["stats"]["rows"]["articles"] == 1


def _lake_snapshot(out: Path) -> dict[str, list[dict]]:
    return {
        "articles": duck_rows(out, "articles", order="article_id"),
        "rejects": duck_rows(out, "rejects", order="reject_id"),
    }


def test_same_cycle_twice_same_rows_and_pinned_schema(tmp_path: Path, seeds_dir: Path, feed_server) -> None:
    feed_server.routes["/rss"] = Route(feed_fixture("rss2.xml"), etag=False)  # no validators at all
    config = make_config(tmp_path, seeds_dir, [FeedSource("wire", feed_server.url("/rss"))])
    out = config.output_dir

    run_cycle(config)
    once = _lake_snapshot(out)
    run_cycle(config)
    assert _lake_snapshot(out) == once
    assert len(once["articles"]) == 4

    via_arrow = arrow_table(out, "articles")
    assert via_arrow.num_rows == 4
    assert sorted(via_arrow.column("article_id").to_pylist()) == [r["article_id"] for r in once["articles"]]
    for table, schema in (("articles", ARTICLE_SCHEMA), ("rejects", REJECT_SCHEMA)):
        for path in parquet_files(out, table):
            assert pq.read_schema(path).equals(schema, check_metadata=False), path
    partitions = {r["published_date"].isoformat() for r in once["articles"]}
    assert {"2024-06-19", "2024-06-20"} <= partitions
    assert not list(out.glob("articles/**/.*")), "no hidden temp files inside the dataset"


def test_rerun_from_the_same_inputs_is_identical(tmp_path: Path, seeds_dir: Path, feed_server) -> None:
    feed_server.routes["/rss"] = Route(feed_fixture("rss2.xml"))
    feeds = [FeedSource("wire", feed_server.url("/rss"))]
    fixed = datetime(2024, 6, 21, 12, 0, tzinfo=timezone.utc)
    reports = [
        run_cycle(make_config(tmp_path, seeds_dir, feeds, out=name), clock=lambda: fixed)
        for name in ("a", "b")
    ]
    assert reports[0].run_id == reports[1].run_id
    assert _lake_snapshot(tmp_path / "a") == _lake_snapshot(tmp_path / "b")


def test_failures_are_statuses_or_rejects_and_the_run_completes(
    tmp_path: Path, seeds_dir: Path, feed_server
) -> None:
    feed_server.routes["/ok"] = Route(feed_fixture("rss2.xml"))
    feed_server.routes["/truncated"] = Route(feed_fixture("truncated.xml"))
    feed_server.routes["/html"] = Route(feed_fixture("not_a_feed.html"), content_type="text/html")
    feed_server.routes["/500"] = Route(b"oops", status=500, content_type="text/plain")
    feed_server.routes["/hang"] = Route(hang=30)
    (seeds_dir / "dangling.txt").symlink_to(seeds_dir / "does-not-exist.txt")
    (seeds_dir / "latin1.txt").write_bytes("Titre\nUn texte en Latin-1: é à ç".encode("latin-1"))
    (seeds_dir / "notes.docx").write_bytes(b"PK\x03\x04")
    (seeds_dir / "batch.jsonl").write_text(
        '{"title": "Good record", "text": "Kim Jong Un met a Russian delegation in Pyongyang."}\n'
        "{not json\n"
        '{"title": "No body"}\n',
        encoding="utf-8",
    )
    feeds = [
        FeedSource(name, feed_server.url(f"/{name}")) for name in ("ok", "truncated", "html", "500", "hang")
    ]
    report = run_cycle(make_config(tmp_path, seeds_dir, feeds))
    out = tmp_path / "data"

    status = {s.source: s for s in report.sources}
    assert status["500"].status == "error" and "HTTP 500" in status["500"].detail
    assert status["hang"].status == "error" and "timeout" in status["hang"].detail
    assert status["seeds/dangling.txt"].status == "error"
    assert report.exit_code == EXIT_PARTIAL

    rejects = {(r["source"], r["stage"], r["reason"]) for r in duck_rows(out, "rejects")}
    assert ("500", "fetch", "HTTP 500") in rejects
    assert ("hang", "fetch", "timeout") in rejects
    assert ("truncated", "parse", "malformed_feed_partial") in rejects
    assert ("html", "fetch", "no_feed_found") in rejects  # a page with no feed link
    assert ("seeds/dangling.txt", "read", "unreadable") in rejects
    assert ("seeds/latin1.txt", "parse", "undecodable") in rejects
    assert status["seeds/notes.docx"].status == "skipped"  # no seed format: listed, not read
    assert ("seeds/batch.jsonl", "parse", "bad_json") in rejects
    assert ("seeds/batch.jsonl", "parse", "missing_field") in rejects
    for reject in duck_rows(out, "rejects"):
        assert reject["detail"], reject

    titles = {r["title"] for r in duck_rows(out, "articles", "title")}
    assert "Complete item before the cut" in titles  # entries before the cut are kept
    assert "Good record" in titles
    assert "Putin and Kim Jong Un sign defence treaty in Pyongyang" in titles
    assert any(t.startswith("La rencontre") for t in titles)
    for path in parquet_files(out, "duplicates"):
        assert pq.read_schema(path).equals(DUPLICATE_SCHEMA, check_metadata=False)


def test_feed_state_waits_for_the_commit(tmp_path: Path, seeds_dir: Path, feed_server, monkeypatch) -> None:
    """A run that dies after polling must not remember validators: the next run refetches."""
    feed_server.routes["/rss"] = Route(feed_fixture("rss2.xml"))
    config = make_config(tmp_path, seeds_dir, [FeedSource("wire", feed_server.url("/rss"))])

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("worker died")

    monkeypatch.setattr("pipeline.run.build_graph", crash)
    with pytest.raises(RuntimeError):
        run_cycle(config)
    assert not (config.output_dir / "_state" / "feeds.json").exists()
    assert list((config.output_dir / "raw").glob("*/*.parquet")), "fetched data is landed first"

    monkeypatch.undo()
    report = run_cycle(config)
    assert not feed_server.hits("/rss")[-1].get("If-None-Match")
    titles = [r["title"] for r in duck_rows(config.output_dir, "articles", "title")]
    assert len(titles) == 4 and len(set(titles)) == 4
    assert report.manifest is not None and len(report.manifest["raw_batches"]) == 2
    assert os.path.exists(config.output_dir / "_state" / "feeds.json")


def _articles_without_run(out: Path) -> list[dict]:
    return duck_rows(out, "articles", "* EXCLUDE (run_id)", order="article_id")


def test_two_runs_equal_one_run_over_their_union(
    tmp_path: Path, seeds_dir: Path, feed_server, monkeypatch
) -> None:
    """Polls of overlapping feed content, committed run by run, give the dataset that one
    run over both polls gives."""

    def clock_from_8am():
        times = iter(datetime(2024, 6, 21, h, tzinfo=timezone.utc) for h in range(8, 20))
        return lambda: next(times)

    separate_clock, union_clock = clock_from_8am(), clock_from_8am()  # both lakes see the same polls

    feeds = [FeedSource("wire", feed_server.url("/rss"))]
    separate = make_config(tmp_path, seeds_dir, feeds, out="separate")
    union = make_config(tmp_path, seeds_dir, feeds, out="union")

    feed_server.routes["/rss"] = Route(feed_fixture("rss2.xml"))
    run_cycle(separate, clock=separate_clock)
    monkeypatch.setattr(
        "pipeline.run.build_graph", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("stop"))
    )
    with pytest.raises(RuntimeError):
        run_cycle(union, clock=union_clock)  # lands the first poll, processes nothing
    monkeypatch.undo()

    feed_server.routes["/rss"] = Route(feed_fixture("rss2_update.xml"))
    run_cycle(separate, clock=separate_clock)
    report = run_cycle(union, clock=union_clock)  # processes both polls at once
    assert report.manifest is not None and len(report.manifest["raw_batches"]) == 2

    assert _articles_without_run(tmp_path / "separate") == _articles_without_run(tmp_path / "union")
    assert len(_articles_without_run(tmp_path / "union")) == 5


def test_records_without_a_headline_are_articles_titled_by_their_lead(
    tmp_path: Path, seeds_dir: Path, feed_server
) -> None:
    lead = "Kim Jong Un received a Russian military delegation led by Andrei Belousov in Pyongyang."
    (seeds_dir / "dump.jsonl").write_text(
        json.dumps({"text": f"{lead} The two sides signed a plan for military cooperation.\n\nMore."}) + "\n",
        encoding="utf-8",
    )
    item = (
        "<item><link>https://wire.example.org/untitled</link><description>Vladimir Putin met Kim Jong Un "
        "in Pyongyang and the two leaders signed a treaty on strategic partnership.</description></item>"
    )
    feed_server.routes["/rss"] = Route(
        f'<?xml version="1.0"?><rss version="2.0"><channel>{item}</channel></rss>'.encode()
    )
    config = make_config(tmp_path, seeds_dir, [FeedSource("wire", feed_server.url("/rss"))])
    assert run_cycle(config).exit_code == EXIT_OK

    rows = {
        r["source"]: r
        for r in duck_rows(config.output_dir, "articles", "source, title, title_source, topics")
    }
    assert rows["seeds/dump.jsonl"]["title"] == lead
    assert rows["wire"]["title"].startswith("Vladimir Putin met Kim Jong Un")
    for source in ("seeds/dump.jsonl", "wire"):
        assert rows[source]["title_source"] == "lead"
        assert "nk-russia" in {t["id"] for t in rows[source]["topics"]}, source
    assert rows[f"seeds/{SEED.name}"]["title_source"] == "headline"
    assert not [r for r in duck_rows(config.output_dir, "rejects") if r["reason"] == "missing_field"]

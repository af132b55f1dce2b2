"""Hostile feeds through a whole scheduled cycle: a local HTTP server, Beam, Parquet read
back with DuckDB and pyarrow. Every hostile feed ends as articles and typed rejects."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from connectors.http import FeedSource
from pipeline.run import EXIT_OK, run_cycle
from tests.conftest import FIXTURES, make_config
from tests.feedserver import Route
from tests.lakeread import arrow_table, duck_rows
from tests.test_hostile_feeds import big_entity_feed

FIXED = datetime(2024, 6, 21, 12, 0, tzinfo=timezone.utc)
CASES = sorted(p.name.removesuffix(".expect.json") for p in (FIXTURES / "feeds").glob("*.expect.json"))


def expectation(case: str) -> dict:
    return json.loads((FIXTURES / "feeds" / f"{case}.expect.json").read_text(encoding="utf-8"))


def test_hostile_feeds_end_as_clean_articles_and_typed_rejects(
    tmp_path: Path, seeds_dir: Path, feed_server
) -> None:
    for case in CASES:
        body = (FIXTURES / "feeds" / f"{case}.xml").read_bytes()
        feed_server.routes[f"/{case}"] = Route(body, content_type=expectation(case)["content_type"])
    feed_server.routes["/big"] = Route(big_entity_feed())
    feed_server.routes["/evil.dtd"] = Route(b'<!ENTITY leak "leaked">', content_type="application/xml-dtd")
    dtd_url = feed_server.url("/evil.dtd")
    feed_server.routes["/external-dtd"] = Route(
        f'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "{dtd_url}">'
        '<rss version="2.0"><channel><title>External DTD</title><item><title>Ext &amp; safe</title>'
        "<link>https://ext.example.com/1</link><description>External DTD body.</description></item>"
        "</channel></rss>".encode()
    )
    feed_server.routes["/parameter-entity"] = Route(
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY % remote SYSTEM "{dtd_url}"> %remote;]>'
        '<rss version="2.0"><channel><title>Param</title><item><title>Param &leak;</title>'
        "<link>https://ext.example.com/2</link><description>Parameter entity body.</description></item>"
        "</channel></rss>".encode()
    )
    names = [*CASES, "big", "external-dtd", "parameter-entity"]
    config = make_config(tmp_path, seeds_dir, [FeedSource(n, feed_server.url(f"/{n}")) for n in names])

    report = run_cycle(config, clock=lambda: FIXED)
    out = config.output_dir

    assert report.exit_code == EXIT_OK
    assert feed_server.hits("/evil.dtd") == [], "no parser may fetch a DTD or an entity"
    articles = duck_rows(out, "articles", order="source, title")
    by_source: dict[str, list[str]] = {}
    for row in articles:
        by_source.setdefault(row["source"], []).append(row["title"])

    # Charsets: exact titles, composed (NFC), whatever the labels said.
    for case in [c for c in CASES if c.startswith("enc_")]:
        assert sorted(by_source[case]) == sorted(expectation(case)["titles"]), case
    assert by_source["xxe_file"] == ["Secret:"]
    assert by_source["billion_laughs"] == ["Laughs"]
    assert by_source["big"] == ["Expanded"]
    assert by_source["external-dtd"] == ["Ext & safe"]
    # The entity was to come from the remote DTD, which is never read: it stays unexpanded.
    assert by_source["parameter-entity"] == ["Param &leak;"]
    assert sorted(by_source["controls"]) == ["Clean second title", "Nul and bell title"]

    # Nothing that is not text reaches Parquet, read back by both readers.
    table = arrow_table(out, "articles")
    for name in ("title", "text", "url", "canonical_url", "guid", "publisher"):
        for value in table.column(name).to_pylist():
            if value is None:
                continue
            assert all(c in "\n" or (c >= " " and not "\x7f" <= c <= "\x9f") for c in value), (name, value)
            assert not any("\ud800" <= c <= "\udfff" for c in value)
    texts = "\n".join(r["title"] + "\n" + r["text"] for r in articles)
    for case in CASES:
        for needle in expectation(case).get("must_not_contain", []):
            assert needle not in texts, (case, needle)
    assert "leaked" not in texts and "root:" not in texts

    # No URL that is not http(s); no partition in the future.
    assert all(r["url"] is None or r["url"].startswith(("http://", "https://")) for r in articles)
    partitions = {r["published_date"].isoformat() for r in duck_rows(out, "articles", "published_date")}
    assert max(partitions) <= "2024-06-21"

    rejects = {(r["source"], r["reason"]) for r in duck_rows(out, "rejects")}
    expected = {
        ("xxe_file", "dtd_internal_subset"),
        ("billion_laughs", "dtd_internal_subset"),
        ("big", "dtd_internal_subset"),
        ("parameter-entity", "dtd_internal_subset"),
        ("controls", "invalid_xml_characters"),
        ("enc_cp1251_header_says_latin1", "charset_mismatch"),
        ("enc_koi8r_header_says_utf8", "charset_mismatch"),
        ("links_dates_guids", "unsafe_link"),
        ("links_dates_guids", "implausible_date"),
        ("links_dates_guids", "duplicate_guid"),
    }
    assert expected <= rejects
    assert not any(source == "external-dtd" for source, _ in rejects)

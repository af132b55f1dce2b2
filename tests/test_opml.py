"""OPML subscriptions: nested outlines read into tagged feeds, merged with `[[feeds]]`, bad
files refused with their line, `newsbeam feeds export|list`, and the imported feeds polled
by a real run from a real server, read back with DuckDB."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.http import FeedSource
from connectors.opml import OpmlError, merge_feeds, parse_opml, read_opml, write_opml
from connectors.state import FeedState
from pipeline.config import ConfigError, load_config
from pipeline.run import run_cycle
from tests.conftest import FIXTURES, feed_fixture
from tests.feedserver import FeedServer, Route
from tests.lakeread import duck_rows

ROOT = Path(__file__).resolve().parent.parent
OPML = FIXTURES / "opml"
NOW = datetime(2024, 6, 21, 12, 0, tzinfo=timezone.utc)
PAGE = b"""<!DOCTYPE html><html><head><title>Site</title>
<link rel="alternate" type="application/rss+xml" href="/site-feed.xml"></head><body>Hi</body></html>"""


def _config(tmp_path: Path, text: str, opml: Path | None = None, server: FeedServer | None = None) -> Path:
    """A config file in tmp_path next to a copy of `opml` (SERVER replaced by the server's URL)."""
    if opml is not None:
        body = opml.read_text(encoding="utf-8")
        if server is not None:
            body = body.replace("SERVER", server.url(""))
        (tmp_path / "subs").mkdir(exist_ok=True)
        (tmp_path / "subs" / opml.name).write_text(body, encoding="utf-8")
    path = tmp_path / "newsbeam.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _summary(feeds: tuple[FeedSource, ...] | list[FeedSource]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(f.name, f.url, f.tags) for f in feeds]


# --- reading ------------------------------------------------------------------------------


def test_nested_outlines_become_feeds_tagged_with_their_categories() -> None:
    feeds = read_opml(OPML / "nested.opml")

    assert [(f.name, f.url, f.tags) for f in feeds] == [
        # filed under News/Korea and again under Analysis: one feed, the first name, both places
        ("NK News", "https://www.nknews.org/feed/", ("News", "Korea", "Analysis")),
        ("Daily", "https://daily.example.kr/rss", ("News", "Korea")),
        ("Daily", "https://daily.example.jp/rss", ("News",)),  # `title` when there is no `text`
        ("38 North", "https://www.38north.org/feed/", ("Analysis",)),
        ("Peninsula Wire", "https://wire.example.org/rss", ()),
    ]
    assert feeds[1].line == 12  # where its outline is, for messages


def test_config_merges_opml_feeds_with_feeds_entries_by_url(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        'opml = "subs/nested.opml"\n'
        "[[feeds]]\n"
        'name = "nknews"\n'
        'url = "https://WWW.nknews.org/feed/"\n'  # the same URL, spelled otherwise
        "fetch_articles = true\n"
        'tags = ["watched"]\n'
        "[[feeds]]\n"
        'name = "Daily"\n'
        'url = "https://daily.example.org/feed"\n',
        OPML / "nested.opml",
    )
    feeds = load_config(path).feeds

    assert _summary(feeds) == [
        # the [[feeds]] entry wins: its name, its settings; the OPML categories join its tags
        ("nknews", "https://WWW.nknews.org/feed/", ("watched", "News", "Korea", "Analysis")),
        ("Daily", "https://daily.example.org/feed", ()),
        # "Daily" is taken by [[feeds]]: both OPML feeds of that name get their host
        ("Daily (daily.example.kr)", "https://daily.example.kr/rss", ("News", "Korea")),
        ("Daily (daily.example.jp)", "https://daily.example.jp/rss", ("News",)),
        ("38 North", "https://www.38north.org/feed/", ("Analysis",)),
        ("Peninsula Wire", "https://wire.example.org/rss", ()),
    ]
    assert feeds[0].fetch_articles and not any(f.fetch_articles for f in feeds[1:])
    assert load_config(path).feeds == feeds, "the same files give the same feeds"


def test_names_stay_unique_when_a_host_suffix_clashes_too() -> None:
    imported = parse_opml(
        b"""<opml version="2.0"><body>
        <outline text="Wire" xmlUrl="https://w.example/a"/>
        <outline text="Wire" xmlUrl="https://w.example/b"/>
        <outline text="Wire (w.example)" xmlUrl="https://w.example/c"/>
        <outline text="Wire" xmlUrl="https://w.example/d"/>
        </body></opml>""",
        "x.opml",
    )
    names = [f.name for f in merge_feeds([], imported)]
    assert names == ["Wire (w.example) 2", "Wire (w.example) 3", "Wire (w.example)", "Wire (w.example) 4"]
    assert len(set(names)) == len(names)


def test_an_outline_without_a_name_is_named_by_its_url_without_credentials() -> None:
    [feed] = parse_opml(
        b'<opml><body><outline xmlUrl="https://me:pw@a.example/rss"/></body></opml>', "x.opml"
    )
    assert feed.name == "https://a.example/rss"
    [source] = merge_feeds([], [feed])
    assert source.url == "https://a.example/rss" and source.userinfo == "me:pw"


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("broken.opml", r"broken\.opml:6:\d+: not well-formed XML: not well-formed \(invalid token\)"),
        ("no_body.opml", r"no_body\.opml: no <body> element under <opml>"),
        (
            "bad_url.opml",
            r"bad_url\.opml:7: outline 'secrets': xmlUrl 'file:///etc/passwd' is not an absolute http\(s\)",
        ),
        ("billion_laughs.opml", r"billion_laughs\.opml:2: a DOCTYPE with an internal subset .* is refused"),
        ("missing.opml", r"missing\.opml: cannot read OPML: No such file"),
    ],
)
def test_a_bad_opml_file_is_a_config_error_naming_the_file_and_line(
    tmp_path: Path, fixture: str, message: str
) -> None:
    source = OPML / fixture
    path = _config(tmp_path, f'opml = "subs/{fixture}"\n', source if source.exists() else None)
    with pytest.raises(ConfigError, match=r"newsbeam\.toml: `opml`: .*subs/" + message):
        load_config(path)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"", r"x\.opml:1:1: not well-formed XML: no element found"),
        (b"<rss><channel/></rss>", r"x\.opml:1: the root element is <rss>, not <opml>"),
        (b'<opml><body><outline text="t" xmlUrl=""/></body></opml>', r"xmlUrl '' is not an absolute"),
        (
            b'<opml><body><outline text="t" xmlUrl="javascript:alert(1)"/></body></opml>',
            r"outline 't': xmlUrl 'javascript:alert\(1\)'",
        ),
        (
            b'<?xml version="1.0"?>\n<!DOCTYPE opml SYSTEM "http://evil.example/x.dtd">\n'
            b"<opml><body><outline text='&ext;' xmlUrl='https://a.example/'/></body></opml>",
            r"x\.opml:2: a DOCTYPE naming an external DTD \('http://evil\.example/x\.dtd'\) is refused",
        ),
        (
            b"<!DOCTYPE opml>\n<opml><body><outline text='&ext;' xmlUrl='https://a.example/'/></body></opml>",
            r"x\.opml:2:\d+: not well-formed XML: undefined entity",
        ),
    ],
)
def test_unusable_documents_say_what_is_wrong(document: bytes, message: str) -> None:
    with pytest.raises(OpmlError, match=message):
        parse_opml(document, "x.opml")


def test_an_opml_with_another_encoding_is_decoded() -> None:
    document = '<?xml version="1.0" encoding="windows-1251"?><opml><body><outline text="Новости" xmlUrl="https://a.example/rss"/></body></opml>'
    [feed] = parse_opml(document.encode("cp1251"), "x.opml")
    assert feed.name == "Новости"


# --- writing, and the round trip ------------------------------------------------------------


def test_export_then_import_gives_the_same_feeds(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        'opml = "subs/nested.opml"\n[[feeds]]\nname = "nknews"\nurl = "https://www.nknews.org/feed/"\n'
        'tags = ["watched"]\n[[feeds]]\nname = "R&D <notes>"\nurl = "https://x.example/?a=1&b=2"\n',
        OPML / "nested.opml",
    )
    feeds = load_config(path).feeds
    exported = write_opml(feeds)

    assert exported.startswith(b"<?xml") and b'<opml version="2.0">' in exported
    assert _summary(merge_feeds([], parse_opml(exported, "export.opml"))) == _summary(feeds)
    (tmp_path / "exported.opml").write_bytes(exported)
    again = _config(tmp_path, 'opml = "exported.opml"\n')
    assert _summary(load_config(again).feeds) == _summary(feeds)
    assert write_opml(load_config(again).feeds) == exported


def test_feeds_sharing_categories_share_their_outlines() -> None:
    exported = write_opml(
        [
            FeedSource("a", "https://a.example/rss", tags=("News", "Korea")),
            FeedSource("b", "https://b.example/rss", tags=("News",)),
            FeedSource("c", "https://c.example/rss", tags=("News", "Korea")),
        ]
    ).decode()
    assert exported.count('text="News"') == 1 and exported.count('text="Korea"') == 1


# --- end to end: a real server, a real run, the CLI ---------------------------------------------


def _newsbeam(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _served_config(tmp_path: Path, seeds_dir: Path, feed_server: FeedServer) -> Path:
    feed_server.routes["/rss"] = Route(feed_fixture("rss2.xml"))
    feed_server.routes["/"] = Route(PAGE, content_type="text/html; charset=utf-8")
    feed_server.routes["/site-feed.xml"] = Route(
        feed_fixture("atom.xml"), content_type="application/atom+xml"
    )
    feed_server.routes["/configured"] = Route(b"gone", status=404, content_type="text/plain")
    return _config(
        tmp_path,
        f'seeds_dir = "{seeds_dir}"\n'
        'output_dir = "lake"\n'
        'opml = "subs/served.opml"\n'
        "[http]\n"
        'allow_hosts = ["127.0.0.1"]\n'
        "total_deadline = 5.0\n"
        "per_host_min_gap = 0.01\n"
        "[[feeds]]\n"
        'name = "configured"\n'
        f'url = "{feed_server.url("/configured")}"\n'
        'tags = ["mine"]\n',
        OPML / "served.opml",
        feed_server,
    )


def test_opml_feeds_are_polled_by_a_run_and_read_back_with_duckdb(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer
) -> None:
    config = load_config(_served_config(tmp_path, seeds_dir, feed_server))
    assert [f.name for f in config.feeds] == ["configured", "peninsula", "site"]

    report = run_cycle(config, clock=lambda: NOW)

    status = {s.source: (s.status, s.detail) for s in report.sources}
    assert status["peninsula"][0] == "ok" and status["site"][0] == "ok"
    assert status["configured"] == ("error", "HTTP 404")
    titles = {(r["source"], r["title"]) for r in duck_rows(tmp_path / "lake", "articles", "source, title")}
    assert ("peninsula", "Putin and Kim Jong Un sign defence treaty in Pyongyang") in titles
    assert any(source == "site" for source, _ in titles), "the site's discovered feed was landed"
    origins = {r["origin"] for r in duck_rows(tmp_path / "lake", "raw", "origin")}
    assert feed_server.url("/") in origins, "the site's configured URL stays its identity"


def test_feeds_list_and_export_on_the_command_line(
    tmp_path: Path, seeds_dir: Path, feed_server: FeedServer
) -> None:
    path = _served_config(tmp_path, seeds_dir, feed_server)
    before = _newsbeam("feeds", "list", "--config", str(path), cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    assert "(no polls yet)" in before.stdout and before.stdout.count("never polled") == 3

    run_cycle(load_config(path), clock=lambda: NOW)
    listed = _newsbeam("feeds", "list", "--config", str(path), cwd=tmp_path)

    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    header = next(line for line in lines if line.startswith("NAME"))
    assert re.split(r"\s{2,}", header) == [
        "NAME", "URL", "TAGS", "STATUS", "LAST OK (UTC)", "FAILS", "NEXT POLL (UTC)"
    ]  # fmt: skip
    row = {line.split()[0]: line for line in lines[lines.index(header) + 1 :] if not line.startswith(" ")}
    assert re.split(r"\s{2,}", row["peninsula"]) == [
        "peninsula", feed_server.url("/rss"), "Wires, Peninsula", "ok 200", "2024-06-21 12:00", "0", "due"
    ]  # fmt: skip
    assert re.split(r"\s{2,}", row["configured"])[2:6] == ["mine, Sites", "error: HTTP 404", "-", "1"]
    assert f"-> polled at {feed_server.url('/site-feed.xml')} (discovered on the page)" in listed.stdout
    assert "-> last error: HTTP 404" in listed.stdout
    other = _newsbeam("feeds", "list", "--config", str(path), "--output", str(tmp_path / "x"), cwd=tmp_path)
    assert other.stdout.count("never polled") == 3, "--output reads another lake's state"

    exported = _newsbeam("feeds", "export", "--config", str(path), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    (tmp_path / "exported.opml").write_text(exported.stdout, encoding="utf-8")
    again = load_config(_config(tmp_path, 'opml = "exported.opml"\n'))
    assert _summary(again.feeds) == _summary(load_config(path).feeds)


def test_feeds_commands_report_a_bad_opml_as_a_config_error(tmp_path: Path) -> None:
    path = _config(tmp_path, 'opml = "subs/bad_url.opml"\n', OPML / "bad_url.opml")
    for command in ("list", "export"):
        result = _newsbeam("feeds", command, "--config", str(path), cwd=tmp_path)
        assert result.returncode == 2 and not result.stdout
        assert "config error" in result.stderr and "bad_url.opml:7: outline 'secrets'" in result.stderr


def test_feed_tags_in_the_config_are_checked(tmp_path: Path) -> None:
    path = _config(tmp_path, '[[feeds]]\nname = "a"\nurl = "https://a.example/rss"\ntags = ["ok", ""]\n')
    with pytest.raises(ConfigError, match=r"feeds\[0\] \(a\): `tags` must be an array of non-empty strings"):
        load_config(path)
    path = _config(tmp_path, 'opml = ["a.opml"]\n')
    with pytest.raises(ConfigError, match=r"`opml` must be a non-empty path string"):
        load_config(path)


def test_the_feed_table_shows_each_feeds_health() -> None:
    from pipeline.ops.feedlist import feed_table

    feeds = [
        FeedSource("fresh", "https://a.example/rss"),
        FeedSource("dead", "https://b.example/rss", tags=("News",)),
        FeedSource("gone", "https://c.example/rss"),
        FeedSource("moved", "https://d.example/rss"),
        FeedSource("site", "https://e.example/"),
    ]
    states = {
        "https://b.example/rss": FeedState(
            last_status="error",
            last_http_status=None,
            last_error="timeout: ReadTimeout",
            consecutive_failures=10,
            dead=True,
            next_poll_at="2024-06-22T12:00:00+00:00",
            last_success_at="2024-06-01T08:30:00+00:00",
        ),
        "https://c.example/rss": FeedState(
            last_status="error", last_http_status=410, last_error="HTTP 410", retired=True
        ),
        "https://d.example/rss": FeedState(
            last_status="ok", last_http_status=304, url="https://d.example/new"
        ),
        "https://e.example/": FeedState(
            last_status="ok", url="https://e.example/moved.xml", discovered_url="https://e.example/feed.xml"
        ),
        "https://old.example/rss": FeedState(last_status="ok"),
    }
    table = feed_table(feeds, states, NOW)
    rows = {
        line.split()[0]: re.split(r"\s{2,}", line) for line in table.splitlines() if not line[0].isspace()
    }

    assert rows["fresh"][3:] == ["never polled", "-", "0", "due"]
    assert rows["dead"][2:] == ["News", "dead", "2024-06-01 08:30", "10", "2024-06-22 12:00"]
    assert rows["gone"][3:] == ["retired", "-", "0", "never"]
    assert rows["moved"][3] == "ok 304"
    assert "-> last error: timeout: ReadTimeout" in table
    assert "-> polled at https://d.example/new (moved there by a permanent redirect)" in table
    assert (
        "-> polled at https://e.example/moved.xml (discovered on the page as https://e.example/feed.xml"
        in table
    )
    assert table.endswith("no longer configured, state kept (1):\n  https://old.example/rss")
    assert feed_table([], {}, NOW) == "no feeds configured"

"""Seed files: reading them as raw documents and parsing every documented format."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from connectors.feeds import ParseResult
from connectors.seeds import parse_seed, read_seed, read_seed_dir, unsupported_seeds
from schemas.records import RawFetch
from tests.conftest import SEED, feed_fixture

MTIME_NS = 1_718_000_000_123_456_000  # microsecond-exact on purpose
MTIME = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=MTIME_NS // 1000)


def put(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    os.utime(path, ns=(MTIME_NS, MTIME_NS))
    return path


def read_one(folder: Path, name: str) -> RawFetch:
    return read_seed(folder / name, folder, MTIME)


def parse_one(folder: Path, name: str, content: str | bytes) -> ParseResult:
    put(folder, name, content)
    raw = read_one(folder, name)
    assert raw.status == "ok", raw.error
    return parse_seed(raw)


def reasons(result: ParseResult) -> list[tuple[str, int | None]]:
    return [(p.reason, p.position) for p in result.problems]


# --- the project's own seed ---------------------------------------------------------------------


def test_project_seed_parses_to_one_entry_titled_by_its_first_line(seeds_dir: Path) -> None:
    raws = read_seed_dir(seeds_dir, MTIME)

    assert len(raws) == 1
    raw = raws[0]
    assert (raw.status, raw.source, raw.source_kind, raw.origin, raw.content_type) == (
        "ok",
        f"seeds/{SEED.name}",
        "seed",
        SEED.name,
        "text/plain",
    )
    assert raw.body == SEED.read_bytes()
    assert raw.fetched_at == MTIME  # the time it was read at, given by the run
    result = parse_seed(raw)
    assert result.problems == []
    assert len(result.entries) == 1
    entry = result.entries[0]
    first_line = SEED.read_text(encoding="utf-8").splitlines()[0].strip()
    assert entry.title == first_line
    assert entry.title.startswith("La rencontre entre le dirigeant nord-coréen Kim Jong-un")
    assert entry.text is not None and entry.text.startswith("Kim Jong-un, le dirigeant de la Corée du Nord")
    assert first_line not in entry.text
    assert (entry.raw_id, entry.source, entry.position, entry.url) == (raw.raw_id, raw.source, 0, None)


# --- text and markdown --------------------------------------------------------------------------


def test_txt_title_is_the_first_line_and_body_follows(tmp_path: Path) -> None:
    result = parse_one(tmp_path, "plain.txt", "\n  A plain title  \nFirst paragraph.\n\nSecond one.\n")
    assert result.problems == []
    (entry,) = result.entries
    assert entry.title == "A plain title"
    assert entry.text == "First paragraph.\n\nSecond one."
    assert (entry.url, entry.published, entry.language_hint, entry.publisher, entry.html) == (None,) * 5
    assert entry.fetched_at == MTIME


def test_txt_front_matter_supplies_metadata(tmp_path: Path) -> None:
    text = (
        "---\n"
        "url: https://news.example.com/a?id=1\n"
        "published: 2024-06-19T09:30:00+09:00\n"
        "Language: en\n"
        'source: "Example News"\n'
        "not a key value line\n"
        "---\n"
        "Title after front matter\n"
        "Body text.\n"
    )
    (entry,) = parse_one(tmp_path, "fm.txt", text).entries
    assert entry.title == "Title after front matter"
    assert entry.text == "Body text."
    assert entry.url == "https://news.example.com/a?id=1"  # only the first ':' splits
    assert entry.published == "2024-06-19T09:30:00+09:00"
    assert (entry.language_hint, entry.publisher) == ("en", "Example News")


def test_publisher_is_the_key_and_source_its_older_name(tmp_path: Path) -> None:
    (both,) = parse_one(
        tmp_path, "a.txt", "---\npublisher: New Name\nsource: Old Name\n---\nT\nBody\n"
    ).entries
    assert both.publisher == "New Name"  # publisher wins
    put(tmp_path, "b.txt", "T\nBody\n")
    put(tmp_path, "b.txt.meta.json", '{"publisher": "Sidecar News"}')
    (sidecar,) = parse_seed(read_one(tmp_path, "b.txt")).entries
    assert (sidecar.publisher, sidecar.source) == ("Sidecar News", "seeds/b.txt")


def test_front_matter_title_overrides_the_first_line(tmp_path: Path) -> None:
    (entry,) = parse_one(tmp_path, "t.txt", "---\ntitle: 'Chosen title'\n---\nFirst line\nBody\n").entries
    assert entry.title == "Chosen title"


def test_md_drops_the_heading_marker(tmp_path: Path) -> None:
    md = "---\nlanguage: ko\n---\n## Markdown *title*\n\nSome **bold** body.\n"
    (entry,) = parse_one(tmp_path, "note.md", md).entries
    assert entry.title == "Markdown *title*"
    assert entry.text == "Some **bold** body."
    assert entry.language_hint == "ko"
    assert read_one(tmp_path, "note.md").content_type == "text/markdown"


def test_utf8_bom_is_not_part_of_the_title(tmp_path: Path) -> None:
    (entry,) = parse_one(tmp_path, "bom.txt", "\ufeffTitre avec BOM\nCorps.\n".encode()).entries
    assert entry.title == "Titre avec BOM"


def test_empty_text_seed_is_an_empty_document(tmp_path: Path) -> None:
    result = parse_one(tmp_path, "empty.txt", "\n \n")
    assert result.entries == []
    assert reasons(result) == [("empty_document", None)]


def test_non_utf8_text_is_undecodable(tmp_path: Path) -> None:
    result = parse_one(tmp_path, "latin1.txt", "Titre\nUn texte: é à ç".encode("latin-1"))
    assert result.entries == []
    assert reasons(result) == [("undecodable", None)]
    assert result.problems[0].detail.startswith("not UTF-8: ")


# --- HTML ---------------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="fr"><head>
<title>Page title | Site</title>
<meta property="og:title" content="Le titre OG">
<link rel="canonical" href="https://site.example.fr/article/42">
<meta property="article:published_time" content="2024-06-19T10:00:00+02:00">
</head><body><nav>Menu Accueil</nav><article><h1>Le titre</h1><p>Le corps.</p></article>
<footer>Pied</footer></body></html>"""


def test_html_takes_og_title_canonical_published_and_article(tmp_path: Path) -> None:
    result = parse_one(tmp_path, "page.html", PAGE)
    assert result.problems == []
    (entry,) = result.entries
    assert entry.title == "Le titre OG"
    assert entry.url == "https://site.example.fr/article/42"
    assert entry.published == "2024-06-19T10:00:00+02:00"
    assert entry.language_hint == "fr"
    assert entry.html == "<article><h1>Le titre</h1><p>Le corps.</p></article>"
    assert entry.text is None
    assert read_one(tmp_path, "page.html").content_type == "text/html"


def test_html_title_falls_back_to_title_then_h1(tmp_path: Path) -> None:
    with_title = "<html><head><title> Only title </title></head><body><p>Body</p></body></html>"
    only_h1 = "<html><body><h1>Heading one</h1><p>Body</p></body></html>"
    (a,) = parse_one(tmp_path, "a.htm", with_title).entries
    (b,) = parse_one(tmp_path, "b.html", only_h1).entries
    assert a.title == "Only title"
    assert b.title == "Heading one"
    assert b.html is not None and b.html.startswith("<body>") and "<p>Body</p>" in b.html
    assert (b.url, b.published, b.language_hint) == (None, None, None)


# --- JSON and JSON Lines ------------------------------------------------------------------------


def test_json_single_record(tmp_path: Path) -> None:
    record = {
        "title": "JSON title",
        "text": "JSON body.",
        "url": "https://j.example.com/1",
        "published": "2024-06-19",
        "source": "J Wire",
        "language": "en",
        "ignored": "field",
    }
    (entry,) = parse_one(tmp_path, "one.json", json.dumps(record)).entries
    assert (entry.title, entry.text, entry.html, entry.url) == (
        "JSON title",
        "JSON body.",
        None,
        "https://j.example.com/1",
    )
    assert (entry.published, entry.publisher, entry.language_hint, entry.position) == (
        "2024-06-19",
        "J Wire",
        "en",
        0,
    )


def test_json_list_of_records_with_bad_ones(tmp_path: Path) -> None:
    records = [
        {"title": "First", "text": "one"},
        "not an object",
        {"title": "Second", "html": "<p>two</p>"},
        {"title": "No body"},
        {"text": "No title"},
    ]
    result = parse_one(tmp_path, "many.json", json.dumps(records))
    assert [(e.title, e.position, e.text, e.html) for e in result.entries] == [
        ("First", 0, "one", None),
        ("Second", 2, None, "<p>two</p>"),
        ("", 4, "No title", None),  # an article: the cleaner titles it by its lead
    ]
    assert reasons(result) == [("bad_record", 1), ("missing_field", 3)]


def test_invalid_json_document(tmp_path: Path) -> None:
    result = parse_one(tmp_path, "broken.json", '{"title": "x",')
    assert result.entries == []
    assert reasons(result) == [("bad_json", None)]


def test_jsonl_keeps_good_lines_and_reports_bad_ones(tmp_path: Path) -> None:
    lines = (
        '{"title": "Line one", "text": "t1", "url": "https://l.example.com/1"}\n'
        "{not json\n"
        '{"title": "No body"}\n'
        "\n"
        '{"title": "Line five", "html": "<b>x</b>", "language": "fr"}\n'
    )
    result = parse_one(tmp_path, "batch.jsonl", lines)
    assert [(e.title, e.position, e.url, e.language_hint) for e in result.entries] == [
        ("Line one", 0, "https://l.example.com/1", None),
        ("Line five", 4, None, "fr"),
    ]
    assert reasons(result) == [("bad_json", 1), ("missing_field", 2)]
    assert result.problems[0].detail.startswith("line 2: ")
    assert read_one(tmp_path, "batch.jsonl").content_type == "application/jsonl"


# --- local feed files ---------------------------------------------------------------------------


def test_local_xml_feed(tmp_path: Path) -> None:
    result = parse_one(tmp_path, "feeds/wire.xml", feed_fixture("rss2.xml"))
    assert result.problems == []
    assert [e.guid for e in result.entries] == ["wire-1001", "wire-1002", "wire-1003"]
    assert {e.publisher for e in result.entries} == {"Peninsula Wire"}
    assert {e.source for e in result.entries} == {"seeds/feeds/wire.xml"}
    assert result.entries[0].published_at == datetime(2024, 6, 19, 0, 30, tzinfo=timezone.utc)
    assert read_one(tmp_path, "feeds/wire.xml").content_type == "application/xml"


def test_local_atom_feed(tmp_path: Path) -> None:
    result = parse_one(tmp_path, "east.atom", feed_fixture("atom.xml"))
    assert [e.guid for e in result.entries] == ["urn:example:atom:1", "urn:example:atom:2"]
    assert result.problems == []


# --- sidecars -----------------------------------------------------------------------------------


def test_sidecar_metadata_is_read_and_applied(tmp_path: Path) -> None:
    put(tmp_path, "story.txt", "---\nurl: https://front.example/x\nlanguage: de\n---\nStory\nBody\n")
    sidecar = {"url": "https://side.example/story", "source": "Side Wire", "unknown": 1}
    put(tmp_path, "story.txt.meta.json", json.dumps(sidecar))

    raw = read_one(tmp_path, "story.txt")
    (entry,) = parse_seed(raw).entries

    assert raw.meta_json == json.dumps(sidecar)
    assert entry.url == "https://side.example/story"  # the sidecar wins over front matter
    assert entry.publisher == "Side Wire"
    assert entry.language_hint == "de"  # front matter still fills what the sidecar lacks


def test_sidecar_fills_what_an_html_page_lacks(tmp_path: Path) -> None:
    put(tmp_path, "p.html", "<html><head><title>T</title></head><body><p>B</p></body></html>")
    put(tmp_path, "p.html.meta.json", '{"published": "2024-06-01", "language": "ja", "title": "Ignored"}')
    (entry,) = parse_seed(read_one(tmp_path, "p.html")).entries
    assert (entry.title, entry.published, entry.language_hint) == ("T", "2024-06-01", "ja")


def test_invalid_sidecar_is_a_bad_sidecar(tmp_path: Path) -> None:
    put(tmp_path, "a.txt", "Title\nBody\n")
    put(tmp_path, "a.txt.meta.json", "{not json")
    put(tmp_path, "b.txt", "Title\nBody\n")
    put(tmp_path, "b.txt.meta.json", '["a", "list"]')

    a = parse_seed(read_one(tmp_path, "a.txt"))
    b = parse_seed(read_one(tmp_path, "b.txt"))

    assert (a.entries, reasons(a)) == ([], [("bad_sidecar", None)])
    assert (b.entries, reasons(b)) == ([], [("bad_sidecar", None)])
    assert b.problems[0].detail == "sidecar is not a JSON object"


# --- which files are seeds, and unreadable ones ------------------------------------------------


def test_hidden_files_and_sidecars_are_not_seeds(tmp_path: Path) -> None:
    for name in ("b.txt", "sub/a.md", ".hidden.txt", ".git/config.txt", "sub/.cache/x.json"):
        put(tmp_path, name, "Title\nBody\n")
    put(tmp_path, "b.txt.meta.json", "{}")
    put(tmp_path, "orphan.meta.json", "{}")
    (tmp_path / "emptydir").mkdir()

    assert [r.source for r in read_seed_dir(tmp_path, MTIME)] == ["seeds/b.txt", "seeds/sub/a.md"]


def test_missing_seed_dir_reads_as_nothing(tmp_path: Path) -> None:
    assert read_seed_dir(tmp_path / "absent", MTIME) == []


def test_files_in_no_seed_format_are_listed_not_read_and_a_dangling_link_is_an_error(tmp_path: Path) -> None:
    put(tmp_path, "notes.docx", b"PK\x03\x04")
    put(tmp_path, "README", "no extension")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "does-not-exist.txt")

    raws = {r.source: r for r in read_seed_dir(tmp_path, MTIME)}

    assert sorted(raws) == ["seeds/dangling.txt"]
    assert unsupported_seeds(tmp_path) == ["README", "notes.docx"]
    raw = raws["seeds/dangling.txt"]
    assert (raw.status, raw.error_kind, raw.body, raw.source_kind) == ("error", "permanent", None, "seed")
    assert raw.error is not None and raw.error.startswith("unreadable: FileNotFoundError")
    assert raw.fetched_at == MTIME


# --- determinism: fetched_at and raw_id ---------------------------------------------------------


def test_fetched_at_is_the_runs_time_never_the_mtime_and_rereading_is_identical(tmp_path: Path) -> None:
    path = put(tmp_path, "a.txt", "Title\nBody\n")
    for stamp in (0, 4_070_908_800):  # touched in 1970, in 2099
        os.utime(path, (stamp, stamp))
        first = read_one(tmp_path, "a.txt")
        second = read_one(tmp_path, "a.txt")
        assert first.fetched_at == MTIME
        assert first == second


def test_raw_id_changes_with_content_or_sidecar_only(tmp_path: Path) -> None:
    path = put(tmp_path, "a.txt", "Title\nBody\n")
    base = read_one(tmp_path, "a.txt").raw_id

    os.utime(path, (1_600_000_000, 1_600_000_000))
    touched = read_one(tmp_path, "a.txt")
    assert touched.raw_id == base  # a new mtime alone is not new content

    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    shutil.copy2(path, elsewhere / "a.txt")
    assert read_one(elsewhere, "a.txt").raw_id == base  # same relative path and bytes

    put(tmp_path, "a.txt.meta.json", '{"source": "X"}')
    with_sidecar = read_one(tmp_path, "a.txt").raw_id
    put(tmp_path, "a.txt.meta.json", '{"source": "Y"}')
    other_sidecar = read_one(tmp_path, "a.txt").raw_id
    (tmp_path / "a.txt.meta.json").unlink()
    assert read_one(tmp_path, "a.txt").raw_id == base

    put(tmp_path, "a.txt", "Title\nBody changed\n")
    changed = read_one(tmp_path, "a.txt").raw_id
    put(tmp_path, "b.txt", "Title\nBody\n")
    renamed = read_one(tmp_path, "b.txt").raw_id

    assert len({base, with_sidecar, other_sidecar, changed, renamed}) == 5

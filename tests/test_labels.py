"""The lake's label tables (`labels/entities`, `labels/topics`): written with each taxonomy
version a lake records, read back with deltalake and DuckDB, and behind the `entity_labels`
and `topic_labels` views of `newsbeam sql`; the taxonomy's `wikidata` key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from pipeline import cli
from pipeline.lake.labels import ENTITIES, TOPICS
from pipeline.lake.store import Lake
from pipeline.ops.maintenance import snapshot_connection
from pipeline.tagging.taxonomy import (
    DEFAULT_TAXONOMY,
    TaxonomyError,
    digest,
    load_taxonomy,
    parse_taxonomy,
)
from tests.s3server import s3_server

TAXONOMY = load_taxonomy()
VERSION = TAXONOMY.version
STORY = (
    "Sergei Shoigu arrived in Pyongyang for talks with Kim Jong Un on military cooperation "
    "between Russia and North Korea."
)
# Entities, each in each of the taxonomy's languages; topics once.
ENTITY_ROWS = len(TAXONOMY.entities) * len(TAXONOMY.languages())


def run_args(tmp_path: Path, out: Path | str, seeds: Path, taxonomy: Path | None = None) -> list[str]:
    """`newsbeam run` on `seeds` only (no feeds), into `out`."""
    config = tmp_path / "no-feeds.toml"
    text = f'seeds_dir = "{seeds}"\noutput_dir = "{out}"\n'
    config.write_text(text + (f'taxonomy = "{taxonomy}"\n' if taxonomy else ""), encoding="utf-8")
    return ["run", "--config", str(config)]


def label_rows(out: Path, folder: str, where: str = "true") -> list[dict[str, Any]]:
    """Rows of a label table's current version: deltalake lists its files, DuckDB reads them."""
    files = DeltaTable(str(out / folder)).file_uris()
    rel = duckdb.connect().sql(f"SELECT * FROM read_parquet({files!r}) WHERE {where} ORDER BY ALL")
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def table_versions(out: Path) -> dict[str, int]:
    return {folder: DeltaTable(str(out / folder)).version() for folder in (ENTITIES, TOPICS)}


def test_a_run_writes_the_label_tables_once_per_taxonomy_version(
    tmp_path: Path, seeds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    assert cli.main(run_args(tmp_path, out, seeds_dir)) == 0

    entities = label_rows(out, ENTITIES)
    assert {r["taxonomy_version"] for r in entities} == {VERSION}
    assert len(entities) == ENTITY_ROWS == len({(r["id"], r["language"]) for r in entities})
    north_korea = {r["language"]: r for r in entities if r["id"] == "north-korea"}
    assert north_korea["fr"] == {
        "taxonomy_version": VERSION,
        "id": "north-korea",
        "type": "country",
        "country": "KP",
        "wikidata": "Q423",
        "language": "fr",
        "label": "Corée du Nord",
    }
    assert north_korea["de"]["label"] == "Nordkorea", "a stem's `*` is dropped"
    assert north_korea["en"]["label"] == "North Korea"
    kcna = {r["language"]: r["label"] for r in entities if r["id"] == "kcna"}
    assert kcna["en"] == "Korean Central News Agency", "English is the entity's `label`"
    assert kcna["ja"] == "朝鮮中央通信" and kcna["ro"] == "Korean Central News Agency"  # no Romanian alias
    assert {r["wikidata"] for r in entities if r["id"] == "kcna"} == {None}
    assert {r["wikidata"] for r in entities if r["id"] == "vladimir-putin"} == {"Q7747"}

    topics = label_rows(out, TOPICS)
    assert {r["taxonomy_version"] for r in topics} == {VERSION}
    assert {r["id"]: r["label"] for r in topics} == {t.id: t.label for t in TAXONOMY.topics}
    assert len(topics) == len(TAXONOMY.topics)

    # The same version again: nothing written.
    before = table_versions(out)
    assert cli.main(run_args(tmp_path, out, seeds_dir)) == 0
    assert table_versions(out) == before
    assert len(label_rows(out, ENTITIES)) == ENTITY_ROWS

    capsys.readouterr()
    query = (
        "SELECT l.labels['fr'] AS fr, l.label, l.wikidata FROM articles AS a, unnest(a.entities) AS u(e) "
        "JOIN entity_labels AS l ON l.id = e.id AND l.taxonomy_version = a.taxonomy_version "
        "WHERE e.id = 'north-korea'"
    )
    assert cli.main(["sql", "--output", str(out), query]) == 0
    shown = capsys.readouterr().out
    assert "Corée du Nord" in shown and "North Korea" in shown and "Q423" in shown


def _lake_with_two_days(tmp_path: Path) -> tuple[Path, Path]:
    """A lake of two articles tagged with the built-in taxonomy, and a config naming a new
    version of it (one topic more)."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    records = [
        {"title": "Shoigu in Pyongyang", "text": STORY, "url": "https://n.example/1"},
        {"title": "Shoigu again", "text": STORY + " A second visit.", "url": "https://n.example/2"},
    ]
    records[0]["published"], records[1]["published"] = "2024-06-01T08:00:00Z", "2024-06-05T08:00:00Z"
    (seeds / "wire.jsonl").write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    out = tmp_path / "data"
    assert cli.main(run_args(tmp_path, out, seeds)) == 0
    built_in = DEFAULT_TAXONOMY.read_text(encoding="utf-8")
    new_taxonomy = (
        built_in.replace(f'version = "{VERSION}"', 'version = "test.2"', 1)
        + '\n[[topics]]\nid = "shoigu-trips"\nall_of = [["sergei-shoigu"]]\nmin_weight = 1\n'
    )
    (tmp_path / "new-taxonomy.toml").write_text(new_taxonomy, encoding="utf-8")
    config = tmp_path / "retag.toml"
    config.write_text(
        f'seeds_dir = "{seeds}"\noutput_dir = "{out}"\ntaxonomy = "new-taxonomy.toml"\n', encoding="utf-8"
    )
    return out, config


def test_a_retag_under_a_new_version_adds_its_labels_and_sql_joins_by_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, config = _lake_with_two_days(tmp_path)
    args = ["retag", "--config", str(config), "--since", "2024-06-01", "--until", "2024-06-02"]
    assert cli.main(args) == 0

    entities = label_rows(out, ENTITIES)
    assert len(entities) == 2 * ENTITY_ROWS
    assert {r["taxonomy_version"] for r in entities} == {VERSION, "test.2"}
    assert [r["label"] for r in entities if r["id"] == "north-korea" and r["language"] == "fr"] == [
        "Corée du Nord",
        "Corée du Nord",
    ]
    topics = label_rows(out, TOPICS)
    assert len(topics) == 2 * len(TAXONOMY.topics) + 1
    assert [r["taxonomy_version"] for r in topics if r["id"] == "shoigu-trips"] == ["test.2"]

    # Each article's topics named by the labels of the version it was tagged with.
    sql = (
        "SELECT a.url, a.taxonomy_version, t.id, l.label FROM articles AS a, unnest(a.topics) AS u(t) "
        "LEFT JOIN topic_labels AS l ON l.id = t.id AND l.taxonomy_version = a.taxonomy_version "
        "ORDER BY ALL"
    )
    for taxonomy in (None, load_taxonomy(tmp_path / "new-taxonomy.toml")):
        rows = snapshot_connection(Lake(out), taxonomy).sql(sql).fetchall()
        assert ("https://n.example/1", "test.2", "shoigu-trips", "shoigu-trips") in rows
        assert all(label is not None for *_, label in rows), rows
        assert {(url, version) for url, version, *_ in rows} == {
            ("https://n.example/1", "test.2"),
            ("https://n.example/2", VERSION),
        }
    capsys.readouterr()
    query = (
        "SELECT a.taxonomy_version, l.labels['ru'] AS ru FROM articles AS a, unnest(a.entities) AS u(e) "
        "JOIN entity_labels AS l ON l.id = e.id AND l.taxonomy_version = a.taxonomy_version "
        "WHERE e.id = 'sergei-shoigu' ORDER BY 1"
    )
    assert cli.main(["sql", "--config", str(config), query]) == 0
    shown = capsys.readouterr().out
    assert "test.2" in shown and VERSION in shown and shown.count("Сергей Шойгу") == 2

    # The same taxonomy again writes no labels; the version rebound (`--force`) replaces its own.
    before = table_versions(out)
    assert cli.main(args) == 0
    assert table_versions(out) == before
    relabelled = (tmp_path / "new-taxonomy.toml").read_text(encoding="utf-8") + 'label = "Shoigu abroad"\n'
    (tmp_path / "new-taxonomy.toml").write_text(relabelled, encoding="utf-8")
    assert cli.main(args) == 2, "the version names other rules now"
    assert cli.main([*args, "--force"]) == 0
    topics = label_rows(out, TOPICS)
    assert len(topics) == 2 * len(TAXONOMY.topics) + 1
    assert [r["label"] for r in topics if r["id"] == "shoigu-trips"] == ["Shoigu abroad"]
    assert label_rows(out, ENTITIES) == entities
    assert table_versions(out) == {ENTITIES: before[ENTITIES], TOPICS: before[TOPICS] + 1}


def test_sql_labels_without_label_tables_and_for_a_taxonomy_given(tmp_path: Path, seeds_dir: Path) -> None:
    out = tmp_path / "data"
    assert cli.main(run_args(tmp_path, out, seeds_dir)) == 0
    shutil.rmtree(out / "labels")  # a lake written before the label tables

    con = snapshot_connection(Lake(out))
    columns = [c[0] for c in con.sql("DESCRIBE entity_labels").fetchall()]
    assert columns == ["id", "type", "label", "country", "taxonomy_version", "wikidata", "labels"]
    assert con.sql("SELECT count(*), count(DISTINCT id) FROM entity_labels").fetchall() == [
        (len(TAXONOMY.entities), len(TAXONOMY.entities))
    ]
    assert con.sql(
        "SELECT type, label, country, taxonomy_version, wikidata, labels['fr'] FROM entity_labels "
        "WHERE id = 'north-korea'"
    ).fetchall() == [("country", "North Korea", "KP", VERSION, "Q423", "Corée du Nord")]
    assert con.sql("SELECT label FROM topic_labels WHERE id = 'nk-russia'").fetchall() == [
        ("North Korea–Russia relations",)
    ]

    # With the tables, the taxonomy given still names its own version (what `report` relies on).
    assert cli.main(run_args(tmp_path, out, seeds_dir)) == 0
    assert len(label_rows(out, ENTITIES)) == ENTITY_ROWS
    entities = tuple(dataclasses.replace(e, label="KCNA") if e.id == "kcna" else e for e in TAXONOMY.entities)
    renamed = dataclasses.replace(TAXONOMY, entities=entities)
    con = snapshot_connection(Lake(out), renamed)
    assert con.sql("SELECT label FROM entity_labels WHERE id = 'kcna'").fetchall() == [("KCNA",)]


@pytest.mark.parametrize("value", ["423", "q423", "Q", "Q0423", "Q423 ", "wd:Q423", 423, ["Q423"]])
def test_a_bad_wikidata_id_is_a_taxonomy_error_naming_the_entity(value: object) -> None:
    entity = {"id": "north-korea", "type": "country", "aliases": {"en": ["North Korea"]}, "wikidata": value}
    with pytest.raises(TaxonomyError, match=r"entity 'north-korea': `wikidata` must be a Wikidata item id"):
        parse_taxonomy({"version": "t.1", "entities": [entity]}, "tax.toml")


def test_wikidata_ids_count_in_the_digest_of_a_taxonomy(tmp_path: Path) -> None:
    entity = {"id": "north-korea", "type": "country", "aliases": {"en": ["North Korea"]}}
    plain = parse_taxonomy({"version": "t.1", "entities": [entity]})
    named = parse_taxonomy({"version": "t.1", "entities": [{**entity, "wikidata": "Q423"}]})
    assert named.entities[0].wikidata == "Q423" and plain.entities[0].wikidata is None
    assert digest(named) != digest(plain), "adding an id changes the rules: the version must change"
    # A taxonomy naming no item hashes as before the key existed: lakes recorded it so.
    before = hashlib.sha256(repr(dataclasses.replace(plain, source="")).encode("utf-8")).hexdigest()[:16]
    assert digest(plain) == before

    path = tmp_path / "taxonomy.toml"
    path.write_text(
        'version = "t.1"\n[[entities]]\nid = "x"\ntype = "person"\nwikidata = "Q12x"\naliases.en = ["X"]\n',
        encoding="utf-8",
    )
    with pytest.raises(TaxonomyError, match=r"taxonomy.toml: entity 'x': `wikidata`.*'Q12x'"):
        load_taxonomy(path)


def test_label_tables_on_object_storage(
    tmp_path: Path, seeds_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with s3_server(monkeypatch) as s3:
        out = s3.uri("news")
        config = tmp_path / "no-feeds.toml"
        config.write_text(f'seeds_dir = "{seeds_dir}"\n', encoding="utf-8")
        args = ["run", "--config", str(config), "--output", out]
        assert cli.main(args) == 0
        table = DeltaTable(f"{out}/{ENTITIES}")
        rows = [r for uri in table.file_uris() for r in pq.read_table(uri).to_pylist()]
        assert len(rows) == ENTITY_ROWS
        french = {r["label"] for r in rows if r["id"] == "north-korea" and r["language"] == "fr"}
        assert french == {"Corée du Nord"}
        version = table.version()
        assert cli.main(args) == 0
        assert DeltaTable(f"{out}/{ENTITIES}").version() == version
        capsys.readouterr()
        query = "SELECT labels['fr'] AS fr FROM entity_labels WHERE id = 'south-korea'"
        assert cli.main(["sql", "--output", out, query]) == 0
        assert "Corée du Sud" in capsys.readouterr().out

"""`newsbeam retag`: stored articles re-tagged with a new taxonomy, partition by partition."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import cli
from pipeline.lake.store import Lake
from pipeline.tagging.tagger import DEFAULT_TAXONOMY, load_taxonomy
from tests.lakeread import snapshot_arrow, snapshot_duck_rows

DEFAULT_VERSION = load_taxonomy().version

STORY = (
    "Sergei Shoigu arrived in Pyongyang for talks with Kim Jong Un on military cooperation "
    "between Russia and North Korea."
)


def _lake_with_two_days(tmp_path: Path) -> Path:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    records = [
        {"title": "Shoigu in Pyongyang", "text": STORY, "url": "https://n.example/1"},
        {"title": "Shoigu again", "text": STORY + " A second visit.", "url": "https://n.example/2"},
    ]
    records[0]["published"], records[1]["published"] = "2024-06-01T08:00:00Z", "2024-06-05T08:00:00Z"
    (seeds / "wire.jsonl").write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    new_taxonomy = (
        DEFAULT_TAXONOMY.read_text(encoding="utf-8").replace(
            f'version = "{DEFAULT_VERSION}"', 'version = "test.2"', 1
        )
        + '\n[[topics]]\nid = "shoigu-trips"\nall_of = [["sergei-shoigu"]]\nmin_weight = 1\n'
    )
    assert 'version = "test.2"' in new_taxonomy
    (tmp_path / "new-taxonomy.toml").write_text(new_taxonomy, encoding="utf-8")
    config = tmp_path / "newsbeam.toml"
    config.write_text('seeds_dir = "seeds"\noutput_dir = "data"\n', encoding="utf-8")
    assert cli.main(["run", "--config", str(config)]) == 0
    retag_config = tmp_path / "retag.toml"
    retag_config.write_text(
        'seeds_dir = "seeds"\noutput_dir = "data"\ntaxonomy = "new-taxonomy.toml"\n', encoding="utf-8"
    )
    return retag_config


def _rows(out: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r["url"]: r for r in snapshot_duck_rows(out, "articles")}


def test_retag_swaps_only_partitions_in_range_and_keeps_everything_else(tmp_path: Path, capsys) -> None:
    config = _lake_with_two_days(tmp_path)
    out = tmp_path / "data"
    before = _rows(out)
    assert {r["taxonomy_version"] for r in before.values()} == {DEFAULT_VERSION}

    args = ["retag", "--config", str(config), "--since", "2024-06-01", "--until", "2024-06-02"]
    assert cli.main(args) == 0
    assert "1 partitions replaced" in capsys.readouterr().out
    after = _rows(out)
    first, second = after["https://n.example/1"], after["https://n.example/2"]
    assert first["taxonomy_version"] == "test.2"
    assert "shoigu-trips" in {t["id"] for t in first["topics"]}
    assert second["taxonomy_version"] == DEFAULT_VERSION  # outside the range: untouched
    assert "shoigu-trips" not in {t["id"] for t in second["topics"]}
    for url in before:  # identity, text and run are what they were
        for column in ("article_id", "text", "run_id", "published_date", "content_hash"):
            assert after[url][column] == before[url][column]

    table = snapshot_arrow(out, "articles")
    versions = {
        (str(d), v)
        for d, v in zip(
            table.column("published_date").to_pylist(),
            table.column("taxonomy_version").to_pylist(),
            strict=True,
        )
    }
    assert versions == {("2024-06-01", "test.2"), ("2024-06-05", DEFAULT_VERSION)}
    assert [m["kind"] for m in Lake(out).manifests()][-1] == "retag"

    manifests = len(Lake(out).manifests())
    assert cli.main(args) == 0  # same taxonomy again: nothing to change
    assert "0 partitions replaced" in capsys.readouterr().out
    assert len(Lake(out).manifests()) == manifests

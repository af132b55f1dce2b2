"""The schemas are a contract: any change must be deliberate and additive."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from schemas import TABLES, schemas_as_json

GOLDEN = Path(__file__).resolve().parent.parent / "schemas" / "schema.json"


def test_schemas_match_the_golden_file() -> None:
    assert json.loads(schemas_as_json()) == json.loads(GOLDEN.read_text(encoding="utf-8")), (
        "schemas changed: if deliberate (additive, version bumped), regenerate schemas/schema.json"
    )


def test_timestamps_are_microseconds_utc() -> None:
    for table in TABLES.values():
        for field in table.schema:
            if pa.types.is_timestamp(field.type):
                assert field.type.unit == "us" and field.type.tz == "UTC", (table.name, field.name)


def test_every_record_field_has_a_column() -> None:
    import dataclasses

    for table in TABLES.values():
        record_fields = {f.name for f in dataclasses.fields(table.record_type)} - {
            "partition_date",
            "position",
        }
        assert record_fields <= set(table.schema.names), table.name
        assert table.partition_column not in table.schema.names


def test_current_schemas_are_an_additive_successor_of_the_golden_file() -> None:
    from schemas.arrow import additive_change_problems

    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert additive_change_problems(golden, json.loads(schemas_as_json())) == []


def _changed(mutate) -> list[str]:
    import copy

    from schemas.arrow import additive_change_problems

    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    new = copy.deepcopy(golden)
    mutate(new["articles"])
    return additive_change_problems(golden, new)


def _rename(t: dict) -> None:
    t["fields"][1]["name"] = "link"


def _retype(t: dict) -> None:
    t["fields"][1]["type"] = "large_string"


def _remove(t: dict) -> None:
    del t["fields"][1]


def _tighten(t: dict) -> None:
    t["fields"][1]["nullable"] = False


def _add_required(t: dict) -> None:
    t["fields"].append({"name": "lang2", "type": "string", "nullable": False})
    t["version"] += 1


def _add_without_bump(t: dict) -> None:
    t["fields"].append({"name": "lang2", "type": "string", "nullable": True})


def _repartition(t: dict) -> None:
    t["partition_column"] = "fetched_date"


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (_rename, "articles.url: removed or renamed"),
        (_retype, "articles.url: changed"),
        (_remove, "articles.url: removed or renamed"),
        (_tighten, "articles.url: changed"),
        (_add_required, "articles.lang2: a new column must be nullable"),
        (_add_without_bump, "articles: columns added without a version bump"),
        (_repartition, "articles: partition_column changed"),
    ],
)
def test_breaking_schema_changes_are_refused(mutate, problem: str) -> None:
    assert any(p.startswith(problem) for p in _changed(mutate)), _changed(mutate)


def test_a_new_nullable_column_with_a_version_bump_is_allowed() -> None:
    def add(t: dict) -> None:
        t["fields"].append({"name": "summary", "type": "string", "nullable": True})
        t["version"] += 1

    assert _changed(add) == []

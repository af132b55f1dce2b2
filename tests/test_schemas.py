"""The schemas are a contract: any change must be deliberate and additive."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

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

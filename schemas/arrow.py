"""Explicit Arrow schemas: the single source of truth for every Parquet write.

Every table is versioned. Changes are additive only (new nullable columns,
with a version bump); `tests/test_schemas.py` pins them against
`schemas/schema.json`. Timestamps are microseconds UTC because Spark refuses
nanosecond Parquet timestamps.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import pyarrow as pa

from schemas.records import Article, Duplicate, IndexEntry, RawFetch, Reject

TS = pa.timestamp("us", tz="UTC")

RAW_FETCH_SCHEMA = pa.schema(
    [
        pa.field("raw_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_kind", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("fetched_at", TS, nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("http_status", pa.int32()),
        pa.field("content_type", pa.string()),
        pa.field("etag", pa.string()),
        pa.field("last_modified", pa.string()),
        pa.field("body", pa.binary()),
        pa.field("error_kind", pa.string()),
        pa.field("error", pa.string()),
        pa.field("meta_json", pa.string()),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("schema_version", pa.int32(), nullable=False),
    ]
)

ENTITY_TYPE = pa.struct(
    [
        pa.field("id", pa.string()),
        pa.field("type", pa.string()),
        pa.field("mentions", pa.int32()),
        pa.field("first_offset", pa.int32()),
    ]
)

TOPIC_TYPE = pa.struct(
    [
        pa.field("id", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("evidence", pa.list_(pa.string())),
    ]
)

ARTICLE_SCHEMA = pa.schema(
    [
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("canonical_url", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_kind", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("language", pa.string()),
        pa.field("published_at", TS),
        pa.field("fetched_at", TS, nullable=False),
        pa.field("date_source", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("guid", pa.string()),
        pa.field("raw_id", pa.string(), nullable=False),
        pa.field("publisher", pa.string()),
        pa.field("entities", pa.list_(ENTITY_TYPE)),
        pa.field("topics", pa.list_(TOPIC_TYPE)),
        pa.field("countries", pa.list_(pa.string())),
        pa.field("taxonomy_version", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("schema_version", pa.int32(), nullable=False),
        pa.field("title_source", pa.string()),  # v2: "headline" | "lead" (null in v1 files: headline)
    ]
)

REJECT_SCHEMA = pa.schema(
    [
        pa.field("reject_id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("error_type", pa.string(), nullable=False),
        pa.field("retryable", pa.bool_(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("payload_hash", pa.string(), nullable=False),
        pa.field("fetched_at", TS, nullable=False),
        pa.field("detail", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("schema_version", pa.int32(), nullable=False),
    ]
)

DUPLICATE_SCHEMA = pa.schema(
    [
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("fetched_at", TS, nullable=False),
        pa.field("duplicate_of", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("similarity", pa.float64(), nullable=False),
        pa.field("content_hash", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("schema_version", pa.int32(), nullable=False),
    ]
)

# The dedup index: what later runs compare against, without reading article text.
DEDUP_INDEX_SCHEMA = pa.schema(
    [
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("fetched_at", TS, nullable=False),
        pa.field("published_at", TS),
        pa.field("signature", pa.binary()),  # MinHash values, little-endian uint32; null if too short
        pa.field("signature_scheme", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("schema_version", pa.int32(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Table:
    """A dataset folder under the output dir, its schema and partition column."""

    name: str
    schema: pa.Schema
    version: int
    partition_column: str
    record_type: type
    sort_key: str
    path: str = ""  # folder under the output dir; the name when empty

    @property
    def folder(self) -> str:
        return self.path or self.name


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table("articles", ARTICLE_SCHEMA, 2, "published_date", Article, "article_id"),
        Table("rejects", REJECT_SCHEMA, 1, "fetched_date", Reject, "reject_id"),
        Table("duplicates", DUPLICATE_SCHEMA, 1, "fetched_date", Duplicate, "article_id"),
        Table("raw", RAW_FETCH_SCHEMA, 1, "landed_date", RawFetch, "raw_id"),
        Table(
            "dedup_index", DEDUP_INDEX_SCHEMA, 1, "published_date", IndexEntry, "article_id", "_index/dedup"
        ),
    )
}

SCHEMA_VERSIONS = {name: t.version for name, t in TABLES.items()}


# --- records to Arrow -----------------------------------------------------------
#
# `records_to_table` builds each column from the records' attributes in one pass and
# hands pyarrow the nested tuples as they are. Converting record by record (the row-wise
# reference below) built a dict per record and per nested value first, and took most of
# a staged file's time. Both hand `pa.Table.from_arrays` per-column lists that pyarrow
# reads alike (`_reads_as_plain` says when tuples may stand for `_plain`'s dicts and
# lists), so they make the same table; tests/test_arrow_rows.py holds them equal.


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple: a struct
        return {name: _plain(v) for name, v in zip(value._fields, value, strict=True)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def record_to_row(record: Any, table: Table, **extra: Any) -> dict[str, Any]:
    """A record as a dict of exactly the table's columns.

    `extra` fills columns the record does not carry (run_id, batch_id).
    """
    row = {f.name: _plain(getattr(record, f.name)) for f in dataclasses.fields(record)}
    row.update(extra)
    row["schema_version"] = table.version
    return {name: row.get(name) for name in table.schema.names}


def records_to_table_by_rows(records: Sequence[Any], table: Table, **extra: Any) -> pa.Table:
    """The row-wise conversion (a dict per record): the reference `records_to_table` is
    held equal to, the fallback for mixed record types, and bench.staging's baseline."""
    rows = [record_to_row(r, table, **extra) for r in records]
    return pa.Table.from_pylist(rows, schema=table.schema)


def records_to_table(records: Sequence[Any], table: Table, **extra: Any) -> pa.Table:
    """Records of one dataclass type as `table`'s Arrow table, built column by column.

    Columns the records do not carry are null unless `extra` gives their value (run_id,
    batch_id; `extra` wins over a field of the same name, as in `record_to_row`);
    `schema_version` is the table's version.
    """
    fields = _field_names(records)
    if fields is None:  # mixed record types: the row-wise path reads each record's own fields
        return records_to_table_by_rows(records, table, **extra)
    columns = [_column(records, fields, field, table, extra) for field in table.schema]
    # What Table.from_pylist does with its per-column lists: same conversion, same checks.
    return pa.Table.from_arrays(columns, schema=table.schema)


def _field_names(records: Sequence[Any]) -> frozenset[str] | None:
    """The fields of the records' dataclass, or None unless all are of one dataclass type."""
    kinds = {type(r) for r in records}
    if len(kinds) > 1 or not all(dataclasses.is_dataclass(k) for k in kinds):
        return None
    return frozenset(f.name for k in kinds for f in dataclasses.fields(k))


def _column(
    records: Sequence[Any], fields: frozenset[str], field: pa.Field, table: Table, extra: dict[str, Any]
) -> list[Any]:
    """One column's values, in the form pa.array reads as it reads `_plain`'s."""
    name = field.name
    if name == "schema_version":
        return [table.version] * len(records)
    if name in extra:
        return [extra[name]] * len(records)
    if name not in fields:
        return [None] * len(records)
    values = list(map(attrgetter(name), records))
    return values if _reads_as_plain(values, field.type) else [_plain(v) for v in values]


def _reads_as_plain(values: Sequence[Any], type_: pa.DataType) -> bool:
    """Whether pa.array reads `values` as they are exactly as it reads their `_plain` forms.

    `_plain` changes only tuples, lists and dataclasses. pyarrow refuses all three for a
    scalar type (so both forms fail alike), reads a tuple as a list, and reads a tuple as
    a struct by position: a NamedTuple whose fields are the struct's, in its order, gives
    the struct `_plain`'s dict (by name) gives. Anything else in a nested column (a
    dataclass, a NamedTuple of other fields, a dict) sends the column through `_plain`.
    """
    if not pa.types.is_nested(type_):
        return True
    kinds = {type(v) for v in values} - {type(None)}
    present = [v for v in values if v is not None]
    if isinstance(type_, pa.StructType):
        names = tuple(f.name for f in type_)
        if not all(issubclass(k, tuple) and getattr(k, "_fields", None) == names for k in kinds):
            return False
        return all(
            _reads_as_plain([v[i] for v in present], f.type)
            for i, f in enumerate(type_)
            if pa.types.is_nested(f.type)  # scalar children read alike (above): no need to gather them
        )
    if isinstance(type_, (pa.ListType, pa.LargeListType, pa.FixedSizeListType)):
        if not kinds <= {tuple, list}:
            return False
        if not pa.types.is_nested(type_.value_type):
            return True
        return _reads_as_plain([item for v in present for item in v], type_.value_type)
    return False  # maps, unions: not in any schema; `_plain` it is


def schemas_as_json() -> str:
    """The pinned form of every schema (compared with schemas/schema.json)."""
    out = {
        name: {
            "version": t.version,
            "partition_column": t.partition_column,
            "folder": t.folder,
            "fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in t.schema],
        }
        for name, t in sorted(TABLES.items())
    }
    return json.dumps(out, indent=2, ensure_ascii=False) + "\n"


def additive_change_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why `new` (schemas_as_json form) is not a compatible successor of `old`, if it is not.

    Allowed: new tables, and new nullable columns appended after the existing ones
    with the table's version bumped. Everything else (a removal, a rename, a type or
    nullability change, a reordering, a changed partition column) breaks readers of
    the lake's older files.
    """
    problems = []
    for name, before in old.items():
        after = new.get(name)
        if after is None:
            problems.append(f"{name}: table removed")
            continue
        for key in ("partition_column", "folder"):
            if before[key] != after[key]:
                problems.append(f"{name}: {key} changed from {before[key]!r} to {after[key]!r}")
        old_fields, new_fields = before["fields"], after["fields"]
        for n, field in enumerate(old_fields):
            if n >= len(new_fields) or new_fields[n]["name"] != field["name"]:
                where = next((f for f in new_fields if f["name"] == field["name"]), None)
                problems.append(f"{name}.{field['name']}: " + ("moved" if where else "removed or renamed"))
            elif new_fields[n] != field:
                problems.append(f"{name}.{field['name']}: changed from {field} to {new_fields[n]}")
        added = new_fields[len(old_fields) :]
        for field in added:
            if not field["nullable"]:
                problems.append(f"{name}.{field['name']}: a new column must be nullable")
        if added and after["version"] <= before["version"]:
            problems.append(f"{name}: columns added without a version bump")
        if after["version"] < before["version"]:
            problems.append(f"{name}: version went down")
    return problems

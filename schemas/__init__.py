"""Record contracts of newsbeam: typed records and their explicit Arrow schemas."""

from schemas.arrow import (
    ARTICLE_SCHEMA,
    DEDUP_INDEX_SCHEMA,
    DUPLICATE_SCHEMA,
    RAW_FETCH_SCHEMA,
    REJECT_SCHEMA,
    SCHEMA_VERSIONS,
    TABLES,
    Table,
    schemas_as_json,
)
from schemas.records import (
    Article,
    Duplicate,
    EntityMention,
    Entry,
    IndexEntry,
    RawFetch,
    Reject,
    TopicMatch,
)

__all__ = [
    "ARTICLE_SCHEMA",
    "DEDUP_INDEX_SCHEMA",
    "DUPLICATE_SCHEMA",
    "RAW_FETCH_SCHEMA",
    "REJECT_SCHEMA",
    "SCHEMA_VERSIONS",
    "TABLES",
    "Article",
    "Duplicate",
    "EntityMention",
    "Entry",
    "IndexEntry",
    "RawFetch",
    "Reject",
    "Table",
    "TopicMatch",
    "schemas_as_json",
]

"""The lake's label tables: what the entity and topic ids in `articles` meant under each
taxonomy version the lake has recorded.

    labels/entities  taxonomy_version, id, type, country, wikidata, language, label
    labels/topics    taxonomy_version, id, label

Two small unpartitioned Delta tables. An entity has one row per language of its taxonomy
(every language an entity has aliases in, and English): its first alias in that language
with a stem's `*` dropped ("Corée du Nord"), in English its `label`, and its `label`
where it has no alias (pipeline/tagging/taxonomy.py, `EntityDef.labels`). A topic has
one row, its `label`.

`record_taxonomy` is how a writer (run, stream, retag) starts: it binds the taxonomy's
version in `_state/taxonomies.json` (or refuses a version already bound to other rules)
and appends that version's rows to both tables unless they hold exactly those rows
already, so recording the same version again writes nothing. Rows of a version rebound
by `retag --force` are replaced. The tables sit outside the lake's commit sequence:
every version stays listed, whatever commit a reader looks at, and a join on
`articles.taxonomy_version` picks the labels each row was tagged under.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from pipeline.lake import delta
from pipeline.lake.storage import Storage
from pipeline.tagging.taxonomy import Taxonomy, record_version

if TYPE_CHECKING:
    from pipeline.lake.store import Lake

ENTITIES = "labels/entities"
TOPICS = "labels/topics"
TAXONOMIES = "taxonomies.json"  # in the lake's `_state/`: version -> digest of its rules

ENTITY_SCHEMA = pa.schema(
    [
        pa.field("taxonomy_version", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("country", pa.string()),
        pa.field("wikidata", pa.string()),
        pa.field("language", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
    ]
)
TOPIC_SCHEMA = pa.schema(
    [
        pa.field("taxonomy_version", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
    ]
)
SCHEMAS = {ENTITIES: ENTITY_SCHEMA, TOPICS: TOPIC_SCHEMA}
NAMES = {ENTITIES: "newsbeam_entity_labels", TOPICS: "newsbeam_topic_labels"}


def entity_rows(taxonomy: Taxonomy) -> pa.Table:
    """`labels/entities` rows of `taxonomy`: each entity in each of its languages."""
    languages = taxonomy.languages()
    rows = [
        {
            "taxonomy_version": taxonomy.version,
            "id": e.id,
            "type": e.type,
            "country": e.country,
            "wikidata": e.wikidata,
            "language": language,
            "label": label,
        }
        for e in taxonomy.entities
        for language, label in e.labels(languages).items()
    ]
    return pa.Table.from_pylist(rows, schema=ENTITY_SCHEMA)


def topic_rows(taxonomy: Taxonomy) -> pa.Table:
    """`labels/topics` rows of `taxonomy`."""
    rows = [{"taxonomy_version": taxonomy.version, "id": t.id, "label": t.label} for t in taxonomy.topics]
    return pa.Table.from_pylist(rows, schema=TOPIC_SCHEMA)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def stored(storage: Storage, folder: str, version: str | None = None) -> pa.Table:
    """The rows of one label table (of one taxonomy version, or all), without duplicates;
    empty when the lake has no such table. Read as the lake's other tables are: the
    version's files from the log, opened with pyarrow (not through deltalake's own
    filesystem: docs/benchmarks-delta.md, pitfalls)."""
    schema = SCHEMAS[folder]
    if not delta.is_table(storage, folder):
        return schema.empty_table()
    files = [
        storage.fs_path(storage.location(f"{folder}/{e['path']}"))
        for e in delta.live_adds(delta.open_table(storage, folder))
    ]
    dataset = ds.dataset(files, schema=schema, format="parquet", filesystem=storage.fs)
    where = pc.field("taxonomy_version") == version if version is not None else None
    rows = dataset.to_table(filter=where)
    return rows.group_by(schema.names, use_threads=False).aggregate([]).select(schema.names).cast(schema)


def _key(rows: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(tuple(r.values()) for r in rows.to_pylist())


def write_labels(storage: Storage, taxonomy: Taxonomy) -> list[str]:
    """Make both tables hold exactly `taxonomy`'s rows for its version; returns the folders
    written to (none when they already did)."""
    from deltalake import CommitProperties, write_deltalake

    written = []
    for folder, rows in ((ENTITIES, entity_rows(taxonomy)), (TOPICS, topic_rows(taxonomy))):
        have = stored(storage, folder, taxonomy.version)
        if _key(have) == _key(rows):
            continue
        options: dict[str, Any] = {
            "name": NAMES[folder],
            "configuration": {"delta.checkpointInterval": delta.CHECKPOINT_INTERVAL},
            "commit_properties": CommitProperties(
                custom_metadata={"newsbeam.kind": "labels", "newsbeam.taxonomy_version": taxonomy.version}
            ),
        }
        location = storage.location(folder)
        if have.num_rows:  # the version was rebound (`retag --force`): its rows are replaced
            predicate = f"taxonomy_version = {_sql_string(taxonomy.version)}"
            write_deltalake(location, rows, mode="overwrite", predicate=predicate, **options)
        else:
            write_deltalake(location, rows, mode="append", **options)
        delta.fsync_log(storage, folder)
        written.append(folder)
    return written


def record_taxonomy(lake: Lake, taxonomy: Taxonomy, force: bool = False) -> list[str]:
    """Record that `lake` holds rows tagged with `taxonomy`: bind its version to its rules
    (TaxonomyError when the version names other rules, unless `force`), then write the
    version's label rows. Every writer calls this first, with the lake's lock held;
    returns the label tables written to."""
    record_version(lake.state_path(TAXONOMIES), taxonomy, force)
    return write_labels(lake.storage, taxonomy)


ENTITY_VIEW = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("type", pa.string()),
        pa.field("label", pa.string()),
        pa.field("country", pa.string()),
        pa.field("taxonomy_version", pa.string()),
        pa.field("wikidata", pa.string()),
        pa.field("labels", pa.map_(pa.string(), pa.string())),
    ]
)


def _others(rows: pa.Table, version: str) -> pa.Table:
    """`rows` of every taxonomy version but `version`."""
    keep = [v != version for v in rows.column("taxonomy_version").to_pylist()]
    return rows.filter(pa.array(keep, pa.bool_()))


def label_views(taxonomy: Taxonomy, storage: Storage | None = None) -> dict[str, pa.Table]:
    """The rows of `newsbeam sql`'s views: `entity_labels` (id, type, label, country,
    taxonomy_version, wikidata, labels), one row per version and entity, `label` its
    English label and `labels` a map language -> label; `topic_labels` (id, label,
    taxonomy_version). With `storage`, every version the lake's tables hold; `taxonomy`'s
    own version always from `taxonomy` itself (in place of any stored rows)."""
    entities, topics = entity_rows(taxonomy), topic_rows(taxonomy)
    if storage is not None:
        entities = pa.concat_tables([_others(stored(storage, ENTITIES), taxonomy.version), entities])
        topics = pa.concat_tables([_others(stored(storage, TOPICS), taxonomy.version), topics])
    wide: dict[tuple[str, str], dict[str, Any]] = {}
    for r in entities.to_pylist():
        key = (r["taxonomy_version"], r["id"])
        if key not in wide:
            wide[key] = {
                **{k: r[k] for k in ("id", "type", "country", "taxonomy_version", "wikidata")},
                "labels": {},
            }
        wide[key]["labels"][r["language"]] = r["label"]
    for row in wide.values():
        row["label"] = row["labels"].get("en") or row["id"]
        row["labels"] = sorted(row["labels"].items())
    return {
        "entity_labels": pa.Table.from_pylist(list(wide.values()), schema=ENTITY_VIEW),
        "topic_labels": topics.select(["id", "label", "taxonomy_version"]),
    }

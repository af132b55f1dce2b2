"""records_to_table (column by column) makes the very table the row-wise conversion made,
for every table, and the staged Parquet files are the same bytes."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.lake.files import stage_arrow, stage_partition, stage_rows
from pipeline.lake.raw import land
from pipeline.lake.storage import Storage
from schemas.arrow import TABLES, Table, records_to_table, records_to_table_by_rows
from schemas.records import Article, Duplicate, EntityMention, IndexEntry, RawFetch, Reject, TopicMatch
from tests.factories import make_article

T0 = datetime(2024, 6, 19, 12, 30, 15, 123456, tzinfo=timezone.utc)
SEOUL = timezone(timedelta(hours=9))  # an aware time off UTC: written as the same instant in UTC
RUN = "r" * 32
BATCH = "b" * 32


def articles() -> list[Article]:
    plain = make_article(
        title="Kim meets Shoigu", text="Pyongyang. Talks on artillery.", url="https://x.example/1"
    )
    return [
        dataclasses.replace(
            plain,
            published_at=datetime(2024, 6, 19, 21, 5, tzinfo=SEOUL),
            entities=(
                EntityMention("Q56226", "person", 3, 0),
                EntityMention("Q18097", "place", 1, None),  # named in the title only
            ),
            topics=(
                TopicMatch("korea.military", 0.875, ("artillery", "Шойгу")),
                TopicMatch("diplomacy", 0.25),  # no evidence: an empty list, not null
            ),
            countries=("KP", "RU"),
            taxonomy_version="2026.12.4",
            title_source="headline",
        ),
        make_article(
            title="",
            text="러시아와 북한은 조약을 체결했다. Москва и Пхеньян — «партнёры».",
            url=None,
            raw_id="raw-2",
            position=1,
        ),  # no url, no title: the lead is the title; no entities, topics or countries
        dataclasses.replace(
            plain,
            article_id="zz-last",
            published_at=None,
            date_source="fetched",
            language=None,
            guid=None,
            publisher="Le Monde — Édition",
            entities=(EntityMention("Q1", "org", 1, 12),),
            topics=(),
            countries=(),
        ),
    ]


def rejects() -> list[Reject]:
    feed = "http://127.0.0.1/f"
    return [
        Reject("rej-1", "parse", "bad_json", "ParseError", False, "wire", feed, "h1", T0, "d"),
        Reject("rej-2", "fetch", "timeout", "Timeout", True, "wire", feed, "h2", T0),
        Reject(
            "rej-3", "clean", "empty_article", "InvalidContent", False, "presse", "seeds/ü.md", "h3",
            T0.astimezone(SEOUL), "pas de texte après nettoyage — «vide»",
        ),
    ]  # fmt: skip


def duplicates() -> list[Duplicate]:
    return [
        Duplicate("d1", "https://x.example/1", "wire", T0, "a1", "same_url"),
        Duplicate("d2", None, "presse", T0.astimezone(SEOUL), "a1", "same_content", 0.8125, "c" * 64),
    ]


def raw_fetches() -> list[RawFetch]:
    return [
        RawFetch("raw-1", "seed", "seed", "seeds/a.md", T0, "ok", body="# À la une\n".encode()),
        RawFetch(
            "raw-2", "wire", "feed", "http://127.0.0.1/feed", T0.astimezone(SEOUL), "ok", 200,
            "application/rss+xml", '"etag-1"', "Wed, 19 Jun 2024 12:00:00 GMT", b"<rss/>", None, None,
            '{"redirects": 1}',
        ),
        RawFetch("raw-3", "wire", "feed", "http://127.0.0.1/gone", T0, "error", 410, error_kind="permanent",
                 error="HTTP 410 Gone"),
    ]  # fmt: skip


def index_entries() -> list[IndexEntry]:
    signature = bytes(range(256)) * 2  # 128 little-endian uint32 values
    return [
        IndexEntry("a1", "c" * 64, T0, T0.astimezone(SEOUL), signature, "rensa:perm=128", "2024-06-19"),
        IndexEntry("a2", "d" * 64, T0, None, None, "", "2024-06-19"),  # too short to sign
    ]


RECORDS = {
    "articles": articles,
    "rejects": rejects,
    "duplicates": duplicates,
    "raw": raw_fetches,
    "dedup_index": index_entries,
}
EXTRA = {"raw": {"batch_id": BATCH}}  # every other table is written with its run's id


def extra_of(name: str) -> dict[str, Any]:
    return EXTRA.get(name, {"run_id": RUN})


def assert_same(records: list[Any], table: Table, **extra: Any) -> pa.Table:
    got = records_to_table(records, table, **extra)
    want = records_to_table_by_rows(records, table, **extra)
    assert got.schema.equals(table.schema, check_metadata=True)
    assert got.equals(want, check_metadata=True), (got.to_pylist(), want.to_pylist())
    assert got.to_pylist() == want.to_pylist()  # the values, as Python reads them back
    return got


def test_every_table_has_records_here() -> None:
    assert set(RECORDS) == set(TABLES)
    for name, make in RECORDS.items():
        assert {type(r) for r in make()} == {TABLES[name].record_type}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_columns_make_the_row_wise_table(name: str) -> None:
    records = RECORDS[name]()
    got = assert_same(records, TABLES[name], **extra_of(name))
    assert got.num_rows == len(records) >= 2
    assert got.column("schema_version").to_pylist() == [TABLES[name].version] * len(records)
    extra_column, value = next(iter(extra_of(name).items()))
    assert got.column(extra_column).to_pylist() == [value] * len(records)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_schema_metadata_is_kept(name: str) -> None:
    metadata = {b"newsbeam.table": name.encode(), b"note": "données".encode()}
    table = dataclasses.replace(TABLES[name], schema=TABLES[name].schema.with_metadata(metadata))
    got = assert_same(RECORDS[name](), table, **extra_of(name))
    assert got.schema.metadata == metadata


@pytest.mark.parametrize("name", sorted(TABLES))
def test_no_records_is_an_empty_table_of_the_schema(name: str) -> None:
    got = assert_same([], TABLES[name], **extra_of(name))
    assert got.num_rows == 0 and got.schema.equals(TABLES[name].schema, check_metadata=True)


def test_an_article_row_holds_what_the_record_holds() -> None:
    """Written out by hand: the row-wise reference could drift, this cannot."""
    article = articles()[0]
    row = records_to_table([article], TABLES["articles"], run_id=RUN).to_pylist()[0]
    assert row["published_at"] == datetime(2024, 6, 19, 12, 5, tzinfo=timezone.utc)
    assert row["fetched_at"] == article.fetched_at
    assert row["entities"] == [
        {"id": "Q56226", "type": "person", "mentions": 3, "first_offset": 0},
        {"id": "Q18097", "type": "place", "mentions": 1, "first_offset": None},
    ]
    assert row["topics"] == [
        {"id": "korea.military", "score": 0.875, "evidence": ["artillery", "Шойгу"]},
        {"id": "diplomacy", "score": 0.25, "evidence": []},
    ]
    assert row["countries"] == ["KP", "RU"]
    assert (row["run_id"], row["schema_version"], row["title_source"]) == (RUN, 2, "headline")
    assert "position" not in row  # a record field that is not a column is not written
    timestamps = records_to_table([article], TABLES["articles"], run_id=RUN).schema.field("published_at").type
    assert timestamps == pa.timestamp("us", tz="UTC")


def test_a_column_no_one_fills_is_null() -> None:
    got = assert_same(rejects(), TABLES["rejects"])  # no run_id given
    assert got.column("run_id").null_count == got.num_rows


def test_extra_wins_over_a_field_and_never_over_the_schema_version() -> None:
    got = assert_same(rejects(), TABLES["rejects"], run_id=RUN, detail="overridden", schema_version=99)
    assert set(got.column("detail").to_pylist()) == {"overridden"}
    assert set(got.column("schema_version").to_pylist()) == {TABLES["rejects"].version}


class EntityOtherOrder(NamedTuple):
    """The struct's fields in another order: only their names place them."""

    type: str
    id: str
    first_offset: int | None
    mentions: int


@dataclasses.dataclass(frozen=True)
class EntityRecord:
    id: str
    type: str
    mentions: int
    first_offset: int | None = None


@pytest.mark.parametrize(
    "entity",
    [
        EntityOtherOrder("person", "Q56226", 4, 2),
        EntityRecord("Q56226", "person", 2, 4),
        {"id": "Q56226", "type": "person", "mentions": 2, "first_offset": 4},
    ],
    ids=["namedtuple-other-order", "dataclass", "dict"],
)
def test_nested_values_not_in_struct_order_are_read_by_name(entity: Any) -> None:
    article = dataclasses.replace(articles()[0], entities=(EntityMention("Q1", "org", 1, 0), entity))
    got = assert_same([article, articles()[1]], TABLES["articles"], run_id=RUN)
    assert got.column("entities").to_pylist()[0][1] == {
        "id": "Q56226", "type": "person", "mentions": 2, "first_offset": 4,
    }  # fmt: skip


def test_lists_as_lists_and_null_nested_columns() -> None:
    article = dataclasses.replace(
        articles()[0], countries=["KP"], topics=None, entities=[EntityMention("Q1", "org", 1, None)]
    )
    got = assert_same([article], TABLES["articles"], run_id=RUN)
    assert got.column("topics").to_pylist() == [None]


def test_mixed_record_types_fill_each_ones_own_columns() -> None:
    @dataclasses.dataclass(frozen=True)
    class Partial:
        reject_id: str
        reason: str

    records = [*rejects(), Partial("p-1", "odd")]
    got = assert_same(records, TABLES["rejects"], run_id=RUN)
    assert got.column("stage").to_pylist()[-1] is None


def test_a_value_no_column_takes_fails_on_both_paths() -> None:
    bad = dataclasses.replace(articles()[0], title=("not", "a", "string"))  # type: ignore[arg-type]
    for convert in (records_to_table, records_to_table_by_rows):
        with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
            convert([bad], TABLES["articles"], run_id=RUN)


# --- the files staged -----------------------------------------------------------


@pytest.mark.parametrize("name", ["articles", "rejects", "duplicates", "dedup_index"])
def test_a_staged_partition_is_the_file_the_row_wise_table_makes(tmp_path: Path, name: str) -> None:
    table = TABLES[name]
    records = list(reversed(RECORDS[name]()))  # staging sorts them
    staged = stage_partition(str(tmp_path / "new"), RUN, name, "2024-06-19", records)
    by_rows = records_to_table_by_rows(
        sorted(records, key=lambda r: getattr(r, table.sort_key)), table, run_id=RUN
    )
    before = stage_arrow(tmp_path / "old", RUN, name, "2024-06-19", by_rows)
    assert (staged.final_path, staged.rows, staged.sha256) == (before.final_path, before.rows, before.sha256)
    read = pq.read_table(tmp_path / "new" / staged.staged_path)
    assert read.schema.equals(table.schema)
    assert read.to_pylist() == by_rows.to_pylist()
    keys = sorted(getattr(r, table.sort_key) for r in records)
    assert [row[table.sort_key] for row in read.to_pylist()] == keys


def test_staged_rows_in_shards_read_back_as_the_rows(tmp_path: Path) -> None:
    table = TABLES["articles"]
    rows = records_to_table(articles(), table, run_id=RUN)
    files = stage_rows(tmp_path, "op-token", table, "2024-06-19", rows, max_rows=2)
    assert [f.rows for f in files] == [2, 1]
    read = pa.concat_tables(pq.read_table(tmp_path / f.staged_path) for f in files)
    assert read.to_pylist() == records_to_table_by_rows(articles(), table, run_id=RUN).to_pylist()


def test_a_landed_raw_batch_reads_back_as_its_fetches(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    fetches = raw_fetches()
    batch = land(storage, fetches, T0)
    assert batch is not None
    read = pq.read_table(tmp_path / "raw" / "landed_date=2024-06-19" / f"batch-{batch}.parquet")
    want = records_to_table_by_rows(sorted(fetches, key=lambda r: r.raw_id), TABLES["raw"], batch_id=batch)
    assert read.schema.equals(TABLES["raw"].schema)
    assert read.to_pylist() == want.to_pylist()
    assert read.column("body").to_pylist()[0] == "# À la une\n".encode()

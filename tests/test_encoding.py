"""Both Parquet writers follow one encoding policy (lake/encoding.py), and the Delta statistics our own
writer builds (lake/file_stats.py) are the ones delta-rs writes for the same rows, so files are skipped
alike whichever writer wrote them."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vhlake.lake.delta import Lake
from vhlake.lake.direct_write import DirectWrite
from vhlake.lake.encoding import codec, column_coding
from vhlake.lake.file_stats import string_upper_bound
from vhlake.lake.tables import BRONZE, JOB_EVENTS, REJECTED, SILVER, TableDef

ROWS = 12
# Strings around the 64-byte cut: multibyte characters across it, characters that cannot be incremented
# in place (U+007F, U+10FFFF), unicode, long ASCII, empty.
STRINGS = [
    "é" * 31 + "zz" + "x" * 40,
    "ü" * 40,
    "\U0001f600" * 20,
    "a" * 100,
    "plain",
    "\x7f" * 70,
    "\U0010ffff" * 20,
    "",
    "Ωmega ✓",
    "b" * 64,
    "b" * 65,
    "z\x7f" + "y" * 80,
]
INTS = [-(2**63), -1, 0, 7, 2**40, 2**63 - 1, -5, 3, 12, -(2**31), 2**31 - 1, 42]
INTS_32 = [-(2**31), -1, 0, 7, 2**24, 2**31 - 1, -5, 3, 12, -(2**31) + 1, 2**31 - 2, 42]
# Microseconds since the epoch: before 1970, a zero millisecond with microseconds, .120, year 9999.
MICROS = [-1, 0, 1_714_525_323_120_000, 1_714_525_323_000_100, 1_704_067_199_999_999, 253_402_300_799_999_999]
MAPS: list[Any] = [[("a", 1)], None, [], [("é", -2), ("b", 3)], [("k" * 100, 2**31 - 1)], None]


def _column(table: TableDef, j: int, field: pa.Field) -> pa.Array:
    """Column ``j`` of the awkward rows: values rotated per column (so each column's min and max fall on
    different rows), NULLs every third row, and the column all NULL in the first partition when j % 4 == 1
    (a row group, or a file, without a single value)."""

    def value(i: int) -> Any:
        if field.name in table.partition_by:
            return _partition_value(field, i % 2)
        if field.nullable and ((i + j) % 3 == 0 or (j % 4 == 1 and i % 2 == 0) or field.name == "category"):
            return None
        kind, k = field.type, (i + j) % ROWS
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return STRINGS[k]
        if pa.types.is_large_binary(kind):
            return STRINGS[k].encode() + b"\xff"
        if pa.types.is_integer(kind):
            return (INTS_32 if kind.bit_width == 32 else INTS)[k]
        if pa.types.is_timestamp(kind):
            return MICROS[k % len(MICROS)]
        if pa.types.is_map(kind):
            return MAPS[k % len(MAPS)]
        raise AssertionError(f"no awkward values for {field}")

    values = [value(i) for i in range(ROWS)]
    if pa.types.is_timestamp(field.type):
        return pa.array(values, pa.int64()).cast(field.type)
    return pa.array(values, field.type)


def _partition_value(field: pa.Field, part: int) -> object:
    return date(2024, 2, 28 + part) if pa.types.is_date32(field.type) else ["US", "DÉ"][part]


def awkward_rows(table: TableDef) -> pa.Table:
    columns = [_column(table, j, f) for j, f in enumerate(table.schema)]
    return pa.Table.from_arrays(columns, schema=table.schema)


def through_delta_rs(root: Path, table: TableDef, rows: pa.Table) -> Lake:
    lake = Lake(str(root))
    lake.replace_once(table, rows, app_id="test", version=1)
    return lake


def through_direct_writer(root: Path, table: TableDef, rows: pa.Table) -> Lake:
    """The rows in two writes: two row groups per file, one of them all NULL in some columns."""
    lake = Lake(str(root))
    with ThreadPoolExecutor(1) as pool:
        write = DirectWrite(lake, table, pool)
        write.write(rows.slice(0, 5))
        write.write(rows.slice(5))
        write.commit(app_id="test", version=1)
    return lake


def added_files(lake: Lake, table: TableDef) -> dict[str, dict[str, Any]]:
    """The table's add actions by partition (each partition must have one file), read from its log."""
    log = Path(lake.table_uri(table)) / "_delta_log"
    adds = [
        json.loads(line)["add"]
        for commit in sorted(log.glob("*.json"))
        for line in commit.read_text().splitlines()
        if "add" in json.loads(line)
    ]
    by_partition = {json.dumps(a["partitionValues"], sort_keys=True): a for a in adds}
    assert len(by_partition) == len(adds), "one file per partition"
    return by_partition


def statistics_of(lake: Lake, table: TableDef) -> dict[str, dict[str, Any]]:
    return {part: json.loads(add["stats"]) for part, add in added_files(lake, table).items()}


WRITERS = {"delta-rs": through_delta_rs, "direct": through_direct_writer}


@pytest.mark.parametrize("table", [SILVER, JOB_EVENTS, BRONZE], ids=lambda t: t.name)
def test_direct_statistics_equal_delta_rs(tmp_path: Path, table: TableDef) -> None:
    rows = awkward_rows(table)
    expected = statistics_of(through_delta_rs(tmp_path / "a", table, rows), table)
    actual = statistics_of(through_direct_writer(tmp_path / "b", table, rows), table)
    assert len(expected) == 2
    assert actual == expected
    for stats in expected.values():  # the data reached what the comparison is about
        assert stats["numRecords"] == ROWS // 2
        assert any(isinstance(v, str) and v.endswith("Z") for v in stats["maxValues"].values())
        assert any(isinstance(v, str) and len(v.encode()) == 64 for v in stats["minValues"].values())
        assert any(count == ROWS // 2 for count in stats["nullCount"].values())  # an all-NULL column


def test_statistics_of_binary_columns_differ_by_a_null_count(tmp_path: Path) -> None:
    """delta-rs leaves binary columns out of its statistics altogether; the direct writer keeps their
    NULL count, which is exact and lets ``raw_bytes IS NULL`` skip files. Nothing else differs."""
    rows = awkward_rows(REJECTED)
    expected = statistics_of(through_delta_rs(tmp_path / "a", REJECTED, rows), REJECTED)
    actual = statistics_of(through_direct_writer(tmp_path / "b", REJECTED, rows), REJECTED)
    for part, stats in actual.items():
        raw_nulls = stats["nullCount"].pop("raw_bytes")
        assert raw_nulls == sum(
            1 for r in rows.filter(_in_partition(rows, REJECTED, part)).to_pylist() if r["raw_bytes"] is None
        )
        assert "raw_bytes" not in expected[part]["nullCount"]
    assert actual == expected


def _in_partition(rows: pa.Table, table: TableDef, part: str) -> pa.Array:
    values = json.loads(part)
    return pa.array([all(str(r[c]) == values[c] for c in table.partition_by) for r in rows.to_pylist()])


def test_strings_beyond_what_pyarrow_keeps_get_no_bounds(tmp_path: Path) -> None:
    """pyarrow drops the min/max of a row group holding a string over 4096 bytes: the direct writer then
    gives the file no bounds for that column (always safe: the file is read), where delta-rs keeps a
    64-byte prefix. Every other statistic is the same."""
    rows = awkward_rows(SILVER)
    long_ids = pa.array(["u" * 5000 if i == 2 else f"user-{i}" for i in range(ROWS)])
    rows = rows.set_column(rows.schema.get_field_index("user_id"), "user_id", long_ids)
    expected = statistics_of(through_delta_rs(tmp_path / "a", SILVER, rows), SILVER)
    actual = statistics_of(through_direct_writer(tmp_path / "b", SILVER, rows), SILVER)
    (long_part,) = [p for p, s in expected.items() if s["maxValues"]["user_id"] == "u" * 63 + "v"]
    for part in expected:
        if part == long_part:
            assert "user_id" not in actual[part]["minValues"]
            assert "user_id" not in actual[part]["maxValues"]
            for bound in ("minValues", "maxValues"):
                expected[part][bound].pop("user_id")
    assert actual == expected


@pytest.mark.parametrize(
    ("value", "bound"),
    [
        ("short", "short"),
        ("a" * 100, "a" * 63 + "b"),
        ("é" * 40, "é" * 31 + "ê"),
        ("x" * 63 + "é", "x" * 62 + "y"),  # é does not fit whole: cut before it
        ("a" + "\x7f" * 70, "b"),  # U+0080 would take two bytes: the last incrementable character
        ("\U0010ffff" * 20, "\U0010ffff" * 20),  # nothing can be incremented: the whole value
    ],
)
def test_string_upper_bound(value: str, bound: str) -> None:
    assert string_upper_bound(value) == bound
    assert bound >= value


def _leaf_field(table: TableDef, path: str) -> pa.Field:
    return table.schema.field(path.split(".")[0])


@pytest.mark.parametrize("table", [SILVER, JOB_EVENTS, BRONZE, REJECTED], ids=lambda t: t.name)
@pytest.mark.parametrize("writer", list(WRITERS))
def test_files_follow_the_encoding_policy(tmp_path: Path, table: TableDef, writer: str) -> None:
    write: Callable[[Path, TableDef, pa.Table], Lake] = WRITERS[writer]
    lake = write(tmp_path, table, awkward_rows(table))
    # pyarrow names Parquet's LZ4_RAW codec "LZ4" (and the deprecated Hadoop-framed one "LZ4_HADOOP").
    expected_codec = {"LZ4_RAW": "LZ4"}.get(codec(table), codec(table))
    for add in added_files(lake, table).values():
        metadata = pq.read_metadata(Path(lake.table_uri(table)) / unquote(add["path"]))
        for group in range(metadata.num_row_groups):
            for position in range(metadata.num_columns):
                chunk = metadata.row_group(group).column(position)
                coding = column_coding(table, _leaf_field(table, chunk.path_in_schema))
                where = f"{writer}: {chunk.path_in_schema}"
                assert chunk.compression == expected_codec, where
                assert chunk.has_dictionary_page == coding.dictionary, where
                assert ("RLE_DICTIONARY" in chunk.encodings) == coding.dictionary, where
                assert (
                    chunk.statistics is not None and chunk.statistics.has_null_count
                ) == coding.statistics, where
                assert not chunk.has_column_index, where

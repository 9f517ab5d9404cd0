"""How the lake encodes its Parquet files: one policy for delta-rs's writer and for our own pyarrow writes.

Two writers produce the tables' files: delta-rs (``write_deltalake``, MERGE; lake/delta.py) and pyarrow
(first builds and Spark tasks; lake/direct_write.py). A file must not depend on which one wrote it, so both
take their settings from here, per table contract and column:

- compression: the contract's codec, zstd at level 1 (as fast as snappy here, ~40% smaller files) or
  LZ4_RAW where write speed matters more than size;
- opaque columns (ids, JSON texts, paths: nearly all distinct, never filtered by range): no dictionary, no
  statistics (together ~15% of a bronze write, and they never pay off);
- distinct columns and every timestamp (nearly all distinct but filtered by range): statistics, no
  dictionary (a dictionary attempt on a timestamp column cost 5x its plain write; on bronze's distinct
  columns 10% of the write);
- every other column, nested ones' leaves included: dictionary and statistics;
- statistics per column chunk only (no page index: DuckDB, the lake's reader, does not use it), their
  string min/max cut to :data:`STATISTICS_TRUNCATE_BYTES` as delta-rs cuts them, so the Delta statistics
  built from either writer's footers agree (lake/file_stats.py).

Row group sizes are not part of it: each writer sizes them for its own memory and speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from deltalake import ColumnProperties, WriterProperties

from vhlake.lake.tables import TableDef

# Bytes kept of a string min/max in the Parquet statistics (delta-rs's Delta statistics are read from
# them): the Parquet Rust writer's default, set explicitly so a library upgrade cannot change it.
STATISTICS_TRUNCATE_BYTES = 64
_ZSTD_LEVEL = 1


@dataclass(frozen=True)
class ColumnCoding:
    """How one column is written: dictionary encoded or not, with min/max/null statistics or not."""

    dictionary: bool
    statistics: bool


def column_coding(table: TableDef, field: pa.Field) -> ColumnCoding:
    """The policy for ``field`` of ``table`` (see the module docstring for why)."""
    if field.name in table.opaque_columns:
        return ColumnCoding(dictionary=False, statistics=False)
    if field.name in table.distinct_columns or pa.types.is_timestamp(field.type):
        return ColumnCoding(dictionary=False, statistics=True)
    return ColumnCoding(dictionary=True, statistics=True)


def codec(table: TableDef) -> str:
    """The Parquet codec name as Parquet metadata spells it (what both writers must produce)."""
    return "LZ4_RAW" if table.compression == "lz4" else "ZSTD"


def delta_writer_properties(table: TableDef) -> WriterProperties:
    """delta-rs's writer settings for ``table``. delta-rs names columns by their top-level name only, so
    the columns that differ from the default (dictionary and statistics) must be flat ones."""
    columns: dict[str, ColumnProperties] = {}
    for field in table.schema:
        coding = column_coding(table, field)
        if coding == ColumnCoding(dictionary=True, statistics=True):
            continue
        if pa.types.is_nested(field.type):
            raise ValueError(f"{table.name}.{field.name}: delta-rs cannot set a nested column's encoding")
        columns[field.name] = ColumnProperties(
            dictionary_enabled=coding.dictionary, statistics_enabled="CHUNK" if coding.statistics else "NONE"
        )
    chunk = ColumnProperties(dictionary_enabled=True, statistics_enabled="CHUNK")
    if table.compression == "lz4":
        return WriterProperties(
            compression="LZ4_RAW",
            statistics_truncate_length=STATISTICS_TRUNCATE_BYTES,
            default_column_properties=chunk,
            column_properties=columns or None,
        )
    return WriterProperties(
        compression="ZSTD",
        compression_level=_ZSTD_LEVEL,
        statistics_truncate_length=STATISTICS_TRUNCATE_BYTES,
        default_column_properties=chunk,
        column_properties=columns or None,
    )


def parquet_writer_options(table: TableDef, schema: pa.Schema) -> dict[str, Any]:
    """``pq.ParquetWriter`` keyword arguments for ``schema`` (``table``'s columns, partition columns
    left out). pyarrow names a nested column's settings by its leaves' paths."""
    dictionary: list[str] = []
    statistics: list[str] = []
    for field in schema:
        coding = column_coding(table, field)
        leaves = parquet_leaves(field)
        dictionary += leaves if coding.dictionary else []
        statistics += leaves if coding.statistics else []
    return {
        # pyarrow's "lz4" is Parquet's LZ4_RAW codec (the Hadoop-framed LZ4 is deprecated).
        "compression": table.compression,
        "compression_level": _ZSTD_LEVEL if table.compression == "zstd" else None,
        "use_dictionary": dictionary,
        "write_statistics": statistics,
        "write_page_index": False,
    }


def parquet_leaves(field: pa.Field, prefix: str = "") -> list[str]:
    """The Parquet column paths pyarrow writes ``field`` as (its leaves, in pyarrow's naming)."""
    path = f"{prefix}{field.name}"
    kind = field.type
    if pa.types.is_map(kind):
        return [
            *parquet_leaves(kind.key_field, f"{path}.key_value."),
            *parquet_leaves(kind.item_field, f"{path}.key_value."),
        ]
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return parquet_leaves(kind.value_field.with_name("element"), f"{path}.list.")
    if pa.types.is_struct(kind):
        return [leaf for child in kind for leaf in parquet_leaves(child, f"{path}.")]
    return [path]

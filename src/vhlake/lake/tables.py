"""The table contracts of DESIGN.md: names as in Databricks, on disk at ``<lake>/<layer>/<name>``."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

UTC_MICROS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableDef:
    """One lake table: where it lives, its columns and how it is partitioned."""

    name: str
    layer: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    description: str

    @property
    def relative_path(self) -> str:
        return f"{self.layer}/{self.name}"


BRONZE = TableDef(
    name="validation_events_bronze",
    layer="bronze",
    schema=pa.schema(
        [
            pa.field("event_id", pa.string()),
            pa.field("event_type", pa.string()),
            pa.field("timestamp", UTC_MICROS),
            pa.field("job_id", pa.string()),
            pa.field("user_id", pa.string()),
            pa.field("marketplace", pa.string()),
            pa.field("category", pa.string()),
            pa.field("payload", pa.string()),
            pa.field("ingestion_time", UTC_MICROS, nullable=False),
            pa.field("source_system", pa.string()),
            pa.field("event_date", pa.date32(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("source_offset", pa.int64(), nullable=False),
            pa.field("_rescued_data", pa.string()),
        ]
    ),
    partition_by=("event_date",),
    description=(
        "One row per received event, exactly as received (duplicates included). event_date is the UTC date "
        "of timestamp, or of ingestion_time when timestamp did not parse (the original is in _rescued_data)."
    ),
)

REJECTED = TableDef(
    name="validation_events_rejected",
    layer="bronze",
    schema=pa.schema(
        [
            pa.field("raw", pa.large_string()),
            pa.field("raw_bytes", pa.large_binary()),
            pa.field("error", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("source_offset", pa.int64(), nullable=False),
            pa.field("ingestion_time", UTC_MICROS, nullable=False),
            pa.field("ingestion_date", pa.date32(), nullable=False),
        ]
    ),
    partition_by=("ingestion_date",),
    description=(
        "One row per input that is not a JSON object. raw is the text (invalid UTF-8 shown as U+FFFD); "
        "raw_bytes holds the exact bytes when they are not valid UTF-8."
    ),
)

ALL_TABLES: tuple[TableDef, ...] = (BRONZE, REJECTED)


def table_by_name(name: str) -> TableDef:
    """The contract of the table called ``name`` (its Databricks name)."""
    for table in ALL_TABLES:
        if table.name == name:
            return table
    known = ", ".join(t.name for t in ALL_TABLES)
    raise KeyError(f"unknown table {name!r}; known tables: {known}")

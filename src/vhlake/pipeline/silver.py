"""Bronze events → typed job events → one silver row per job (DESIGN.md "Silver and gold semantics", 2 to 4).

Pure: Arrow in, Arrow out. ``type_events`` parses each payload once, when the event first passes the
expectations; ``fold_jobs`` takes the whole (typed) history of some jobs and folds it, so the result never
depends on how the events were split into batches or ordered.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from vhlake.lake.tables import JOB_EVENTS, PAYLOAD_FIELDS, SILVER
from vhlake.query.arrow_sql import registered


def _kind(field: pa.Field) -> str:
    if pa.types.is_map(field.type):
        return "map"
    return "int" if pa.types.is_integer(field.type) else "string"


_FIELDS = {field.name: _kind(field) for field in PAYLOAD_FIELDS}
# Each payload is parsed once, into its fields' JSON texts; the types are then decided on those small texts.
_SPLIT = "{" + ",".join(f'"{name}":"JSON"' for name in _FIELDS) + "}"
# A map of integers only: a value of another type ("3", 1.5) makes the whole map NULL, as Spark's from_json.
_INT_MAP = r'\{("([^"\\]|\\.)*":-?[0-9]+(,"([^"\\]|\\.)*":-?[0-9]+)*)?\}'
_TYPED_FIELD = {
    # integers only: "12", 1.5 and 1e3 are not; out of range becomes NULL
    "int": "CASE WHEN regexp_full_match(f.{f}::VARCHAR, '-?[0-9]+') THEN TRY_CAST(f.{f}::VARCHAR AS BIGINT) END",
    "string": "CASE WHEN starts_with(f.{f}::VARCHAR, '\"') THEN f.{f} ->> '$' END",
    "map": f"CASE WHEN regexp_full_match(f.{{f}}::VARCHAR, '{_INT_MAP}') THEN TRY_CAST(f.{{f}} AS MAP(VARCHAR, INTEGER)) END",
}
_COLUMNS = ",\n    ".join(
    f"{_TYPED_FIELD[kind].replace('{f}', name)} AS {name}" for name, kind in _FIELDS.items()
)

# A stored lookup key: 60 bits of the md5 (stable across versions, unlike DuckDB's ``hash``; the hex
# prefix costs a third of ``md5_number_lower``), a signed BIGINT because Delta has no unsigned integers.
_LOOKUP_KEY = "CAST(('0x' || left(md5({column}), 15)) AS BIGINT)"

# Payload fields are strictly typed: "12", 1.5, [] and out-of-range numbers become NULL.
TYPE_SQL = f"""
WITH split AS (
    SELECT *, CASE WHEN json_valid(payload) AND starts_with(ltrim(payload), '{{')
        THEN json_transform(payload, '{_SPLIT}') END AS f
    FROM events
)
SELECT job_id, event_id, event_type, "timestamp", user_id, marketplace, category,
    {_COLUMNS},
    ingestion_time, source, source_offset,
    {_LOOKUP_KEY.format(column="job_id")} AS job_key,
    {_LOOKUP_KEY.format(column="event_id")} AS event_key
FROM split
"""  # noqa: S608

FOLD_SQL = """
WITH firsts AS (
    -- the first received copy of an event wins (bronze order: ingestion time, then source position);
    -- duplicates are rare, so only their ids are grouped, not every event
    SELECT event_id, min((ingestion_time, source, source_offset)) AS first_copy
    FROM events GROUP BY event_id HAVING count(*) > 1
), deduped AS (
    SELECT e.* RENAME ("timestamp" AS ts) FROM events e
    ANTI JOIN firsts f ON e.event_id = f.event_id AND (e.ingestion_time, e.source, e.source_offset) <> f.first_copy
), folded AS (
    -- one pass per job: its earliest start and latest terminal (ties broken by event_id, so the
    -- result never depends on arrival order), its first event
    SELECT job_id,
        arg_min({'ts': ts, 'user_id': user_id, 'marketplace': marketplace, 'category': category, 'ruleset': ruleset,
                 'file_size_bytes': file_size_bytes, 's3_path': s3_path}, (ts, event_id))
            FILTER (WHERE event_type = 'validation_started') AS s,
        arg_max({'ts': ts, 'event_type': event_type, 'user_id': user_id, 'marketplace': marketplace, 'category': category,
                 'ruleset': ruleset, 'total_rows': total_rows, 'valid_rows': valid_rows, 'invalid_rows': invalid_rows,
                 'error_types': error_types, 'processing_time_ms': processing_time_ms,
                 'file_size_bytes': file_size_bytes, 's3_path': s3_path}, (ts, event_id))
            FILTER (WHERE event_type <> 'validation_started') AS t,
        min(ts) AS first_ts,
        arg_min(marketplace, (ts, event_id)) AS any_marketplace
    FROM deduped GROUP BY job_id
)
SELECT
    job_id,
    coalesce(s.user_id, t.user_id) AS user_id,
    coalesce(s.marketplace, t.marketplace, any_marketplace) AS marketplace,
    coalesce(s.category, t.category) AS category,
    coalesce(t.ruleset, s.ruleset) AS ruleset,
    CASE t.event_type WHEN 'validation_completed' THEN 'success' WHEN 'validation_failed' THEN 'failed'
        ELSE 'running' END AS status,
    t.total_rows, t.valid_rows, t.invalid_rows, t.error_types,
    CASE WHEN t.processing_time_ms >= 0 THEN t.processing_time_ms END AS processing_time_ms,
    coalesce(t.file_size_bytes, s.file_size_bytes) AS file_size_bytes,
    coalesce(t.s3_path, s.s3_path) AS s3_path,
    coalesce(s.ts, first_ts) AS created_at,
    t.ts AS completed_at,
    CAST(coalesce(s.ts, first_ts) AS DATE) AS created_date,
    $updated_at AS updated_at
FROM folded
"""

# Typed events carry their lookup keys; the fold reads only the event columns.
_TYPED = pa.schema([f for f in JOB_EVENTS.schema if f.name != "job_date"])
_FOLDED = pa.schema([f for f in _TYPED if f.name not in ("job_key", "event_key")])


def type_events(con: duckdb.DuckDBPyConnection, events: pa.Table) -> pa.Table:
    """Bronze events (already past the expectations) with their payload parsed into typed columns."""
    with registered(con, events=events):
        rows = con.sql(TYPE_SQL).to_arrow_table()
    return rows.cast(_TYPED)


def fold_jobs(con: duckdb.DuckDBPyConnection, events: pa.Table, *, updated_at: object) -> pa.Table:
    """Dedupe typed events by ``event_id`` and fold them into one silver row per ``job_id``."""
    with registered(con, events=events.select(_FOLDED.names)):
        rows = con.sql(FOLD_SQL, params={"updated_at": updated_at}).to_arrow_table()
    return rows.select(SILVER.schema.names).cast(SILVER.schema)


def file_events(con: duckdb.DuckDBPyConnection, events: pa.Table, places: pa.Table) -> pa.Table:
    """Typed events with the ``job_date`` their job is filed under (``places``: job_id, job_date)."""
    query = "SELECT e.*, p.job_date FROM events e JOIN places p USING (job_id)"
    with registered(con, events=events.select(_TYPED.names), places=places):
        rows = con.sql(query).to_arrow_table()
    return rows.select(JOB_EVENTS.schema.names).cast(JOB_EVENTS.schema)

"""Bronze events → one silver row per job (DESIGN.md "Silver and gold semantics", steps 2 to 4).

Pure: events in (Arrow, bronze columns, already past the expectations), job rows out. The whole history of
a job goes in at once, so the fold does not depend on how events were split into batches or ordered.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from vhlake.lake.tables import SILVER
from vhlake.query.arrow_sql import registered

_INT = "CASE WHEN json_type(payload, '$.{f}') IN ('UBIGINT', 'BIGINT') THEN TRY_CAST(json_extract(payload, '$.{f}') AS BIGINT) END"
_STR = "CASE WHEN json_type(payload, '$.{f}') = 'VARCHAR' THEN json_extract_string(payload, '$.{f}') END"
# A map of integers only: a value of another type ("3", 1.5) makes the whole map NULL, as Spark's from_json.
_INT_MAP = r'\{("([^"\\]|\\.)*":-?[0-9]+(,"([^"\\]|\\.)*":-?[0-9]+)*)?\}'

FOLD_SQL = f"""
WITH deduped AS (
    -- the first received copy of an event wins (bronze order: ingestion time, then source position)
    SELECT * FROM events
    QUALIFY row_number() OVER (
        PARTITION BY event_id ORDER BY ingestion_time, source, source_offset) = 1
), typed AS (
    SELECT job_id, event_id, event_type, "timestamp" AS ts, user_id, marketplace, category,
        CASE WHEN json_valid(payload) AND json_type(payload) = 'OBJECT' THEN payload END AS payload
    FROM deduped
), parsed AS (
    SELECT *,
        {_STR.format(f="ruleset")} AS ruleset,
        {_INT.format(f="total_rows")} AS total_rows,
        {_INT.format(f="valid_rows")} AS valid_rows,
        {_INT.format(f="invalid_rows")} AS invalid_rows,
        CASE WHEN regexp_full_match(json_extract(payload, '$.error_types')::VARCHAR, '{_INT_MAP}')
            THEN TRY_CAST(json_extract(payload, '$.error_types') AS MAP(VARCHAR, INTEGER)) END AS error_types,
        {_INT.format(f="processing_time_ms")} AS processing_time_ms,
        {_INT.format(f="file_size_bytes")} AS file_size_bytes,
        {_STR.format(f="s3_path")} AS s3_path
    FROM typed
), starts AS (
    -- the earliest start, ties broken by event_id so the result never depends on arrival order
    SELECT job_id, arg_min(parsed, (ts, event_id)) AS sv
    FROM parsed WHERE event_type = 'validation_started' GROUP BY job_id
), terminals AS (
    SELECT job_id, arg_max(parsed, (ts, event_id)) AS tv
    FROM parsed WHERE event_type IN ('validation_completed', 'validation_failed') GROUP BY job_id
), jobs AS (
    SELECT job_id, min(ts) AS first_ts, arg_min(marketplace, (ts, event_id)) AS any_marketplace
    FROM parsed GROUP BY job_id
)
SELECT
    j.job_id,
    coalesce(s.user_id, t.user_id) AS user_id,
    coalesce(s.marketplace, t.marketplace, j.any_marketplace) AS marketplace,
    coalesce(s.category, t.category) AS category,
    coalesce(t.ruleset, s.ruleset) AS ruleset,
    CASE t.event_type WHEN 'validation_completed' THEN 'success' WHEN 'validation_failed' THEN 'failed'
        ELSE 'running' END AS status,
    t.total_rows, t.valid_rows, t.invalid_rows, t.error_types,
    CASE WHEN t.processing_time_ms >= 0 THEN t.processing_time_ms END AS processing_time_ms,
    coalesce(t.file_size_bytes, s.file_size_bytes) AS file_size_bytes,
    coalesce(t.s3_path, s.s3_path) AS s3_path,
    coalesce(s.ts, j.first_ts) AS created_at,
    t.ts AS completed_at,
    CAST(coalesce(s.ts, j.first_ts) AS DATE) AS created_date,
    $updated_at AS updated_at
FROM jobs j
LEFT JOIN (SELECT job_id, sv AS s FROM starts) st USING (job_id)
LEFT JOIN (SELECT job_id, tv AS t FROM terminals) te USING (job_id)
"""  # noqa: S608


def fold_jobs(con: duckdb.DuckDBPyConnection, events: pa.Table, *, updated_at: object) -> pa.Table:
    """Dedupe events by ``event_id`` and fold them into one silver row per ``job_id``."""
    with registered(con, events=events):
        rows = con.sql(FOLD_SQL, params={"updated_at": updated_at}).to_arrow_table()
    return rows.select(SILVER.schema.names).cast(SILVER.schema)

"""Silver jobs → daily metrics per (date, marketplace, category) (docs/semantics.md, "Gold").

Pure: silver rows of the touched groups in, gold rows out. Percentiles are exact with linear
interpolation (DuckDB ``quantile_cont``, Spark ``percentile``), never approximate.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from vhlake.duck.arrow import registered
from vhlake.lake.tables import GOLD

UNKNOWN_CATEGORY = "unknown"

GOLD_SQL = f"""
SELECT
    created_date AS date,
    marketplace,
    coalesce(category, '{UNKNOWN_CATEGORY}') AS category,
    count(*) AS total_validations,
    count(*) FILTER (WHERE status = 'success') AS successful_validations,
    count(*) FILTER (WHERE status = 'failed') AS failed_validations,
    coalesce(sum(total_rows), 0) AS total_rows_processed,
    avg(processing_time_ms) AS avg_processing_time_ms,
    quantile_cont(processing_time_ms, 0.5) AS p50_processing_time,
    quantile_cont(processing_time_ms, 0.95) AS p95_processing_time,
    quantile_cont(processing_time_ms, 0.99) AS p99_processing_time,
    count(DISTINCT user_id) AS unique_users,
    count(*) FILTER (WHERE status = 'failed') / count(*) AS error_rate,
    year(created_date) AS year,
    month(created_date) AS month,
    $updated_at AS updated_at
FROM jobs
GROUP BY ALL
"""  # noqa: S608


def daily_metrics(con: duckdb.DuckDBPyConnection, jobs: pa.Table, *, updated_at: object) -> pa.Table:
    """Gold rows for every (date, marketplace, category) group present in ``jobs`` (silver rows)."""
    with registered(con, jobs=jobs):
        rows = con.sql(GOLD_SQL, params={"updated_at": updated_at}).to_arrow_table()
    return rows.select(GOLD.schema.names).cast(GOLD.schema)

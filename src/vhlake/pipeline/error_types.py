"""Silver jobs → error types per (date, marketplace, category, error_type) (docs/semantics.md,
"Gold: error types").

Pure: silver rows of the touched (date, marketplace, category) groups in, gold rows out. Each group's rows
depend only on the group's own jobs, so a batch recomputes exactly the groups its jobs were in before and
after the fold, as for ``marketplace_daily_metrics_gold``.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from vhlake.duck.arrow import registered
from vhlake.lake.tables import ERROR_TYPE_GOLD
from vhlake.pipeline.gold import UNKNOWN_CATEGORY

# One row per (job, map entry) whose value is > 0: an entry of 0, a negative count or a NULL reports no
# error of that type, so a key seen only with such values has no row (its share of failed jobs would be
# 0 / 0). A NULL or empty map contributes nothing.
ERROR_TYPE_SQL = f"""
WITH entries AS (
    SELECT created_date, marketplace, category, status, unnest(map_entries(error_types)) AS entry
    FROM jobs
)
SELECT
    created_date AS date,
    marketplace,
    coalesce(category, '{UNKNOWN_CATEGORY}') AS category,
    entry.key AS error_type,
    count(*) AS jobs,
    CAST(sum(entry.value) AS BIGINT) AS occurrences,
    count(*) FILTER (WHERE status = 'failed') / count(*) AS share_of_failed_jobs,
    year(created_date) AS year,
    month(created_date) AS month,
    $updated_at AS updated_at
FROM entries
WHERE entry.value > 0
GROUP BY ALL
"""  # noqa: S608


def error_type_daily(con: duckdb.DuckDBPyConnection, jobs: pa.Table, *, updated_at: object) -> pa.Table:
    """Gold rows for every error type of every (date, marketplace, category) group present in ``jobs``.

    ``jobs`` must hold all of silver's rows of each group it touches (a group is computed from what it is
    given, never adjusted). A group none of whose jobs reports an error (value > 0) yields no row: the
    caller deletes the rows it held.
    """
    with registered(con, jobs=jobs):
        rows = con.sql(ERROR_TYPE_SQL, params={"updated_at": updated_at}).to_arrow_table()
    return rows.select(ERROR_TYPE_GOLD.schema.names).cast(ERROR_TYPE_GOLD.schema)

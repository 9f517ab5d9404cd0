"""Gold groups restated: the rows of ``gold_restatements`` (docs/semantics.md, "Late data and restatements").

Pure: Arrow in, Arrow out, so the embedded pipeline and the Spark jobs compute the same rows. A range's
restatements come from what it is about to MERGE into ``marketplace_daily_metrics_gold``: the stored rows
of the groups it touches, the rows recomputed for them, the range's new events counted per group, and
the groups' first writes recorded by earlier restatements. A group is restated when it was stored before
and its values change (any column but ``updated_at``: what the gold MERGE compares), deleted included.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow as pa

from vhlake.duck.arrow import registered
from vhlake.lake.tables import GOLD, GOLD_RESTATEMENTS, UTC_MICROS
from vhlake.pipeline.gold import UNKNOWN_CATEGORY
from vhlake.pipeline.gold_groups import GROUP_KEYS

# The range's new events per gold group: how many, and the earliest timestamp among them.
EVENT_COUNTS = pa.schema(
    [
        GOLD.schema.field("date"),
        GOLD.schema.field("marketplace"),
        GOLD.schema.field("category"),
        pa.field("events", pa.int64(), nullable=False),
        pa.field("earliest", UTC_MICROS),
    ]
)
# What a restatement compares: every gold value (the keys match, year and month follow the date, and
# ``updated_at`` is when, not what); the gold MERGE rewrites a row exactly when one of them differs.
COMPARED = tuple(
    name for name in GOLD.schema.names if name not in (*GROUP_KEYS, "year", "month", "updated_at")
)
_SAME_GROUP = " AND ".join(f"o.{key} = n.{key}" for key in GROUP_KEYS)
_UNCHANGED = " AND ".join(f"o.{name} IS NOT DISTINCT FROM n.{name}" for name in COMPARED)

# Per event id the first received copy (bronze order, as the fold takes it), of the range's events its
# jobs' stored history does not hold already: an event received again changes nothing, so it is not counted.
EVENTS_BY_GROUP_SQL = f"""
WITH fresh AS (
    SELECT event_id,
        arg_min({{'job_id': job_id, 'ts': "timestamp"}}, (ingestion_time, source, source_offset)) AS e
    FROM events ANTI JOIN stored USING (event_id)
    GROUP BY event_id
), per_job AS (
    SELECT e.job_id AS job_id, count(*) AS events, min(e.ts) AS earliest FROM fresh GROUP BY ALL
), job_groups AS (
    SELECT DISTINCT job_id, created_date AS date, marketplace,
        coalesce(category, '{UNKNOWN_CATEGORY}') AS category
    FROM jobs
)
SELECT g.date, g.marketplace, g.category, sum(p.events)::BIGINT AS events, min(p.earliest) AS earliest
FROM per_job p JOIN job_groups g USING (job_id)
GROUP BY ALL
"""  # noqa: S608

RESTATEMENTS_SQL = f"""
WITH old AS (
    SELECT s.* FROM stored s SEMI JOIN groups USING (date, marketplace, category)
), changed AS (
    SELECT o.*, n.total_validations AS n_total, n.error_rate AS n_error_rate,
        n.p95_processing_time AS n_p95
    FROM old o LEFT JOIN recomputed n ON {_SAME_GROUP}
    WHERE n.total_validations IS NULL OR NOT ({_UNCHANGED})
), first_writes AS (
    SELECT date, marketplace, category, min(first_written_at) AS first_written_at
    FROM earlier GROUP BY ALL
), dated AS (
    SELECT c.*, coalesce(f.first_written_at, c.updated_at) AS first_written_at
    FROM changed c LEFT JOIN first_writes f USING (date, marketplace, category)
)
SELECT $run_id AS run_id, $bronze_version AS bronze_version, $restated_at AS restated_at,
    d.date, d.marketplace, d.category, d.first_written_at,
    d.total_validations AS previous_total_validations,
    coalesce(d.n_total, 0) AS new_total_validations,
    d.error_rate AS previous_error_rate, d.n_error_rate AS new_error_rate,
    d.p95_processing_time AS previous_p95_processing_time, d.n_p95 AS new_p95_processing_time,
    coalesce(e.events, 0) AS events,
    (epoch_us(d.first_written_at) - epoch_us(e.earliest)) / 1e6 AS max_lateness_s,
    year(d.date) AS year, month(d.date) AS month
FROM dated d LEFT JOIN counted e USING (date, marketplace, category)
ORDER BY d.date, d.marketplace, d.category
"""  # noqa: S608


def events_by_group(
    con: duckdb.DuckDBPyConnection, events: pa.Table, stored: pa.Table, jobs: pa.Table
) -> pa.Table:
    """The range's new ``events`` (typed events) counted per gold group their job is in, before or after
    the range (``jobs``: the jobs' silver rows, both), with the earliest timestamp among them (EVENT_COUNTS).
    ``stored``: the ``event_id`` of the events the jobs' stored history holds."""
    with registered(con, events=events, stored=stored.select(["event_id"]), jobs=jobs):
        rows = con.sql(EVENTS_BY_GROUP_SQL).to_arrow_table()
    return rows.cast(EVENT_COUNTS)


def no_events() -> pa.Table:
    """EVENT_COUNTS without a row: where the events behind a change are not known (an erasure)."""
    return EVENT_COUNTS.empty_table()


def restatements(
    con: duckdb.DuckDBPyConnection,
    *,
    groups: pa.Table,
    stored: pa.Table,
    recomputed: pa.Table,
    counted: pa.Table,
    earlier: pa.Table,
    run_id: str,
    bronze_version: int,
    restated_at: datetime,
) -> pa.Table:
    """The ``gold_restatements`` rows of a change of the gold ``groups`` (date, marketplace, category).

    ``stored``: gold's rows of those groups before the change (others are ignored); ``recomputed``: the
    rows after it (a group without one is deleted); ``counted``: the events behind it per group
    (EVENT_COUNTS); ``earlier``: the ``gold_restatements`` rows already recorded for the groups, whose
    earliest ``first_written_at`` is the group's first write (a group never restated keeps the
    ``updated_at`` of its first write, as a MERGE leaves unchanged rows alone). ``con`` must be in UTC.
    """
    tables = {
        "groups": groups.select(list(GROUP_KEYS)),
        "stored": stored.select(GOLD.schema.names),
        "recomputed": recomputed.select(GOLD.schema.names),
        "counted": counted.select(EVENT_COUNTS.names),
        "earlier": earlier.select([*GROUP_KEYS, "first_written_at"]),
    }
    params = {"run_id": run_id, "bronze_version": bronze_version, "restated_at": restated_at}
    with registered(con, **tables):
        rows = con.sql(RESTATEMENTS_SQL, params=params).to_arrow_table()
    return rows.select(GOLD_RESTATEMENTS.schema.names).cast(GOLD_RESTATEMENTS.schema)

"""A peer: bronze → silver → gold in chDB (embedded ClickHouse), one SQL statement per layer, over a Parquet
export of bronze.

vhlake's semantics (docs/semantics.md) in ClickHouse's dialect, as a ClickHouse user would write them:
a chDB session with ClickHouse's defaults (every core), ``INSERT INTO FUNCTION file(..., Parquet)
SELECT ... FROM file(..., Parquet)`` per layer. Silver drops what breaks an expectation, types the payload
strictly, keeps the first received copy of each ``event_id`` and folds each job into one row; gold is
the daily metrics with exact percentiles, read back from that silver. Nothing of vhlake is imported: the
statements below are a translation, held to vhlake's gold by ``bench/run.py`` (and its tests).

Written as ClickHouse runs fast, as a ClickHouse user would: copies are dropped with ``LIMIT 1 BY``, each
job's start and terminal event are found with ``row_number()`` windows and taken column by column with
``anyIf``, and only those two payloads per job are parsed. The straight translation of vhlake's fold
(``argMin`` of a tuple by a ``(timestamp, event_id)`` tuple, per event and per job) takes ClickHouse's
generic, boxed aggregate path: measured at 1M events, it cost more than twice the CPU of these statements.

Where ClickHouse's dialect shows through (tests/test_bench_peers.py holds silver to vhlake's on edge cases):

- the percentiles are ``quantileExactInclusive``: exact, linear interpolation between the two closest
  ranks (h = (n - 1)·p), the definition of DuckDB's ``quantile_cont`` and Spark's ``percentile`` that
  gold uses (``quantileExact`` would be a lower median, ``quantileExactExclusive`` h = (n + 1)·p - 1);
- payload types are read from ClickHouse's JSON parser (``JSONType``), never from the re-serialised text
  (``JSONExtractRaw`` writes 1e3 as 1000); its parser takes an integer beyond 64 bits as a string, so such
  a number in ``ruleset`` or ``s3_path`` would be kept as its digits where vhlake keeps NULL;
- a Map cannot be NULL in ClickHouse: an ``error_types`` vhlake leaves NULL (no terminal event, or a
  value that is not a 32-bit integer) is an empty map in this silver. Gold does not read it.

    python bench/chdb_build.py BRONZE_PARQUET_DIR GOLD_PARQUET_DIR [--silver SILVER_DIR]
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from chdb import session

from peer_cli import peer_main

# The expectations (docs/semantics.md, "Quarantine"): a NULL verdict breaks a rule, trimBoth trims spaces
# only (as DuckDB's trim), length() counts bytes. Canary events stop at bronze.
PASSES = """
    coalesce(trimBoth(event_id), '') != ''
    AND coalesce(trimBoth(job_id), '') != ''
    AND coalesce(trimBoth(marketplace), '') != ''
    AND coalesce(event_type IN ('validation_started', 'validation_completed', 'validation_failed'), false)
    AND timestamp IS NOT NULL
    AND coalesce(length(payload), 0) <= 1048576
    AND coalesce(source_system, '') != 'vhlake-canary'
"""

# Payload fields, typed strictly on the JSON parser's own types: an integer only when it is one that fits
# in 64 bits ("12", 1.5, 1e3 and true are not), a string only when it is one. {side} is the start (s) or
# the terminal event (t): only their two payloads per job are typed, after the fold has picked them.
_INT = "if({side}_object AND JSONType({side}_json, '{field}') = 'Int64', JSONExtractInt({side}_json, '{field}'), NULL)"
_STRING = "if({side}_object AND JSONType({side}_json, '{field}') = 'String', JSONExtractString({side}_json, '{field}'), NULL)"
# error_types: an object whose every value is an integer that fits in 32 bits (else no map at all).
_ERROR_TYPES = """
    if(t_object AND JSONType(t_json, 'error_types') = 'Object'
            AND arrayAll(k -> JSONType(t_json, 'error_types', k) = 'Int64', JSONExtractKeys(t_json, 'error_types'))
            AND arrayAll(v -> v BETWEEN -2147483648 AND 2147483647,
                mapValues(JSONExtract(t_json, 'error_types', 'Map(String, Int64)'))),
        CAST(JSONExtract(t_json, 'error_types', 'Map(String, Int64)') AS Map(String, Int32)),
        map())
"""


def _typed(kind: str, side: str, field: str) -> str:
    """``field`` of the ``side`` payload (``s``: the start, ``t``: the terminal event), ``kind`` int or string."""
    return (_INT if kind == "int" else _STRING).format(side=side, field=field)


SILVER_SQL = f"""
INSERT INTO FUNCTION file({{silver:String}}, Parquet)
WITH events AS (
    -- the first received copy of each event wins (bronze order: ingestion time, then source position)
    SELECT job_id, event_id, event_type, timestamp AS ts, user_id, marketplace, category,
        ifNull(payload, '') AS json
    FROM file({{bronze:String}}, Parquet)
    WHERE {PASSES}
    ORDER BY event_id, ingestion_time, source, source_offset
    LIMIT 1 BY event_id
), ranked AS (
    -- each event's rank in its job, and among its job's starts or among its other (terminal) events,
    -- from the earliest and from the latest: ties on the timestamp broken by event_id
    SELECT *, event_type = 'validation_started' AS started,
        row_number() OVER (PARTITION BY job_id ORDER BY ts, event_id) AS rank,
        row_number() OVER (PARTITION BY job_id, started ORDER BY ts, event_id) AS from_first,
        row_number() OVER (PARTITION BY job_id, started ORDER BY ts DESC, event_id DESC) AS from_last
    FROM events
), picked AS (
    -- per job: its earliest event, its earliest start (s_) and its latest terminal event (t_); one column
    -- per aggregate, as any() of a tuple is many times slower in ClickHouse than of plain columns
    SELECT job_id,
        anyIf(ts, rank = 1) AS first_ts,
        anyIf(marketplace, rank = 1) AS first_marketplace,
        anyIf(ts, started AND from_first = 1) AS s_ts,
        anyIf(user_id, started AND from_first = 1) AS s_user_id,
        anyIf(marketplace, started AND from_first = 1) AS s_marketplace,
        anyIf(category, started AND from_first = 1) AS s_category,
        ifNull(anyIf(json, started AND from_first = 1), '') AS s_json,
        isValidJSON(s_json) AND startsWith(trimLeft(s_json), '{{') AS s_object,
        anyIf(ts, NOT started AND from_last = 1) AS t_ts,
        anyIf(event_type, NOT started AND from_last = 1) AS t_event_type,
        anyIf(user_id, NOT started AND from_last = 1) AS t_user_id,
        anyIf(marketplace, NOT started AND from_last = 1) AS t_marketplace,
        anyIf(category, NOT started AND from_last = 1) AS t_category,
        ifNull(anyIf(json, NOT started AND from_last = 1), '') AS t_json,
        isValidJSON(t_json) AND startsWith(trimLeft(t_json), '{{') AS t_object
    FROM ranked WHERE rank = 1 OR from_first = 1 OR from_last = 1
    GROUP BY job_id
), typed AS (
    SELECT *,
        {_typed("string", "s", "ruleset")} AS s_ruleset,
        {_typed("int", "s", "file_size_bytes")} AS s_file_size_bytes,
        {_typed("string", "s", "s3_path")} AS s_s3_path,
        {_typed("string", "t", "ruleset")} AS t_ruleset,
        {_typed("int", "t", "total_rows")} AS t_total_rows,
        {_typed("int", "t", "valid_rows")} AS t_valid_rows,
        {_typed("int", "t", "invalid_rows")} AS t_invalid_rows,
        {_ERROR_TYPES} AS t_error_types,
        {_typed("int", "t", "processing_time_ms")} AS t_processing_time_ms,
        {_typed("int", "t", "file_size_bytes")} AS t_file_size_bytes,
        {_typed("string", "t", "s3_path")} AS t_s3_path
    FROM picked
)
SELECT
    job_id,
    coalesce(s_user_id, t_user_id) AS user_id,
    coalesce(s_marketplace, t_marketplace, first_marketplace) AS marketplace,
    coalesce(s_category, t_category) AS category,
    coalesce(t_ruleset, s_ruleset) AS ruleset,
    multiIf(t_event_type = 'validation_completed', 'success', t_event_type = 'validation_failed', 'failed',
        'running') AS status,
    t_total_rows AS total_rows, t_valid_rows AS valid_rows, t_invalid_rows AS invalid_rows,
    t_error_types AS error_types,
    if(t_processing_time_ms >= 0, t_processing_time_ms, NULL) AS processing_time_ms,
    coalesce(t_file_size_bytes, s_file_size_bytes) AS file_size_bytes,
    coalesce(t_s3_path, s_s3_path) AS s3_path,
    coalesce(s_ts, first_ts) AS created_at,
    t_ts AS completed_at,
    toDate32(coalesce(s_ts, first_ts)) AS created_date,
    {{updated_at:DateTime64(6, 'UTC')}} AS updated_at
FROM typed
SETTINGS engine_file_truncate_on_insert = 1
"""

GOLD_SQL = """
INSERT INTO FUNCTION file({gold:String}, Parquet)
SELECT
    created_date AS date,
    marketplace,
    category,
    count() AS total_validations,
    countIf(status = 'success') AS successful_validations,
    countIf(status = 'failed') AS failed_validations,
    ifNull(sum(total_rows), 0) AS total_rows_processed,
    avg(processing_time_ms) AS avg_processing_time_ms,
    quantileExactInclusive(0.5)(processing_time_ms) AS p50_processing_time,
    quantileExactInclusive(0.95)(processing_time_ms) AS p95_processing_time,
    quantileExactInclusive(0.99)(processing_time_ms) AS p99_processing_time,
    uniqExact(user_id) AS unique_users,
    countIf(status = 'failed') / count() AS error_rate,
    toInt32(toYear(created_date)) AS year,
    toInt32(toMonth(created_date)) AS month,
    {updated_at:DateTime64(6, 'UTC')} AS updated_at
FROM (
    -- a job without a category is counted under 'unknown'
    SELECT * REPLACE (ifNull(category, 'unknown') AS category) FROM file({silver:String}, Parquet)
)
GROUP BY created_date, marketplace, category
SETTINGS engine_file_truncate_on_insert = 1
"""


def build(bronze_dir: Path, silver_dir: Path, gold_dir: Path, *, updated_at: datetime) -> None:
    """Bronze Parquet files → silver.parquet → gold.parquet. Paths and the time are bound as query
    parameters (``{name:Type}``), which ClickHouse's ``file`` table function accepts as its path."""
    silver, gold = silver_dir / "silver.parquet", gold_dir / "gold.parquet"
    for directory in (silver_dir, gold_dir):
        directory.mkdir(parents=True, exist_ok=True)
    stamp = updated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    chdb = session.Session()
    try:
        chdb.query("SET session_timezone = 'UTC'")  # a date of a timestamp is its UTC date, as in vhlake
        clock = time.perf_counter()
        bronze = str(bronze_dir / "*.parquet")
        chdb.query(SILVER_SQL, params={"bronze": bronze, "silver": str(silver), "updated_at": stamp})
        silver_s = time.perf_counter() - clock
        chdb.query(GOLD_SQL, params={"silver": str(silver), "gold": str(gold), "updated_at": stamp})
        total = time.perf_counter() - clock
    finally:
        chdb.close()
    print(
        f"chdb build {total:.2f} s (silver {silver_s:.2f} s, gold {total - silver_s:.2f} s)", file=sys.stderr
    )


if __name__ == "__main__":
    peer_main(build, name="chdb", description=__doc__)

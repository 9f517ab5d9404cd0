"""A peer: bronze → silver → gold in plain DuckDB, one SQL statement per layer, over a Parquet export of bronze.

What a DuckDB user would write for vhlake's semantics (docs/semantics.md): an in-memory database with
DuckDB's defaults (every core, its own memory limit), one ``COPY (SELECT ...) TO`` per layer. Silver drops
what breaks an expectation, types the payload strictly, keeps the first received copy of each
``event_id`` and folds each job into one row; gold is the daily metrics, read back from that silver.

It shares only plain SQL with vhlake, never its pipeline code, native library, spill or Delta writer:
the expectations' predicates (``DEFAULT_EXPECTATIONS``, DuckDB predicates over bronze columns) and gold's
statement (``GOLD_SQL``, DuckDB SQL over a table named ``jobs``) are vhlake's own text, so the rules
cannot drift. The silver statement is written here: vhlake's ``TYPE_SQL`` also computes the lookup keys of
its job-events index, which silver does not need, and its ``FOLD_SQL`` reads typed events under the
same name ``TYPE_SQL`` reads bronze under, so the two do not compose into one statement. Run by
``bench/run.py`` in its own process so its peak memory is measured apart:

    python bench/duckdb_build.py BRONZE_PARQUET_DIR GOLD_PARQUET_DIR [--silver SILVER_DIR]
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb

from peer_cli import peer_main
from vhlake.pipeline.expectations import DEFAULT_EXPECTATIONS
from vhlake.pipeline.gold import GOLD_SQL

# An event is kept when it breaks no quarantine rule (a NULL verdict breaks it). The default rules are all
# quarantine rules; a `warn` rule keeps its events, so it filters nothing here.
PASSES = " AND ".join(
    f"coalesce(({rule.predicate}), false)" for rule in DEFAULT_EXPECTATIONS if rule.action == "quarantine"
)

# Integers only ("12", 1.5 and 1e3 are not; out of range is NULL), strings only, and a map whose every
# value is an integer that fits in 32 bits: each decided on the field's JSON text, parsed once per payload.
_INT = "CASE WHEN regexp_full_match(f.{0}::VARCHAR, '-?[0-9]+') THEN TRY_CAST(f.{0}::VARCHAR AS BIGINT) END"
_STRING = "CASE WHEN json_type(f.{0}) = 'VARCHAR' THEN f.{0} ->> '$' END"
_INT_MAP = r'\{("([^"\\]|\\.)*":-?[0-9]+(,"([^"\\]|\\.)*":-?[0-9]+)*)?\}'

SILVER_SQL = f"""
COPY (
WITH passed AS (
    -- the expectations (failing events go to the quarantine); canary events stop at bronze
    SELECT * FROM read_parquet($bronze)
    WHERE {PASSES} AND source_system IS DISTINCT FROM 'vhlake-canary'
), repeated AS (
    -- the first received copy of an event wins (bronze order); repeated ids are few, so only they are grouped
    SELECT event_id, min((ingestion_time, source, source_offset)) AS first_copy
    FROM passed GROUP BY event_id HAVING count(*) > 1
), events AS (
    SELECT p.*,
        CASE WHEN json_valid(payload) AND starts_with(ltrim(payload), '{{')
            THEN json_transform(payload, '{{"ruleset": "JSON", "total_rows": "JSON", "valid_rows": "JSON",
                "invalid_rows": "JSON", "error_types": "JSON", "processing_time_ms": "JSON",
                "file_size_bytes": "JSON", "s3_path": "JSON"}}') END AS f
    FROM passed p
    ANTI JOIN repeated r ON p.event_id = r.event_id
        AND (p.ingestion_time, p.source, p.source_offset) <> r.first_copy
), typed AS (
    SELECT job_id, event_id, event_type, "timestamp" AS ts, user_id, marketplace, category,
        {_STRING.format("ruleset")} AS ruleset,
        {_INT.format("total_rows")} AS total_rows,
        {_INT.format("valid_rows")} AS valid_rows,
        {_INT.format("invalid_rows")} AS invalid_rows,
        CASE WHEN regexp_full_match(f.error_types::VARCHAR, '{_INT_MAP}')
            AND list_count(map_values(TRY_CAST(f.error_types AS MAP(VARCHAR, INTEGER))))
                = cardinality(TRY_CAST(f.error_types AS MAP(VARCHAR, INTEGER)))
            THEN TRY_CAST(f.error_types AS MAP(VARCHAR, INTEGER)) END AS error_types,
        {_INT.format("processing_time_ms")} AS processing_time_ms,
        {_INT.format("file_size_bytes")} AS file_size_bytes,
        {_STRING.format("s3_path")} AS s3_path
    FROM events
), folded AS (
    -- per job: its earliest start and its latest other (terminal) event, ties broken by event_id
    SELECT job_id,
        arg_min({{'ts': ts, 'user_id': user_id, 'marketplace': marketplace, 'category': category,
                 'ruleset': ruleset, 'file_size_bytes': file_size_bytes, 's3_path': s3_path}}, (ts, event_id))
            FILTER (WHERE event_type = 'validation_started') AS s,
        arg_max({{'ts': ts, 'event_type': event_type, 'user_id': user_id, 'marketplace': marketplace,
                 'category': category, 'ruleset': ruleset, 'total_rows': total_rows, 'valid_rows': valid_rows,
                 'invalid_rows': invalid_rows, 'error_types': error_types,
                 'processing_time_ms': processing_time_ms, 'file_size_bytes': file_size_bytes,
                 's3_path': s3_path}}, (ts, event_id))
            FILTER (WHERE event_type <> 'validation_started') AS t,
        min(ts) AS first_ts,
        arg_min(marketplace, (ts, event_id)) AS first_marketplace
    FROM typed GROUP BY job_id
)
SELECT
    job_id,
    coalesce(s.user_id, t.user_id) AS user_id,
    coalesce(s.marketplace, t.marketplace, first_marketplace) AS marketplace,
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
) TO $silver (FORMAT parquet)
"""

# vhlake's gold statement reads a table named `jobs`: here, silver as just written.
GOLD_FROM_SILVER_SQL = f"""
COPY (
WITH jobs AS (FROM read_parquet($silver))
{GOLD_SQL}
) TO $gold (FORMAT parquet)
"""


def build(bronze_dir: Path, silver_dir: Path, gold_dir: Path, *, updated_at: datetime) -> None:
    """Bronze Parquet files → silver.parquet → gold.parquet (paths bound as parameters: DuckDB binds them
    in ``read_parquet`` and ``COPY ... TO``)."""
    silver, gold = silver_dir / "silver.parquet", gold_dir / "gold.parquet"
    for directory in (silver_dir, gold_dir):
        directory.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")  # a date of a timestamp is its UTC date, as in vhlake
        clock = time.perf_counter()
        bronze = str(bronze_dir / "*.parquet")
        con.execute(SILVER_SQL, {"bronze": bronze, "silver": str(silver), "updated_at": updated_at})
        silver_s = time.perf_counter() - clock
        con.execute(
            GOLD_FROM_SILVER_SQL, {"silver": str(silver), "gold": str(gold), "updated_at": updated_at}
        )
    total = time.perf_counter() - clock
    print(
        f"duckdb build {total:.2f} s (silver {silver_s:.2f} s, gold {total - silver_s:.2f} s)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    peer_main(build, name="duckdb", description=__doc__)

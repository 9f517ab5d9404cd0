"""The reference peer: bronze → silver → gold in PySpark (local[2]), the straightforward way.

Same semantics as vhlake (DESIGN.md "Silver and gold semantics"), written as a Spark user would: one
read of a Parquet export of bronze, DataFrame SQL, exact ``percentile``. Run by ``bench/run.py`` in its
own process so its peak memory (JVM included) is measured apart:

    python bench/spark_build.py BRONZE_PARQUET_DIR GOLD_PARQUET_DIR
"""

from __future__ import annotations

import sys
import time

from pyspark.sql import SparkSession

PAYLOAD = (
    "ruleset STRING, total_rows BIGINT, valid_rows BIGINT, invalid_rows BIGINT, "
    "error_types MAP<STRING, INT>, processing_time_ms BIGINT, file_size_bytes BIGINT, s3_path STRING"
)

VALID = """
    coalesce(trim(event_id), '') <> '' AND coalesce(trim(job_id), '') <> ''
    AND coalesce(trim(marketplace), '') <> ''
    AND coalesce(event_type IN ('validation_started', 'validation_completed', 'validation_failed'), false)
    AND `timestamp` IS NOT NULL
"""

SILVER = f"""
WITH deduped AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (
            PARTITION BY event_id ORDER BY ingestion_time, source, source_offset) AS copy
        FROM bronze WHERE {VALID}
    ) WHERE copy = 1
), typed AS (
    SELECT job_id, event_id, event_type, `timestamp` AS ts, user_id, marketplace, category,
        from_json(payload, '{PAYLOAD}') AS p
    FROM deduped
), starts AS (
    SELECT job_id, min_by(struct(ts, user_id, marketplace, category, p), struct(ts, event_id)) AS s
    FROM typed WHERE event_type = 'validation_started' GROUP BY job_id
), terminals AS (
    SELECT job_id, max_by(struct(ts, event_type, user_id, marketplace, category, p), struct(ts, event_id)) AS t
    FROM typed WHERE event_type <> 'validation_started' GROUP BY job_id
), jobs AS (
    SELECT job_id, min(ts) AS first_ts, min_by(marketplace, struct(ts, event_id)) AS any_marketplace
    FROM typed GROUP BY job_id
)
SELECT
    j.job_id,
    coalesce(s.user_id, t.user_id) AS user_id,
    coalesce(s.marketplace, t.marketplace, j.any_marketplace) AS marketplace,
    coalesce(s.category, t.category) AS category,
    CASE t.event_type WHEN 'validation_completed' THEN 'success' WHEN 'validation_failed' THEN 'failed'
        ELSE 'running' END AS status,
    t.p.total_rows AS total_rows,
    CASE WHEN t.p.processing_time_ms >= 0 THEN t.p.processing_time_ms END AS processing_time_ms,
    to_date(coalesce(s.ts, j.first_ts)) AS created_date
FROM jobs j
LEFT JOIN starts st ON st.job_id = j.job_id
LEFT JOIN terminals te ON te.job_id = j.job_id
"""

GOLD = """
SELECT
    created_date AS date, marketplace, coalesce(category, 'unknown') AS category,
    count(*) AS total_validations,
    count_if(status = 'success') AS successful_validations,
    count_if(status = 'failed') AS failed_validations,
    coalesce(sum(total_rows), 0) AS total_rows_processed,
    avg(processing_time_ms) AS avg_processing_time_ms,
    percentile(processing_time_ms, 0.5) AS p50_processing_time,
    percentile(processing_time_ms, 0.95) AS p95_processing_time,
    percentile(processing_time_ms, 0.99) AS p99_processing_time,
    count(DISTINCT user_id) AS unique_users,
    count_if(status = 'failed') / count(*) AS error_rate
FROM silver
GROUP BY created_date, marketplace, coalesce(category, 'unknown')
"""


def main(bronze_dir: str, gold_dir: str) -> None:
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("vhlake-bench-reference")
        .config("spark.driver.memory", "6g")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    clock = time.perf_counter()
    spark.read.parquet(bronze_dir).createOrReplaceTempView("bronze")
    spark.sql(SILVER).createOrReplaceTempView("silver")
    spark.sql(GOLD).write.mode("overwrite").parquet(gold_dir)
    print(f"spark build {time.perf_counter() - clock:.2f} s", file=sys.stderr)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

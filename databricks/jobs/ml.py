"""The bundle's ML task: the job anomaly detector (vhlake.spark.ml) over silver, into the anomalies table.

It replaces the job rows of ``anomalies`` (``replaceWhere job_id IS NOT NULL``) and leaves the daily-series
rows alone.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from vhlake.lake.tables import ANOMALIES, SILVER
from vhlake.spark.ml import score_jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalog", default="validahub")
    parser.add_argument("--schema", default="analytics")
    parser.add_argument("--job-days", type=int, default=1)
    parser.add_argument("--train-days", type=int, default=28)
    args = parser.parse_args()
    spark = SparkSession.builder.getOrCreate()
    where = f"{args.catalog}.{args.schema}"
    flagged = score_jobs(
        spark,
        spark.table(f"{where}.{SILVER.name}"),
        today=datetime.now(UTC).date(),
        train_days=args.train_days,
        job_days=args.job_days,
    )
    rows = flagged.select(
        "marketplace",
        "date",
        "metric",
        F.lit(None).cast("double").alias("observed"),
        F.lit(None).cast("double").alias("expected"),
        "z_score",
        "detector",
        F.format_string(
            "job %s: %s %.1f of its cluster's standard deviations out", "job_id", "metric", "z_score"
        ).alias("reason"),
        F.current_timestamp().alias("scored_at"),
        "job_id",
    )
    rows.select(*ANOMALIES.schema.names).write.format("delta").mode("overwrite").option(
        "replaceWhere", "job_id IS NOT NULL"
    ).saveAsTable(f"{where}.{ANOMALIES.name}")


if __name__ == "__main__":
    main()

"""The bundle's ML task: the job anomaly detector (vhlake.spark.ml) over silver, into the anomalies table.

It replaces the job rows of ``anomalies`` (``replaceWhere job_id IS NOT NULL``), leaves the daily-series
rows alone, and records the training run in ``ml_models``.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from pyspark.sql import SparkSession

from vhlake.lake.tables import ANOMALIES, ML_MODELS, SILVER
from vhlake.spark.ml import anomaly_rows, job_features, model_row, score_jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalog", default="validahub")
    parser.add_argument("--schema", default="analytics")
    parser.add_argument("--job-days", type=int, default=1)
    parser.add_argument("--train-days", type=int, default=28)
    parser.add_argument("--k", type=int, default=8, help="K-Means clusters")
    args = parser.parse_args()
    spark = SparkSession.builder.getOrCreate()
    where = f"{args.catalog}.{args.schema}"
    silver = spark.table(f"{where}.{SILVER.name}")
    today, now = datetime.now(UTC).date(), datetime.now(UTC)
    flagged = score_jobs(
        spark, silver, today=today, train_days=args.train_days, job_days=args.job_days, k=args.k
    ).cache()
    scored = job_features(
        spark, silver, since=today - timedelta(days=args.job_days), until=today + timedelta(days=1)
    ).count()
    # mergeSchema: a table created before the contract gained columns (baseline...) gains them, NULL before
    anomaly_rows(flagged, scored_at=now).write.format("delta").mode("overwrite").option(
        "replaceWhere", "job_id IS NOT NULL"
    ).option("mergeSchema", "true").saveAsTable(f"{where}.{ANOMALIES.name}")
    model_row(
        spark,
        today=today,
        train_days=args.train_days,
        k=args.k,
        scored=scored,
        flagged=flagged.count(),
        trained_at=now,
    ).write.format("delta").mode("append").saveAsTable(f"{where}.{ML_MODELS.name}")


if __name__ == "__main__":
    main()

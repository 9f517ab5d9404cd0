"""The reference peer: bronze → silver → gold in PySpark (local[2]), with vhlake's own Spark jobs.

The same semantics as the embedded pipeline (docs/semantics.md), written as a Spark
user would: a read of a Parquet export of bronze, DataFrame SQL, exact ``percentile``
(``vhlake.spark.jobs``, the jobs the Databricks bundle runs). Run by ``bench/run.py`` in its own process
so its peak memory (JVM included) is measured apart:

    python bench/spark_build.py BRONZE_PARQUET_DIR GOLD_PARQUET_DIR
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

from pyspark.sql import SparkSession

from vhlake.spark.jobs import bronze_to_silver, silver_to_gold


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
    clock, now = time.perf_counter(), datetime.now(UTC)
    silver, _ = bronze_to_silver(spark.read.parquet(bronze_dir), updated_at=now)
    gold = silver_to_gold(silver, updated_at=now).drop("updated_at", "year", "month")  # as compared
    gold.write.mode("overwrite").parquet(gold_dir)
    print(f"spark build {time.perf_counter() - clock:.2f} s", file=sys.stderr)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""The bundle's pipeline task: bronze → quarantine + silver → gold with vhlake.spark.jobs, in Delta."""

from __future__ import annotations

import argparse

from pyspark.sql import SparkSession

from vhlake.lake.tables import BRONZE
from vhlake.spark.jobs import build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalog", default="validahub")
    parser.add_argument("--schema", default="analytics")
    args = parser.parse_args()
    spark = SparkSession.builder.getOrCreate()
    bronze = spark.table(f"{args.catalog}.{args.schema}.{BRONZE.name}")
    print(build(bronze, f"{args.catalog}.{args.schema}", fmt="delta", as_tables=True))


if __name__ == "__main__":
    main()

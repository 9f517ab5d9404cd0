"""The bundle's pipeline tasks (vhlake.spark.streams), each an ``availableNow`` stream on Delta:

- ``--step silver``: bronze → quarantine + silver (what bronze gained since the last run);
- ``--step gold``: silver's change data feed → the gold groups it touches.
"""

from __future__ import annotations

import argparse

from pyspark.sql import SparkSession

from vhlake.lake.tables import SILVER
from vhlake.spark.streams import bronze_to_silver_stream, silver_to_gold_stream
from vhlake.spark.tables import DeltaTables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalog", default="validahub")
    parser.add_argument("--schema", default="analytics")
    parser.add_argument("--step", choices=["silver", "gold"], required=True)
    parser.add_argument("--max-files-per-trigger", type=int, default=1_000)
    args = parser.parse_args()

    spark = SparkSession.builder.getOrCreate()
    tables = DeltaTables(spark, catalog=args.catalog, schema=args.schema)
    checkpoints = f"/Volumes/{args.catalog}/{args.schema}/checkpoints"
    if args.step == "silver":
        query = bronze_to_silver_stream(
            tables,
            checkpoint=f"{checkpoints}/bronze_to_silver",
            max_files_per_trigger=args.max_files_per_trigger,
        )
    else:
        query = silver_to_gold_stream(
            tables.changes(SILVER), tables, checkpoint=f"{checkpoints}/silver_to_gold"
        )
    query.awaitTermination()


if __name__ == "__main__":
    main()

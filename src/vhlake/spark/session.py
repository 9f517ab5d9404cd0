"""A SparkSession configured as the jobs expect (UTC, microsecond Parquet timestamps, no UI), on local Spark
or a cluster's master (``spark://host:port``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def local_session(master: str = "local[2]", *, app: str = "vhlake") -> SparkSession:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")  # not INT96: typed readers
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        # A batch reads its files by path (the Delta log lists them): listing hundreds of them is a loop on
        # the driver, not a distributed job of one task per file.
        .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000")
        # Gold's exact percentiles and distinct counts are object aggregates: past this many groups in a
        # task Spark falls back to sorting its input (the default, 128, is below a day's groups).
        .config("spark.sql.objectHashAggregate.sortBased.fallbackThreshold", "100000")
        # Python processes the JVM starts itself (Python data sources, UDTF analysis) run this interpreter
        .config("spark.pyspark.python", sys.executable)
        .config("spark.pyspark.driver.python", sys.executable)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    # Python workers (mapInArrow, on the executors: local, or a cluster's workers) run this interpreter, the
    # one vhlake is installed in, not whichever python3 is first on PATH: each Python function carries it
    # to the executors (pyspark reads only PYSPARK_PYTHON, which we leave to the user). On a cluster, the
    # workers need vhlake installed in a Python at this same path.
    session.sparkContext.pythonExec = sys.executable
    return session

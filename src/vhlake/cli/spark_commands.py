"""``vhlake spark ...``: the pipeline as PySpark jobs, run on local Spark over the lake's bronze."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vhlake import bootstrap
from vhlake.cli.output import err, out

spark_app = typer.Typer(
    help="The pipeline as PySpark jobs (the spark extra and a Java 17 runtime), for Databricks or local Spark.",
    no_args_is_help=True,
)


@spark_app.command("build")
def build_command(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="Where quarantine, silver and gold are written.")],
    fmt: Annotated[
        str, typer.Option("--format", help="parquet, or delta (needs Delta's Spark jars).")
    ] = "parquet",
    master: Annotated[str, typer.Option(help="The Spark master.")] = "local[2]",
) -> None:
    """Run bronze → quarantine + silver → gold as the PySpark jobs do on Databricks, over this lake's
    bronze, writing the tables under --out/<layer>/<table>. They equal what `vhlake pipeline run` builds
    (tests/test_spark_jobs.py)."""
    from vhlake.lake.tables import BRONZE
    from vhlake.spark.jobs import build
    from vhlake.spark.session import local_session

    lake = bootstrap.build_lake(ctx.obj)
    files = lake.local_files(BRONZE)
    if files is None:
        err.print(
            "error: vhlake spark build reads bronze from a local lake; on Databricks the jobs read the table"
        )
        raise typer.Exit(2)
    if not files:
        err.print("error: bronze is empty: vhlake ingest first")
        raise typer.Exit(2)
    spark = local_session(master)
    try:
        bronze = spark.read.option("basePath", lake.table_uri(BRONZE)).parquet(*files)
        counts = build(bronze, str(out_dir), fmt=fmt)
    finally:
        spark.stop()
    out.print(", ".join(f"{table}: {rows:,} rows" for table, rows in counts.items()) + f" under {out_dir}")

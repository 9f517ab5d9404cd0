"""``vhlake spark ...``: the pipeline as PySpark jobs, run on local Spark over the lake's bronze."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vhlake import bootstrap
from vhlake.cli.context import reading
from vhlake.cli.output import err, out

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

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
    """This lake's bronze → quarantine + silver → gold, as one PySpark batch.

    The tables are written under --out/<layer>/<table>; they equal what `vhlake pipeline run` builds
    (tests/test_spark_jobs.py)."""
    from vhlake.lake.tables import BRONZE
    from vhlake.spark.jobs import build

    lake = bootstrap.build_lake(reading(ctx))
    files = lake.local_files(BRONZE)
    if files is None:
        err.print(
            "error: vhlake spark build reads bronze from a local lake; on Databricks the jobs read the table"
        )
        raise typer.Exit(2)
    if not files:
        err.print("error: bronze is empty: vhlake ingest first")
        raise typer.Exit(2)
    spark = _session(master)
    try:
        bronze = spark.read.option("basePath", lake.table_uri(BRONZE)).parquet(*files)
        counts = build(bronze, str(out_dir), fmt=fmt)
    finally:
        spark.stop()
    _print_counts(counts, out_dir)


@spark_app.command("run-all")
def run_all_command(
    events: Annotated[
        Path,
        typer.Option(
            help="A JSON-lines file of events (that file alone), or a directory of *.jsonl files (its own, "
            "not its subfolders')."
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Where the tables and the streams' checkpoints go.")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="delta: --out becomes a Delta lake (the one vhlake query and vhlake pipeline run read).",
        ),
    ] = "delta",
    source_system: Annotated[
        str, typer.Option(help="source_system of events that do not name their own.")
    ] = "vhlake-spark",
    files_per_batch: Annotated[
        int | None, typer.Option(help="At most this many files per micro-batch (default: all new files).")
    ] = None,
    master: Annotated[
        str,
        typer.Option(
            help="local[N], or a standalone cluster's spark://host:port: its workers need vhlake in a Python "
            "at this one's path, and --events and --out at the same paths (one machine, or a shared mount)."
        ),
    ] = "local[2]",
) -> None:
    """Events files → bronze → silver → gold with the streaming jobs, on local Spark or a cluster.

    The jobs run as they do on Databricks, with a file source in place of Kafka: events → bronze (and
    rejects) → quarantine + silver → gold, written as Delta tables (through delta-rs) in the lake --out,
    which vhlake query, vhlake pipeline run and the API read. Run it again after adding files and only the
    new ones are read (the file stream's checkpoint is in --out/_checkpoints).

    Example: vhlake spark run-all --events events.jsonl --out /tmp/vhlake-spark [--master spark://host:7077]"""
    from vhlake.spark.streams import run_all

    if fmt != "delta":
        err.print(
            "error: run-all writes a Delta lake (--format delta); Parquet output is vhlake spark build's. "
            "On Databricks the jobs run on Unity Catalog tables (vhlake databricks render)"
        )
        raise typer.Exit(2)
    if not events.exists():
        err.print(f"error: {events} does not exist")
        raise typer.Exit(2)
    spark = _session(master)
    try:
        counts = run_all(
            spark,
            events.resolve(),
            out_dir.resolve(),
            source_system=source_system,
            max_files_per_trigger=files_per_batch,
            on_stage=lambda stage: err.print(f"[bold]{stage}[/bold]"),
        )
    finally:
        spark.stop()
    _print_counts(counts, out_dir)


def _session(master: str) -> SparkSession:
    """A Spark session on ``master``, or a clear exit when Spark cannot run here."""
    try:
        from pyspark.errors import PySparkRuntimeError

        from vhlake.spark.session import local_session
    except ImportError:
        err.print("error: the spark extra is not installed: pip install 'vhlake[spark]'")
        raise typer.Exit(2) from None
    try:
        return local_session(master)
    except PySparkRuntimeError as exc:
        err.print(
            f"error: Spark did not start ({exc.getCondition()}). It needs a Java 17+ runtime on PATH or in "
            "JAVA_HOME (Debian: apt-get install openjdk-17-jre-headless)"
        )
        raise typer.Exit(2) from None


def _print_counts(counts: dict[str, int], out_dir: Path) -> None:
    out.print(", ".join(f"{table}: {rows:,} rows" for table, rows in counts.items()) + f" under {out_dir}")

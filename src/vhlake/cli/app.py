"""``vhlake``: ingest ValidaHub validation events into the lake and query it.

Every command builds one :class:`~vhlake.settings.Settings` (environment, ``.env``, then ``--lake``) and
turns vhlake errors into one red line and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from vhlake import bootstrap
from vhlake.cli.alerts_commands import alerts_app
from vhlake.cli.context import querying, reading, writing
from vhlake.cli.databricks_commands import databricks_app
from vhlake.cli.kafka_commands import ingest_kafka, outbox_app
from vhlake.cli.keys_commands import keys_app
from vhlake.cli.lifecycle_commands import forget, history, lineage, maintain, print_costs
from vhlake.cli.ml_commands import ml_app
from vhlake.cli.output import (
    OutputFormat,
    err,
    file_progress,
    out,
    print_ingest_report,
    print_table,
    to_csv,
    to_json,
)
from vhlake.cli.pipeline_commands import pipeline_app, quarantine_app
from vhlake.cli.reconcile_command import reconcile
from vhlake.cli.schema_commands import schema_app
from vhlake.cli.serve import serve
from vhlake.cli.spark_commands import spark_app
from vhlake.errors import SourceError, VhlakeError
from vhlake.ingest.bronze import BronzeIngestor, IngestReport
from vhlake.ingest.files import check_json_lines, compression_of, input_files
from vhlake.ingest.log_source import ingest_log
from vhlake.lake.tables import ALL_TABLES
from vhlake.settings import Settings

app = typer.Typer(
    name="vhlake",
    help=(
        "ValidaHub's telemetry lakehouse. Ingest validation events into Delta tables "
        "(bronze, rejects) exactly once and query them with SQL.\n\n"
        "Example: vhlake ingest events.jsonl && vhlake query "
        '"SELECT marketplace, count(*) FROM validation_events_bronze GROUP BY 1"'
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(outbox_app, name="outbox")
app.command()(serve)
app.add_typer(keys_app, name="keys")
app.add_typer(alerts_app, name="alerts")
app.add_typer(ml_app, name="ml")
app.add_typer(spark_app, name="spark")
app.add_typer(databricks_app, name="databricks")
app.add_typer(schema_app, name="schema")
app.command()(maintain)
app.command()(forget)
app.command()(lineage)
app.command()(history)
app.command()(reconcile)


@app.callback()
def _root(
    ctx: typer.Context,
    lake: Annotated[
        str | None,
        typer.Option(
            "--lake",
            help="Lake location (folder or s3://...); overrides VHLAKE_LAKE_URI.",
            show_default=False,
        ),
    ] = None,
) -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        err.print(f"[red]error:[/red] invalid settings: {exc.errors()[0]['msg']} ({exc.errors()[0]['loc']})")
        raise typer.Exit(2) from exc
    ctx.obj = settings if lake is None else settings.model_copy(update={"lake_uri": lake})


@app.command()
def ingest(
    ctx: typer.Context,
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Newline-delimited JSON files of events (plain, gzip or zstd), or directories of them.",
            show_default=False,
        ),
    ] = None,
    from_log: Annotated[bool, typer.Option("--from-log", help="Also drain the embedded event log.")] = False,
    kafka: Annotated[
        bool,
        typer.Option(
            "--kafka",
            help="Consume KAFKA_VALIDATION_TOPIC from KAFKA_BOOTSTRAP_SERVERS as KAFKA_CONSUMER_GROUP "
            "until Ctrl-C (or --until-idle).",
        ),
    ] = False,
    until_idle: Annotated[
        float | None,
        typer.Option(
            "--until-idle", help="With --kafka: stop after this many seconds without a message.", min=0
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option("--group", help="With --kafka: the consumer group (default KAFKA_CONSUMER_GROUP)."),
    ] = None,
    connect_timeout: Annotated[
        float,
        typer.Option(
            "--connect-timeout", help="With --kafka: give up when the broker does not answer.", min=0.1
        ),
    ] = 10.0,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="With --kafka: show the Kafka client's own log lines.")
    ] = False,
) -> None:
    """Ingest events into bronze exactly once (re-ingesting a file adds nothing).

    Lines that are not JSON objects go to validation_events_rejected with the reason; unknown or
    mistyped fields are kept in _rescued_data. A crashed ingest resumes where it stopped.

    With --kafka, each partition resumes after the last offset the Delta log holds; several
    `vhlake ingest --kafka` processes in one group share the partitions without duplicates.
    """
    if not files and not from_log and not kafka:
        err.print("[red]error:[/red] give one or more FILES, --from-log or --kafka")
        raise typer.Exit(2)
    paths = input_files(files or [])
    for path in paths:  # every file checked before anything is written: rejects are for good
        check_json_lines(path)
    settings = writing(ctx)
    ingestor = bootstrap.build_ingestor(settings)
    for path in paths:
        started = time.perf_counter()
        report = _ingest_with_progress(ingestor, path)
        print_ingest_report(path.name, report, time.perf_counter() - started)
    if from_log:
        started = time.perf_counter()
        with bootstrap.open_event_log(settings) as log:
            report = ingest_log(ingestor, log)
        print_ingest_report(f"event log {log.topic}", report, time.perf_counter() - started)
    if kafka:
        ingest_kafka(
            settings, until_idle_s=until_idle, group=group, connect_timeout_s=connect_timeout, verbose=verbose
        )


def _ingest_with_progress(ingestor: BronzeIngestor, path: Path) -> IngestReport:
    size = path.stat().st_size
    # A compressed file advances by its decompressed bytes, whose total is unknown before reading it.
    total = None if compression_of(path) else size
    with file_progress(show=size >= 8 * 1024 * 1024) as progress:
        task = progress.add_task(path.name, total=total)
        return ingestor.ingest_file(path, on_progress=lambda advance: progress.advance(task, advance))


@app.command()
def query(
    ctx: typer.Context,
    sql: Annotated[str, typer.Argument(help="One SQL statement in the Databricks dialect.")],
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output format.")
    ] = OutputFormat.table,
    max_rows: Annotated[int, typer.Option(help="Rows shown by --format table.", min=1)] = 100,
    engine_name: Annotated[
        str | None,
        typer.Option(
            "--engine",
            help="duckdb (the embedded lake) or databricks (a SQL warehouse); default VHLAKE_QUERY_ENGINE.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run SQL over the lake: every lake table by its Databricks name (`vhlake tables`; docs/tables.md).

    --format json prints a JSON array of row objects (dates and timestamps as ISO-8601 strings);
    --format csv prints CSV with a header. Delta time travel works as on Databricks:
    `SELECT count(*) FROM validation_results_silver VERSION AS OF 3` (or TIMESTAMP AS OF '2026-11-27').
    """
    engine = bootstrap.build_query_engine(querying(ctx, engine_name), engine_name)
    try:
        result = engine.execute(sql)
    finally:
        engine.close()
    if output_format is OutputFormat.json:
        sys.stdout.buffer.write(to_json(result) + b"\n")
    elif output_format is OutputFormat.csv:
        sys.stdout.buffer.write(to_csv(result))
    else:
        print_table(out, result, max_rows=max_rows, more="use --max-rows or --format json/csv")


@app.command()
def tables(
    ctx: typer.Context,
    sizes: Annotated[
        bool, typer.Option("--sizes", help="Per partition: files, rows, bytes, and the growth per day.")
    ] = False,
    max_rows: Annotated[int, typer.Option(help="With --sizes: partitions shown per table.", min=1)] = 40,
    costs: Annotated[
        bool,
        typer.Option(
            "--costs",
            help="What the store holds per layer and storage tier (hot, warm, cold), and its monthly cost "
            "at VHLAKE_PRICE_*_GB_MONTH, next to the same bytes all hot.",
        ),
    ] = False,
) -> None:
    """List the lake's tables: rows, Delta version, files and size (--sizes: per layer and partition;
    --costs: bytes per layer and storage tier, and what they cost a month)."""
    from vhlake.lake.inventory import daily_growth, partition_sizes, table_inventory

    settings = reading(ctx)
    lake = bootstrap.build_lake(settings)
    print_table(out, table_inventory(lake, ALL_TABLES), max_rows=1000)
    if costs:
        print_costs(bootstrap.storage_costs(settings))
    if not sizes:
        return
    for table in ALL_TABLES:
        parts = partition_sizes(lake, table)
        if parts.num_rows == 0:
            continue
        growth = daily_growth(parts)
        per_day = f", {growth / 2**20:,.1f} MiB a day over the last 7 days" if growth is not None else ""
        print_table(
            out, parts, max_rows=max_rows, title=f"{table.layer}/{table.name}{per_day}", more="use --max-rows"
        )


@app.command()
def publish(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Newline-delimited JSON files of events to publish.")],
) -> None:
    """Validate events and publish them to the configured event log (VHLAKE_EVENT_LOG=embedded|kafka).

    Invalid events are listed and not published; valid ones count as delivered only once stored
    durably. With Kafka unreachable, events wait in the local outbox (vhlake outbox status) and are
    re-sent when it is back. Exits with 1 when the log refused any event.
    """
    from vhlake.cli.publish import publish_files, warn_if_ingested_from_file

    for path in files:
        if not path.is_file():
            raise SourceError(f"{path}: {'a directory' if path.is_dir() else 'no such file'}")
    settings = writing(ctx)
    warn_if_ingested_from_file(bootstrap.build_lake(settings), files, err=err)
    summary = publish_files(bootstrap.build_publisher(settings), files, out=out, err=err)
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def demo(
    ctx: typer.Context,
    events: Annotated[int, typer.Option(help="About how many sample events to generate.", min=10)] = 200_000,
    serve: Annotated[
        bool, typer.Option("--serve", help="Then serve the dashboard and the API on http://127.0.0.1:8000.")
    ] = False,
) -> None:
    """Generate a realistic sample feed, ingest it (file and event log) and show the lake."""
    from vhlake.cli.demo import run_demo

    run_demo(writing(ctx), events=events, out=out, err=err, serve=serve)


def main() -> None:
    """Console entry point: vhlake errors become one line on stderr and exit code 1."""
    try:
        app(args=hoist_lake_option(sys.argv[1:]))
    except VhlakeError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)  # one line, however long
        sys.exit(1)


def hoist_lake_option(args: list[str]) -> list[str]:
    """``--lake L`` wherever it is given (``vhlake tables --lake L``), moved before the subcommand, where
    the root command reads it: every command takes it, as the README says, without each declaring it."""
    hoisted: list[str] = []
    rest: list[str] = []
    position = 0
    while position < len(args):
        arg = args[position]
        if arg == "--":  # what follows is arguments, never options
            rest.extend(args[position:])
            break
        if arg == "--lake" and position + 1 < len(args):
            hoisted.extend(args[position : position + 2])
            position += 2
            continue
        (hoisted if arg.startswith("--lake=") else rest).append(arg)
        position += 1
    return hoisted + rest

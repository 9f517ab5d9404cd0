"""The Structured Streaming jobs: Kafka (or files) → bronze → quarantine + silver → gold.

- ``records_to_bronze_stream`` (kafka_to_bronze): raw records into bronze and rejects. Parsing runs the
  embedded ingest's own parser (``vhlake.ingest.parse``, DuckDB over Arrow) inside ``mapInArrow``, so
  bronze, ``_rescued_data`` and the rejects are the same whichever engine ingested the records.
- ``bronze_to_silver_stream`` (``silver_batch`` per micro-batch): each micro-batch is checked
  (quarantine), deduplicated (the first received copy of an event wins, against the events already
  stored), and the jobs it touches are folded again from their whole history and upserted into silver.
- ``silver_to_gold_stream`` (``gold_batch``): the (date, marketplace, category) groups a change to silver
  touches are recomputed from silver and replaced in gold. On Delta it reads silver's change data feed;
  locally (Parquet, no change feed) ``silver_batch`` hands it each batch's changes in the same shape.

Every write of a micro-batch is idempotent by ``(app_id, batch_id)`` (see ``vhlake.spark.tables``), and
``silver_batch`` stores a batch's events last: a batch run again after a failure redoes what did not land
and changes nothing that did.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from vhlake.ingest.files import split_lines
from vhlake.ingest.parse import new_parser_connection, parse_records
from vhlake.lake.tables import BRONZE, GOLD, JOB_EVENTS, QUARANTINE, REJECTED, SILVER
from vhlake.pipeline.expectations import DEFAULT_EXPECTATIONS, Expectation
from vhlake.spark.jobs import check, fold, job_events, schema_ddl, silver_to_gold
from vhlake.spark.tables import SparkTables, local_path

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

RAW = pa.schema([("source", pa.string()), ("source_offset", pa.int64()), ("raw", pa.binary())])
# One row per parsed record: bronze's columns, then the rejects' (error is NULL for a bronze row).
PARSED = pa.schema(
    [
        *(field.with_nullable(True) for field in BRONZE.schema),
        *(
            pa.field(name, pa.string() if name == "raw" else pa.binary() if name == "raw_bytes" else type_)
            for name, type_ in zip(REJECTED.schema.names, REJECTED.schema.types, strict=True)
            if name not in BRONZE.schema.names
        ),
    ]
)
GOLD_KEYS = ["date", "marketplace", "category"]


# ---- sources of raw records -------------------------------------------------------------------------


def kafka_records(
    spark: SparkSession,
    *,
    bootstrap_servers: str,
    topic: str,
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
    options: dict[str, str] | None = None,
) -> DataFrame:
    """Kafka messages as raw records (``source`` = ``kafka:<topic>:<partition>``, as the embedded source
    names them). ``options`` go to the Kafka reader as they are (``kafka.security.protocol`` and so on)."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", starting_offsets)
        # Messages the topic's retention deleted before they were read are gone either way: Spark logs
        # the gap and goes on rather than stopping ingestion of everything after it.
        .option("failOnDataLoss", "false")
    )
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", max_offsets_per_trigger)
    for key, value in (options or {}).items():
        reader = reader.option(key, value)
    return records_of_messages(reader.load())


def records_of_messages(messages: DataFrame) -> DataFrame:
    """Rows of Spark's Kafka source (topic, partition, offset, value, ...) as raw records."""
    # A message without a value (a tombstone) is a record too: it goes to the rejects, not nowhere.
    return messages.selectExpr(
        "concat('kafka:', topic, ':', CAST(partition AS STRING)) AS source",
        "offset AS source_offset",
        "coalesce(value, X'') AS raw",
    )


def file_records(
    spark: SparkSession, directory: str, *, glob: str = "*.jsonl", max_files_per_trigger: int | None = None
) -> DataFrame:
    """New JSON-lines files in ``directory`` (or matching a glob) as raw records, numbered by line as ``vhlake ingest`` numbers
    them (``source`` = ``file:<path>``). Each file is read whole (Spark's binary files: under 2 GiB)."""
    reader = (
        spark.readStream.format("binaryFile")
        .schema("path STRING, modificationTime TIMESTAMP, length BIGINT, content BINARY")
        .option("pathGlobFilter", glob)
    )
    if max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", max_files_per_trigger)
    return reader.load(directory).select("path", "content").mapInArrow(_lines_of_files, schema_ddl(RAW))


def _glob_escaped(path: Path) -> str:
    """``path`` with Hadoop's glob characters escaped: it matches only itself."""
    return re.sub(r"([\\*?\[\]{},])", r"\\\1", str(path))


def _lines_of_files(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for path, content in zip(batch["path"].to_pylist(), batch["content"], strict=True):
            # A view of the file's bytes in the batch, not a copy of them.
            records, _ = split_lines(memoryview(content.as_buffer()), first_line=1, at_file_start=True)
            source = f"file:{local_path(path)}" if path.startswith("file:") else path
            yield pa.RecordBatch.from_pydict(
                {
                    "source": pa.repeat(pa.scalar(source), records.num_rows),
                    "source_offset": records["source_offset"].combine_chunks(),
                    "raw": records["raw"].cast(pa.binary()).combine_chunks(),
                },
                schema=RAW,
            )


# ---- raw records → bronze and rejects ---------------------------------------------------------------


def parse(records: DataFrame, *, ingestion_time: datetime, source_system: str) -> DataFrame:
    """Raw records parsed by the embedded parser: bronze rows (``error`` NULL) and rejects."""

    def parse_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        con = new_parser_connection()
        for batch in batches:
            table = pa.Table.from_batches([batch])
            for source in pc.unique(table["source"]).to_pylist():
                mine = table.filter(pc.equal(table["source"], source)).select(["source_offset", "raw"])
                parsed = parse_records(
                    con,
                    mine,
                    source=source,
                    ingestion_time=ingestion_time,
                    default_source_system=source_system,
                )
                yield from _conform(parsed.bronze).to_batches()
                yield from _conform(parsed.rejected).to_batches()

    return records.mapInArrow(parse_partition, schema_ddl(PARSED))


def _conform(rows: pa.Table) -> pa.Table:
    """``rows`` with PARSED's columns: its own cast, the others NULL."""
    columns = [
        rows[field.name].cast(field.type)
        if field.name in rows.column_names
        else pa.nulls(rows.num_rows, field.type)
        for field in PARSED
    ]
    return pa.Table.from_arrays(columns, schema=PARSED)


def records_to_bronze_stream(
    records: DataFrame,
    tables: SparkTables,
    *,
    checkpoint: str,
    source_system: str,
    app_id: str = "vhlake:ingest",
    available_now: bool = True,
) -> StreamingQuery:
    """Start the stream that appends raw records to bronze and rejects, once each (batch id = version)."""

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        parsed = parse(batch, ingestion_time=datetime.now(UTC), source_system=source_system).persist()
        try:
            # Rejects first: bronze is what the next job reads, so it commits the batch.
            rejects = parsed.where("error IS NOT NULL").select(*REJECTED.schema.names)
            tables.append(REJECTED, rejects, app_id=app_id, version=batch_id)
            accepted = parsed.where("error IS NULL").select(*BRONZE.schema.names)
            tables.append(BRONZE, accepted, app_id=app_id, version=batch_id)
        finally:
            parsed.unpersist()

    return _start(records, write_batch, checkpoint=checkpoint, available_now=available_now)


# ---- bronze → quarantine + silver -------------------------------------------------------------------


def silver_batch(
    bronze: DataFrame,
    batch_id: int,
    tables: SparkTables,
    *,
    app_id: str = "vhlake:bronze_to_silver",
    expectations: Sequence[Expectation] = DEFAULT_EXPECTATIONS,
    dedupe_window: timedelta | None = None,
    gold: bool = False,
) -> None:
    """One micro-batch of bronze: quarantine, new events, the touched jobs folded again into silver.

    ``dedupe_window`` bounds how far back a copy of an event is looked for (by ingestion time), the
    trade-off of a streaming watermark; None (the default) looks through every stored event, which is
    what the embedded pipeline does. ``gold`` refreshes gold from this batch's changes too, for tables
    without a change data feed (Parquet); on Delta, ``silver_to_gold_stream`` reads silver's.
    """
    from pyspark.sql.functions import coalesce, lit

    now = datetime.now(UTC)
    passed, quarantine = check(bronze, expectations)
    tables.append(QUARANTINE, quarantine, app_id=app_id, version=batch_id)

    stored = tables.read(JOB_EVENTS)
    seen = (
        stored
        if dedupe_window is None
        else stored.where(stored["ingestion_time"] >= lit(now - dedupe_window))
    )
    new = job_events(passed).join(seen.select("event_id"), "event_id", "left_anti")
    new = new.localCheckpoint(eager=True)  # read once, before this batch's writes change what it came from
    if new.isEmpty():  # nothing new (or this batch ran before and stored its events)
        return
    touched = new.select("job_id").distinct()
    stored_of_touched = stored.join(touched, "job_id", "left_semi").localCheckpoint(eager=True)
    history = stored_of_touched.drop("job_date").unionByName(new)
    folded = fold(history, updated_at=now).localCheckpoint(eager=True)
    if gold:
        # Before silver changes: a batch run again after silver's replace would no longer see the jobs'
        # old groups (their pre-images), and gold's own commit makes it skip this step then.
        silver = tables.read(SILVER)
        before = silver.join(touched, "job_id", "left_semi")
        changes = before.withColumn("_change_type", lit("update_preimage")).unionByName(
            folded.withColumn("_change_type", lit("update_postimage"))
        )
        after = silver.join(touched, "job_id", "left_anti").unionByName(folded)
        gold_batch(changes, batch_id, tables, silver=after)
    tables.replace(SILVER, folded, keys=["job_id"], touched=touched, app_id=app_id, version=batch_id)
    # A job's events stay filed under the date it was first folded to; the batch's events go in last,
    # so a run of this batch that failed before here finds them still new and redoes the rest.
    places = stored_of_touched.select("job_id", "job_date").distinct()
    filed = (
        new.join(places, "job_id", "left")
        .join(folded.select("job_id", folded["created_date"].alias("created")), "job_id")
        .withColumn("job_date", coalesce("job_date", "created"))
    )
    tables.append(JOB_EVENTS, filed.select(*JOB_EVENTS.schema.names), app_id=app_id, version=batch_id)


def bronze_to_silver_stream(
    tables: SparkTables,
    *,
    checkpoint: str,
    available_now: bool = True,
    max_files_per_trigger: int | None = None,
    dedupe_window: timedelta | None = None,
    gold: bool = False,
) -> StreamingQuery:
    """Start the stream from bronze into quarantine and silver (see :func:`silver_batch`)."""

    def write_batch(bronze: DataFrame, batch_id: int) -> None:
        silver_batch(bronze, batch_id, tables, dedupe_window=dedupe_window, gold=gold)

    source = tables.stream(BRONZE, max_files_per_trigger=max_files_per_trigger)
    return _start(source, write_batch, checkpoint=checkpoint, available_now=available_now)


# ---- silver → gold ----------------------------------------------------------------------------------


def gold_batch(
    changes: DataFrame,
    batch_id: int,
    tables: SparkTables,
    *,
    app_id: str = "vhlake:silver_to_gold",
    silver: DataFrame | None = None,
) -> None:
    """Recompute the gold groups silver's changes touch (before and after images) and replace them.

    The groups are computed from ``silver`` (silver as it is once the changes are in; by default, as
    stored)."""
    from pyspark.sql.functions import expr

    touched = changes.selectExpr(
        "created_date AS date", "marketplace", "coalesce(category, 'unknown') AS category"
    ).distinct()
    same_group = expr(
        "s.created_date = t.date AND s.marketplace = t.marketplace "
        "AND coalesce(s.category, 'unknown') = t.category"
    )
    jobs = (
        (tables.read(SILVER) if silver is None else silver)
        .alias("s")
        .join(touched.alias("t"), same_group, "left_semi")
    )
    rows = silver_to_gold(jobs, updated_at=datetime.now(UTC)).localCheckpoint(eager=True)
    tables.replace(GOLD, rows, keys=GOLD_KEYS, touched=touched, app_id=app_id, version=batch_id)


def silver_to_gold_stream(
    changes: DataFrame, tables: SparkTables, *, checkpoint: str, available_now: bool = True
) -> StreamingQuery:
    """Start the stream from silver's change data feed (Delta) into gold."""

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        gold_batch(batch, batch_id, tables)

    return _start(changes, write_batch, checkpoint=checkpoint, available_now=available_now)


def _start(
    source: DataFrame, write_batch: Callable[[DataFrame, int], None], *, checkpoint: str, available_now: bool
) -> StreamingQuery:
    writer = source.writeStream.foreachBatch(write_batch).option("checkpointLocation", checkpoint)
    writer = (
        writer.trigger(availableNow=True) if available_now else writer.trigger(processingTime="30 seconds")
    )
    return writer.start()


# ---- the whole chain, locally -----------------------------------------------------------------------

LOCAL_TABLES = (BRONZE, REJECTED, QUARANTINE, JOB_EVENTS, SILVER, GOLD)


def run_all(
    spark: SparkSession,
    events: Path,
    out: Path,
    *,
    source_system: str = "vhlake-spark",
    max_files_per_trigger: int | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Events files → bronze → quarantine + silver → gold under ``out`` (Parquet), as the streaming jobs
    run on Databricks with a file source in place of Kafka; row counts per table.

    ``events`` is a JSON-lines file or a directory of ``*.jsonl`` files. Checkpoints live in
    ``out/_checkpoints``: run it again with more files and only the new ones are read.
    """
    from vhlake.spark.tables import ParquetTables

    tables = ParquetTables(spark, out)
    # A glob, not a folder: Spark would infer partitions from every subfolder (`--out` beside the file,
    # say) and fail on their layout. A file means that file; a folder, its own *.jsonl files.
    directory, glob = (
        (f"{_glob_escaped(events)}/*.jsonl", "*.jsonl")
        if events.is_dir()
        else (f"{_glob_escaped(events.parent)}/{{{_glob_escaped(Path(events.name))}}}", events.name)
    )
    checkpoints = out / "_checkpoints"
    stages: list[tuple[str, Callable[[], StreamingQuery]]] = [
        (
            "events → bronze",
            lambda: records_to_bronze_stream(
                file_records(spark, str(directory), glob=glob, max_files_per_trigger=max_files_per_trigger),
                tables,
                checkpoint=str(checkpoints / "ingest"),
                source_system=source_system,
            ),
        ),
        (
            "bronze → quarantine + silver → gold",
            lambda: bronze_to_silver_stream(
                tables,
                checkpoint=str(checkpoints / "bronze_to_silver"),
                gold=True,
            ),
        ),
    ]
    for name, start in stages:
        if on_stage is not None:
            on_stage(name)
        start().awaitTermination()
    return {table.name: tables.read(table).count() for table in LOCAL_TABLES}

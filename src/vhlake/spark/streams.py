"""The Structured Streaming jobs: Kafka (or files) → bronze → quarantine + silver → gold.

- ``records_to_bronze_stream`` (kafka_to_bronze): raw records into bronze and rejects. Parsing runs the
  embedded ingest's own parser (``vhlake.ingest.parse``, DuckDB over Arrow) inside ``mapInArrow``, so
  bronze, ``_rescued_data`` and the rejects are the same whichever engine ingested the records. Files
  go through ``files_to_bronze_stream`` (``vhlake.spark.files``: by line ranges, any size).
- ``silver_batch`` per micro-batch of bronze: checked (quarantine), deduplicated (the first received copy
  of an event wins, against the events already stored), and the jobs it touches folded again from their
  whole history and upserted into silver. What it reads follows the batch, as in the embedded pipeline:
  the job events table is filed by ``job_date``; a scan of its two integer key columns finds the
  partitions holding the batch's jobs (or earlier copies of its events), and only those are read.
- ``gold_batch``: the (date, marketplace, category) groups a change to silver touches are recomputed from
  silver's partitions of those dates and replaced in both tables kept per group, gold and
  error_type_daily_gold (an error type a group no longer reports is deleted); and the (date, marketplace)
  rows of user_engagement_daily_gold it touches (``engagement_batch``: a job's date and the 27 after it,
  its user's first dates) are recomputed from silver and replaced. What it changes in gold groups written
  before goes to gold_restatements first, computed by the embedded pipeline's own function
  (``restate_batch``). On Databricks
  ``silver_to_gold_stream`` feeds it silver's change data feed; ``silver_batch(gold=True)`` hands it each
  batch's changes directly.

Every write of a micro-batch is idempotent by ``(app_id, version)`` (see ``vhlake.spark.tables``), and
``silver_batch`` writes in the embedded pipeline's order, its events last: a batch run again after a
failure redoes what did not land and changes nothing that did.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.events.model import event_json_schema
from vhlake.events.registry_client import ConfluentSchemaLookup, RegistryConfig
from vhlake.ingest.parse import new_parser_connection, parse_records
from vhlake.ingest.wire_format import parse_framed
from vhlake.lake.delta import Lake
from vhlake.lake.tables import (
    BRONZE,
    ERROR_TYPE_GOLD,
    GOLD,
    GOLD_RESTATEMENTS,
    JOB_EVENTS,
    QUARANTINE,
    REJECTED,
    SILVER,
    USER_ENGAGEMENT_GOLD,
    TableDef,
)
from vhlake.pipeline.engagement import WINDOW_DAYS
from vhlake.pipeline.expectations import DEFAULT_EXPECTATIONS, Expectation
from vhlake.pipeline.gold import UNKNOWN_CATEGORY
from vhlake.pipeline.gold_groups import GOLD_INPUTS
from vhlake.pipeline.incremental import Change
from vhlake.pipeline.restatements import EVENT_COUNTS, no_events, restatements
from vhlake.pipeline.runner import CANARY_SOURCE, DERIVED, PIPELINE_APP
from vhlake.spark.files import RANGE_BYTES, ingest_files
from vhlake.spark.jobs import (
    ENGAGEMENT_INPUTS,
    check,
    first_copies,
    fold,
    job_events,
    schema_ddl,
    silver_to_engagement,
    silver_to_error_types,
    silver_to_gold,
)
from vhlake.spark.tables import DeltaTables, LocalDeltaTables, SparkTables, conformed, count_rows, local_path

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

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


def _glob_escaped(path: Path) -> str:
    """``path`` with Hadoop's glob characters escaped: it matches only itself."""
    return re.sub(r"([\\*?\[\]{},])", r"\\\1", str(path))


# ---- raw records → bronze and rejects ---------------------------------------------------------------


def parse(
    records: DataFrame,
    *,
    ingestion_time: datetime,
    source_system: str,
    registry: RegistryConfig | None = None,
) -> DataFrame:
    """Raw records parsed by the embedded parser: bronze rows (``error`` NULL) and rejects. Kafka
    messages in the Confluent wire format are unframed as the embedded Kafka source does (their schema
    ids checked against ``registry`` when given, by each task)."""

    def parse_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        con = new_parser_connection()
        lookup = None if registry is None else ConfluentSchemaLookup(registry)
        ours = event_json_schema()
        for batch in batches:
            table = pa.Table.from_batches([batch])
            for source in pc.unique(table["source"]).to_pylist():
                mine = table.filter(pc.equal(table["source"], source)).select(["source_offset", "raw"])
                if source.startswith("kafka:"):
                    parsed = parse_framed(
                        con,
                        mine,
                        source=source,
                        ingestion_time=ingestion_time,
                        default_source_system=source_system,
                        lookup=lookup,
                        ours=ours,
                    )
                else:  # lines of files: no frames
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
    registry: RegistryConfig | None = None,
) -> StreamingQuery:
    """Start the stream that appends raw records to bronze and rejects, once each (batch id = version)."""

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        now = datetime.now(UTC)
        parsed = parse(batch, ingestion_time=now, source_system=source_system, registry=registry).persist()
        try:
            # Rejects first: bronze is what the next job reads, so it commits the batch.
            rejects = parsed.where("error IS NOT NULL").select(*REJECTED.schema.names)
            tables.append(REJECTED, rejects, app_id=app_id, version=batch_id)
            accepted = parsed.where("error IS NULL").select(*BRONZE.schema.names)
            tables.append(BRONZE, accepted, app_id=app_id, version=batch_id)
        finally:
            parsed.unpersist()

    return _start(records, write_batch, checkpoint=checkpoint, available_now=available_now)


def new_files(
    spark: SparkSession, directory: str, *, glob: str = "*.jsonl", max_files_per_trigger: int | None = None
) -> DataFrame:
    """The paths of new files in ``directory`` as a stream (their content is not read here)."""
    reader = (
        spark.readStream.format("binaryFile")
        .schema("path STRING, modificationTime TIMESTAMP, length BIGINT, content BINARY")
        .option("pathGlobFilter", glob)
    )
    if max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", max_files_per_trigger)
    # Only the path is selected, so Spark never loads a file's bytes (it did: files larger than the
    # JVM's heap could not be ingested).
    return reader.load(directory).select("path")


def files_to_bronze_stream(
    files: DataFrame,
    tables: LocalDeltaTables,
    *,
    checkpoint: str,
    source_system: str,
    range_bytes: int = RANGE_BYTES,
    available_now: bool = True,
) -> StreamingQuery:
    """Start the stream that ingests each new file (``files``: paths) into bronze and rejects by line
    ranges, exactly once per file content (``vhlake.spark.files``)."""

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        paths = sorted(local_path(row[0]) for row in batch.collect())
        ingest_files(
            batch.sparkSession,
            tables,
            paths,
            ingestion_time=datetime.now(UTC),
            source_system=source_system,
            range_bytes=range_bytes,
        )

    return _start(files, write_batch, checkpoint=checkpoint, available_now=available_now)


# ---- bronze → quarantine + silver -------------------------------------------------------------------

# Silver's key with its partition columns: a MERGE on them reads only the partitions the batch lives in,
# and a job whose partition changed is deleted from the old one in the same commit.
SILVER_KEYS = ["job_id", "marketplace", "created_date"]


def silver_batch(
    bronze: DataFrame,
    version: int,
    tables: SparkTables,
    *,
    app_id: str = "vhlake:bronze_to_silver",
    expectations: Sequence[Expectation] = DEFAULT_EXPECTATIONS,
    gold: bool = False,
    run_id: str | None = None,
) -> None:
    """One micro-batch of bronze: quarantine, new events, the touched jobs folded again into silver.

    Reads only the job events partitions of the batch's jobs (and of earlier copies of its events), so
    its cost follows the batch, not the history. Every table records ``(app_id, version)`` even when the
    batch brings it nothing, as the embedded pipeline's tables do. ``gold`` refreshes gold from the
    batch's changes too (where no stream reads silver's change data feed), its restatements counting the
    batch's new events; ``run_id`` names the run in them (None: ``app_id``).
    """
    from pyspark.sql.functions import coalesce

    now = datetime.now(UTC)
    bronze = bronze.where(f"source_system IS NULL OR source_system <> '{CANARY_SOURCE}'")
    passed, quarantine = check(bronze, expectations)
    tables.append(QUARANTINE, quarantine, app_id=app_id, version=version)

    # Read once, before this batch's writes change what it came from.
    new = job_events(passed, among=bronze).localCheckpoint(eager=True)
    partitions = _partitions_of(new, tables)
    if partitions:
        stored = tables.read_partitions(JOB_EVENTS, "job_date", partitions)
        unseen = new.join(stored.select("event_id"), "event_id", "left_anti").localCheckpoint(eager=True)
        touched = unseen.select("job_id").distinct()
        stored_of_touched = stored.join(touched, "job_id", "left_semi").localCheckpoint(eager=True)
        places = stored_of_touched.select("job_id", "job_date").distinct()
        # The embedded pipeline may have stored a job's copies of an event: the first received one counts.
        history = first_copies(stored_of_touched.drop("job_date"))
        before = fold(history, updated_at=now).localCheckpoint(eager=True)
        folded = fold(history.unionByName(unseen), updated_at=now).localCheckpoint(eager=True)
    else:  # no stored event of these jobs, nor copy of these events: no history to read or fold
        unseen, places = new, new.selectExpr("job_id", "CAST(NULL AS DATE) AS job_date").limit(0)
        folded = fold(new, updated_at=now).localCheckpoint(eager=True)
        before = folded.limit(0)

    tables.replace(
        SILVER, folded, keys=SILVER_KEYS, touched=before.select(*SILVER_KEYS), app_id=app_id, version=version
    )
    if gold:
        jobs = folded.unionByName(before)
        counted = events_by_group(unseen, jobs)
        gold_batch(jobs, version, tables, app_id=app_id, run_id=run_id, events=counted)
    # A job's events stay filed under the date it was first folded to; the batch's events go in last,
    # so a run of this batch that failed before here finds them still new and redoes the rest.
    dates = (
        folded.select("job_id", folded["created_date"].alias("created"))
        .join(places, "job_id", "left")
        .select("job_id", coalesce("job_date", "created").alias("job_date"))
    )
    filed = unseen.join(_broadcast_if_small(dates, folded.count()), "job_id")
    tables.append(JOB_EVENTS, filed.select(*JOB_EVENTS.schema.names), app_id=app_id, version=version)


# A batch's jobs (one row each: an id and a date) up to this many are broadcast to the events they file,
# rather than both sides shuffled by job.
BROADCAST_JOBS = 1_000_000


def _broadcast_if_small(rows: DataFrame, count: int) -> DataFrame:
    from pyspark.sql.functions import broadcast

    return broadcast(rows) if count <= BROADCAST_JOBS else rows


def _partitions_of(new: DataFrame, tables: SparkTables) -> list[object]:
    """The job_date partitions holding stored events of the jobs of ``new``, or stored copies of its
    events: found from the job events' two integer key columns (the embedded pipeline's index), never
    from a join with the history itself."""
    if tables.is_empty(JOB_EVENTS):  # a first batch: no history to look through
        return []
    return tables.partitions_holding(new.select("job_key", "event_key"))


def bronze_to_silver_stream(
    tables: DeltaTables,
    *,
    checkpoint: str,
    available_now: bool = True,
    max_files_per_trigger: int | None = None,
    gold: bool = False,
) -> StreamingQuery:
    """Start the stream from bronze (Delta's streaming source) into quarantine and silver (see
    :func:`silver_batch`)."""

    run_id = str(uuid.uuid4())  # the stream's run, in the restatements it records

    def write_batch(bronze: DataFrame, batch_id: int) -> None:
        silver_batch(bronze, batch_id, tables, gold=gold, run_id=run_id)

    source = tables.stream(BRONZE, max_files_per_trigger=max_files_per_trigger)
    return _start(source, write_batch, checkpoint=checkpoint, available_now=available_now)


def bronze_to_silver_local(
    tables: LocalDeltaTables,
    *,
    rows_per_batch: int = 1_000_000,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Bring quarantine, silver, the gold tables and the job events up to bronze's version on a local lake,
    as the embedded pipeline does: by bronze version ranges after what each table recorded for the
    pipeline's app id (the embedded pipeline's own), so either engine continues where the other stopped.
    Returns the number of batches."""
    _rebuild_behind_silver(tables, PIPELINE_APP)
    ranges = tables.bronze_ranges(DERIVED, PIPELINE_APP, rows_per_batch=rows_per_batch)
    run_id = str(uuid.uuid4())  # one run, as a `vhlake pipeline run` is
    for done, bronze in enumerate(ranges, start=1):
        rows = tables.read_files(BRONZE, bronze.files)
        silver_batch(rows, bronze.end, tables, app_id=PIPELINE_APP, gold=True, run_id=run_id)
        if on_batch is not None:
            on_batch(done)
    return len(ranges)


def _rebuild_behind_silver(tables: LocalDeltaTables, app_id: str) -> None:
    """Compute again from all of silver each table kept per group that is behind silver, as the embedded
    pipeline does: one added to a lake built before it existed (its bronze ranges would bring it no
    group: their events are stored already), or one a crash left between its commit and silver's."""
    silver = tables.lake.txn_version(SILVER, app_id)
    if silver is None:
        return
    rebuilds = (
        (GOLD, silver_to_gold),
        (ERROR_TYPE_GOLD, silver_to_error_types),
        (USER_ENGAGEMENT_GOLD, silver_to_engagement),
    )
    for table, compute in rebuilds:
        done = tables.lake.txn_version(table, app_id)
        if done is None or done < silver:
            rows = compute(tables.read(SILVER).select(*GOLD_INPUTS), updated_at=datetime.now(UTC))
            tables.overwrite(table, rows, app_id=app_id, version=silver)


# ---- silver → gold ----------------------------------------------------------------------------------

GOLD_KEYS = ["date", "marketplace", "category"]
ERROR_TYPE_KEYS = [*GOLD_KEYS, "error_type"]


def gold_batch(
    changes: DataFrame,
    version: int,
    tables: SparkTables,
    *,
    app_id: str = "vhlake:silver_to_gold",
    run_id: str | None = None,
    events: DataFrame | None = None,
) -> None:
    """Recompute the groups silver's changes (before and after images) touch, from silver's partitions
    of their dates, and replace them in gold and error_type_daily_gold, one commit each (a group left
    without jobs is deleted; so is an error type a group no longer reports); then the engagement rows
    the changes touch (``engagement_batch``).

    Before gold's commit, what it changes in groups already written goes to ``gold_restatements``
    (``restate_batch``) with the same ``(app_id, version)``. ``events``: the batch's new events per group
    (``events_by_group``), when known; ``run_id``: the run they are recorded as (None: ``app_id``)."""
    from pyspark.sql.functions import expr, month, year

    touched = (
        changes.selectExpr("created_date AS date", "marketplace", "coalesce(category, 'unknown') AS category")
        .distinct()
        .localCheckpoint(eager=True)
    )
    dates = sorted(row[0] for row in touched.select("date").distinct().collect())
    same_group = expr(
        "s.created_date = t.date AND s.marketplace = t.marketplace "
        "AND coalesce(s.category, 'unknown') = t.category"
    )
    silver = tables.read_partitions(SILVER, "created_date", dates).select(*GOLD_INPUTS)
    # Read once for both tables.
    jobs = silver.alias("s").join(touched.alias("t"), same_group, "left_semi").localCheckpoint(eager=True)
    now = datetime.now(UTC)
    keys = touched.withColumn("year", year("date")).withColumn("month", month("date"))
    gold = silver_to_gold(jobs, updated_at=now).localCheckpoint(eager=True)  # read twice
    change = Change(run_id=run_id or app_id, bronze_version=version, app_id=app_id, version=version, at=now)
    restate_batch(tables, touched, dates, gold, events, change)
    tables.replace(GOLD, gold, keys=GOLD_KEYS, touched=keys, app_id=app_id, version=version)
    errors = silver_to_error_types(jobs, updated_at=now)
    stored = _stored_in_groups(tables, ERROR_TYPE_GOLD, touched, dates)
    tables.replace(
        ERROR_TYPE_GOLD,
        errors,
        keys=ERROR_TYPE_KEYS,
        touched=stored.select(*ERROR_TYPE_KEYS, "year", "month"),
        app_id=app_id,
        version=version,
    )
    engagement_batch(changes, version, tables, app_id=app_id)


def restate_batch(
    tables: SparkTables,
    touched: DataFrame,
    dates: Sequence[date],
    gold: DataFrame,
    events: DataFrame | None,
    change: Change,
) -> None:
    """Append to ``gold_restatements`` what replacing the ``touched`` groups by ``gold`` (their rows
    recomputed) changes in the groups stored, computed by the embedded pipeline's own function
    (``vhlake.pipeline.restatements``) on the driver: a batch's groups and their gold rows are few.
    ``events`` (per group, ``EVENT_COUNTS``; None: not known, counted 0) come from the batch's new events.
    A batch run again after gold's commit finds gold holding its rows: nothing is restated (and the
    append, done before, is skipped by its version)."""

    stored = conformed(_stored_in_groups(tables, GOLD, touched, dates).toArrow(), GOLD)
    earlier = _stored_in_groups(tables, GOLD_RESTATEMENTS, touched, dates).toArrow()
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        rows = restatements(
            con,
            groups=touched.toArrow(),
            stored=stored,
            recomputed=conformed(gold.toArrow(), GOLD),
            counted=no_events() if events is None else events.toArrow().cast(EVENT_COUNTS),
            earlier=conformed(earlier, GOLD_RESTATEMENTS),
            run_id=change.run_id,
            bronze_version=change.bronze_version,
            restated_at=change.at,
        )
    frame = gold.sparkSession.createDataFrame(rows, schema=schema_ddl(GOLD_RESTATEMENTS.schema))
    tables.append(GOLD_RESTATEMENTS, frame, app_id=change.app_id, version=change.version)


def events_by_group(events: DataFrame, jobs: DataFrame) -> DataFrame:
    """The batch's new ``events`` (one row per event, none stored before) counted per gold group their
    job is in, before or after the batch (``jobs``: their silver rows, both), with the earliest timestamp:
    the embedded ``events_by_group``'s EVENT_COUNTS, aggregated by Spark rather than on the driver."""
    from pyspark.sql.functions import count
    from pyspark.sql.functions import min as earliest
    from pyspark.sql.functions import sum as total

    per_job = events.groupBy("job_id").agg(
        count("*").alias("events"), earliest("timestamp").alias("earliest")
    )
    groups = jobs.selectExpr(
        "job_id",
        "created_date AS date",
        "marketplace",
        f"coalesce(category, '{UNKNOWN_CATEGORY}') AS category",
    ).distinct()
    return (
        per_job.join(groups, "job_id")
        .groupBy("date", "marketplace", "category")
        .agg(total("events").alias("events"), earliest("earliest").alias("earliest"))
    )


def _stored_in_groups(
    tables: SparkTables, table: TableDef, touched: DataFrame, dates: Sequence[date]
) -> DataFrame:
    """The rows of ``table`` (partitioned by year and month, with the group's columns) stored for the
    groups ``touched``, read from the partitions of the groups' months only."""
    from pyspark.sql.functions import col

    years = sorted({day.year for day in dates})
    months = sorted({day.month for day in dates})
    stored = tables.read_partitions(table, "year", years).where(
        col("month").isin(months) & col("date").isin(dates)
    )
    return stored.join(touched, GOLD_KEYS, "left_semi")


ENGAGEMENT_KEYS = ["date", "marketplace"]


def engagement_batch(
    changes: DataFrame, version: int, tables: SparkTables, *, app_id: str = "vhlake:silver_to_gold"
) -> None:
    """Recompute the user_engagement_daily_gold rows silver's changes (before and after images) touch,
    from silver as it is now, and replace them in one commit (a touched pair left without jobs is deleted).

    The touched pairs are ``touched_pairs``' (docs/semantics.md, "Gold: user engagement"). Silver's
    (marketplace, user_id, created_date) in the changes' marketplaces are scanned once, for every user's
    first date (Spark scales the scan out; the marketplaces prune it); the rows recomputed are read from
    the partitions of the touched windows' dates only."""
    from pyspark.sql.functions import col, month, year

    changed = changes.select(*ENGAGEMENT_INPUTS).distinct().localCheckpoint(eager=True)
    markets = sorted(row[0] for row in changed.select("marketplace").distinct().collect())
    history = tables.read_partitions(SILVER, "marketplace", markets).select(*ENGAGEMENT_INPUTS)
    firsts = _first_dates(history, changed).localCheckpoint(eager=True)
    pairs = _touched_pairs(changed, firsts).localCheckpoint(eager=True)
    touched = sorted(row[0] for row in pairs.select("date").distinct().collect())
    days = sorted({day - timedelta(days=back) for day in touched for back in range(WINDOW_DAYS)})
    window = tables.read_partitions(SILVER, "created_date", days).where(col("marketplace").isin(markets))
    first = firsts.select("marketplace", "user_id", "first_date")
    rows = silver_to_engagement(window, updated_at=datetime.now(UTC), first_seen_of=first, pairs=pairs)
    keys = pairs.withColumn("year", year("date")).withColumn("month", month("date"))
    tables.replace(
        USER_ENGAGEMENT_GOLD, rows, keys=ENGAGEMENT_KEYS, touched=keys, app_id=app_id, version=version
    )


def _first_dates(history: DataFrame, changed: DataFrame) -> DataFrame:
    """Per (marketplace, user_id) of ``history`` (silver after the change): ``first_date``, the user's
    first ``created_date`` (``first_seen``), and ``first_unchanged``, their first date on which no changed
    job of theirs is (NULL when there is none), in one aggregation over one scan.

    ``first_unchanged`` stands in for the first date before the change, which silver no longer holds. It
    is enough: that date is the earliest of the user's unchanged jobs and of their changed jobs as they
    were. If it is a changed job's date, it is touched already; otherwise it is the earliest unchanged
    job's, on a date no changed job of the user has: ``first_unchanged``."""
    from pyspark.sql.functions import lit, when
    from pyspark.sql.functions import min as earliest

    marks = changed.where("user_id IS NOT NULL").withColumn("_changed", lit(True))
    flagged = history.where("user_id IS NOT NULL").join(
        _broadcast_if_small(marks, marks.count()), ENGAGEMENT_INPUTS, "left"
    )
    return flagged.groupBy("marketplace", "user_id").agg(
        earliest("created_date").alias("first_date"),
        earliest(when(flagged["_changed"].isNull(), flagged["created_date"])).alias("first_unchanged"),
    )


def _touched_pairs(changed: DataFrame, firsts: DataFrame) -> DataFrame:
    """The (marketplace, date) pairs whose rows the ``changed`` (marketplace, user_id, created_date) of
    silver's changed jobs can alter, as ``touched_pairs`` finds them: each changed date and the
    WINDOW_DAYS - 1 days after it, and each changed user's first date after the change and the stand-in
    for the one before it (``_first_dates``)."""
    windows = changed.selectExpr(
        "marketplace", f"explode(sequence(created_date, date_add(created_date, {WINDOW_DAYS - 1}))) AS date"
    )
    users = changed.where("user_id IS NOT NULL").select("marketplace", "user_id").distinct()
    theirs = firsts.join(users, ["marketplace", "user_id"], "left_semi")
    dates = theirs.selectExpr("marketplace", "first_date AS date").unionByName(
        theirs.selectExpr("marketplace", "first_unchanged AS date").where("date IS NOT NULL")
    )
    return windows.unionByName(dates).distinct()


def silver_to_gold_stream(
    changes: DataFrame, tables: SparkTables, *, checkpoint: str, available_now: bool = True
) -> StreamingQuery:
    """Start the stream from silver's change data feed (Delta) into gold."""

    run_id = str(uuid.uuid4())  # the stream's run, in the restatements it records

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        gold_batch(batch, batch_id, tables, run_id=run_id)  # silver's changes do not say which events

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

LOCAL_TABLES = (
    BRONZE,
    REJECTED,
    QUARANTINE,
    JOB_EVENTS,
    SILVER,
    GOLD,
    ERROR_TYPE_GOLD,
    USER_ENGAGEMENT_GOLD,
    GOLD_RESTATEMENTS,
)


def run_all(
    spark: SparkSession,
    events: Path,
    out: Path,
    *,
    source_system: str = "vhlake-spark",
    max_files_per_trigger: int | None = None,
    rows_per_batch: int = 1_000_000,
    range_bytes: int = RANGE_BYTES,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Events files → bronze → quarantine + silver → gold in the Delta lake ``out``, as the streaming jobs
    run on Databricks with a file source in place of Kafka; row counts per table.

    ``events`` is a JSON-lines file or a directory of ``*.jsonl`` files. The file stream's checkpoint
    lives in ``out/_checkpoints``: run it again with more files and only the new ones are read. ``out``
    is a lake ``vhlake query``, ``vhlake pipeline run`` and the API read, and either engine can go on
    from where the other stopped.
    """
    lake = Lake(str(out))
    tables = LocalDeltaTables(spark, lake)
    # A glob, not a folder: Spark would infer partitions from every subfolder (`--out` beside the file,
    # say) and fail on their layout. A file means that file; a folder, its own *.jsonl files.
    directory, glob = (events, "*.jsonl") if events.is_dir() else (events.parent, events.name)
    pattern = f"{_glob_escaped(directory)}/" + (
        "*.jsonl" if events.is_dir() else f"{{{_glob_escaped(Path(glob))}}}"
    )
    stage = on_stage or (lambda name: None)
    stage("events → bronze")
    files_to_bronze_stream(
        new_files(spark, pattern, glob=glob, max_files_per_trigger=max_files_per_trigger),
        tables,
        checkpoint=str(out / "_checkpoints" / _ingest_checkpoint(directory, glob)),
        source_system=source_system,
        range_bytes=range_bytes,
    ).awaitTermination()
    stage("bronze → quarantine + silver → gold")
    bronze_to_silver_local(tables, rows_per_batch=rows_per_batch)
    return {table.name: count_rows(lake, table) for table in LOCAL_TABLES}


def _ingest_checkpoint(directory: Path, glob: str) -> str:
    """The file stream's checkpoint for one source (a directory and a glob): a stream's checkpoint is
    bound to its source, and another ``--events`` on the same lake is another stream. What was ingested
    is in the Delta log either way (``file:<sha256>``), so no file is ingested twice across them."""
    return "ingest-" + hashlib.sha256(f"{directory.resolve()}/{glob}".encode()).hexdigest()[:16]

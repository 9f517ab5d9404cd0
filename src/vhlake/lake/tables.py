"""The table contracts (docs/tables.md): names as in Databricks, on disk at ``<lake>/<layer>/<name>``."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

UTC_MICROS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableDef:
    """One lake table: where it lives, its columns and how it is partitioned."""

    name: str
    layer: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    description: str
    configuration: dict[str, str] = field(default_factory=dict)
    # Nearly all distinct and never filtered by range (ids, JSON texts): no dictionary, no statistics.
    opaque_columns: tuple[str, ...] = ()
    # Nearly all distinct but filtered by range (timestamps, positions): statistics, no dictionary (a
    # dictionary attempt on them cost bronze writes 10%).
    distinct_columns: tuple[str, ...] = ()
    # Parquet codec: zstd (level 1) by default; lz4 where write speed matters more than size.
    compression: str = "zstd"
    # Columns the contract gained after tables were first written: older files lack them (NULL there).
    added_columns: tuple[str, ...] = ()
    # The UTC date a row belongs to: what retention measures its age by and, when it partitions the
    # table, the partitions a stream keeps appending to (compacted while recent).
    date_column: str | None = None

    @property
    def relative_path(self) -> str:
        return f"{self.layer}/{self.name}"

    def conform(self, rows: pa.Table) -> pa.Table:
        """``rows`` in the contract's columns, order and types; an added column that ``rows`` lack (read
        from files or change data written before the contract gained it) is NULL."""
        missing = [f for f in self.schema if f.name in self.added_columns and f.name not in rows.column_names]
        for column in missing:
            rows = rows.append_column(column, pa.nulls(rows.num_rows, column.type))
        return rows.select(self.schema.names).cast(self.schema)


# Tables a stream commits to (the medallion tables, and the service's run, quality, audit and alert logs)
# keep one hour of Delta log (time travel reaches that far back), not Delta's
# default 30 days. On a local disk every commit and refresh lists the whole _delta_log: measured
# (bench/log_day.py) an append takes ~20 ms with an hour of one-second commits in the log, ~270 ms with
# a day, and it keeps growing with the log.
STREAMED_LOG = {"delta.logRetentionDuration": "interval 1 hour"}
# Bronze's log is also what the pipeline reads (its change data feed): nothing may drop it on its own at a
# checkpoint; the service cleans it only once the pipeline has processed it (service/maintenance.py).
BRONZE_LOG = {**STREAMED_LOG, "delta.enableExpiredLogCleanup": "false"}

BRONZE = TableDef(
    name="validation_events_bronze",
    layer="bronze",
    schema=pa.schema(
        [
            pa.field("event_id", pa.string()),
            pa.field("event_type", pa.string()),
            pa.field("timestamp", UTC_MICROS),
            pa.field("job_id", pa.string()),
            pa.field("user_id", pa.string()),
            pa.field("marketplace", pa.string()),
            pa.field("category", pa.string()),
            pa.field("payload", pa.string()),
            pa.field("ingestion_time", UTC_MICROS, nullable=False),
            pa.field("source_system", pa.string()),
            pa.field("event_date", pa.date32(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("source_offset", pa.int64(), nullable=False),
            pa.field("_rescued_data", pa.string()),
            # The Schema Registry id of a Confluent-framed Kafka message (NULL: a plain JSON record).
            pa.field("schema_id", pa.int32()),
        ]
    ),
    partition_by=("event_date",),
    date_column="event_date",
    added_columns=("schema_id",),
    opaque_columns=("event_id", "job_id", "payload", "_rescued_data"),
    distinct_columns=("timestamp", "source_offset"),
    # The pipeline reads what each commit appended through the change data feed.
    configuration={"delta.enableChangeDataFeed": "true", **BRONZE_LOG},
    description=(
        "One row per received event, exactly as received (duplicates included, but not a Kafka producer's re-sends, "
        "which go to the rejects). event_date is the UTC date "
        "of timestamp, or of ingestion_time when timestamp did not parse (the original is in _rescued_data)."
    ),
)

REJECTED = TableDef(
    name="validation_events_rejected",
    layer="bronze",
    schema=pa.schema(
        [
            pa.field("raw", pa.large_string()),
            pa.field("raw_bytes", pa.large_binary()),
            pa.field("error", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("source_offset", pa.int64(), nullable=False),
            pa.field("ingestion_time", UTC_MICROS, nullable=False),
            pa.field("ingestion_date", pa.date32(), nullable=False),
        ]
    ),
    partition_by=("ingestion_date",),
    date_column="ingestion_date",
    configuration=STREAMED_LOG,
    description=(
        "One row per input that is not a JSON object, or a Kafka producer's re-send. raw is the text (invalid UTF-8 shown as U+FFFD); "
        "raw_bytes holds the exact bytes when they are not valid UTF-8."
    ),
)

INGEST_LEDGER = TableDef(
    name="ingest_ledger",
    layer="bronze",
    schema=pa.schema(
        [
            pa.field("app_id", pa.string(), nullable=False),  # the source's transaction id in bronze
            pa.field("source", pa.string(), nullable=False),  # as in bronze and the rejects
            pa.field("position_from", pa.int64(), nullable=False),  # exclusive: bytes (files) or offsets
            pa.field("source_offset", pa.int64(), nullable=False),  # the position read up to (inclusive)
            pa.field("first_offset", pa.int64()),  # the records' source_offset range (NULL: none read)
            pa.field("last_offset", pa.int64()),
            pa.field("records_read", pa.int64(), nullable=False),
            pa.field("bronze_rows", pa.int64(), nullable=False),
            pa.field("rejected_rows", pa.int64(), nullable=False),
            pa.field("committed_at", UTC_MICROS, nullable=False),
            pa.field("ingestion_date", pa.date32(), nullable=False),
        ]
    ),
    partition_by=("ingestion_date",),
    date_column="ingestion_date",
    configuration=STREAMED_LOG,
    description=(
        "What ingestion read from each source, one row per committed span of positions: records read, "
        "and how many became bronze rows and rejects (what vhlake reconcile checks bronze against)."
    ),
)

QUARANTINE = TableDef(
    name="validation_events_quarantine",
    layer="silver",
    schema=pa.schema(
        [
            *BRONZE.schema,
            pa.field("reason", pa.string(), nullable=False),
            pa.field("ingestion_date", pa.date32(), nullable=False),
        ]
    ),
    partition_by=("ingestion_date",),
    date_column="ingestion_date",
    added_columns=BRONZE.added_columns,
    configuration=STREAMED_LOG,
    description="One row per bronze event that failed an expectation; reason names the rule.",
)

# What silver takes from an event's payload (ruleset, then the terminal event's results), typed.
PAYLOAD_FIELDS: tuple[pa.Field, ...] = (
    pa.field("ruleset", pa.string()),
    pa.field("total_rows", pa.int64()),
    pa.field("valid_rows", pa.int64()),
    pa.field("invalid_rows", pa.int64()),
    pa.field("error_types", pa.map_(pa.string(), pa.int32())),
    pa.field("processing_time_ms", pa.int64()),
    pa.field("file_size_bytes", pa.int64()),
    pa.field("s3_path", pa.string()),
)

SILVER = TableDef(
    name="validation_results_silver",
    layer="silver",
    schema=pa.schema(
        [
            pa.field("job_id", pa.string(), nullable=False),
            pa.field("user_id", pa.string()),
            pa.field("marketplace", pa.string(), nullable=False),
            pa.field("category", pa.string()),
            PAYLOAD_FIELDS[0],
            pa.field("status", pa.string(), nullable=False),
            *PAYLOAD_FIELDS[1:],
            pa.field("created_at", UTC_MICROS, nullable=False),
            pa.field("completed_at", UTC_MICROS),
            pa.field("created_date", pa.date32(), nullable=False),
            pa.field("updated_at", UTC_MICROS, nullable=False),
        ]
    ),
    partition_by=("marketplace", "created_date"),
    date_column="created_date",
    opaque_columns=("job_id", "s3_path"),
    # The engagement step reads the rows each commit changed (pipeline/engagement_step.py, ``silver_changes``).
    configuration={"delta.enableChangeDataFeed": "true", **STREAMED_LOG},
    description="One row per validation job, folded from its deduplicated events (status success|failed|running).",
)

JOB_EVENTS = TableDef(
    name="validation_job_events",
    layer="silver",
    schema=pa.schema(
        [
            pa.field("job_id", pa.string(), nullable=False),
            pa.field("event_id", pa.string(), nullable=False),
            pa.field("event_type", pa.string(), nullable=False),
            pa.field("timestamp", UTC_MICROS, nullable=False),
            pa.field("user_id", pa.string()),
            pa.field("marketplace", pa.string(), nullable=False),
            pa.field("category", pa.string()),
            *PAYLOAD_FIELDS,
            pa.field("ingestion_time", UTC_MICROS, nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("source_offset", pa.int64(), nullable=False),
            # 60 bits of md5(job_id) and md5(event_id): finding a batch's jobs and events among all stored
            # ones scans these integers, ~4x cheaper than the strings.
            pa.field("job_key", pa.int64(), nullable=False),
            pa.field("event_key", pa.int64(), nullable=False),
            pa.field("job_date", pa.date32(), nullable=False),
        ]
    ),
    # A job's events stay together under the date the job was first folded to (it never changes, so this
    # table is append-only); a batch reads the history of the jobs it touches from the few recent
    # partitions they live in, never from the whole of bronze.
    partition_by=("job_date",),
    date_column="job_date",
    opaque_columns=("job_id", "event_id", "s3_path"),
    # Hashes and positions: nearly all distinct, so a dictionary attempt is wasted work (measured: 15% of
    # a first build's job events write).
    distinct_columns=("source_offset", "job_key", "event_key"),
    # Read back only by the pipeline, a few partitions at a time; written whole by a first build, where
    # lz4 writes it in half zstd's time (measured: 0.66 s vs 1.21 s per million events, files 50% larger).
    compression="lz4",
    configuration=STREAMED_LOG,
    description=(
        "The pipeline's state: every bronze event that passed the expectations, payload typed, filed under "
        "job_date (its job's created date when the job was first seen). Silver is their fold per job."
    ),
)

GOLD = TableDef(
    name="marketplace_daily_metrics_gold",
    layer="gold",
    schema=pa.schema(
        [
            pa.field("date", pa.date32(), nullable=False),
            pa.field("marketplace", pa.string(), nullable=False),
            pa.field("category", pa.string(), nullable=False),
            pa.field("total_validations", pa.int64(), nullable=False),
            pa.field("successful_validations", pa.int64(), nullable=False),
            pa.field("failed_validations", pa.int64(), nullable=False),
            pa.field("total_rows_processed", pa.int64(), nullable=False),
            pa.field("avg_processing_time_ms", pa.float64()),
            pa.field("p50_processing_time", pa.float64()),
            pa.field("p95_processing_time", pa.float64()),
            pa.field("p99_processing_time", pa.float64()),
            pa.field("unique_users", pa.int64(), nullable=False),
            pa.field("error_rate", pa.float64(), nullable=False),
            pa.field("year", pa.int32(), nullable=False),
            pa.field("month", pa.int32(), nullable=False),
            pa.field("updated_at", UTC_MICROS, nullable=False),
        ]
    ),
    partition_by=("year", "month"),
    date_column="date",
    configuration=STREAMED_LOG,
    description="Daily metrics per (date, marketplace, category); exact percentiles with linear interpolation.",
)

GOLD_RESTATEMENTS = TableDef(
    name="gold_restatements",
    layer="gold",
    schema=pa.schema(
        [
            pa.field("run_id", pa.string(), nullable=False),  # the pipeline run (or erasure) that changed it
            pa.field("bronze_version", pa.int64(), nullable=False),  # the bronze version its range ended at
            pa.field("restated_at", UTC_MICROS, nullable=False),
            pa.field("date", pa.date32(), nullable=False),
            pa.field("marketplace", pa.string(), nullable=False),
            pa.field("category", pa.string(), nullable=False),
            pa.field("first_written_at", UTC_MICROS),  # when the group was first written
            pa.field("previous_total_validations", pa.int64(), nullable=False),
            pa.field("new_total_validations", pa.int64(), nullable=False),  # 0: the group was deleted
            pa.field("previous_error_rate", pa.float64(), nullable=False),
            pa.field("new_error_rate", pa.float64()),
            pa.field("previous_p95_processing_time", pa.float64()),
            pa.field("new_p95_processing_time", pa.float64()),
            pa.field("events", pa.int64(), nullable=False),  # events of the run whose jobs are in the group
            pa.field("max_lateness_s", pa.float64()),  # largest first_written_at - event timestamp
            pa.field("year", pa.int32(), nullable=False),
            pa.field("month", pa.int32(), nullable=False),
        ]
    ),
    partition_by=("year", "month"),
    date_column="date",
    configuration=STREAMED_LOG,
    description=(
        "One row per gold group (date, marketplace, category) changed after it was first written, per "
        "pipeline range: its values before and after, and the events that changed it."
    ),
)

USER_ENGAGEMENT_GOLD = TableDef(
    name="user_engagement_daily_gold",
    layer="gold",
    schema=pa.schema(
        [
            pa.field("date", pa.date32(), nullable=False),
            pa.field("marketplace", pa.string(), nullable=False),
            pa.field("jobs", pa.int64(), nullable=False),
            pa.field("active_users", pa.int64(), nullable=False),
            pa.field("active_users_7d", pa.int64(), nullable=False),
            pa.field("active_users_28d", pa.int64(), nullable=False),
            pa.field("new_users", pa.int64(), nullable=False),
            pa.field("returning_users", pa.int64(), nullable=False),
            pa.field("jobs_per_active_user", pa.float64()),  # NULL when no job of the day has a user
            pa.field("year", pa.int32(), nullable=False),
            pa.field("month", pa.int32(), nullable=False),
            pa.field("updated_at", UTC_MICROS, nullable=False),
        ]
    ),
    partition_by=("year", "month"),
    date_column="date",
    configuration=STREAMED_LOG,
    description=(
        "Daily user engagement per (date, marketplace): jobs, active users that day and over 7 and 28 days, "
        "new and returning users."
    ),
)

ERROR_TYPE_GOLD = TableDef(
    name="error_type_daily_gold",
    layer="gold",
    schema=pa.schema(
        [
            pa.field("date", pa.date32(), nullable=False),
            pa.field("marketplace", pa.string(), nullable=False),
            pa.field("category", pa.string(), nullable=False),
            pa.field("error_type", pa.string(), nullable=False),
            pa.field("jobs", pa.int64(), nullable=False),
            pa.field("occurrences", pa.int64(), nullable=False),
            pa.field("share_of_failed_jobs", pa.float64(), nullable=False),
            pa.field("year", pa.int32(), nullable=False),
            pa.field("month", pa.int32(), nullable=False),
            pa.field("updated_at", UTC_MICROS, nullable=False),
        ]
    ),
    partition_by=("year", "month"),
    date_column="date",
    configuration=STREAMED_LOG,
    description=(
        "Daily error types per (date, marketplace, category, error_type): jobs reporting the type, its "
        "occurrences, and the share of those jobs that failed."
    ),
)

# The pipeline's state for user_engagement_daily_gold's new users: each user's first job date per marketplace.
USER_FIRST_SEEN = TableDef(
    name="user_first_seen",
    layer="silver",
    schema=pa.schema(
        [
            pa.field("marketplace", pa.string(), nullable=False),
            pa.field("user_id", pa.string(), nullable=False),
            # 60 bits of md5(marketplace, user_id): the key index (lake/key_index.py) finds a user's partition
            pa.field("user_key", pa.int64(), nullable=False),
            pa.field("first_date", pa.date32(), nullable=False),
        ]
    ),
    # A batch reads the partitions of its users' first dates (found through the key index) and of the
    # dates it recomputes (the users new on those dates), never the whole table.
    partition_by=("first_date",),
    date_column="first_date",
    opaque_columns=("user_id",),
    configuration=STREAMED_LOG,
    description=(
        "The pipeline's state: one row per (marketplace, user_id) with the created_date of the user's first "
        "job in silver; user_engagement_daily_gold's new users are read from it."
    ),
)

ML_PREDICTIONS = TableDef(
    name="ml_predictions",
    layer="gold",
    schema=pa.schema(
        [
            pa.field("marketplace", pa.string(), nullable=False),
            pa.field("category", pa.string(), nullable=False),
            pa.field("prediction_date", pa.date32(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            # "forecast" (a future day) or "anomaly" (a scored past day)
            pa.field("model_type", pa.string(), nullable=False),
            pa.field("predicted_validations", pa.float64()),
            pa.field("predicted_error_rate", pa.float64()),
            pa.field("lower_bound", pa.float64()),
            pa.field("upper_bound", pa.float64()),
            pa.field("actual_validations", pa.int64()),
            pa.field("actual_error_rate", pa.float64()),
            pa.field("is_anomaly", pa.bool_()),
            pa.field("anomaly_score", pa.float64()),
            pa.field("trained_at", UTC_MICROS, nullable=False),
            pa.field("created_at", UTC_MICROS, nullable=False),
            # the nominal coverage of [lower_bound, upper_bound] (0.8: the day should fall inside 80% of
            # the time); added after the first release, so older rows may hold NULL
            pa.field("confidence_level", pa.float64()),
        ]
    ),
    added_columns=("confidence_level",),
    partition_by=(),
    date_column="prediction_date",
    description=(
        "One row per (marketplace, category, prediction_date, model_version): forecasts of daily validations "
        "and error rate with bounds, and anomaly scores of past days; the model that made it and when it trained."
    ),
)

ML_MODELS = TableDef(
    name="ml_models",
    layer="gold",
    schema=pa.schema(
        [
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("model_type", pa.string(), nullable=False),
            pa.field("trained_at", UTC_MICROS, nullable=False),
            pa.field("train_start", pa.date32(), nullable=False),
            pa.field("train_end", pa.date32(), nullable=False),
            pa.field("parameters", pa.string(), nullable=False),  # JSON
            pa.field("metrics", pa.map_(pa.string(), pa.float64())),
        ]
    ),
    partition_by=(),
    description="One row per training run: version, training window, parameters and held-out metrics.",
)

ANOMALIES = TableDef(
    name="anomalies",
    layer="gold",
    schema=pa.schema(
        [
            pa.field("marketplace", pa.string(), nullable=False),
            pa.field("date", pa.date32(), nullable=False),
            # daily series: validations | error_rate | p95_processing_time; jobs: the feature that stands out
            pa.field("metric", pa.string(), nullable=False),
            pa.field("observed", pa.float64()),
            pa.field("expected", pa.float64()),
            pa.field("z_score", pa.float64()),  # jobs: cluster standard deviations out, on the worst feature
            pa.field("detector", pa.string(), nullable=False),  # mad | kmeans-distance | kmeans-small-cluster
            pa.field("reason", pa.string(), nullable=False),
            pa.field("scored_at", UTC_MICROS, nullable=False),
            pa.field("job_id", pa.string()),  # the anomalous job (job detector); NULL for a day
            # daily series: what the day was compared with, same-weekday | recent-days (a new
            # marketplace: low confidence), and how many days that baseline is the median of; NULL for a job
            pa.field("baseline", pa.string()),
            pa.field("baseline_days", pa.int32()),
        ]
    ),
    added_columns=("job_id", "baseline", "baseline_days"),
    partition_by=(),
    description=(
        "Days whose metric left its robust range (rolling median and MAD) and jobs far from their K-Means "
        "cluster: observed vs expected, and why."
    ),
)

PIPELINE_RUNS = TableDef(
    name="pipeline_runs",
    layer="ops",
    schema=pa.schema(
        [
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("step", pa.string(), nullable=False),
            pa.field("started_at", UTC_MICROS, nullable=False),
            pa.field("duration_s", pa.float64(), nullable=False),
            pa.field("status", pa.string(), nullable=False),
            pa.field("upstream_from_version", pa.int64()),
            pa.field("upstream_to_version", pa.int64()),
            pa.field("rows_in", pa.int64()),
            pa.field("rows_out", pa.int64()),
            pa.field("rows_quarantined", pa.int64()),
            pa.field("expectations", pa.map_(pa.string(), pa.int64())),
            pa.field("error", pa.string()),
            pa.field("run_date", pa.date32(), nullable=False),
        ]
    ),
    partition_by=("run_date",),
    date_column="run_date",
    configuration=STREAMED_LOG,
    description="One row per pipeline step run: upstream versions, rows in/out, violations per rule, status.",
)

DATA_QUALITY_METRICS = TableDef(
    name="data_quality_metrics",
    layer="ops",
    schema=pa.schema(
        [
            pa.field("measured_at", UTC_MICROS, nullable=False),
            pa.field("run_id", pa.string()),
            # events_in, rejected, rescued, quarantined (dimension: rule), freshness_p95_s,
            # ingestion_latency_p95_s, canary_lag_s, table_staleness_s (dimension: table), step_sla_late (dimension: step)
            pa.field("metric", pa.string(), nullable=False),
            pa.field("dimension", pa.string()),
            pa.field("value", pa.float64(), nullable=False),
            pa.field("measured_date", pa.date32(), nullable=False),
        ]
    ),
    partition_by=("measured_date",),
    date_column="measured_date",
    configuration=STREAMED_LOG,
    description=(
        "Data-quality measurements the service records per pipeline batch: volumes, schema violations "
        "(rejects, rescued data), quarantine by rule, freshness and ingestion latency, table staleness, SLA."
    ),
)

RECONCILIATION = TableDef(
    name="reconciliation",
    layer="ops",
    schema=pa.schema(
        [
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("reconciled_at", UTC_MICROS, nullable=False),
            pa.field("since", pa.date32()),  # the first date covered (NULL: everything)
            pa.field("bronze_version", pa.int64(), nullable=False),  # the version the derived tables are at
            pa.field("links", pa.int64(), nullable=False),
            pa.field("imbalances", pa.int64(), nullable=False),
            pa.field("balanced", pa.bool_(), nullable=False),
            pa.field("first_imbalance", pa.string()),  # the first link that does not balance
            pa.field("counts", pa.string(), nullable=False),  # canonical JSON: ranges and every count
            pa.field("sha256", pa.string(), nullable=False),  # of counts, to recompute and compare later
            pa.field("reconciled_date", pa.date32(), nullable=False),
        ]
    ),
    partition_by=("reconciled_date",),
    date_column="reconciled_date",
    configuration=STREAMED_LOG,
    description=(
        "One row per vhlake reconcile: the chain of counts from each source to gold, whether every link "
        "balanced, and a sha256 over the counts' canonical form."
    ),
)

API_KEYS = TableDef(
    name="api_keys",
    layer="ops",
    schema=pa.schema(
        [
            pa.field("key_id", pa.string(), nullable=False),
            pa.field("key_hash", pa.string(), nullable=False),  # sha256 of the whole key: never the key
            pa.field("scope", pa.string(), nullable=False),  # ingest | read | admin
            pa.field("marketplaces", pa.list_(pa.string())),  # NULL: every marketplace
            pa.field("description", pa.string()),
            pa.field("created_at", UTC_MICROS, nullable=False),
            pa.field("revoked_at", UTC_MICROS),
        ]
    ),
    partition_by=(),
    description="API keys (hashed), their scope and the marketplaces they may see.",
)

AUDIT_LOG = TableDef(
    name="audit_log",
    layer="ops",
    schema=pa.schema(
        [
            pa.field("at", UTC_MICROS, nullable=False),
            pa.field("key_id", pa.string()),
            pa.field("method", pa.string(), nullable=False),
            pa.field("route", pa.string(), nullable=False),
            pa.field("status", pa.int32(), nullable=False),
            pa.field("audit_date", pa.date32(), nullable=False),
            # JSON evidence of an operation (an erasure: rows removed and versions written per table)
            pa.field("details", pa.string()),
        ]
    ),
    added_columns=("details",),
    partition_by=("audit_date",),
    date_column="audit_date",
    configuration=STREAMED_LOG,
    description="One row per API request (which key, which route, what status) and per erasure request.",
)

ALERT_EVENTS = TableDef(
    name="alert_events",
    layer="ops",
    schema=pa.schema(
        [
            pa.field("evaluated_at", UTC_MICROS, nullable=False),
            pa.field("rule", pa.string(), nullable=False),
            pa.field("key", pa.string(), nullable=False),  # the triggering key (e.g. a marketplace), or *
            pa.field("state", pa.string(), nullable=False),  # ok | triggered
            pa.field("previous_state", pa.string(), nullable=False),
            pa.field("value", pa.float64()),
            pa.field("threshold", pa.float64(), nullable=False),
            pa.field("severity", pa.string(), nullable=False),
            # triggered | still_triggered | resolved, when this evaluation notified; NULL otherwise
            pa.field("notification", pa.string()),
            pa.field("channel_results", pa.map_(pa.string(), pa.string())),  # channel → ok | the error
            pa.field("evaluated_date", pa.date32(), nullable=False),
        ]
    ),
    partition_by=("evaluated_date",),
    date_column="evaluated_date",
    configuration=STREAMED_LOG,
    description="Alert evaluations per rule and key: state, value, and the notifications sent (or not).",
)

STORAGE_TIER_MOVES = TableDef(
    name="storage_tier_moves",
    layer="ops",
    schema=pa.schema(
        [
            pa.field("run_id", pa.string(), nullable=False),  # one vhlake maintain pass
            pa.field("moved_at", UTC_MICROS, nullable=False),
            pa.field("table_name", pa.string(), nullable=False),
            pa.field("partition_path", pa.string(), nullable=False),  # e.g. event_date=2026-10-01
            pa.field("partition_date", pa.date32(), nullable=False),  # the date its age is measured from
            pa.field("tier", pa.string(), nullable=False),  # hot | warm | cold: where the files went
            pa.field("storage_class", pa.string(), nullable=False),  # the store's name for it: STANDARD_IA...
            pa.field("files", pa.int64(), nullable=False),
            pa.field("bytes", pa.int64(), nullable=False),
            pa.field("moved_date", pa.date32(), nullable=False),
        ]
    ),
    partition_by=("moved_date",),
    date_column="moved_date",
    description=(
        "One row per partition and storage tier a vhlake maintain pass moved files of to: the table, the "
        "partition, the tier and storage class, files and bytes (an object store only)."
    ),
)

ALL_TABLES: tuple[TableDef, ...] = (
    BRONZE,
    REJECTED,
    INGEST_LEDGER,
    QUARANTINE,
    JOB_EVENTS,
    SILVER,
    USER_FIRST_SEEN,
    GOLD,
    ERROR_TYPE_GOLD,
    USER_ENGAGEMENT_GOLD,
    GOLD_RESTATEMENTS,
    ML_PREDICTIONS,
    ML_MODELS,
    ANOMALIES,
    PIPELINE_RUNS,
    DATA_QUALITY_METRICS,
    RECONCILIATION,
    API_KEYS,
    AUDIT_LOG,
    ALERT_EVENTS,
    STORAGE_TIER_MOVES,
)


def table_by_name(name: str) -> TableDef:
    """The contract of the table called ``name`` (its Databricks name)."""
    for table in ALL_TABLES:
        if table.name == name:
            return table
    known = ", ".join(t.name for t in ALL_TABLES)
    raise KeyError(f"unknown table {name!r}; known tables: {known}")

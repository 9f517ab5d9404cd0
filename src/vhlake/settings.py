"""The one settings object, built at an entrypoint and passed down.

Library code never reads the environment: only :func:`Settings` (via pydantic-settings) does, and only when an
entrypoint builds it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vhlake.api.limits import ApiLimits

_API = ApiLimits()  # the API's defaults, named once


class Settings(BaseSettings):
    """vhlake configuration from environment variables (and an optional ``.env`` file).

    The Databricks and Kafka names are the ones ValidaHub already uses; vhlake's own settings start with
    ``VHLAKE_``. The Databricks token is a secret with no default value: it is only needed when a Databricks
    engine is used, and that engine refuses to start without it.
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    databricks_server_hostname: str | None = Field(default=None, alias="DATABRICKS_SERVER_HOSTNAME")
    databricks_http_path: str | None = Field(default=None, alias="DATABRICKS_HTTP_PATH")
    databricks_access_token: SecretStr | None = Field(default=None, alias="DATABRICKS_ACCESS_TOKEN")
    databricks_catalog: str = Field(default="validahub", alias="DATABRICKS_CATALOG")
    databricks_schema: str = Field(default="analytics", alias="DATABRICKS_SCHEMA")

    kafka_bootstrap_servers: str = Field(default="localhost:9092", alias="KAFKA_BOOTSTRAP_SERVERS")
    kafka_validation_topic: str = Field(default="validation-events", alias="KAFKA_VALIDATION_TOPIC")
    kafka_consumer_group: str = Field(default="databricks-consumer", alias="KAFKA_CONSUMER_GROUP")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        alias="KAFKA_SECURITY_PROTOCOL",
        description="SASL_SSL for Azure Event Hubs' Kafka endpoint (with KAFKA_SASL_MECHANISM=PLAIN).",
    )
    kafka_sasl_mechanism: str | None = Field(default=None, alias="KAFKA_SASL_MECHANISM")
    kafka_sasl_username: str | None = Field(
        default=None, alias="KAFKA_SASL_USERNAME", description="Event Hubs: the literal $ConnectionString."
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, alias="KAFKA_SASL_PASSWORD", description="Event Hubs: the namespace connection string."
    )
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="snappy", alias="KAFKA_COMPRESSION"
    )
    kafka_linger_ms: int = Field(
        default=5, alias="KAFKA_LINGER_MS", ge=0, description="How long the producer waits to fill a batch."
    )
    kafka_batch_size: int = Field(
        default=1_000_000, alias="KAFKA_BATCH_SIZE", gt=0, description="Producer batch size in bytes."
    )
    kafka_delivery_timeout_s: float = Field(
        default=30.0,
        alias="KAFKA_DELIVERY_TIMEOUT_S",
        gt=0,
        description="How long an event may wait for the broker before it goes to the outbox.",
    )
    kafka_session_timeout_ms: int = Field(
        default=45_000,
        alias="KAFKA_SESSION_TIMEOUT_MS",
        gt=0,
        description="Consumer group session timeout (also how long a rebalance may take).",
    )
    kafka_ingest_batch_messages: int = Field(
        default=50_000,
        alias="VHLAKE_KAFKA_BATCH_MESSAGES",
        gt=0,
        description="Messages per bronze commit when ingesting from Kafka.",
    )
    kafka_ingest_max_wait_s: float = Field(
        default=2.0,
        alias="VHLAKE_KAFKA_MAX_WAIT_S",
        gt=0,
        description="The longest a partial batch waits for more messages before it is committed.",
    )
    kafka_resend_window: int = Field(
        default=100_000,
        alias="VHLAKE_KAFKA_RESEND_WINDOW",
        gt=0,
        description=(
            "Offsets per partition within which a record repeating an earlier record's event_id is taken "
            "for a producer's re-send after a broker failure: it goes to the rejects, not bronze."
        ),
    )
    kafka_schema_registry_url: str | None = Field(
        default=None,
        alias="KAFKA_SCHEMA_REGISTRY_URL",
        description=(
            "A Confluent-compatible Schema Registry (Confluent, Karapace, Redpanda, Apicurio's ccompat API). "
            "With it, the Kafka ingest checks the schema id of Confluent-framed messages, and "
            "`vhlake schema push|diff` talk to it."
        ),
    )
    kafka_schema_registry_username: str | None = Field(
        default=None,
        alias="KAFKA_SCHEMA_REGISTRY_USERNAME",
        description="Basic-auth user of the registry (Confluent Cloud: the API key).",
    )
    kafka_schema_registry_password: SecretStr | None = Field(
        default=None,
        alias="KAFKA_SCHEMA_REGISTRY_PASSWORD",
        description="Basic-auth password of the registry (Confluent Cloud: the API secret).",
    )
    kafka_publish_framed: bool = Field(
        default=False,
        alias="VHLAKE_KAFKA_PUBLISH_FRAMED",
        description=(
            "Publish to Kafka in the Confluent wire format (magic byte, schema id, JSON), registering the "
            "event schema under <topic>-value in KAFKA_SCHEMA_REGISTRY_URL: for consumers that read with "
            "Confluent's deserializers."
        ),
    )
    alerts_file: str | None = Field(
        default=None,
        alias="VHLAKE_ALERTS_FILE",
        description="The alert rules (alerts.yaml); without one, the seed's high_error_rate and processing_delays.",
    )
    smtp_password: SecretStr | None = Field(
        default=None, alias="VHLAKE_SMTP_PASSWORD", description="For e-mail alert channels that log in."
    )
    outbox_path: str | None = Field(
        default=None,
        alias="VHLAKE_OUTBOX_PATH",
        description="Where events wait while Kafka is unreachable; default <lake>/_outbox/<topic>.db.",
    )

    lake_uri: str = Field(default="./lake", alias="VHLAKE_LAKE_URI")
    query_engine: Literal["duckdb", "databricks"] = Field(
        default="duckdb",
        alias="VHLAKE_QUERY_ENGINE",
        description="duckdb (the embedded lake) or databricks (a SQL warehouse: DATABRICKS_* settings).",
    )
    event_log: Literal["embedded", "kafka"] = Field(default="embedded", alias="VHLAKE_EVENT_LOG")
    event_log_path: str | None = Field(
        default=None,
        alias="VHLAKE_EVENT_LOG_PATH",
        description="Embedded event log file; default <lake>/_eventlog/events.db for a local lake.",
    )
    source_system: str = Field(
        default="validahub",
        alias="VHLAKE_SOURCE_SYSTEM",
        description="Bronze source_system for events that do not name their own.",
    )
    pipeline_versions_per_batch: int = Field(
        default=20,
        alias="VHLAKE_PIPELINE_VERSIONS_PER_BATCH",
        gt=0,
        description="Bronze commits the pipeline processes per silver/gold commit: bounds memory per step.",
    )
    pipeline_rows_per_batch: int = Field(
        default=200_000,
        alias="VHLAKE_PIPELINE_ROWS_PER_BATCH",
        gt=0,
        description="About how many new bronze rows one pipeline step handles (bounds its memory).",
    )
    pipeline_build_bucket_rows: int = Field(
        default=500_000,
        alias="VHLAKE_PIPELINE_BUILD_BUCKET_ROWS",
        gt=0,
        description="Events per job bucket of a first build (or full refresh): bounds its memory.",
    )
    pipeline_memory_limit: str = Field(
        default="1GB",
        alias="VHLAKE_PIPELINE_MEMORY_LIMIT",
        min_length=1,
        description=(
            "DuckDB's memory limit in the pipeline (e.g. 1GB, 512MB): past it DuckDB spills to disk, so a "
            "large range stays bounded (DuckDB's own default is 80% of RAM)."
        ),
    )
    pipeline_threads: int = Field(
        default=2,
        alias="VHLAKE_PIPELINE_THREADS",
        gt=0,
        description=(
            "Threads a first build reads bronze ahead with, and as many writing its files: each reading "
            "thread holds a part of bronze being typed (memory)."
        ),
    )
    pipeline_spill_dir: str | None = Field(
        default=None,
        alias="VHLAKE_PIPELINE_SPILL_DIR",
        description=(
            "An existing folder where a first build spills its job buckets and DuckDB its temporary files "
            "(unset: the system's temporary folder)."
        ),
    )
    reconcile_interval_s: float = Field(
        default=3600.0,
        alias="VHLAKE_RECONCILE_INTERVAL_S",
        gt=0,
        description=(
            "vhlake serve reconciles every event from its source to gold this often (vhlake reconcile, "
            "over the days bronze's retention keeps whole), and exports the result on /metrics."
        ),
    )
    engagement_interval_s: float = Field(
        default=300.0,
        alias="VHLAKE_ENGAGEMENT_INTERVAL_S",
        gt=0,
        description=(
            "vhlake serve brings user_engagement_daily_gold to silver at most this often (not per "
            "micro-batch: a step recomputes 28-day windows, seconds of work that micro-batches wait for)."
        ),
    )
    retention_bronze_days: int = Field(
        default=90,
        alias="VHLAKE_RETENTION_BRONZE_DAYS",
        gt=0,
        description="Days bronze, the rejects and the quarantine keep (vhlake maintain deletes older rows).",
    )
    retention_silver_days: int = Field(
        default=365,
        alias="VHLAKE_RETENTION_SILVER_DAYS",
        gt=0,
        description="Days silver and the job events keep.",
    )
    retention_gold_days: int = Field(
        default=730,
        alias="VHLAKE_RETENTION_GOLD_DAYS",
        gt=0,
        description="Days gold and the ML predictions keep.",
    )
    vacuum_retention_hours: float = Field(
        default=168.0,
        alias="VHLAKE_VACUUM_RETENTION_HOURS",
        ge=0,
        description="Vacuum keeps the files any version of the last this many hours needs (time travel).",
    )
    vacuum_min_retention_hours: float = Field(
        default=168.0,
        alias="VHLAKE_VACUUM_MIN_RETENTION_HOURS",
        ge=0,
        description="vhlake maintain refuses a vacuum retention below this (Delta's own default: 7 days).",
    )
    tiering: bool = Field(
        default=True,
        alias="VHLAKE_TIERING",
        description=(
            "vhlake maintain moves the files of old partitions to cheaper storage classes on an object "
            "store (S3, Azure Blob, GCS); false: everything stays in the default class."
        ),
    )
    tier_bronze_warm_days: int | None = Field(
        default=30,
        alias="VHLAKE_TIER_BRONZE_WARM_DAYS",
        ge=0,
        description="Bronze, rejects, ingest ledger and quarantine partitions older than this go warm (empty: never).",
    )
    tier_bronze_cold_days: int | None = Field(
        default=None,
        alias="VHLAKE_TIER_BRONZE_COLD_DAYS",
        ge=0,
        description="... and cold after this many days (empty: never).",
    )
    tier_silver_warm_days: int | None = Field(
        default=90,
        alias="VHLAKE_TIER_SILVER_WARM_DAYS",
        ge=0,
        description="Silver and job events partitions older than this go warm (empty: never).",
    )
    tier_silver_cold_days: int | None = Field(
        default=180,
        alias="VHLAKE_TIER_SILVER_COLD_DAYS",
        ge=0,
        description="... and cold after this many days (empty: never).",
    )
    tier_gold_warm_days: int | None = Field(
        default=None,
        alias="VHLAKE_TIER_GOLD_WARM_DAYS",
        ge=0,
        description="Gold tables' months whose last day is older than this go warm (empty, the default: never).",
    )
    tier_gold_cold_days: int | None = Field(
        default=None,
        alias="VHLAKE_TIER_GOLD_COLD_DAYS",
        ge=0,
        description="... and cold after this many days (empty, the default: never).",
    )
    tier_min_object_bytes: int = Field(
        default=128 * 1024,
        alias="VHLAKE_TIER_MIN_OBJECT_BYTES",
        ge=0,
        description=(
            "Smaller objects stay hot: S3 bills a Standard-IA or Glacier IR object as 128 KiB at least."
        ),
    )
    price_hot_gb_month: float = Field(
        default=0.023,
        alias="VHLAKE_PRICE_HOT_GB_MONTH",
        ge=0,
        description="USD per GB-month of hot storage (S3 Standard, us-east-1 list price), for vhlake tables --costs.",
    )
    price_warm_gb_month: float = Field(
        default=0.0125,
        alias="VHLAKE_PRICE_WARM_GB_MONTH",
        ge=0,
        description="USD per GB-month of warm storage (S3 Standard-IA, us-east-1 list price).",
    )
    price_cold_gb_month: float = Field(
        default=0.004,
        alias="VHLAKE_PRICE_COLD_GB_MONTH",
        ge=0,
        description="USD per GB-month of cold storage (S3 Glacier Instant Retrieval, us-east-1 list price).",
    )
    s3_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_ENDPOINT_URL", "AWS_ENDPOINT"),
        description=(
            "An S3-compatible server that is not AWS: delta-rs reads these variables itself; the storage "
            "tier moves (boto3) get it from here."
        ),
    )
    azure_storage_account_name: str | None = Field(
        default=None,
        alias="AZURE_STORAGE_ACCOUNT_NAME",
        description="The Azure storage account of an az:// lake, for its storage tier moves.",
    )
    ingest_batch_bytes: int = Field(
        default=32 * 1024 * 1024,
        alias="VHLAKE_INGEST_BATCH_BYTES",
        gt=0,
        description="Input bytes per bronze commit: bounds memory and the work a crash can lose.",
    )
    api_max_body_bytes: int = Field(
        default=_API.max_body_bytes,
        alias="VHLAKE_API_MAX_BODY_BYTES",
        gt=0,
        description="The largest request body the API reads (413 beyond).",
    )
    api_max_events: int = Field(
        default=_API.max_events,
        alias="VHLAKE_API_MAX_EVENTS",
        gt=0,
        description="Events per POST /v1/events.",
    )
    api_max_depth: int = Field(
        default=_API.max_depth,
        alias="VHLAKE_API_MAX_DEPTH",
        gt=2,
        description="Objects and arrays nested in one event (the event counts 1); deeper events are rejected.",
    )
    api_max_string_chars: int = Field(
        default=_API.max_string_chars,
        alias="VHLAKE_API_MAX_STRING_CHARS",
        gt=0,
        description="The longest string (or field name) in an event; longer ones reject the event.",
    )
    api_max_error_types: int = Field(
        default=_API.max_error_types,
        alias="VHLAKE_API_MAX_ERROR_TYPES",
        gt=0,
        description="Entries of an event's payload.error_types; more reject the event.",
    )
    api_body_timeout_s: float = Field(
        default=_API.body_timeout_s,
        alias="VHLAKE_API_BODY_TIMEOUT_S",
        gt=0,
        description="How long a request body may take to arrive (408 after, and the connection closes).",
    )
    api_rate_per_s: float = Field(
        default=_API.rate_per_s,
        alias="VHLAKE_API_RATE_PER_S",
        gt=0,
        description="Requests per second each API key may sustain (429 with Retry-After beyond).",
    )
    api_rate_burst: int = Field(
        default=_API.rate_burst,
        alias="VHLAKE_API_RATE_BURST",
        ge=1,
        description="Requests each API key may make at once before the rate applies.",
    )
    ready_max_failures: int = Field(
        default=3,
        alias="VHLAKE_READY_MAX_FAILURES",
        ge=1,
        description="/readyz answers 503 once a service step has failed this many times in a row.",
    )

    @field_validator(
        "tier_bronze_warm_days",
        "tier_bronze_cold_days",
        "tier_silver_warm_days",
        "tier_silver_cold_days",
        "tier_gold_warm_days",
        "tier_gold_cold_days",
        mode="before",
    )
    @classmethod
    def _never(cls, value: object) -> object:
        """An empty value (or ``never``) is no age: the layer never goes to that tier."""
        if isinstance(value, str) and value.strip().lower() in {"", "never", "none"}:
            return None
        return value

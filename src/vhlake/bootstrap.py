"""Wiring: turns one :class:`Settings` into the objects an entrypoint needs. Only entrypoints call this."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vhlake.errors import ConfigError, LakeError
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.events.outbox import Outbox
from vhlake.events.publisher import EmbeddedLogPublisher, EventPublisher
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.delta import Lake
from vhlake.lake.tables import ALL_TABLES, BRONZE
from vhlake.pipeline.runner import Pipeline, PipelineResources
from vhlake.settings import Settings

_LOG = logging.getLogger("vhlake.service")

# The service, API, alert and query wiring is imported where it is built: every CLI command starts by
# importing this module, and `vhlake ingest` should not pay a second of FastAPI, pandas and sqlglot imports.
if TYPE_CHECKING:
    from vhlake.alerts.runner import AlertRunner
    from vhlake.api.app import ApiDeps, QuarantineReplay
    from vhlake.events.registry_client import RegistryConfig, SchemaLookup
    from vhlake.ingest.kafka_source import KafkaIngest
    from vhlake.lake.object_tiers import ObjectTiers
    from vhlake.lifecycle.costs import StorageCosts, TierPrices
    from vhlake.lifecycle.maintain import Retention, Tiering
    from vhlake.lifecycle.tiers import TierPolicy
    from vhlake.query.databricks_engine import DatabricksConfig
    from vhlake.query.engine import QueryEngine
    from vhlake.reconciliation.run import Reconciliation
    from vhlake.service.http import Check
    from vhlake.service.runner import LakeService, ServiceOptions


def build_lake(settings: Settings) -> Lake:
    return Lake(settings.lake_uri)


# What a lake folder holds once anything was written to it: a layer's tables, or the event log or outbox.
_LAKE_FOLDERS = frozenset({table.layer for table in ALL_TABLES} | {"_eventlog", "_outbox"})


def lake_absence(settings: Settings) -> str | None:
    """Why there is no lake where the settings point, or None when there is one. An object store is
    not checked (its tables may live under any prefix)."""
    lake = build_lake(settings)
    if not lake.is_local:
        return None
    root = _local_root(lake)
    if not root.exists():
        return f"no lake at {root}: it does not exist (vhlake ingest, publish or demo create one)"
    if not root.is_dir():
        return f"{root} is a file, not a lake folder"
    if not any((root / folder).is_dir() for folder in _LAKE_FOLDERS):
        return f"no lake at {root}: the folder holds no lake tables"
    return None


def create_lake(settings: Settings) -> str:
    """Make the lake's folder (a first write then fills it); returns where it is."""
    lake = build_lake(settings)
    if not lake.is_local:
        return lake.uri
    root = _local_root(lake)
    if root.exists() and not root.is_dir():
        raise LakeError(f"{root} is a file, not a lake folder")
    (root / BRONZE.layer).mkdir(parents=True, exist_ok=True)  # what makes the folder a lake's
    return str(root)


def _local_root(lake: Lake) -> Path:
    return Path(lake.uri.removeprefix("file://")).expanduser().absolute()


def build_ingestor(settings: Settings) -> BronzeIngestor:
    return BronzeIngestor(
        build_lake(settings),
        source_system=settings.source_system,
        batch_bytes=settings.ingest_batch_bytes,
    )


def build_pipeline(settings: Settings) -> Pipeline:
    return Pipeline(
        build_lake(settings),
        versions_per_batch=settings.pipeline_versions_per_batch,
        rows_per_batch=settings.pipeline_rows_per_batch,
        build_bucket_rows=settings.pipeline_build_bucket_rows,
        resources=build_pipeline_resources(settings),
    )


def build_pipeline_resources(settings: Settings) -> PipelineResources:
    return PipelineResources(
        memory_limit=settings.pipeline_memory_limit,
        threads=settings.pipeline_threads,
        spill_dir=settings.pipeline_spill_dir,
    )


def reconcile_since(settings: Settings, today: date) -> date:
    """The first day a reconciliation covers by default: the oldest day bronze's retention keeps whole
    (older events may have expired from bronze while their jobs are still in silver)."""
    return today - timedelta(days=settings.retention_bronze_days - 1)


def build_retention(settings: Settings, *, vacuum_hours: float | None = None) -> Retention:
    from vhlake.lifecycle.maintain import Retention

    return Retention(
        bronze_days=settings.retention_bronze_days,
        silver_days=settings.retention_silver_days,
        gold_days=settings.retention_gold_days,
        vacuum_hours=settings.vacuum_retention_hours if vacuum_hours is None else vacuum_hours,
        min_vacuum_hours=settings.vacuum_min_retention_hours,
    )


def build_tier_policy(settings: Settings) -> TierPolicy:
    from vhlake.lifecycle.tiers import TierAges, TierPolicy

    return TierPolicy(
        bronze=TierAges(settings.tier_bronze_warm_days, settings.tier_bronze_cold_days),
        silver=TierAges(settings.tier_silver_warm_days, settings.tier_silver_cold_days),
        gold=TierAges(settings.tier_gold_warm_days, settings.tier_gold_cold_days),
        min_object_bytes=settings.tier_min_object_bytes,
    )


def build_object_tiers(settings: Settings, lake: Lake | None = None) -> ObjectTiers:
    """The storage classes of the lake's store (its SDK is imported here: a ConfigError names the extra)."""
    from vhlake.lake.object_tiers import object_tiers

    lake = lake or build_lake(settings)
    return object_tiers(
        lake.uri,
        lake.storage_options,
        s3_endpoint=settings.s3_endpoint,
        azure_account=settings.azure_storage_account_name,
    )


def build_tiering(settings: Settings, lake: Lake) -> Tiering | None:
    """What ``vhlake maintain`` moves old partitions with; None when tiering is off or the lake is on a
    local disk (one tier: reported only, by ``vhlake tables --costs``)."""
    from vhlake.lifecycle.maintain import Tiering

    if not settings.tiering or lake.is_local:
        return None
    return Tiering(build_tier_policy(settings), build_object_tiers(settings, lake))


def available_tiering(settings: Settings, lake: Lake) -> tuple[Tiering | None, str]:
    """What ``vhlake maintain`` moves old partitions with, or None and why not: tiering is off, the lake is
    on a local disk, or the store's SDK is not installed. The rest of maintain runs either way: cheaper
    classes are a saving, not a condition (an S3 lake installed before the ``s3`` extra existed keeps
    working, and says what to install)."""
    if not settings.tiering:
        return None, "tiering is off (VHLAKE_TIERING)"
    if lake.is_local:
        return None, "a local disk has one tier"
    try:
        return build_tiering(settings, lake), ""
    except ConfigError as exc:
        return None, str(exc)


def build_tier_prices(settings: Settings) -> TierPrices:
    from vhlake.lifecycle.costs import TierPrices

    return TierPrices(
        hot=settings.price_hot_gb_month, warm=settings.price_warm_gb_month, cold=settings.price_cold_gb_month
    )


def storage_costs(settings: Settings) -> StorageCosts:
    """What the lake's store holds, per layer and tier, and what it costs a month (``tables --costs``)."""
    from vhlake.lifecycle.costs import storage_costs as costs

    lake = build_lake(settings)
    return costs(lake, build_object_tiers(settings, lake), build_tier_prices(settings))


def build_query_engine(settings: Settings, engine: str | None = None) -> QueryEngine:
    """The engine ``engine`` names, else ``VHLAKE_QUERY_ENGINE``: DuckDB over the lake, or Databricks SQL."""
    from vhlake.query.databricks_engine import DatabricksSQLEngine
    from vhlake.query.duckdb_engine import DuckDBEngine

    chosen = engine or settings.query_engine
    if chosen == "duckdb":
        return DuckDBEngine(build_lake(settings))
    if chosen == "databricks":
        return DatabricksSQLEngine(databricks_config(settings))
    raise ConfigError(f"unknown query engine {chosen!r}: duckdb or databricks")


def databricks_config(settings: Settings) -> DatabricksConfig:
    from vhlake.query.databricks_engine import DatabricksConfig

    required = {
        "DATABRICKS_SERVER_HOSTNAME": settings.databricks_server_hostname,
        "DATABRICKS_HTTP_PATH": settings.databricks_http_path,
        "DATABRICKS_ACCESS_TOKEN": settings.databricks_access_token,
    }
    missing = [name for name, value in required.items() if not value]
    if missing:
        raise ConfigError(f"the Databricks engine needs {', '.join(missing)}")
    assert settings.databricks_server_hostname and settings.databricks_http_path
    assert settings.databricks_access_token is not None
    return DatabricksConfig(
        server_hostname=settings.databricks_server_hostname,
        http_path=settings.databricks_http_path,
        access_token=settings.databricks_access_token,
        catalog=settings.databricks_catalog,
        schema=settings.databricks_schema,
    )


def _beside_lake(settings: Settings, configured: str | None, folder: str, setting: str, what: str) -> Path:
    """``configured``, else ``<lake>/<folder>/<topic>.db`` for a local lake (an object store needs it set)."""
    if configured:
        return Path(configured).expanduser()
    lake = build_lake(settings)
    if not lake.is_local:
        raise ConfigError(
            f"the lake {lake.uri} is not on local disk: set {setting} to a local file for {what}"
        )
    root = Path(lake.uri.removeprefix("file://")).expanduser()
    return root / folder / f"{settings.kafka_validation_topic}.db"


def event_log_path(settings: Settings) -> Path:
    """Where the embedded log lives: ``VHLAKE_EVENT_LOG_PATH``, else ``<lake>/_eventlog/<topic>.db``."""
    return _beside_lake(
        settings, settings.event_log_path, "_eventlog", "VHLAKE_EVENT_LOG_PATH", "the embedded event log"
    )


def outbox_path(settings: Settings) -> Path:
    """Where events wait while Kafka is unreachable: ``VHLAKE_OUTBOX_PATH``, else ``<lake>/_outbox/<topic>.db``."""
    return _beside_lake(settings, settings.outbox_path, "_outbox", "VHLAKE_OUTBOX_PATH", "the Kafka outbox")


def kafka_client_config(settings: Settings) -> dict[str, Any]:
    """What every Kafka client needs: where the brokers are and how to authenticate (Event Hubs: SASL_SSL,
    PLAIN, username ``$ConnectionString``, the connection string as password)."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        config["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None:
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    return config


def registry_config(settings: Settings) -> RegistryConfig | None:
    """The Schema Registry ``KAFKA_SCHEMA_REGISTRY_*`` name, or None when none is configured."""
    from vhlake.events.registry_client import RegistryConfig

    if not settings.kafka_schema_registry_url:
        return None
    return RegistryConfig(
        url=settings.kafka_schema_registry_url,
        username=settings.kafka_schema_registry_username,
        password=settings.kafka_schema_registry_password,
    )


def build_kafka_ingest(settings: Settings, *, group: str | None = None) -> KafkaIngest:
    from vhlake.ingest.kafka_source import KafkaIngest, KafkaIngestOptions

    return KafkaIngest(
        build_lake(settings),
        kafka_client_config(settings),
        topic=settings.kafka_validation_topic,
        group=group or settings.kafka_consumer_group,
        source_system=settings.source_system,
        options=KafkaIngestOptions(
            batch_messages=settings.kafka_ingest_batch_messages,
            max_wait_s=settings.kafka_ingest_max_wait_s,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            resend_window=settings.kafka_resend_window,
        ),
        schemas=schema_lookup(settings),
    )


def schema_lookup(settings: Settings) -> SchemaLookup | None:
    """The registry the Kafka ingest checks framed messages' schema ids against, when one is configured."""
    from vhlake.events.registry_client import ConfluentSchemaLookup

    config = registry_config(settings)
    return None if config is None else ConfluentSchemaLookup(config)


def open_event_log(settings: Settings) -> EmbeddedEventLog:
    return EmbeddedEventLog(event_log_path(settings), topic=settings.kafka_validation_topic)


def existing_event_log(settings: Settings) -> EmbeddedEventLog | None:
    """The embedded log, when there is one to read or erase: the file ``VHLAKE_EVENT_LOG_PATH`` names, or
    the one beside a local lake. A lake on an object store without that setting has none (the embedded log
    lives on local disk; such a lake is fed by files or Kafka)."""
    if settings.event_log != "embedded" or (
        not settings.event_log_path and not build_lake(settings).is_local
    ):
        return None
    return open_event_log(settings) if event_log_path(settings).exists() else None


def build_publisher(settings: Settings) -> EventPublisher:
    """The publisher the settings choose (``VHLAKE_EVENT_LOG``)."""
    if settings.event_log == "kafka":
        from vhlake.events.kafka_publisher import KafkaEventPublisher, KafkaProducerOptions

        return KafkaEventPublisher(
            kafka_client_config(settings),
            topic=settings.kafka_validation_topic,
            outbox=Outbox(outbox_path(settings)),
            options=KafkaProducerOptions(
                compression=settings.kafka_compression,
                linger_ms=settings.kafka_linger_ms,
                batch_size=settings.kafka_batch_size,
                delivery_timeout_s=settings.kafka_delivery_timeout_s,
            ),
            **framed_values(settings),
        )
    return EmbeddedLogPublisher(open_event_log(settings))


def framed_values(settings: Settings) -> dict[str, Any]:
    """The publisher's ``value_of`` when ``VHLAKE_KAFKA_PUBLISH_FRAMED`` asks for the Confluent wire format."""
    if not settings.kafka_publish_framed:
        return {}
    config = registry_config(settings)
    if config is None:
        raise ConfigError("VHLAKE_KAFKA_PUBLISH_FRAMED=true needs a registry: set KAFKA_SCHEMA_REGISTRY_URL")
    from vhlake.events.framing import FramedValues

    return {"value_of": FramedValues(config, settings.kafka_validation_topic)}


def build_service(settings: Settings, options: ServiceOptions) -> tuple[LakeService, dict[str, Check]]:
    """The always-on service for the configured event log, and its readiness checks."""
    from vhlake.service.metrics import ServiceMetrics
    from vhlake.service.runner import LakeService
    from vhlake.service.sources import EmbeddedLogSource, EventSource, KafkaSource

    lake = build_lake(settings)
    source: EventSource
    checks: dict[str, Check] = {"lake": lambda: _lake_problem(lake)}
    if settings.event_log == "kafka":
        source = KafkaSource(build_kafka_ingest(settings), settings.kafka_validation_topic)
        checks["broker"] = lambda: _broker_problem(settings)
    else:
        source = EmbeddedLogSource(build_ingestor(settings), open_event_log(settings), poll_interval_s=0.2)
    canary = build_publisher(settings) if options.canary_every_s else None
    tiering, why_not = available_tiering(settings, lake)
    if tiering is None and settings.tiering and not lake.is_local:
        _LOG.warning("storage tiers will not be moved: %s", why_not)  # said at start, not tomorrow
    service = LakeService(
        lake,
        source,
        build_pipeline(settings),
        metrics=ServiceMetrics(),
        options=options,
        canary=canary,
        alerts=build_alert_runner(settings),
        ml=lambda: run_ml(settings),
        lifecycle=lambda: run_lifecycle(settings, tiering),
        reconcile=lambda: run_reconcile(settings),
    )
    return service, checks


def run_reconcile(settings: Settings) -> Reconciliation:
    """``vhlake reconcile`` over the days bronze's retention keeps whole, recorded in ``reconciliation``."""
    from vhlake.reconciliation.run import reconcile, record

    lake = build_lake(settings)
    now = datetime.now(UTC)
    result = reconcile(
        lake,
        since=reconcile_since(settings, now.date()),
        now=now,
        resources=build_pipeline_resources(settings),
    )
    record(lake, result)
    return result


def run_lifecycle(settings: Settings, tiering: Tiering | None = None) -> str:
    """``vhlake maintain`` over the whole lake (moving old partitions with ``tiering``); a summary for
    the log."""
    from vhlake.lifecycle.maintain import maintain

    reports = maintain(
        build_lake(settings), build_retention(settings), today=datetime.now(UTC).date(), tiering=tiering
    )
    return ", ".join(
        f"{r.table}: {r.rows_expired} rows expired, {r.files_vacuumed} files vacuumed"
        + (f", {r.files_tiered} files ({r.bytes_tiered:,} bytes) moved tier" if r.files_tiered else "")
        + (f" (skipped {'; '.join(r.skipped)})" if r.skipped else "")
        for r in reports
    )


def run_ml(settings: Settings) -> str:
    """Retrain the forecasts and rescore the anomalies (what ``vhlake ml train`` and ``score`` do)."""
    from vhlake.ml.scoring import score_anomalies
    from vhlake.ml.training import train_forecasts

    lake, engine = build_lake(settings), build_query_engine(settings)
    try:
        trained = train_forecasts(lake, engine)
        scored = score_anomalies(lake, engine)
    finally:
        engine.close()
    return (
        f"forecasts {trained.model_version} ({trained.forecast_series} series); "
        f"{scored.anomalies} anomalous days, {scored.job_anomalies} anomalous jobs ({scored.job_detector})"
    )


def _lake_problem(lake: Lake) -> str | None:
    try:
        lake.open(BRONZE)
    except LakeError as exc:
        return str(exc)
    return None


def _broker_problem(settings: Settings) -> str | None:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient(kafka_client_config(settings)).list_topics(timeout=2)
    except Exception as exc:  # whatever librdkafka says, the broker is not usable
        return f"Kafka at {settings.kafka_bootstrap_servers} did not answer: {exc}"
    return None


def build_api_deps(settings: Settings) -> ApiDeps:
    """What the HTTP API needs: the analytics, the publisher, the keys and the audit log."""
    from vhlake.analytics.repository import AnalyticsRepository
    from vhlake.api.app import ApiDeps
    from vhlake.api.audit import AuditLog
    from vhlake.api.keys import KeyStore

    lake = build_lake(settings)
    return ApiDeps(
        repository=AnalyticsRepository(build_query_engine(settings)),
        publisher=build_publisher(settings),
        keys=KeyStore(lake),
        audit=AuditLog(lake),
        replay=_quarantine_replay(settings),
        storage_costs=lambda: storage_costs(settings),
    )


def _quarantine_replay(settings: Settings) -> QuarantineReplay:
    """``POST /v1/quality/replay``'s pipeline, built on the first replay (most APIs never replay)."""
    built: list[Pipeline] = []
    lock = threading.Lock()

    def replay(*, reason: str | None, wait_s: float | None) -> int:
        with lock:
            if not built:
                built.append(build_pipeline(settings))
        return built[0].replay_quarantine(reason=reason, wait_s=wait_s)

    return replay


def build_alert_runner(settings: Settings, config_file: Path | None = None) -> AlertRunner:
    """The alert rules (``config_file``, else ``VHLAKE_ALERTS_FILE``, else the seed's) on the query engine."""
    from vhlake.alerts.config import load_config
    from vhlake.alerts.runner import AlertRunner

    path = config_file or (Path(settings.alerts_file).expanduser() if settings.alerts_file else None)
    return AlertRunner(
        load_config(path),
        build_query_engine(settings),
        build_lake(settings),
        smtp_password=settings.smtp_password,
    )

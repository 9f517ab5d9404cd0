"""Wiring: turns one :class:`Settings` into the objects an entrypoint needs. Only entrypoints call this."""

from __future__ import annotations

from pathlib import Path

from vhlake.errors import ConfigError
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.events.publisher import EmbeddedLogPublisher, EventPublisher
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.delta import Lake
from vhlake.pipeline.runner import Pipeline
from vhlake.query.duckdb_engine import DuckDBEngine
from vhlake.settings import Settings


def build_lake(settings: Settings) -> Lake:
    return Lake(settings.lake_uri)


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
    )


def build_query_engine(settings: Settings) -> DuckDBEngine:
    return DuckDBEngine(build_lake(settings))


def event_log_path(settings: Settings) -> Path:
    """Where the embedded log lives: ``VHLAKE_EVENT_LOG_PATH``, else ``<lake>/_eventlog/<topic>.db``."""
    if settings.event_log_path:
        return Path(settings.event_log_path).expanduser()
    lake = build_lake(settings)
    if not lake.is_local:
        raise ConfigError(
            f"the lake {lake.uri} is not on local disk: set VHLAKE_EVENT_LOG_PATH to a local file "
            "for the embedded event log"
        )
    root = Path(lake.uri.removeprefix("file://")).expanduser()
    return root / "_eventlog" / f"{settings.kafka_validation_topic}.db"


def open_event_log(settings: Settings) -> EmbeddedEventLog:
    return EmbeddedEventLog(event_log_path(settings), topic=settings.kafka_validation_topic)


def build_publisher(settings: Settings) -> EventPublisher:
    """The publisher the settings choose (``VHLAKE_EVENT_LOG``)."""
    if settings.event_log == "kafka":
        raise ConfigError(
            "VHLAKE_EVENT_LOG=kafka: the Kafka publisher is not part of this build yet; "
            "use the embedded log (VHLAKE_EVENT_LOG=embedded)"
        )
    return EmbeddedLogPublisher(open_event_log(settings))

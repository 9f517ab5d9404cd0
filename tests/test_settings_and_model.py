"""Settings from the environment, and the event wire contract."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from pydantic import SecretStr, ValidationError

from vhlake.bootstrap import build_pipeline
from vhlake.errors import QueryError
from vhlake.events.model import ValidationEvent, event_json_schema
from vhlake.query.render import render_for_duckdb
from vhlake.settings import Settings


def test_defaults_are_the_seed_values(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    settings = Settings()
    assert settings.databricks_catalog == "validahub"
    assert settings.databricks_schema == "analytics"
    assert settings.kafka_bootstrap_servers == "localhost:9092"
    assert settings.kafka_validation_topic == "validation-events"
    assert settings.kafka_consumer_group == "databricks-consumer"
    assert settings.lake_uri == "./lake"
    assert settings.event_log == "embedded"
    assert settings.databricks_access_token is None  # never a default secret


def test_environment_overrides_and_secrets_stay_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_ACCESS_TOKEN", "dapi-very-secret")
    monkeypatch.setenv("VHLAKE_LAKE_URI", "s3://bucket/lake")
    monkeypatch.setenv("VHLAKE_EVENT_LOG", "kafka")
    settings = Settings()
    assert isinstance(settings.databricks_access_token, SecretStr)
    assert settings.databricks_access_token.get_secret_value() == "dapi-very-secret"
    assert "dapi-very-secret" not in repr(settings)
    assert settings.lake_uri == "s3://bucket/lake"
    assert settings.event_log == "kafka"


def test_an_unknown_event_log_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VHLAKE_EVENT_LOG", "rabbitmq")
    with pytest.raises(ValidationError):
        Settings()


def test_the_pipeline_takes_its_memory_and_spill_folder_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VHLAKE_LAKE_URI", str(tmp_path / "lake"))
    monkeypatch.setenv("VHLAKE_PIPELINE_MEMORY_LIMIT", "512MB")
    monkeypatch.setenv("VHLAKE_PIPELINE_SPILL_DIR", str(tmp_path / "spill"))
    pipeline = build_pipeline(Settings())
    reference = duckdb.connect()  # how DuckDB reports 512MB, not this test's guess
    reference.execute("SET memory_limit = '512MB'")
    setting = "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
    memory, spill = pipeline._con.execute(setting).fetchone() or (None, None)
    assert memory == (reference.execute(setting).fetchone() or (None,))[0]
    assert spill == str(tmp_path / "spill" / "vhlake-duckdb")


def test_pipeline_threads_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VHLAKE_PIPELINE_THREADS", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_event_normalises_time_and_keeps_unknown_payload_fields() -> None:
    event = ValidationEvent.model_validate(
        {
            "event_type": "validation_completed",
            "timestamp": "2026-11-27T21:00:00-03:00",
            "job_id": "j",
            "marketplace": "shopee",
            "payload": {"total_rows": 10, "new_field": {"x": 1}},
        }
    )
    assert event.timestamp == datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
    assert event.payload.model_extra == {"new_field": {"x": 1}}
    assert b'"new_field":{"x":1}' in event.to_json_bytes()
    assert len(event.event_id) == 36  # a fresh uuid


@pytest.mark.parametrize(
    "bad",
    [
        {"event_type": "validation_paused"},
        {"job_id": ""},
        {"timestamp": "2026-11-27T10:00:00"},  # no offset: ambiguous on the wire
        {"payload": {"total_rows": -1}},
        {"surprise": 1},
    ],
)
def test_event_validation_refuses_what_the_contract_forbids(bad: dict[str, object]) -> None:
    data = {"event_type": "validation_started", "job_id": "j", "marketplace": "m", **bad}
    with pytest.raises(ValidationError):
        ValidationEvent.model_validate(data)


def test_json_schema_lists_the_payload_fields() -> None:
    schema = event_json_schema()
    payload = schema["$defs"]["ValidationPayload"]
    assert {"total_rows", "error_types", "processing_time_ms", "s3_path"} <= set(payload["properties"])


def test_render_unqualifies_known_tables_only() -> None:
    sql = render_for_duckdb(
        "SELECT * FROM validahub.analytics.validation_events_bronze b JOIN other.x o ON b.a = o.a",
        known_tables=["validation_events_bronze"],
    )
    assert "FROM validation_events_bronze AS b" in sql
    assert "other.x" in sql


def test_render_reports_parse_errors_and_refuses_two_statements() -> None:
    with pytest.raises(QueryError, match="cannot parse"):
        render_for_duckdb("SELECT (", known_tables=[])
    with pytest.raises(QueryError, match="one SQL statement"):
        render_for_duckdb("SELECT 1; SELECT 2", known_tables=[])

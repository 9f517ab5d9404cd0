"""The event schema's versions and the backward-compatibility rule between them."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from registry_server import SchemaRegistryServer
from servers import free_port
from vhlake.events.model import event_json_schema
from vhlake.events.schema_registry import check_registry, compatibility_problems, registered_versions


def changed(edit: Callable[[dict[str, Any]], None]) -> list[str]:
    old = event_json_schema()
    new = copy.deepcopy(old)
    edit(new)
    return compatibility_problems(old, new)


def payload(schema: dict[str, Any]) -> dict[str, Any]:
    return schema["$defs"]["ValidationPayload"]["properties"]  # type: ignore[no-any-return]


def test_the_stored_versions_are_compatible_and_the_model_is_the_latest() -> None:
    assert registered_versions()[0].version == 1
    assert check_registry() == []


def test_a_new_optional_payload_field_is_compatible() -> None:
    assert changed(lambda s: payload(s).update(rows_per_second={"type": "number"})) == []


def test_an_enum_may_gain_values() -> None:
    assert changed(lambda s: s["properties"]["event_type"]["enum"].append("validation_cancelled")) == []


def test_removing_an_optional_field_of_the_open_payload_is_compatible() -> None:
    assert changed(lambda s: payload(s).pop("s3_path")) == []


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda s: s["required"].append("category"), "event.category became required"),
        (
            lambda s: (s["properties"].pop("job_id"), s["required"].remove("job_id")),
            "event.job_id was removed",
        ),
        (lambda s: s["properties"].pop("category"), "event.category was removed"),  # top level is closed
        (
            lambda s: payload(s)["total_rows"].update(anyOf=[{"type": "string"}, {"type": "null"}]),
            "event.payload.total_rows changed type: integer no longer accepted",
        ),
        (
            lambda s: s["properties"]["event_type"]["enum"].remove("validation_failed"),
            "event.event_type no longer accepts validation_failed",
        ),
        (lambda s: s["properties"]["user_id"].update(enum=["u1"]), "event.user_id became an enum"),
    ],
)
def test_incompatible_changes_are_refused(edit: Callable[[dict[str, Any]], None], problem: str) -> None:
    problems = changed(edit)
    assert any(p.startswith(problem) for p in problems), problems


def test_schema_check_command(run_cli: Any) -> None:
    result = run_cli("schema", "check")
    assert result.exit_code == 0
    assert "backward compatible" in result.stdout


# `vhlake schema push|diff` against the test registry (tests/registry_server.py).

TOPIC_SUBJECT = "validation-events-value"  # KAFKA_VALIDATION_TOPIC's default, with Confluent's -value


@pytest.fixture
def registry(
    schema_registry: SchemaRegistryServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> SchemaRegistryServer:
    """The registry, with the CLI run away from the checkout's .env."""
    monkeypatch.chdir(tmp_path)
    return schema_registry


def register(registry: SchemaRegistryServer, schema: dict[str, Any], subject: str = TOPIC_SUBJECT) -> int:
    with SchemaRegistryClient({"url": registry.url}) as client:
        return int(client.register_schema(subject, Schema(json.dumps(schema), "JSON")))


def edited(edit: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    schema = copy.deepcopy(event_json_schema())
    edit(schema)
    return schema


def test_push_registers_each_version_once_then_diff_finds_no_difference(
    run_cli: Any, registry: SchemaRegistryServer
) -> None:
    first = run_cli("schema", "push")
    assert first.exit_code == 0, first.stderr
    assert "v1: registered, id 1" in first.stdout
    stored = registry.registry.schemas[1]
    assert stored.schema_type == "JSON"
    assert stored.text == json.dumps(registered_versions()[0].schema, sort_keys=True, separators=(",", ":"))
    again = run_cli("schema", "push")
    assert again.exit_code == 0, again.stderr
    assert "v1: already there, id 1 (version 1)" in again.stdout
    assert [v.number for v in registry.registry.subjects[TOPIC_SUBJECT]] == [1]
    diff = run_cli("schema", "diff")
    assert diff.exit_code == 0, diff.stderr
    assert "registry: version 1, id 1" in diff.stdout
    assert "no difference" in diff.stdout


def test_push_dry_run_and_another_subject(run_cli: Any, registry: SchemaRegistryServer) -> None:
    dry = run_cli("schema", "push", "--dry-run", "--subject", "events-json")
    assert dry.exit_code == 0, dry.stderr
    assert "v1: not there yet, would be registered" in dry.stdout
    assert registry.registry.subjects == {}
    assert run_cli("schema", "push", "--subject", "events-json").exit_code == 0
    assert list(registry.registry.subjects) == ["events-json"]


def test_diff_shows_a_changed_registry_schema_and_the_verdicts_both_ways(
    run_cli: Any, registry: SchemaRegistryServer
) -> None:
    assert run_cli("schema", "push").exit_code == 0
    registry.registry.subject_levels[TOPIC_SUBJECT] = "NONE"
    register(registry, edited(lambda s: (s["required"].append("category"), payload(s).pop("s3_path"))))
    diff = run_cli("schema", "diff")
    assert diff.exit_code == 1
    assert "registry: version 2, id 2" in diff.stdout
    lines = diff.stdout.splitlines()
    assert '-    "category"' in lines  # in the registry's required list, not in ours
    assert any(line.startswith("+") and '"s3_path"' in line for line in lines)
    assert "ours reads what the registry's schema accepts (backward): yes" in diff.stdout
    assert "the registry's schema reads ours (forward): no" in diff.stdout
    assert "event.category became required" in diff.stdout
    assert "under its compatibility level NONE: accepts ours" in diff.stdout
    as_json = run_cli("schema", "diff", "--format", "json")
    assert as_json.exit_code == 1
    found = json.loads(as_json.stdout)
    assert found["same"] is False
    assert found["backward"] == {"compatible": True, "problems": []}
    assert found["forward"]["compatible"] is False
    assert found["registry_verdict"] == {"level": "NONE", "compatible": True}


def test_diff_gives_the_registrys_own_verdict_under_its_global_level(
    run_cli: Any, registry: SchemaRegistryServer
) -> None:
    # The registry's latest accepts a value ours refuses: ours is not backward compatible with it.
    register(registry, edited(lambda s: s["properties"]["event_type"]["enum"].append("validation_cancelled")))
    diff = run_cli("schema", "diff")
    assert diff.exit_code == 1
    assert "ours reads what the registry's schema accepts (backward): no" in diff.stdout
    assert "event.event_type no longer accepts validation_cancelled" in diff.stdout
    assert "under its compatibility level BACKWARD: refuses ours" in diff.stdout


def test_push_stops_at_a_version_the_registry_refuses(run_cli: Any, registry: SchemaRegistryServer) -> None:
    register(registry, edited(lambda s: s["properties"]["event_type"]["enum"].append("validation_cancelled")))
    pushed = run_cli("schema", "push")
    assert pushed.exit_code == 1
    assert "v1: the registry refused it" in pushed.stderr
    assert "incompatible with an earlier schema" in pushed.stderr
    assert "no longer accepts validation_cancelled" in pushed.stderr
    assert [v.number for v in registry.registry.subjects[TOPIC_SUBJECT]] == [1]


def test_diff_of_a_subject_with_nothing_registered(run_cli: Any, registry: SchemaRegistryServer) -> None:
    diff = run_cli("schema", "diff", "--subject", "nobody-value")
    assert diff.exit_code == 1
    assert f"nothing registered under nobody-value at {registry.url}" in diff.stderr
    assert "vhlake schema push" in diff.stderr


def test_without_a_registry_url_push_and_diff_say_what_to_set(
    run_cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KAFKA_SCHEMA_REGISTRY_URL", raising=False)
    for command in ("push", "diff"):
        result = run_cli("schema", command)
        assert result.exit_code == 2
        assert "set KAFKA_SCHEMA_REGISTRY_URL" in result.stderr


def test_an_unreachable_registry_is_one_line_with_its_url(
    run_cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("KAFKA_SCHEMA_REGISTRY_URL", url)
    result = run_cli("schema", "diff")
    assert result.exit_code == 1
    assert f"the schema registry at {url} did not answer" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_registry_that_wants_a_login_gets_the_configured_one(
    run_cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    with SchemaRegistryServer(user="api-key", password="api-secret") as server:
        monkeypatch.setenv("KAFKA_SCHEMA_REGISTRY_URL", server.url)
        anonymous = run_cli("schema", "push")
        assert anonymous.exit_code == 1
        assert f"the schema registry at {server.url} answered 401: Unauthorized" in anonymous.stderr
        assert "KAFKA_SCHEMA_REGISTRY_PASSWORD" in anonymous.stderr
        monkeypatch.setenv("KAFKA_SCHEMA_REGISTRY_USERNAME", "api-key")
        monkeypatch.setenv("KAFKA_SCHEMA_REGISTRY_PASSWORD", "api-secret")
        pushed = run_cli("schema", "push")
        assert pushed.exit_code == 0, pushed.stderr
        assert "v1: registered, id 1" in pushed.stdout

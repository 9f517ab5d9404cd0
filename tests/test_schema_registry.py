"""The event schema's versions and the backward-compatibility rule between them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

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

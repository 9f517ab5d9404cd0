"""Versions of the event's JSON Schema, and the backward-compatibility rule between them.

Every published shape of the wire contract is kept as ``schemas/validation_event/v<N>.json`` (package
data). A new version must be **backward compatible** with the one before it, so events already in Kafka
and in bronze stay valid under it:

- a new field must be optional (an old event does not have it);
- a field that was required stays, with its type (old events have it, and consumers rely on it);
- a field keeps its type; an enum may gain values, never lose them;
- where unknown fields are forbidden (the event's top level), no field may be removed at all.

``vhlake schema check`` runs the rule over all versions and checks the code's model is the latest one.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from vhlake.events.model import event_json_schema

_VERSION_FILE = re.compile(r"v(\d+)\.json")
SUBJECT = "validation_event"


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    schema: dict[str, Any]


def registered_versions(subject: str = SUBJECT) -> list[SchemaVersion]:
    """The stored versions of ``subject``, oldest first."""
    folder = resources.files("vhlake") / "schemas" / subject
    versions = []
    for entry in folder.iterdir():
        match = _VERSION_FILE.fullmatch(entry.name)
        if match:
            versions.append(SchemaVersion(int(match.group(1)), json.loads(entry.read_text(encoding="utf-8"))))
    return sorted(versions, key=lambda v: v.version)


def compatibility_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why events valid under ``old`` could be invalid under ``new`` (empty: backward compatible)."""
    return _compare_objects(old, new, old, new, path="event")


def check_registry(subject: str = SUBJECT) -> list[str]:
    """Problems with the stored versions, and whether the code's model is the latest stored version."""
    versions = registered_versions(subject)
    if not versions:
        return [f"no schema versions stored for {subject}"]
    problems = []
    for before, after in itertools.pairwise(versions):
        problems += [
            f"v{after.version} vs v{before.version}: {p}"
            for p in compatibility_problems(before.schema, after.schema)
        ]
    latest = versions[-1]
    if event_json_schema() != latest.schema:
        changes = compatibility_problems(latest.schema, event_json_schema())
        detail = "; ".join(changes) if changes else "compatible changes only"
        problems.append(
            f"the event model differs from v{latest.version}.json ({detail}): store it as "
            f"schemas/{subject}/v{latest.version + 1}.json (vhlake schema > that file)"
        )
    return problems


def _compare_objects(
    old: dict[str, Any], new: dict[str, Any], old_root: dict[str, Any], new_root: dict[str, Any], *, path: str
) -> list[str]:
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    problems = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    closed = new.get("additionalProperties") is False
    for name in sorted(new_required - old_required):
        problems.append(f"{path}.{name} became required (events without it would be refused)")
    for name in sorted(set(old_props) - set(new_props)):
        if name in old_required or closed:
            problems.append(f"{path}.{name} was removed (events that have it would be refused)")
    for name in sorted(set(old_props) & set(new_props)):
        problems += _compare_fields(
            old_props[name], new_props[name], old_root, new_root, path=f"{path}.{name}"
        )
    return problems


def _compare_fields(
    old: dict[str, Any], new: dict[str, Any], old_root: dict[str, Any], new_root: dict[str, Any], *, path: str
) -> list[str]:
    old_variants, new_variants = _variants(old, old_root), _variants(new, new_root)
    old_types, new_types = set(old_variants), set(new_variants)
    if not old_types <= new_types:
        lost = ", ".join(sorted(old_types - new_types))
        return [f"{path} changed type: {lost} no longer accepted"]
    problems = []
    for kind in sorted(old_types):
        before, after = old_variants[kind], new_variants[kind]
        if "enum" in before or "enum" in after:
            gone = set(before.get("enum", [])) - set(after.get("enum", before.get("enum", [])))
            if "enum" in after and "enum" not in before:
                problems.append(f"{path} became an enum (other values would be refused)")
            elif gone:
                problems.append(f"{path} no longer accepts {', '.join(sorted(map(str, gone)))}")
        if kind == "object" and ("properties" in before or "properties" in after):
            problems += _compare_objects(before, after, old_root, new_root, path=path)
    return problems


def _variants(field: dict[str, Any], root: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A field's accepted JSON types, each with the sub-schema that accepts it."""
    field = _resolve(field, root)
    options = field.get("anyOf") or field.get("oneOf") or [field]
    shared = {k: v for k, v in field.items() if k not in ("anyOf", "oneOf")}  # apply to every option
    variants: dict[str, dict[str, Any]] = {}
    for option in options:
        option = {**shared, **_resolve(option, root)}
        kinds = option.get("type", "object" if "properties" in option else "any")
        for kind in [kinds] if isinstance(kinds, str) else kinds:
            variants[kind] = option
    return variants


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/Name``)."""
    ref = schema.get("$ref")
    if not ref:
        return schema
    target: Any = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return dict(target)

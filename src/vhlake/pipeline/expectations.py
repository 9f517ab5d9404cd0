"""Data-quality expectations on bronze events, as Databricks Lakeflow (DLT) expectations.

An expectation is a named SQL predicate that a valid event satisfies, and an action for events that do
not: ``warn`` (keep, count), ``quarantine`` (move to ``validation_events_quarantine`` with the rule name
as ``reason``) or ``fail`` (stop the run, commit nothing). The defaults are DESIGN.md's rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.errors import VhlakeError
from vhlake.events.model import EVENT_TYPES
from vhlake.query.arrow_sql import registered

Action = Literal["warn", "quarantine", "fail"]


class ExpectationFailed(VhlakeError):
    """A ``fail`` expectation was violated: the run stops and commits nothing."""


@dataclass(frozen=True)
class Expectation:
    """``predicate`` is DuckDB SQL over bronze columns, true for a valid event."""

    name: str
    predicate: str
    action: Action = "quarantine"


_TYPES = ", ".join(f"'{t}'" for t in EVENT_TYPES)

DEFAULT_EXPECTATIONS: tuple[Expectation, ...] = (
    Expectation("missing_event_id", "coalesce(trim(event_id), '') <> ''"),
    Expectation("missing_job_id", "coalesce(trim(job_id), '') <> ''"),
    Expectation("missing_marketplace", "coalesce(trim(marketplace), '') <> ''"),
    Expectation("unknown_event_type", f"coalesce(event_type IN ({_TYPES}), false)"),
    Expectation("bad_timestamp", '"timestamp" IS NOT NULL'),
)


@dataclass(frozen=True)
class Checked:
    """Events split by the expectations, and how many events broke each rule."""

    passed: pa.Table
    quarantined: pa.Table
    violations: dict[str, int]


def broken(rule: Expectation) -> str:
    """SQL that is true for an event breaking ``rule`` (a NULL verdict counts as broken)."""
    return f"NOT coalesce(({rule.predicate}), false)"


def reason(expectations: Sequence[Expectation]) -> tuple[str, dict[str, str]]:
    """SQL naming the first ``quarantine`` rule an event breaks (NULL when none), and its parameters."""
    rules = [r for r in expectations if r.action == "quarantine"]
    if not rules:
        return "CAST(NULL AS VARCHAR)", {}
    cases = " ".join(f"WHEN {broken(r)} THEN $reason_{i}" for i, r in enumerate(rules))
    return f"CASE {cases} END", {f"reason_{i}": r.name for i, r in enumerate(rules)}


def enforce(expectations: Sequence[Expectation], violations: dict[str, int]) -> None:
    """Raise for the first ``fail`` rule that was broken.

    Raises:
        ExpectationFailed: when a ``fail`` rule is broken by any event.
    """
    for rule in expectations:
        count = violations.get(rule.name, 0)
        if count and rule.action == "fail":
            raise ExpectationFailed(
                f"expectation {rule.name} failed for {count} event(s): nothing was committed"
            )


def count_violations(
    con: duckdb.DuckDBPyConnection, relation: str, expectations: Sequence[Expectation]
) -> dict[str, int]:
    """How many events of the view ``relation`` (a name we chose, not input) break each rule."""
    if not expectations:
        return {}
    counts = ", ".join(f"count(*) FILTER (WHERE {broken(rule)})" for rule in expectations)
    (row,) = con.sql(f"SELECT {counts} FROM {relation}").fetchall()  # noqa: S608
    return {rule.name: int(n) for rule, n in zip(expectations, row, strict=True)}


def check_expectations(
    con: duckdb.DuckDBPyConnection, events: pa.Table, expectations: Sequence[Expectation]
) -> Checked:
    """Evaluate every rule on every event; an event is quarantined under the first rule it breaks.

    Raises:
        ExpectationFailed: when a ``fail`` rule is broken by any event.
    """
    with registered(con, bronze_batch=events):
        violations = count_violations(con, "bronze_batch", expectations)
        enforce(expectations, violations)
        why, params = reason(expectations)
        reasons = con.sql(f"SELECT {why} AS reason FROM bronze_batch", params=params).to_arrow_table()  # noqa: S608
    reason_column = reasons["reason"]
    quarantine = pc.is_valid(reason_column)
    quarantined = events.filter(quarantine).append_column("reason", reason_column.filter(quarantine))
    return Checked(events.filter(pc.invert(quarantine)), quarantined, violations)

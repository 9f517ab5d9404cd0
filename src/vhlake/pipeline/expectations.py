"""Data-quality expectations on bronze events, as Databricks Lakeflow (DLT) expectations.

An expectation is a named SQL predicate that a valid event satisfies, and an action for events that do
not: ``warn`` (keep, count), ``quarantine`` (move to ``validation_events_quarantine`` with the rule name
as ``reason``) or ``fail`` (stop the run, commit nothing). The defaults are listed in docs/semantics.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.duck.arrow import registered
from vhlake.errors import VhlakeError
from vhlake.events.model import EVENT_TYPES

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

# The largest payload (its JSON text as bronze keeps it, in UTF-8 bytes) that silver types: it bounds every
# payload string and the error_types map (each entry takes at least 5 bytes: under 210k entries), so no
# event can make typing slow or large; a larger one is quarantined as payload_too_large. 1 MiB is far
# above any real payload (a few hundred bytes; a file with every rule failing has a few hundred entries).
MAX_PAYLOAD_BYTES = 1 << 20

DEFAULT_EXPECTATIONS: tuple[Expectation, ...] = (
    Expectation("missing_event_id", "coalesce(trim(event_id), '') <> ''"),
    Expectation("missing_job_id", "coalesce(trim(job_id), '') <> ''"),
    Expectation("missing_marketplace", "coalesce(trim(marketplace), '') <> ''"),
    Expectation("unknown_event_type", f"coalesce(event_type IN ({_TYPES}), false)"),
    Expectation("bad_timestamp", '"timestamp" IS NOT NULL'),
    # octet_length(encode(..)): bytes, not characters, and the same in Spark (see spark.jobs.to_spark)
    Expectation("payload_too_large", f"coalesce(octet_length(encode(payload)), 0) <= {MAX_PAYLOAD_BYTES}"),
)


@dataclass(frozen=True)
class Checked:
    """Events split by the expectations, and how many events broke each rule."""

    passed: pa.Table
    quarantined: pa.Table
    violations: dict[str, int]


def check_expectations(
    con: duckdb.DuckDBPyConnection, events: pa.Table, expectations: Sequence[Expectation]
) -> Checked:
    """Evaluate every rule on every event; an event is quarantined under the first rule it breaks.

    Raises:
        ExpectationFailed: when a ``fail`` rule is broken by any event.
    """
    with registered(con, bronze_batch=events):
        flags = ", ".join(
            f"NOT coalesce(({rule.predicate}), false) AS broke_{i}" for i, rule in enumerate(expectations)
        )
        verdicts = con.sql(f"SELECT {flags} FROM bronze_batch").to_arrow_table() if expectations else None  # noqa: S608
    violations: dict[str, int] = {}
    reason = pa.nulls(events.num_rows, pa.string())
    for i, rule in enumerate(expectations):
        assert verdicts is not None
        broke = verdicts[f"broke_{i}"]
        count = pc.sum(broke).as_py() or 0
        violations[rule.name] = int(count)
        if count and rule.action == "fail":
            raise ExpectationFailed(
                f"expectation {rule.name} failed for {count} event(s): nothing was committed"
            )
        if rule.action == "quarantine":
            reason = pc.if_else(pc.and_(broke, pc.is_null(reason)), rule.name, reason)
    quarantine = pc.is_valid(reason)
    quarantined = events.filter(quarantine).append_column("reason", reason.filter(quarantine))
    passed = events.filter(pc.invert(quarantine)) if quarantined.num_rows else events  # no copy when all pass
    return Checked(passed, quarantined, violations)

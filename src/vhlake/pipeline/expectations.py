"""Data-quality expectations on bronze events, as Databricks Lakeflow (DLT) expectations.

An expectation is a named SQL predicate that a valid event satisfies, and an action for events that do
not: ``warn`` (keep, count), ``quarantine`` (move to ``validation_events_quarantine`` with the rule name
as ``reason``) or ``fail`` (stop the run, commit nothing). The defaults are listed in docs/semantics.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from vhlake.duck.arrow import registered
from vhlake.errors import VhlakeError
from vhlake.events.model import EVENT_TYPES
from vhlake.pipeline.expectation_screens import Screen, at_most_bytes, not_blank, one_of, present

Action = Literal["warn", "quarantine", "fail"]


class ExpectationFailed(VhlakeError):
    """A ``fail`` expectation was violated: the run stops and commits nothing."""


@dataclass(frozen=True)
class Expectation:
    """``predicate`` is DuckDB SQL over bronze columns, true for a valid event. ``screen`` (optional)
    clears, without SQL, rows the predicate certainly holds for (pipeline/expectation_screens.py)."""

    name: str
    predicate: str
    action: Action = "quarantine"
    screen: Screen | None = field(default=None, compare=False, repr=False)


_TYPES = ", ".join(f"'{t}'" for t in EVENT_TYPES)

# The largest payload (its JSON text as bronze keeps it, in UTF-8 bytes) that silver types: it bounds every
# payload string and the error_types map (each entry takes at least 5 bytes: under 210k entries), so no
# event can make typing slow or large; a larger one is quarantined as payload_too_large. 1 MiB is far
# above any real payload (a few hundred bytes; a file with every rule failing has a few hundred entries).
MAX_PAYLOAD_BYTES = 1 << 20

DEFAULT_EXPECTATIONS: tuple[Expectation, ...] = (
    Expectation("missing_event_id", "coalesce(trim(event_id), '') <> ''", screen=not_blank("event_id")),
    Expectation("missing_job_id", "coalesce(trim(job_id), '') <> ''", screen=not_blank("job_id")),
    Expectation(
        "missing_marketplace", "coalesce(trim(marketplace), '') <> ''", screen=not_blank("marketplace")
    ),
    Expectation(
        "unknown_event_type",
        f"coalesce(event_type IN ({_TYPES}), false)",
        screen=one_of("event_type", EVENT_TYPES),
    ),
    Expectation("bad_timestamp", '"timestamp" IS NOT NULL', screen=present("timestamp")),
    # octet_length(encode(..)): bytes, not characters, and the same in Spark (see spark.jobs.to_spark)
    Expectation(
        "payload_too_large",
        f"coalesce(octet_length(encode(payload)), 0) <= {MAX_PAYLOAD_BYTES}",
        screen=at_most_bytes("payload", MAX_PAYLOAD_BYTES),
    ),
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
    verdicts = _broken(con, events, expectations)
    violations: dict[str, int] = {}
    first = np.full(events.num_rows, -1, np.int64)  # the first quarantine rule each event breaks
    for i, rule in enumerate(expectations):
        count = int(verdicts[i].sum())
        violations[rule.name] = count
        if count and rule.action == "fail":
            raise ExpectationFailed(
                f"expectation {rule.name} failed for {count} event(s): nothing was committed"
            )
        if rule.action == "quarantine":
            first[(first < 0) & verdicts[i]] = i
    quarantine = first >= 0
    names = pa.array([rule.name for rule in expectations], pa.string())
    reason = names.take(pa.array(first[quarantine]))
    quarantined = events.filter(pa.array(quarantine)).append_column("reason", reason)
    passed = events.filter(pa.array(~quarantine)) if quarantined.num_rows else events  # no copy when all pass
    return Checked(passed, quarantined, violations)


def _broken(
    con: duckdb.DuckDBPyConnection, events: pa.Table, expectations: Sequence[Expectation]
) -> list[npt.NDArray[np.bool_]]:
    """Per rule, whether each event breaks it: the rows every rule's screen clears pass them all; the
    others (all of them when a rule has no screen) are evaluated by the predicates in DuckDB."""
    cleared = np.ones(events.num_rows, np.bool_)
    for rule in expectations:
        if rule.screen is None:
            cleared[:] = False
            break
        cleared &= rule.screen(events)
    broke = [np.zeros(events.num_rows, np.bool_) for _ in expectations]
    rest = np.flatnonzero(~cleared)
    if len(rest) == 0 or not expectations:
        return broke
    checked = events if len(rest) == events.num_rows else events.take(pa.array(rest))
    flags = ", ".join(
        f"NOT coalesce(({rule.predicate}), false) AS broke_{i}" for i, rule in enumerate(expectations)
    )
    with registered(con, bronze_batch=checked):
        verdicts = con.sql(f"SELECT {flags} FROM bronze_batch").to_arrow_table()  # noqa: S608
    for i, flags_of_rule in enumerate(broke):
        flags_of_rule[rest] = verdicts[f"broke_{i}"].to_numpy(zero_copy_only=False)
    return broke

"""Data-quality measurements, one set per pipeline batch, into ``data_quality_metrics``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime

import pyarrow as pa

from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, DATA_QUALITY_METRICS, GOLD, SILVER, TableDef
from vhlake.pipeline.runner import RunReport
from vhlake.reconciliation.run import Reconciliation

WATCHED_TABLES: tuple[TableDef, ...] = (BRONZE, SILVER, GOLD)


def quality_rows(
    report: RunReport,
    *,
    rejected: int,
    staleness_s: Mapping[str, float],
    late_steps: Mapping[str, float],
    now: datetime,
) -> pa.Table:
    """The measurements of one batch as ``data_quality_metrics`` rows."""
    rows: list[tuple[str, str | None, float]] = [
        ("events_in", None, report.events_in),
        ("rejected", None, rejected),
        ("rescued", None, report.rescued),
        ("quarantined", None, report.quarantined),
        *(("quarantined", rule, count) for rule, count in report.violations.items() if count),
        *(("table_staleness_s", table, seconds) for table, seconds in staleness_s.items()),
        *(("step_sla_late_s", step, seconds) for step, seconds in late_steps.items()),
    ]
    if report.freshness_s is not None:
        rows.append(("freshness_p95_s", None, report.freshness_s[1]))
    rows += [("canary_lag_s", None, lag) for lag in report.canary_lag_s]
    return _measurements(rows, run_id=report.run_id, now=now)


def _measurements(rows: list[tuple[str, str | None, float]], *, run_id: str, now: datetime) -> pa.Table:
    return pa.table(
        {
            "measured_at": pa.array([now] * len(rows), DATA_QUALITY_METRICS.schema.field("measured_at").type),
            "run_id": pa.array([run_id] * len(rows), pa.string()),
            "metric": pa.array([r[0] for r in rows], pa.string()),
            "dimension": pa.array([r[1] for r in rows], pa.string()),
            "value": pa.array([float(r[2]) for r in rows], pa.float64()),
            "measured_date": pa.array([now.date()] * len(rows), pa.date32()),
        }
    )


def reconciliation_rows(result: Reconciliation) -> pa.Table:
    """A reconciliation as ``data_quality_metrics`` rows (what ``/v1/quality`` shows): the links that did
    not balance (``reconciliation_imbalances``) and, per kind of link, how many were checked."""
    kinds: dict[str, int] = {}
    for link in result.links:
        kinds[link.kind] = kinds.get(link.kind, 0) + 1
    rows: list[tuple[str, str | None, float]] = [("reconciliation_imbalances", None, len(result.imbalances))]
    rows += [("reconciliation_links", kind, count) for kind, count in sorted(kinds.items())]
    return _measurements(rows, run_id=result.run_id, now=result.reconciled_at)


def table_staleness(lake: Lake, tables: tuple[TableDef, ...] = WATCHED_TABLES) -> dict[str, float]:
    """Seconds since each table's last commit (freshness per table); absent tables are left out."""
    stale = {}
    now_ms = time.time() * 1000
    for table in tables:
        delta = lake.open(table)
        if delta is None:
            continue
        last = delta.history(1)[0].get("timestamp")
        if last is not None:
            stale[table.name] = max(0.0, (now_ms - float(last)) / 1000)
    return stale


def utc_now() -> datetime:
    return datetime.now(UTC)

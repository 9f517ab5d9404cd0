"""Where each table's data comes from, and what last wrote it (``vhlake lineage TABLE``).

The upstream tables are the pipeline's fixed design (docs/architecture.md); the last write is read from
the table's Delta history (operation, when, the application transaction it recorded) and, for the
tables the pipeline writes, from its run log (which bronze versions that run covered).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from vhlake.lake.delta import Lake
from vhlake.lake.tables import (
    ALERT_EVENTS,
    ANOMALIES,
    BRONZE,
    ERROR_TYPE_GOLD,
    GOLD,
    GOLD_RESTATEMENTS,
    JOB_EVENTS,
    ML_MODELS,
    ML_PREDICTIONS,
    PIPELINE_RUNS,
    QUARANTINE,
    REJECTED,
    SILVER,
    USER_ENGAGEMENT_GOLD,
    USER_FIRST_SEEN,
    TableDef,
)

SOURCES = "event files (vhlake ingest), the event log (embedded or Kafka), POST /v1/events"
UPSTREAM: dict[str, tuple[str, ...]] = {
    BRONZE.name: (SOURCES,),
    REJECTED.name: (SOURCES,),
    QUARANTINE.name: (BRONZE.name,),
    JOB_EVENTS.name: (BRONZE.name,),
    SILVER.name: (BRONZE.name, JOB_EVENTS.name),
    GOLD.name: (SILVER.name,),
    ERROR_TYPE_GOLD.name: (SILVER.name,),
    # gold's values before (as stored) and after (recomputed from silver)
    GOLD_RESTATEMENTS.name: (SILVER.name, GOLD.name),
    USER_FIRST_SEEN.name: (SILVER.name,),
    USER_ENGAGEMENT_GOLD.name: (SILVER.name, USER_FIRST_SEEN.name),
    ML_PREDICTIONS.name: (GOLD.name,),
    ML_MODELS.name: (GOLD.name, SILVER.name),
    ANOMALIES.name: (GOLD.name, SILVER.name),
    ALERT_EVENTS.name: ("the alert rules' queries",),
}
_PIPELINE_WRITES = {
    QUARANTINE.name,
    JOB_EVENTS.name,
    SILVER.name,
    GOLD.name,
    ERROR_TYPE_GOLD.name,
    GOLD_RESTATEMENTS.name,
    USER_ENGAGEMENT_GOLD.name,
    USER_FIRST_SEEN.name,
}


def lineage(lake: Lake, table: TableDef) -> dict[str, Any]:
    """Upstream tables, downstream tables, and the last write (Delta history and the pipeline's run)."""
    delta = lake.open(table)
    last = delta.history(1)[0] if delta is not None else None
    facts: dict[str, Any] = {
        "table": table.name,
        "upstream": list(UPSTREAM.get(table.name, ())),
        "downstream": sorted(name for name, ups in UPSTREAM.items() if table.name in ups),
        "version": None if delta is None else delta.version(),
        "last_operation": None if last is None else last.get("operation"),
        "last_written_at": None if last is None else _when(last.get("timestamp")),
    }
    if table.name in _PIPELINE_WRITES:
        facts["last_pipeline_run"] = _last_run(lake)
    return facts


def _last_run(lake: Lake) -> dict[str, Any] | None:
    # Only the columns shown: the service logs a run every few seconds, so the table grows long.
    runs = lake.dataset(PIPELINE_RUNS).to_table(
        columns=[
            "run_id",
            "started_at",
            "status",
            "upstream_from_version",
            "upstream_to_version",
            "rows_in",
            "rows_out",
        ]
    )
    rows = runs.filter(pc.equal(runs["status"], "success"))
    if rows.num_rows == 0:
        return None
    newest = rows.sort_by([("started_at", "descending")]).slice(0, 1).to_pylist()[0]
    return {
        "run_id": newest["run_id"],
        "started_at": newest["started_at"].isoformat(),
        "bronze_versions": [newest["upstream_from_version"] + 1, newest["upstream_to_version"]],
        "rows_in": newest["rows_in"],
        "rows_out": newest["rows_out"],
    }


def history(lake: Lake, table: TableDef, *, limit: int) -> pa.Table:
    """The Delta history of ``table``: version, when, operation, its parameters and metrics."""
    delta = lake.open(table)
    if delta is None:
        return pa.table({"version": pa.array([], pa.int64())})
    rows = [
        {
            "version": commit.get("version"),
            "timestamp": _when(commit.get("timestamp")),
            "operation": commit.get("operation"),
            "parameters": str(commit.get("operationParameters") or ""),
            "metrics": str(commit.get("operationMetrics") or ""),
        }
        for commit in delta.history(limit)
    ]
    return pa.Table.from_pylist(rows)


def _when(millis: object) -> str | None:
    """A Delta commit timestamp (epoch milliseconds) as ISO 8601 UTC."""
    if not isinstance(millis, int):
        return None
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")

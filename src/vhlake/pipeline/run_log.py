"""What a pipeline run did: its :class:`RunReport`, the freshness lags it measured, and its rows in
``pipeline_runs`` (one per range, or one for a first build; a failed range too, with its error: what DLT's
event log shows for an update); and how a caller hears the run's progress (:data:`Progress`).

A ``pipeline_runs`` row is a plain append, after the range's commits: a crash may lose the row, never data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from vhlake.lake.delta import Lake
from vhlake.lake.tables import PIPELINE_RUNS
from vhlake.pipeline.read_ahead import Prepared

# on_progress(phase, done, total)
Progress = Callable[[str, int, int], None]


def silent(phase: str, done: int, total: int) -> None:
    """No one is listening."""


@dataclass
class RunReport:
    """What one ``pipeline run`` did.

    ``freshness_s`` is, for the events of the last range, how long after their ``timestamp`` they became
    visible in gold (p50, p95, max); ``canary_lag_s`` the same for each canary event seen.
    """

    run_id: str
    bronze_from: int
    bronze_to: int
    events_in: int = 0
    quarantined: int = 0
    jobs_upserted: int = 0
    gold_groups: int = 0
    canaries: int = 0
    rescued: int = 0
    violations: dict[str, int] = field(default_factory=dict)
    freshness_s: tuple[float, float, float] | None = None
    canary_lag_s: list[float] = field(default_factory=list)

    @property
    def was_noop(self) -> bool:
        return self.bronze_from >= self.bronze_to

    def add(self, prepared: Prepared, *, jobs: int, groups: int) -> None:
        """Count a processed range, its freshness taken now: when it became visible in gold, on the
        incremental path; on a first build, when it was spilled (the one commit comes at the end)."""
        self.events_in += prepared.events_in
        self.quarantined += prepared.quarantined.num_rows
        self.jobs_upserted += jobs
        self.gold_groups += groups
        self.canaries += prepared.canaries.num_rows
        self.rescued += prepared.rescued
        visible = datetime.now(UTC)
        self.freshness_s = _lag_quantiles(prepared.typed["timestamp"], visible) or self.freshness_s
        self.canary_lag_s += _lags(prepared.canaries["timestamp"], visible).to_pylist()
        for name, count in prepared.violations.items():
            self.violations[name] = self.violations.get(name, 0) + count


class RunLog:
    """The pipeline's rows in ``pipeline_runs``."""

    def __init__(self, lake: Lake) -> None:
        self._lake = lake

    def failure(self, run_id: str, start: int, end: int, exc: Exception) -> None:
        """Record a failed range in pipeline_runs (what DLT's event log shows for a failed update)."""
        self.log(
            run_id, datetime.now(UTC), 0.0, start, end, status="failed", error=f"{type(exc).__name__}: {exc}"
        )

    def range_done(
        self,
        run_id: str,
        started: datetime,
        seconds: float,
        start: int,
        end: int,
        prepared: Prepared,
        jobs: int,
    ) -> None:
        violations = prepared.violations  # per rule: an event breaking two rules counts under each
        self.log(
            run_id,
            started,
            seconds,
            start,
            end,
            status="success",
            rows_in=prepared.events_in,
            rows_out=jobs,
            rows_quarantined=prepared.quarantined.num_rows,
            expectations=list(violations.items()),
        )

    def log(
        self, run_id: str, started: datetime, seconds: float, start: int, end: int, **outcome: object
    ) -> None:
        row = {
            "run_id": run_id,
            "step": "bronze_to_gold",
            "started_at": started,
            "duration_s": seconds,
            "upstream_from_version": start,
            "upstream_to_version": end,
            "run_date": started.date(),
            **outcome,
        }
        self._lake.append(PIPELINE_RUNS, pa.Table.from_pylist([row], schema=PIPELINE_RUNS.schema))


def _lags(timestamps: pa.ChunkedArray, visible: datetime) -> pa.Array:
    """Seconds from each (non-null) ``timestamp`` to ``visible``."""
    micros = pc.cast(pc.drop_null(timestamps), pa.int64())
    now = int(visible.timestamp() * 1_000_000)
    return pc.divide(pc.cast(pc.subtract(pa.scalar(now, pa.int64()), micros), pa.float64()), 1e6)


def _lag_quantiles(timestamps: pa.ChunkedArray, visible: datetime) -> tuple[float, float, float] | None:
    lags = _lags(timestamps, visible)
    if len(lags) == 0:
        return None
    p50, p95 = pc.quantile(lags, q=[0.5, 0.95]).to_pylist()
    return float(p50), float(p95), float(pc.max(lags).as_py())

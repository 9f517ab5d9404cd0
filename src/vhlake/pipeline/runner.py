"""The incremental pipeline: bronze → quarantine + job events → silver → gold, exactly once.

:class:`Pipeline` composes the steps, each in a module named for it:

- ``ranges.py``: where each derived table stands in bronze (``(PIPELINE_APP, bronze version)``), and the
  bounded bronze version ranges a run reads from the change data feed;
- ``read_ahead.py``: bronze reads checked against the expectations and typed ahead of the one applied;
- ``incremental.py``: each range MERGEd into quarantine, silver, gold and job events, in that order;
- ``first_build.py`` (with its spill, ``build_spill.py``): a first build (nothing built yet, more than one
  batch of bronze) reads bronze once, folds it bucket by bucket and writes each table directly, committed
  once;
- ``engagement_step.py``: the engagement tables brought to silver's version, once at the end of a
  ``pipeline run`` (one step for all its ranges) or on the service's own schedule;
- ``replay.py``: quarantine replay, and gold recomputed after an erasure;
- ``run_log.py``: the :class:`RunReport`, its freshness lags, and the ``pipeline_runs`` rows.

What the pipeline may take of the machine (DuckDB's memory, threads, where it spills) is given as
:class:`PipelineResources`, from the settings at an entrypoint.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from vhlake.lake.delta import Lake
from vhlake.lake.key_index import KeyIndex
from vhlake.lake.tables import BRONZE, GOLD, JOB_EVENTS, SILVER
from vhlake.lake.writer_lock import derived_tables_writer
from vhlake.native import library
from vhlake.pipeline import replay
from vhlake.pipeline.engagement_step import EngagementStep
from vhlake.pipeline.engagement_tables import EngagementTables
from vhlake.pipeline.expectations import DEFAULT_EXPECTATIONS, Expectation
from vhlake.pipeline.first_build import FirstBuild
from vhlake.pipeline.gold_groups import GROUP_TABLES, GroupTables
from vhlake.pipeline.incremental import Change, Incremental
from vhlake.pipeline.ranges import (
    DERIVED,
    PIPELINE_APP,
    bronze_log,
    changes_reader,
    plan_ranges,
    processed,
)
from vhlake.pipeline.read_ahead import CANARY_SOURCE, ReadAhead
from vhlake.pipeline.run_log import Progress, RunLog, RunReport, silent

# What callers import from here: the pipeline, its report, the bronze transaction, the tables it derives
# and the canaries' source_system.
__all__ = ["CANARY_SOURCE", "DERIVED", "PIPELINE_APP", "Pipeline", "PipelineResources", "RunReport"]


@dataclass(frozen=True)
class PipelineResources:
    """What the pipeline may take of the machine (``VHLAKE_PIPELINE_*`` settings at an entrypoint)."""

    # DuckDB would take 80% of RAM; past this it spills to disk, so a large range stays bounded.
    memory_limit: str = "1GB"
    # A first build's threads: reading bronze ahead, and writing the tables' files (the incremental
    # path reads one range ahead, in order).
    threads: int = 2
    # Where a first build spills its buckets and DuckDB its temporary files (an existing folder); None:
    # the system's temporary folder.
    spill_dir: str | None = None


class Pipeline:
    """Runs the medallion steps over a lake."""

    def __init__(
        self,
        lake: Lake,
        *,
        expectations: Sequence[Expectation] = DEFAULT_EXPECTATIONS,
        versions_per_batch: int = 20,
        rows_per_batch: int = 200_000,
        build_bucket_rows: int = 500_000,
        resources: PipelineResources = PipelineResources(),
    ) -> None:
        self._lake = lake
        self._expectations = tuple(expectations)
        self._versions_per_batch = versions_per_batch
        self._rows_per_batch = rows_per_batch
        self._con = duckdb.connect()
        self._group_tables = GroupTables(lake, self._con)
        self.engagement = EngagementTables(lake, self._con)
        self._con.execute("SET TimeZone = 'UTC'")
        self._con.execute("SET memory_limit = ?", [resources.memory_limit])
        spill_root = resources.spill_dir or tempfile.gettempdir()
        self._con.execute("SET temp_directory = ?", [spill_root + "/vhlake-duckdb"])
        places = KeyIndex(lake, JOB_EVENTS, keys=("job_key", "event_key"), partition="job_date")
        read_ahead = ReadAhead(self._con, self._expectations)
        run_log = RunLog(lake)
        self._engagement_step = EngagementStep(lake, self.engagement)
        self._incremental = Incremental(
            lake,
            self._con,
            places=places,
            group_tables=self._group_tables,
            read_ahead=read_ahead,
            run_log=run_log,
        )
        self._first_build = FirstBuild(
            lake,
            self._con,
            places=places,
            read_ahead=read_ahead,
            run_log=run_log,
            update_engagement=self._engagement_step.update,
            bucket_rows=build_bucket_rows,
            threads=resources.threads,
            spill_dir=resources.spill_dir,
        )

    def run(
        self,
        *,
        full_refresh: bool = False,
        stop: threading.Event | None = None,
        on_progress: Progress | None = None,
        engagement: bool = True,
    ) -> RunReport:
        """Bring quarantine, silver and gold up to the current bronze version, then (with
        ``engagement``) the engagement tables up to silver's, in one step for all the run's ranges.

        With ``stop``, a set event ends the run between two ranges (each range commits whole), so a
        service shuts down promptly even with a backlog; the next run continues from there.
        ``on_progress(phase, done, total)`` hears how far each phase got. The service passes
        ``engagement=False`` and calls :meth:`update_engagement` on its own schedule; a first build
        computes the engagement tables either way.
        """
        with derived_tables_writer(self._lake):  # a replay in progress finishes first
            report = self._run(full_refresh=full_refresh, stop=stop, on_progress=on_progress)
            if engagement:
                self._engagement_step.update()
            return report

    def update_engagement(self) -> bool:
        """Bring the engagement tables to silver's current version (pipeline/engagement_step.py); False
        when they already were. Never at the same time as a pipeline run or a replay."""
        with derived_tables_writer(self._lake):
            return self._engagement_step.update()

    def _run(
        self, *, full_refresh: bool, stop: threading.Event | None, on_progress: Progress | None
    ) -> RunReport:
        progress = on_progress or silent
        run_id = str(uuid.uuid4())
        if full_refresh:
            for table in DERIVED:
                self._lake.replace_once(table, table.schema.empty_table(), app_id=PIPELINE_APP, version=-1)
        bronze = self._lake.open(BRONZE)
        target = -1 if bronze is None else bronze.version()
        done = {t.name: processed(self._lake, t) for t in DERIVED}
        self._rebuild_behind_silver(done, run_id)
        start = min(done.values())
        report = RunReport(run_id=run_id, bronze_from=start, bronze_to=target)
        if bronze is None:
            return report
        log = bronze_log(self._lake, since=start, target=target)
        if self._builds_whole(done, log.added):
            self._first_build.build(run_id, done, sum(log.added.values()), report, stop, progress)
        elif start < 0 and not log.only_appended:
            self._incremental.rebuild(run_id, done, report, stop, progress)
        else:
            ranges = plan_ranges(
                start, target, done, log.added, rows=self._rows_per_batch, versions=self._versions_per_batch
            )
            reads = [
                (first, end, changes_reader(bronze, first, end, log.without_events)) for first, end in ranges
            ]
            self._incremental.run_ranges(run_id, reads, report, stop, progress)
        return report

    def _builds_whole(self, done: dict[str, int], added: dict[int, int]) -> bool:
        """Whether to take the first-build path: nothing built yet (job events, written last, hold no
        version), more than one batch of bronze, a local lake and the native fold to build with."""
        first = done[JOB_EVENTS.name] < 0 and sum(added.values()) > self._rows_per_batch
        return first and self._lake.is_local and library() is not None

    def _rebuild_behind_silver(self, done: dict[str, int], run_id: str) -> None:
        """Rebuild from silver each group table behind it: one a crash left between its commit and
        silver's, or one added to a lake built before it existed. Gold's groups the rebuild changes are
        restated first (a crash before the range's restatements were appended would lose them
        otherwise), without events: those of the range are not known here."""
        now = datetime.now(UTC)
        for table in GROUP_TABLES:
            if done[table.name] < done[SILVER.name]:
                rows = self._group_tables.rebuilt(table, now)
                if table is GOLD:
                    change = Change(run_id, done[SILVER.name], PIPELINE_APP, done[SILVER.name], now)
                    self._incremental.restate_all(rows, change)
                self._lake.replace_once(table, rows, app_id=PIPELINE_APP, version=done[SILVER.name])
                done[table.name] = done[SILVER.name]

    def backlog(self) -> int:
        """Bronze commits not yet reflected in every derived table (0 when caught up)."""
        bronze = self._lake.open(BRONZE)
        if bronze is None:
            return 0
        return max(0, bronze.version() - min(processed(self._lake, t) for t in DERIVED))

    def replay_quarantine(self, *, reason: str | None = None, wait_s: float | None = None) -> int:
        """Re-check quarantined events (all, or one ``reason``) with the current rules; fold those that pass.

        Replayed events leave the quarantine. Safe to repeat after a crash: folding an event twice is a
        no-op (events are deduplicated by ``event_id``), and an event leaves the quarantine only after its
        job was folded. Never at the same time as a pipeline run or another replay (lake/writer_lock.py):
        it waits for them, at most ``wait_s`` seconds when given, then raises ``DerivedTablesBusy``.
        """
        with derived_tables_writer(self._lake, wait_s=wait_s):
            return replay.replay_quarantine(
                self._lake,
                self._con,
                self._expectations,
                self._incremental,
                self._engagement_step.update,
                reason,
            )

    def recompute_gold(self, jobs: pa.Table, *, app_id: str) -> int:
        """Recompute the gold groups of ``jobs`` (silver rows, or their created_date, marketplace and
        category) from silver as it is now, and bring the engagement tables to silver (its change data
        feed holds the deletes): after rows left silver other than through the pipeline (an erasure).
        Returns the number of groups."""
        return replay.recompute_gold(
            self._group_tables,
            self._incremental,
            self.update_engagement,
            jobs,
            app_id=app_id,
            bronze_version=processed(self._lake, GOLD),
        )

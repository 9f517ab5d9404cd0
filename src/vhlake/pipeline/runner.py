"""The incremental pipeline: bronze → quarantine + silver → gold, exactly once.

Each derived table records, as a Delta application transaction ``(PIPELINE_APP, bronze version)``, how far
into bronze it has been brought. A run reads only the bronze commits after that (the change data feed),
in bounded version ranges; for the jobs those commits touch it re-folds each job's whole history, so the
result never depends on how events were batched or ordered. A crash between the commits of one range
is repaired on the next run: every table skips what it already has.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, GOLD, PIPELINE_RUNS, QUARANTINE, SILVER, TableDef
from vhlake.pipeline.expectations import DEFAULT_EXPECTATIONS, Expectation, check_expectations
from vhlake.pipeline.gold import UNKNOWN_CATEGORY, daily_metrics
from vhlake.pipeline.silver import fold_jobs
from vhlake.query.arrow_sql import registered

PIPELINE_APP = "pipeline:bronze"
DERIVED = (QUARANTINE, SILVER, GOLD)


@dataclass
class RunReport:
    """What one ``pipeline run`` did."""

    run_id: str
    bronze_from: int
    bronze_to: int
    events_in: int = 0
    quarantined: int = 0
    jobs_upserted: int = 0
    gold_groups: int = 0
    violations: dict[str, int] = field(default_factory=dict)

    @property
    def was_noop(self) -> bool:
        return self.bronze_from >= self.bronze_to


class Pipeline:
    """Runs the medallion steps over a lake."""

    def __init__(
        self,
        lake: Lake,
        *,
        expectations: Sequence[Expectation] = DEFAULT_EXPECTATIONS,
        versions_per_batch: int = 20,
        rows_per_batch: int = 200_000,
    ) -> None:
        self._lake = lake
        self._expectations = tuple(expectations)
        self._versions_per_batch = versions_per_batch
        self._rows_per_batch = rows_per_batch
        self._con = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'")

    def run(self, *, full_refresh: bool = False) -> RunReport:
        """Bring quarantine, silver and gold up to the current bronze version."""
        run_id = str(uuid.uuid4())
        if full_refresh:
            for table in DERIVED:
                self._lake.replace_once(table, table.schema.empty_table(), app_id=PIPELINE_APP, version=-1)
        bronze = self._lake.open(BRONZE)
        target = -1 if bronze is None else bronze.version()
        done = {t.name: self._processed(t) for t in DERIVED}
        start = min(done.values())
        report = RunReport(run_id=run_id, bronze_from=start, bronze_to=target)
        if done[GOLD.name] < done[SILVER.name]:
            self._rebuild_gold(version=done[SILVER.name])  # a crash left gold behind silver
        position = start
        added = _rows_added(bronze, since=start) if bronze is not None else {}
        for boundary in sorted({v for v in done.values() if v > position} | {target}):
            while position < boundary:
                end = self._range_end(position, boundary, added)
                try:
                    self._run_range(run_id, position, end, report)
                except Exception as exc:
                    self._log_failure(run_id, position, end, exc)
                    raise
                position = end
        return report

    def _range_end(self, position: int, boundary: int, added: dict[int, int]) -> int:
        """The end of the next range: at most ``versions_per_batch`` commits and about ``rows_per_batch``
        rows (always at least one commit), so memory stays bounded whatever the backlog."""
        end, rows = position + 1, added.get(position + 1, 0)
        while end < boundary and end - position < self._versions_per_batch:
            more = added.get(end + 1, 0)
            if rows + more > self._rows_per_batch:
                break
            end, rows = end + 1, rows + more
        return end

    def _processed(self, table: TableDef) -> int:
        version = self._lake.txn_version(table, PIPELINE_APP)
        return -1 if version is None else version

    def _run_range(self, run_id: str, start: int, end: int, report: RunReport) -> None:
        started, clock = datetime.now(UTC), time.perf_counter()
        bronze = self._lake.open(BRONZE)
        assert bronze is not None
        new = _appended_rows(bronze, start, end)
        checked = check_expectations(self._con, new, self._expectations)
        quarantine = checked.quarantined.append_column(
            "ingestion_date", pc.cast(checked.quarantined["ingestion_time"], pa.date32())
        )
        self._lake.append_once(QUARANTINE, quarantine, app_id=PIPELINE_APP, version=end, start=start)
        folded, groups = self._refold(pc.unique(checked.passed["job_id"]), version=end, app_id=PIPELINE_APP)
        report.events_in += new.num_rows
        report.quarantined += quarantine.num_rows
        report.jobs_upserted += folded.num_rows
        report.gold_groups += groups.num_rows
        for name, count in checked.violations.items():
            report.violations[name] = report.violations.get(name, 0) + count
        self._log_run(
            run_id, started, time.perf_counter() - clock, start, end, new, folded, checked.violations
        )

    def _refold(self, jobs: pa.Array, *, version: int, app_id: str) -> tuple[pa.Table, pa.Table]:
        """Re-fold ``jobs`` from their bronze history into silver, then recompute the gold groups they touch."""
        now = datetime.now(UTC)
        folded = fold_jobs(self._con, self._job_history(version, jobs), updated_at=now)
        before = self._silver_rows(jobs)  # their old groups: a job whose day moved leaves one
        self._lake.upsert_once(
            SILVER,
            _silver_source(folded, before),
            keys=SILVER_KEYS,
            app_id=app_id,
            version=version,
            delete_flag="_deleted",
        )
        groups = _groups(pa.concat_tables([folded, before]))
        self._lake.upsert_once(
            GOLD,
            self._gold_rows(groups, now),
            keys=GOLD_KEYS,
            app_id=app_id,
            version=version,
            delete_flag="_deleted",
        )
        return folded, groups

    def replay_quarantine(self, *, reason: str | None = None) -> int:
        """Re-check quarantined events (all, or one ``reason``) with the current rules; fold those that pass.

        Replayed events leave the quarantine. Safe to repeat after a crash: re-folding a job is idempotent
        and an event leaves the quarantine only after its job was folded.
        """
        quarantine = self._lake.open(QUARANTINE)
        bronze = self._lake.open(BRONZE)
        if quarantine is None or bronze is None:
            return 0
        rows = pa.table(quarantine.to_pyarrow_table())
        if reason is not None:
            rows = rows.filter(pc.equal(rows["reason"], reason))
        passing = check_expectations(self._con, rows.select(BRONZE.schema.names), self._expectations).passed
        if passing.num_rows == 0:
            return 0
        version = bronze.version()
        app_id = f"replay:{uuid.uuid4()}"
        self._refold(pc.unique(passing["job_id"]), version=version, app_id=app_id)
        leaving = passing.select(["source", "source_offset"]).append_column(
            "_deleted", pa.repeat(pa.scalar(True), passing.num_rows)
        )
        self._lake.upsert_once(
            QUARANTINE,
            leaving,
            keys=("source", "source_offset"),
            app_id=app_id,
            version=version,
            delete_flag="_deleted",
        )
        return int(passing.num_rows)

    def _job_history(self, version: int, jobs: pa.Array) -> pa.Table:
        """Every bronze event (at ``version``) of ``jobs`` that passes the expectations."""
        history = self._rows_of_jobs(self._lake.dataset(BRONZE, version=version), jobs)
        return check_expectations(self._con, history, self._expectations).passed

    def _silver_rows(self, jobs: pa.Array) -> pa.Table:
        rows = self._rows_of_jobs(self._lake.dataset(SILVER), jobs)
        return rows.select(SILVER.schema.names).cast(SILVER.schema)

    def _rows_of_jobs(self, table: ds.Dataset, jobs: pa.Array) -> pa.Table:
        with registered(self._con, lake_table=table, touched=pa.table({"job_id": jobs})):
            query = "SELECT * FROM lake_table WHERE job_id IN (SELECT job_id FROM touched)"
            return self._con.sql(query).to_arrow_table()

    def _gold_rows(self, groups: pa.Table, now: datetime) -> pa.Table:
        """Recomputed gold rows for ``groups``, plus a deletion marker for each group left without jobs."""
        if groups.num_rows == 0:
            return _with_deletions(GOLD.schema.empty_table(), groups, now)
        with registered(self._con, silver_all=self._lake.dataset(SILVER), groups=groups):
            jobs = self._con.sql(
                f"""SELECT s.* FROM silver_all s
                SEMI JOIN groups g ON s.created_date = g.date AND s.marketplace = g.marketplace
                    AND coalesce(s.category, '{UNKNOWN_CATEGORY}') = g.category
                WHERE s.created_date BETWEEN $first AND $last""",  # noqa: S608
                params={"first": pc.min(groups["date"]).as_py(), "last": pc.max(groups["date"]).as_py()},
            ).to_arrow_table()
        metrics = daily_metrics(self._con, jobs, updated_at=now)
        return _with_deletions(metrics, groups, now)

    def _rebuild_gold(self, *, version: int) -> None:
        silver = self._lake.open(SILVER)
        jobs = SILVER.schema.empty_table() if silver is None else pa.table(silver.to_pyarrow_table())
        gold = daily_metrics(self._con, jobs, updated_at=datetime.now(UTC))
        self._lake.replace_once(GOLD, gold, app_id=PIPELINE_APP, version=version)

    def _log_failure(self, run_id: str, start: int, end: int, exc: Exception) -> None:
        """Record a failed range in pipeline_runs (what DLT's event log shows for a failed update)."""
        self._log(
            run_id, datetime.now(UTC), 0.0, start, end, status="failed", error=f"{type(exc).__name__}: {exc}"
        )

    def _log_run(
        self,
        run_id: str,
        started: datetime,
        seconds: float,
        start: int,
        end: int,
        new: pa.Table,
        folded: pa.Table,
        violations: dict[str, int],
    ) -> None:
        quarantined = sum(violations.get(e.name, 0) for e in self._expectations if e.action == "quarantine")
        self._log(
            run_id,
            started,
            seconds,
            start,
            end,
            status="success",
            rows_in=new.num_rows,
            rows_out=folded.num_rows,
            rows_quarantined=quarantined,
            expectations=list(violations.items()),
        )

    def _log(
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


def _rows_added(bronze: DeltaTable, *, since: int) -> dict[int, int]:
    """Rows each bronze commit after ``since`` appended, from the commit metrics in the Delta log."""
    pending = bronze.version() - since
    if pending <= 0:
        return {}
    added = {}
    for commit in bronze.history(pending):
        metrics = commit.get("operationMetrics") or {}
        added[int(commit["version"])] = int(metrics.get("num_added_rows", 0) or 0)
    return added


def _appended_rows(bronze: DeltaTable, start: int, end: int) -> pa.Table:
    """Rows bronze commits ``start+1 .. end`` appended (bronze is append-only: inserts only)."""
    if end <= start or end < 1:
        return BRONZE.schema.empty_table()
    reader = bronze.load_cdf(starting_version=start + 1, ending_version=end)
    changes = pa.table(reader)
    change_type = pc.cast(changes["_change_type"], pa.string())  # delta-rs returns string_view columns
    rows = changes.select(BRONZE.schema.names).cast(BRONZE.schema)
    return rows.filter(pc.equal(change_type, "insert"))


def _groups(jobs: pa.Table) -> pa.Table:
    keys = pa.table(
        {
            "date": jobs["created_date"],
            "marketplace": jobs["marketplace"],
            "category": pc.fill_null(jobs["category"], UNKNOWN_CATEGORY),
        }
    )
    return keys.group_by(["date", "marketplace", "category"]).aggregate([])


SILVER_KEYS = ("job_id", "marketplace", "created_date")
GOLD_KEYS = ("date", "marketplace", "category")


def _silver_source(folded: pa.Table, before: pa.Table) -> pa.Table:
    """The MERGE source for silver: folded jobs, and a ``_deleted`` marker for each old row of a job whose
    partition (marketplace, created_date) changed. Matching on the partition columns too lets the MERGE
    touch only the partitions the batch lives in, and the move is one commit."""
    old_keys = before.select(list(SILVER_KEYS))  # Arrow joins cannot carry map columns along
    moved = old_keys.join(folded.select(list(SILVER_KEYS)), keys=list(SILVER_KEYS), join_type="left anti")
    return _merge_source(SILVER, folded, moved)


def _with_deletions(metrics: pa.Table, groups: pa.Table, now: datetime) -> pa.Table:
    """The MERGE source for gold: recomputed rows, and a ``_deleted`` marker per group left empty."""
    gone = groups.join(metrics.select(list(GOLD_KEYS)), keys=list(GOLD_KEYS), join_type="left anti")
    return _merge_source(GOLD, metrics, gone)


def _merge_source(table: TableDef, upserts: pa.Table, deletions: pa.Table) -> pa.Table:
    """``upserts`` and ``deletions`` (which need only the key columns) in one table flagged by ``_deleted``."""
    schema = pa.schema([f.with_nullable(True) for f in table.schema] + [pa.field("_deleted", pa.bool_())])
    count = deletions.num_rows
    markers = pa.table(
        {
            f.name: deletions[f.name] if f.name in deletions.column_names else pa.nulls(count, f.type)
            for f in table.schema
        }
        | {"_deleted": pa.repeat(pa.scalar(True), count)}
    )
    rows = upserts.append_column("_deleted", pa.repeat(pa.scalar(False), upserts.num_rows))
    return pa.concat_tables([rows.cast(schema), markers.cast(schema)])

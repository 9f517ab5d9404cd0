"""The incremental pipeline: bronze → quarantine + job events → silver → gold, exactly once.

Each derived table records, as a Delta application transaction ``(PIPELINE_APP, bronze version)``, how far
into bronze it has been brought. A run reads only the bronze commits after that (the change data feed),
in bounded version ranges. The events that pass the expectations are typed once and kept in
``validation_job_events``, filed by job; for the jobs a range touches, their history is read from the few
partitions it lives in and re-folded whole, so the result never depends on how events were batched or
ordered, and the work follows the new data, not the size of bronze.

Within a range the tables commit in the order quarantine, silver, gold, job events: the history is
written last, so after a crash the tables still to be written are computed from the history they were
computed from before. A rerun skips, table by table, what is already there.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, GOLD, JOB_EVENTS, PIPELINE_RUNS, QUARANTINE, SILVER, TableDef
from vhlake.pipeline.expectations import DEFAULT_EXPECTATIONS, Checked, Expectation, check_expectations
from vhlake.pipeline.gold import UNKNOWN_CATEGORY, daily_metrics
from vhlake.pipeline.silver import file_events, fold_jobs, type_events
from vhlake.query.arrow_sql import registered
from vhlake.query.lake_relations import table_relation

PIPELINE_APP = "pipeline:bronze"
# What gold needs of silver.
GOLD_INPUTS = [
    "created_date",
    "marketplace",
    "category",
    "status",
    "total_rows",
    "processing_time_ms",
    "user_id",
]
_PLACES = pa.schema([JOB_EVENTS.schema.field("job_id"), JOB_EVENTS.schema.field("job_date")])
_HISTORY = JOB_EVENTS.schema.remove(JOB_EVENTS.schema.get_field_index("job_date"))
DERIVED = (QUARANTINE, SILVER, GOLD, JOB_EVENTS)


@dataclass(frozen=True)
class _Prepared:
    """One bronze range, read, checked against the expectations and typed, ready to be applied."""

    start: int
    end: int
    new: pa.Table
    checked: Checked
    typed: pa.Table
    canaries: pa.Table


# Events a service publishes to measure its own end-to-end lag carry this source_system; they stop at
# bronze (never in silver, gold or the quarantine) and only their lag is recorded.
CANARY_SOURCE = "vhlake-canary"


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
        # DuckDB would take 80% of RAM; past this it spills to disk, so a large range stays bounded.
        self._con.execute("SET memory_limit = '1GB'")
        self._con.execute("SET temp_directory = ?", [tempfile.gettempdir() + "/vhlake-duckdb"])

    def run(self, *, full_refresh: bool = False, stop: threading.Event | None = None) -> RunReport:
        """Bring quarantine, silver and gold up to the current bronze version.

        With ``stop``, a set event ends the run between two ranges (each range commits whole), so a
        service shuts down promptly even with a backlog; the next run continues from there.
        """
        run_id = str(uuid.uuid4())
        if full_refresh:
            for table in DERIVED:
                self._lake.replace_once(table, table.schema.empty_table(), app_id=PIPELINE_APP, version=-1)
        bronze = self._lake.open(BRONZE)
        target = -1 if bronze is None else bronze.version()
        done = {t.name: self._processed(t) for t in DERIVED}
        start = min(done.values())
        report = RunReport(run_id=run_id, bronze_from=start, bronze_to=target)
        added = _rows_added(bronze, since=start) if bronze is not None else {}
        if done[GOLD.name] < done[SILVER.name]:
            self._rebuild_gold(version=done[SILVER.name])  # a crash left gold behind silver
        if bronze is not None:
            self._run_ranges(run_id, bronze, self._ranges(start, target, done, added), report, stop)
        return report

    def backlog(self) -> int:
        """Bronze commits not yet reflected in every derived table (0 when caught up)."""
        bronze = self._lake.open(BRONZE)
        if bronze is None:
            return 0
        return max(0, bronze.version() - min(self._processed(t) for t in DERIVED))

    def _ranges(
        self, start: int, target: int, done: dict[str, int], added: dict[int, int]
    ) -> list[tuple[int, int]]:
        """The bronze version ranges to process, cut at every table's committed position."""
        ranges, position = [], start
        for boundary in sorted({v for v in done.values() if v > position} | {target}):
            while position < boundary:
                end = self._range_end(position, boundary, added)
                ranges.append((position, end))
                position = end
        return ranges

    def _run_ranges(
        self,
        run_id: str,
        bronze: DeltaTable,
        ranges: list[tuple[int, int]],
        report: RunReport,
        stop: threading.Event | None,
    ) -> None:
        """Process ``ranges`` in order, reading and typing the next one while the current one commits.

        Reading ahead touches only bronze (immutable commits), on its own DuckDB connection and bronze
        handle, so it cannot see or change what the current range writes.
        """
        reader = self._con.cursor()
        reader.execute("SET TimeZone = 'UTC'")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vhlake-read-ahead") as pool:
            ahead = [pool.submit(self._prepare, reader, bronze, *r) for r in ranges[:1]]
            for i, (start, end) in enumerate(ranges):
                if stop is not None and stop.is_set():
                    for pending in ahead:
                        pending.cancel()
                    report.bronze_to = start  # what this run got to
                    return
                started, clock = datetime.now(UTC), time.perf_counter()
                try:
                    prepared = ahead.pop().result()
                    if i + 1 < len(ranges):
                        ahead.append(pool.submit(self._prepare, reader, bronze, *ranges[i + 1]))
                    self._run_range(run_id, prepared, report, started=started, clock=clock)
                except Exception as exc:
                    for pending in ahead:
                        pending.cancel()
                    self._log_failure(run_id, start, end, exc)
                    raise

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

    def _prepare(self, con: duckdb.DuckDBPyConnection, bronze: DeltaTable, start: int, end: int) -> _Prepared:
        """What bronze commits ``start+1 .. end`` appended, checked and typed (reads bronze only)."""
        appended = _appended_rows(bronze, start, end)
        is_canary = pc.fill_null(pc.equal(appended["source_system"], CANARY_SOURCE), False)
        new, canaries = appended.filter(pc.invert(is_canary)), appended.filter(is_canary)
        checked = check_expectations(con, new, self._expectations)
        return _Prepared(start, end, new, checked, type_events(con, checked.passed), canaries)

    def _run_range(
        self, run_id: str, prepared: _Prepared, report: RunReport, *, started: datetime, clock: float
    ) -> None:
        start, end, new, checked = prepared.start, prepared.end, prepared.new, prepared.checked
        quarantine = checked.quarantined.append_column(
            "ingestion_date", pc.cast(checked.quarantined["ingestion_time"], pa.date32())
        )
        self._lake.append_once(QUARANTINE, quarantine, app_id=PIPELINE_APP, version=end, start=start)
        folded, groups = self._apply(prepared.typed, version=end, app_id=PIPELINE_APP)
        report.events_in += new.num_rows
        report.quarantined += quarantine.num_rows
        report.jobs_upserted += folded.num_rows
        report.gold_groups += groups.num_rows
        report.canaries += prepared.canaries.num_rows
        report.rescued += new.num_rows - new["_rescued_data"].null_count
        visible = datetime.now(UTC)
        report.freshness_s = _lag_quantiles(prepared.typed["timestamp"], visible) or report.freshness_s
        report.canary_lag_s += _lags(prepared.canaries["timestamp"], visible).to_pylist()
        for name, count in checked.violations.items():
            report.violations[name] = report.violations.get(name, 0) + count
        self._log_run(
            run_id, started, time.perf_counter() - clock, start, end, new, folded, checked.violations
        )

    def _apply(self, events: pa.Table, *, version: int, app_id: str) -> tuple[pa.Table, pa.Table]:
        """Fold typed new ``events`` into their jobs: silver, then the gold groups they touch, then the
        job events themselves. Returns the folded silver rows and the touched gold groups."""
        now = datetime.now(UTC)
        self._job_events_view(self._partitions_of(events))
        events = self._unseen(events)
        places, history = self._history(events)
        before = fold_jobs(self._con, history, updated_at=now)  # the jobs' silver rows as they are
        folded = fold_jobs(self._con, pa.concat_tables([history, events]), updated_at=now)
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
        filed = file_events(self._con, events, _with_new_jobs(places, folded))
        self._lake.append_once(JOB_EVENTS, filed, app_id=app_id, version=version)
        return folded, groups

    def replay_quarantine(self, *, reason: str | None = None) -> int:
        """Re-check quarantined events (all, or one ``reason``) with the current rules; fold those that pass.

        Replayed events leave the quarantine. Safe to repeat after a crash: folding an event twice is a
        no-op (events are deduplicated by ``event_id``), and an event leaves the quarantine only after its
        job was folded.
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
        self._apply(type_events(self._con, passing), version=version, app_id=app_id)
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

    def _partitions_of(self, events: pa.Table) -> list[object]:
        """The job_date partitions holding stored events of the jobs of ``events``, or stored copies of
        them: one scan of two integer key columns, however large the table."""
        keys = pa.table({"job_key": events["job_key"], "event_key": events["event_key"]})
        with registered(self._con, wanted=keys):
            self._job_events_view()
            found = self._con.sql(
                """SELECT DISTINCT job_date FROM job_events
                WHERE job_key IN (SELECT job_key FROM wanted) OR event_key IN (SELECT event_key FROM wanted)"""
            ).to_arrow_table()
        return list(found["job_date"].to_pylist())

    def _unseen(self, events: pa.Table) -> pa.Table:
        """``events`` without the later copies of events already folded into another job.

        Copies within one job are deduplicated by the fold, which sees the job's whole history; a copy
        whose event_id was first received for another job is only found here. Reads the ``job_events``
        view (the partitions :meth:`_partitions_of` found).
        """
        with registered(self._con, fresh=events):
            rows = self._con.sql(
                """SELECT f.* FROM fresh f ANTI JOIN (
                    SELECT e.event_id, e.job_id FROM job_events e SEMI JOIN fresh USING (event_id)
                ) seen ON f.event_id = seen.event_id AND f.job_id <> seen.job_id"""
            ).to_arrow_table()
        return rows.cast(events.schema)

    def _history(self, events: pa.Table) -> tuple[pa.Table, pa.Table]:
        """Where the jobs of ``events`` are filed (job_id, job_date), and their typed events so far (from
        the ``job_events`` view)."""
        with registered(self._con, touched=pa.table({"job_id": pc.unique(events["job_id"])})):
            rows = self._con.sql(
                "SELECT e.* FROM job_events e SEMI JOIN touched USING (job_id)"
            ).to_arrow_table()
        places = rows.select(["job_id", "job_date"]).group_by(["job_id", "job_date"]).aggregate([])
        return places.cast(_PLACES), rows.drop_columns(["job_date"]).cast(_HISTORY)

    def _job_events_view(self, dates: list[object] | None = None) -> None:
        """View ``job_events`` over the job events table (only the ``dates`` partitions, when given):
        DuckDB's own Parquet reader on a local lake, twice as fast as scanning an Arrow dataset."""
        where = None if dates is None else ("job_date", dates)
        table_relation(self._con, self._lake, JOB_EVENTS, where=where).create_view("job_events", replace=True)

    def _gold_rows(self, groups: pa.Table, now: datetime) -> pa.Table:
        """Recomputed gold rows for ``groups``, plus a deletion marker for each group left without jobs."""
        if groups.num_rows == 0:
            return _with_deletions(GOLD.schema.empty_table(), groups, now)
        partitions = ds.field("created_date").isin(pc.unique(groups["date"])) & ds.field("marketplace").isin(
            pc.unique(groups["marketplace"])
        )
        candidates = self._lake.dataset(SILVER).to_table(columns=GOLD_INPUTS, filter=partitions)
        with registered(self._con, candidates=candidates, groups=groups):
            jobs = self._con.sql(
                f"""SELECT c.* FROM candidates c
                SEMI JOIN groups g ON c.created_date = g.date AND c.marketplace = g.marketplace
                    AND coalesce(c.category, '{UNKNOWN_CATEGORY}') = g.category"""  # noqa: S608
            ).to_arrow_table()
        metrics = daily_metrics(self._con, jobs, updated_at=now)
        return _with_deletions(metrics, groups, now)

    def _rebuild_gold(self, *, version: int) -> None:
        jobs = self._lake.dataset(SILVER).to_table(columns=GOLD_INPUTS)
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


def _with_new_jobs(places: pa.Table, folded: pa.Table) -> pa.Table:
    """``places`` plus a place for each job seen for the first time: the date it was created on."""
    first_seen = folded.select(["job_id", "created_date"]).rename_columns(["job_id", "job_date"])
    new = first_seen.join(places, keys="job_id", join_type="left anti")
    return pa.concat_tables([places, new.select(places.column_names).cast(places.schema)])


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
    gone = gone.append_column("year", pc.year(gone["date"])).append_column("month", pc.month(gone["date"]))
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

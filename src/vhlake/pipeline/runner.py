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

A first build (nothing built yet, more than one batch of bronze) takes another path, pipeline/bulk.py:
bronze read once, folded bucket by bucket, each table written directly and committed once.

The engagement tables (``user_engagement_daily_gold`` and its state ``user_first_seen``) follow silver,
not bronze: their rows span 28 days, so recomputing them for every range would cost a micro-batch
seconds. :meth:`Pipeline.update_engagement` reads silver's change data feed since the silver version they
record as ``(ENGAGEMENT_APP, silver version)``, recomputes the pairs those changes touch and merges them,
gold first, its state after. ``pipeline run`` runs it once at the end of a run (one step for all its
ranges); the service runs it on its own schedule. After silver's retention deleted its oldest days, the
step first moves the first dates older than silver's earliest day to the earliest silver still holds.
"""

from __future__ import annotations

import collections
import queue
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NamedTuple

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from vhlake.duck.arrow import registered
from vhlake.duck.lake_relations import table_relation
from vhlake.lake.delta import Lake, merge_source
from vhlake.lake.direct_write import DirectWrite
from vhlake.lake.key_index import KeyIndex
from vhlake.lake.tables import (
    BRONZE,
    ERROR_TYPE_GOLD,
    GOLD,
    JOB_EVENTS,
    PIPELINE_RUNS,
    QUARANTINE,
    SILVER,
    TableDef,
    table_by_name,
)
from vhlake.lake.writer_lock import derived_tables_writer
from vhlake.native import library
from vhlake.pipeline.bulk import (
    SUPERSEDED,
    BucketPlan,
    JobBuckets,
    Spill,
    bucket_count,
    set_aside,
    spill_directory,
    taken_back,
)
from vhlake.pipeline.engagement_tables import ENGAGEMENT_TABLES, JOB_COLUMNS, EngagementTables
from vhlake.pipeline.engagement_tables import KEYS as ENGAGEMENT_KEYS
from vhlake.pipeline.expectations import (
    DEFAULT_EXPECTATIONS,
    Checked,
    Expectation,
    check_expectations,
)
from vhlake.pipeline.gold_groups import (
    GOLD_INPUTS,
    GROUP_TABLES,
    KEYS,
    GroupTables,
    group_rows,
    groups_of,
)
from vhlake.pipeline.silver import TYPED_SCHEMA, file_events, fold_and_file, fold_jobs, type_events

PIPELINE_APP = "pipeline:bronze"
# The engagement tables' transaction: the silver version they reflect (module docstring).
ENGAGEMENT_APP = "pipeline:silver_engagement"
# The engagement tables taken past silver's retention, at the silver version that found it (a crash
# between gold's commit and the state's is completed from the same stored first dates).
ENGAGEMENT_EXPIRY_APP = "pipeline:silver_engagement_expiry"
# on_progress(phase, done, total)
Progress = Callable[[str, int, int], None]
# A first build reads bronze in parts of about this many rows (three in memory at once: two being typed
# ahead while the third is spilled).
_BUILD_READ_ROWS = 125_000
# A first build's job events file gets a row group or two from each bucket; its files are closed every
# this many buckets (a partition then gets another file), so open footers stay bounded (measured: 400 row
# groups a file, ~0.5 GB of footers held, for the 200 buckets of a 100M-event build).
_SEAL_EVERY_BUCKETS = 32
_EPOCH = date(1970, 1, 1)
_PLACES = pa.schema([JOB_EVENTS.schema.field("job_id"), JOB_EVENTS.schema.field("job_date")])
# In commit order. The engagement tables are not among them: they follow silver's versions, not bronze's
# (module docstring).
DERIVED = (QUARANTINE, SILVER, GOLD, ERROR_TYPE_GOLD, JOB_EVENTS)


@dataclass(frozen=True)
class _Prepared:
    """One bronze range, read, checked against the expectations and typed, ready to be applied (the
    bronze rows themselves are not kept: a range in flight holds only what is written)."""

    start: int
    end: int
    events_in: int
    rescued: int
    quarantined: pa.Table
    violations: dict[str, int]
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

    def add(self, prepared: _Prepared, *, jobs: int, groups: int) -> None:
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
    ) -> None:
        self._lake = lake
        self._expectations = tuple(expectations)
        self._versions_per_batch = versions_per_batch
        self._rows_per_batch = rows_per_batch
        self._build_bucket_rows = build_bucket_rows  # ~170 MB of typed events each
        self._progress: Progress = _silent
        # Where each job and event is filed (lake/key_index.py): a batch finds its partitions by binary
        # search instead of scanning the whole job events table.
        self._places = KeyIndex(lake, JOB_EVENTS, keys=("job_key", "event_key"), partition="job_date")
        self._con = duckdb.connect()
        self._group_tables = GroupTables(lake, self._con)
        self.engagement = EngagementTables(lake, self._con)
        self._con.execute("SET TimeZone = 'UTC'")
        # DuckDB would take 80% of RAM; past this it spills to disk, so a large range stays bounded.
        self._con.execute("SET memory_limit = '1GB'")
        self._con.execute("SET temp_directory = ?", [tempfile.gettempdir() + "/vhlake-duckdb"])

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
                self._update_engagement()
            return report

    def update_engagement(self) -> bool:
        """Bring the engagement tables to silver's current version (module docstring); False when they
        already were. Never at the same time as a pipeline run or a replay."""
        with derived_tables_writer(self._lake):
            return self._update_engagement()

    def _update_engagement(self) -> bool:
        """Silver's changes since the version the state records, recomputed and merged, gold first and
        the state after, each recording the silver version they reflect: after a crash between the two,
        gold is skipped and the state computed from the same changes. Built from all of silver when there
        is no record yet or the changes cannot be followed (``silver_changes``)."""
        silver = self._lake.open(SILVER)
        if silver is None:
            return False
        target = silver.version()
        gold_at, state_at = (self._lake.txn_version(t, ENGAGEMENT_APP) for t in ENGAGEMENT_TABLES)
        if gold_at is not None and state_at is not None and min(gold_at, state_at) >= target:
            return False
        changes = None
        if gold_at is not None and state_at is not None:
            changes = silver_changes(silver, since=min(gold_at, state_at), until=target)
        now = datetime.now(UTC)
        if changes is None:
            rows = self.engagement.rebuilt(now)
            for table in ENGAGEMENT_TABLES:  # in commit order
                self._lake.replace_once(table, rows[table.name], app_id=ENGAGEMENT_APP, version=target)
            self.engagement.refresh_index()
            return True
        expired = self.engagement.expired_sources(now) if changes.expired else None
        if expired is not None:  # before the changes, which then read the state as silver gives it
            self._upsert_each(
                ENGAGEMENT_TABLES, expired, ENGAGEMENT_KEYS, app_id=ENGAGEMENT_EXPIRY_APP, version=target
            )
        sources = self.engagement.merge_sources(changes.rows, changes.rows.schema.empty_table(), now)
        self._upsert_each(ENGAGEMENT_TABLES, sources, ENGAGEMENT_KEYS, app_id=ENGAGEMENT_APP, version=target)
        return True

    def _run(
        self, *, full_refresh: bool, stop: threading.Event | None, on_progress: Progress | None
    ) -> RunReport:
        self._progress = on_progress or _silent
        run_id = str(uuid.uuid4())
        if full_refresh:
            for table in DERIVED:
                self._lake.replace_once(table, table.schema.empty_table(), app_id=PIPELINE_APP, version=-1)
        bronze = self._lake.open(BRONZE)
        target = -1 if bronze is None else bronze.version()
        done = {t.name: self._processed(t) for t in DERIVED}
        self._rebuild_behind_silver(done)
        start = min(done.values())
        report = RunReport(run_id=run_id, bronze_from=start, bronze_to=target)
        if bronze is None:
            return report
        log = _bronze_log(bronze, since=start)
        if self._builds_whole(done, log.added):
            self._build(run_id, done, sum(log.added.values()), report, stop)
        elif start < 0 and not log.only_appended:
            self._rebuild(run_id, done, report, stop)
        else:
            ranges = self._ranges(start, target, done, log.added)
            reads = [(first, end, _changes(bronze, first, end, log.without_events)) for first, end in ranges]
            self._run_ranges(run_id, reads, report, stop)
        return report

    def _rebuild(
        self, run_id: str, done: dict[str, int], report: RunReport, stop: threading.Event | None
    ) -> None:
        """Build the derived tables from bronze as it is now, in one range: replaying its change feed from
        the start would bring back what an erasure or retention deleted, or fail on the files vacuum
        removed. A table already past the start is reset, so that all are built from the same rows."""
        for table in DERIVED:
            if done[table.name] >= 0:
                self._lake.replace_once(table, table.schema.empty_table(), app_id=PIPELINE_APP, version=-1)
        target = report.bronze_to
        self._run_ranges(
            run_id, [(-1, target, _snapshot(self._lake.dataset(BRONZE, version=target)))], report, stop
        )

    def _builds_whole(self, done: dict[str, int], added: dict[int, int]) -> bool:
        """Whether to take the first-build path: nothing built yet (job events, written last, hold no
        version), more than one batch of bronze, a local lake and the native fold to build with."""
        first = done[JOB_EVENTS.name] < 0 and sum(added.values()) > self._rows_per_batch
        return first and self._lake.is_local and library() is not None

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
        rows, versions = self._rows_per_batch, self._versions_per_batch
        for boundary in sorted({v for v in done.values() if v > position} | {target}):
            while position < boundary:
                end = _range_end(position, boundary, added, rows=rows, versions=versions)
                ranges.append((position, end))
                position = end
        return ranges

    def _run_ranges(
        self, run_id: str, reads: list[_Read], report: RunReport, stop: threading.Event | None
    ) -> None:
        """Process the ranges ``reads`` read, in order; a set ``stop`` ends the run between two ranges."""
        position = reads[0][0] if reads else report.bronze_to
        ends = {start: end for start, end, _ in reads}
        try:
            for prepared in self._read_ahead(reads, stop):
                started, clock = datetime.now(UTC), time.perf_counter()
                self._run_range(run_id, prepared, report, started=started, clock=clock)
                position = prepared.end
                self._progress("bronze commits", position - reads[0][0], reads[-1][1] - reads[0][0])
        except Exception as exc:
            self._log_failure(run_id, position, ends.get(position, position), exc)
            raise
        report.bronze_to = min(report.bronze_to, position)  # where a stopped run got to

    def _build(
        self, run_id: str, done: dict[str, int], rows: int, report: RunReport, stop: threading.Event | None
    ) -> None:
        """The first build (pipeline/bulk.py) of the ``rows`` rows of bronze: typed into job buckets, each
        bucket folded and written whole, gold computed from the folded jobs spilled by day, each table
        committed once; no MERGE.
        A set ``stop`` abandons it (nothing is committed; the next run starts again)."""
        started, clock, target = datetime.now(UTC), time.perf_counter(), report.bronze_to
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vhlake-write")
        writes = {t.name: DirectWrite(self._lake, t, pool) for t in DERIVED if done[t.name] < target}
        try:
            with spill_directory() as spill:
                buckets = self._spill_bronze(writes, rows, Path(spill), report, stop)
                if buckets is None:
                    report.bronze_to = report.bronze_from
                    return
                days = self._fold_buckets(buckets, writes, started, report, Path(spill))
                pa.default_memory_pool().release_unused()  # the buckets' memory, before gold's sort
                report.gold_groups = self._write_days(days, writes, started)
            for count, table in enumerate(DERIVED, start=1):  # the pipeline's commit order: job events last
                if table.name in writes:
                    writes[table.name].commit(app_id=PIPELINE_APP, version=target)
                self._progress("committing tables", count, len(DERIVED))
            self._progress("indexing job events", 0, 1)
            self._places.refresh()  # indexed now, not in the first incremental run
            self._progress("indexing job events", 1, 1)
            self._progress("engagement from silver", 0, 1)
            self._update_engagement()  # from all of silver, as committed just before
            self._progress("engagement from silver", 1, 1)
        except Exception as exc:
            self._log_failure(run_id, -1, target, exc)
            raise
        finally:
            for write in writes.values():
                write.close()
            pool.shutdown()
        self._log(
            run_id, started, time.perf_counter() - clock, -1, target, status="success",
            rows_in=report.events_in, rows_out=report.jobs_upserted,
            rows_quarantined=report.quarantined, expectations=list(report.violations.items()),
        )  # fmt: skip

    def _spill_bronze(
        self,
        writes: dict[str, DirectWrite],
        rows: int,
        directory: Path,
        report: RunReport,
        stop: threading.Event | None,
    ) -> JobBuckets | None:
        """Bronze (at the report's target version) checked and typed into job buckets, quarantine written;
        None when ``stop`` was set."""
        dataset = self._lake.dataset(BRONZE, version=report.bronze_to)
        fragments = [(f, f.count_rows()) for f in dataset.get_fragments()]
        plan = BucketPlan.of(_rows_by_day(fragments), per_bucket=self._build_bucket_rows)
        buckets = JobBuckets(plan, TYPED_SCHEMA, directory)
        try:
            reads = _parts(dataset, fragments, report.bronze_to, rows=_BUILD_READ_ROWS)
            for prepared in self._read_ahead(reads, stop, workers=2):
                _write(writes, QUARANTINE, prepared.quarantined)
                buckets.add(prepared.typed)
                report.add(prepared, jobs=0, groups=0)
                self._progress("reading bronze (rows)", report.events_in + report.canaries, rows)
        finally:
            buckets.close()
        return None if stop is not None and stop.is_set() else buckets

    def _fold_buckets(
        self,
        buckets: JobBuckets,
        writes: dict[str, DirectWrite],
        now: datetime,
        report: RunReport,
        directory: Path,
    ) -> Spill:
        """Each bucket folded into silver rows and filed job events, then the jobs found in several
        buckets (set aside, folded whole at the end); the job events written, the silver rows spilled by
        day (returned).

        A day's jobs are in a few buckets and among the set-aside ones, so writing silver per bucket would
        give each (marketplace, day) file several row groups, each holding ~8 KB of footer in memory until
        its file closes (when buckets held every day: 1.8 GB for the 600 files and 200 buckets of a
        100M-event build); spilled by day, each file is written once."""
        superseded = buckets.superseded(self._con)
        straddling, moved = buckets.straddling()
        aside_schema = TYPED_SCHEMA.append(pa.field(SUPERSEDED, pa.bool_()))
        aside_parts = bucket_count(moved, per_bucket=self._build_bucket_rows) if moved else 0
        aside = Spill(max(1, aside_parts), aside_schema, directory, "aside")
        silver_days = Spill(buckets.count, SILVER.schema, directory, "silver", compression="lz4")
        steps = buckets.count + aside_parts
        for k in range(buckets.count):
            events, later = buckets.read(k), superseded.get(k)
            if k in straddling:  # jobs also in other buckets: folded whole once every bucket was read
                events, later = set_aside(events, later, straddling[k], aside)
            self._fold_bucket(events, later, writes, silver_days, now, report, step=k + 1)
            self._progress("folding job buckets", k + 1, steps)
        aside.close()
        for p in range(aside_parts):
            events, later = taken_back(aside.read(p).combine_chunks())
            step = buckets.count + p + 1
            self._fold_bucket(events, later, writes, silver_days, now, report, step=step)
            self._progress("folding job buckets", step, steps)
        silver_days.close()
        return silver_days

    def _fold_bucket(
        self,
        events: pa.Table,
        later: npt.NDArray[np.int64] | None,
        writes: dict[str, DirectWrite],
        silver_days: Spill,
        now: datetime,
        report: RunReport,
        *,
        step: int,
    ) -> None:
        """One bucket's jobs folded (``later``: its later copies of events of other buckets): its job
        events written, its silver rows spilled by day. Job events files are sealed every few ``step``s."""
        folded, filed = fold_and_file(self._con, events, updated_at=now, superseded=later)
        _write(writes, JOB_EVENTS, filed)
        if JOB_EVENTS.name in writes and step % _SEAL_EVERY_BUCKETS == 0:
            writes[JOB_EVENTS.name].seal()
        days = pc.cast(folded["created_date"], pa.int32()).to_numpy(zero_copy_only=False)
        silver_days.add(folded, days.astype(np.int64))
        report.jobs_upserted += folded.num_rows

    def _write_days(self, days: Spill, writes: dict[str, DirectWrite], now: datetime) -> int:
        """Silver written a part of days at a time (a day is in one part: one row group per file), and
        the group tables computed from the same rows (a group is of one day); returns the gold groups."""
        groups = 0
        for k in range(days.count):
            silver = days.read(k)
            if SILVER.name in writes:
                writes[SILVER.name].seal()  # the days before are whole: their files are done
            _write(writes, SILVER, silver)
            for name, rows in group_rows(self._con, silver.select(GOLD_INPUTS), now=now).items():
                _write(writes, table_by_name(name), rows)
            groups += groups_of(silver).num_rows
            self._progress("writing silver by day", k + 1, days.count)
        return groups

    def _read_ahead(
        self, reads: Sequence[_Read], stop: threading.Event | None, *, workers: int = 1
    ) -> Iterator[_Prepared]:
        """Each of ``reads`` prepared, in order, the next ones read and typed (by ``workers`` threads)
        while the caller applies this one.

        Reading ahead touches only bronze (immutable commits), on DuckDB connections of its own, so it
        cannot see or change what the current range writes.
        """
        cursors: queue.SimpleQueue[duckdb.DuckDBPyConnection] = queue.SimpleQueue()
        for _ in range(workers):
            cursor = self._con.cursor()
            cursor.execute("SET TimeZone = 'UTC'")
            cursors.put(cursor)

        def prepare(read: _Read) -> _Prepared:
            con = cursors.get()
            try:
                return self._prepare(con, *read)
            finally:
                cursors.put(con)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vhlake-read-ahead") as pool:
            ahead = collections.deque(pool.submit(prepare, read) for read in reads[:workers])
            try:
                for i in range(len(reads)):
                    if stop is not None and stop.is_set():
                        return
                    prepared = ahead.popleft().result()
                    if i + workers < len(reads):
                        ahead.append(pool.submit(prepare, reads[i + workers]))
                    yield prepared
            finally:
                for pending in ahead:
                    pending.cancel()

    def _processed(self, table: TableDef) -> int:
        version = self._lake.txn_version(table, PIPELINE_APP)
        return -1 if version is None else version

    def _prepare(
        self, con: duckdb.DuckDBPyConnection, start: int, end: int, read: Callable[[], pa.Table]
    ) -> _Prepared:
        """Bronze rows (what ``read`` returns, from bronze versions ``start+1 .. end``), checked and typed."""
        checked, canaries, rescued = self._checked(con, read())  # the rows read are freed here
        quarantined = checked.quarantined.append_column(
            "ingestion_date", pc.cast(checked.quarantined["ingestion_time"], pa.date32())
        )
        return _Prepared(
            start,
            end,
            events_in=checked.passed.num_rows + checked.quarantined.num_rows,
            rescued=rescued,
            quarantined=quarantined,
            violations=checked.violations,
            typed=type_events(con, checked.passed),
            canaries=canaries,
        )

    def _checked(self, con: duckdb.DuckDBPyConnection, appended: pa.Table) -> tuple[Checked, pa.Table, int]:
        """Bronze rows checked against the expectations; with the canaries set apart and how many rows
        carry rescued data. Only what passed is kept (most often a copy): typing it while the rows read
        are still held would double a read's memory, in each read-ahead thread."""
        is_canary = pc.fill_null(pc.equal(appended["source_system"], CANARY_SOURCE), False)
        if pc.any(is_canary).as_py():
            new, canaries = appended.filter(pc.invert(is_canary)), appended.filter(is_canary)
        else:  # nearly every read: an all-true filter still copies the rows (~2 s per 10M events)
            new, canaries = appended, appended.schema.empty_table()  # a slice would hold the rows read
        rescued = new.num_rows - new["_rescued_data"].null_count
        return check_expectations(con, new, self._expectations), canaries, rescued

    def _run_range(
        self, run_id: str, prepared: _Prepared, report: RunReport, *, started: datetime, clock: float
    ) -> None:
        start, end = prepared.start, prepared.end
        self._lake.append_once(
            QUARANTINE, prepared.quarantined, app_id=PIPELINE_APP, version=end, start=start
        )
        folded, groups = self._apply(prepared.typed, version=end, app_id=PIPELINE_APP)
        report.add(prepared, jobs=folded.num_rows, groups=groups.num_rows)
        self._log_run(run_id, started, time.perf_counter() - clock, start, end, prepared, folded.num_rows)

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
        groups = groups_of(pa.concat_tables([folded, before]))
        self._upsert_groups(self._group_tables.merge_sources(groups, now), app_id=app_id, version=version)
        filed = file_events(self._con, events, _with_new_jobs(places, folded))
        self._lake.append_once(JOB_EVENTS, filed, app_id=app_id, version=version)
        return folded, groups

    def replay_quarantine(self, *, reason: str | None = None, wait_s: float | None = None) -> int:
        """Re-check quarantined events (all, or one ``reason``) with the current rules; fold those that pass.

        Replayed events leave the quarantine. Safe to repeat after a crash: folding an event twice is a
        no-op (events are deduplicated by ``event_id``), and an event leaves the quarantine only after its
        job was folded. Never at the same time as a pipeline run or another replay (lake/writer_lock.py):
        it waits for them, at most ``wait_s`` seconds when given, then raises ``DerivedTablesBusy``.
        """
        with derived_tables_writer(self._lake, wait_s=wait_s):
            return self._replay(reason)

    def _replay(self, reason: str | None) -> int:
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
        self._update_engagement()  # what the replayed jobs changed in silver, before the events leave
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
        them: from the key index (binary searches, the pages the batch's keys fall in) on a local lake;
        elsewhere one scan of two integer key columns, however large the table."""
        indexed = self._places.partitions(events["job_key"], events["event_key"])
        if indexed is not None:
            return list(indexed)
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
        return places.cast(_PLACES), rows.drop_columns(["job_date"]).cast(TYPED_SCHEMA)

    def _job_events_view(self, dates: list[object] | None = None) -> None:
        """View ``job_events`` over the job events table (only the ``dates`` partitions, when given):
        DuckDB's own Parquet reader on a local lake, twice as fast as scanning an Arrow dataset."""
        where = None if dates is None else ("job_date", dates)
        table_relation(self._con, self._lake, JOB_EVENTS, where=where).create_view("job_events", replace=True)

    def recompute_gold(self, jobs: pa.Table, *, app_id: str) -> int:
        """Recompute the gold groups of ``jobs`` (silver rows, or their created_date, marketplace and
        category) from silver as it is now, and bring the engagement tables to silver (its change data
        feed holds the deletes): after rows left silver other than through the pipeline (an erasure).
        Returns the number of groups."""
        groups, now = groups_of(jobs), datetime.now(UTC)
        # A group is of one day: recomputed a day at a time, what is read of silver at once is one day's
        # partitions (a user seen every day would otherwise bring the whole of silver into memory).
        days = pc.unique(groups["date"]).to_pylist()
        day_groups = [groups.filter(pc.equal(groups["date"], day)) for day in days] or [groups]
        sources = [self._group_tables.merge_sources(of_day, now) for of_day in day_groups]
        merged = {table.name: pa.concat_tables([s[table.name] for s in sources]) for table in GROUP_TABLES}
        self._upsert_groups(merged, app_id=app_id, version=0)
        self.update_engagement()
        return int(groups.num_rows)

    def _upsert_groups(self, sources: dict[str, pa.Table], *, app_id: str, version: int) -> None:
        self._upsert_each(GROUP_TABLES, sources, KEYS, app_id=app_id, version=version)

    def _upsert_each(
        self,
        tables: Sequence[TableDef],
        sources: dict[str, pa.Table],
        keys: Mapping[str, tuple[str, ...]],
        *,
        app_id: str,
        version: int,
    ) -> None:
        """Each of ``tables`` MERGEd with its rows of ``sources`` on its ``keys`` (rows flagged
        ``_deleted`` delete), in order, each commit recording ``(app_id, version)``."""
        for table in tables:
            self._lake.upsert_once(
                table,
                sources[table.name],
                keys=keys[table.name],
                app_id=app_id,
                version=version,
                delete_flag="_deleted",
            )

    def _rebuild_behind_silver(self, done: dict[str, int]) -> None:
        """Rebuild from silver each group table behind it: one a crash left between its commit and
        silver's, or one added to a lake built before it existed."""
        for table in GROUP_TABLES:
            if done[table.name] < done[SILVER.name]:
                rows = self._group_tables.rebuilt(table, datetime.now(UTC))
                self._lake.replace_once(table, rows, app_id=PIPELINE_APP, version=done[SILVER.name])
                done[table.name] = done[SILVER.name]

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
        prepared: _Prepared,
        jobs: int,
    ) -> None:
        violations = prepared.violations  # per rule: an event breaking two rules counts under each
        self._log(
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


def _silent(phase: str, done: int, total: int) -> None:
    """No one is listening."""


def _range_end(position: int, boundary: int, added: dict[int, int], *, rows: int, versions: int) -> int:
    """The end of the range starting after ``position``: at most ``versions`` commits and about ``rows``
    rows (always at least one commit), so memory stays bounded whatever the backlog."""
    end, total = position + 1, added.get(position + 1, 0)
    while end < boundary and end - position < versions:
        more = added.get(end + 1, 0)
        if total + more > rows:
            break
        end, total = end + 1, total + more
    return end


def _write(writes: dict[str, DirectWrite], table: TableDef, rows: pa.Table) -> None:
    """Write ``rows`` to ``table`` unless the build leaves it alone (it already holds the target)."""
    if table.name in writes:
        writes[table.name].write(rows)


# Commits that bring bronze no new event: an erasure's MERGE (deletes only), retention's DELETE, compaction
# and vacuum. The change data an erasure's deletes recorded is purged with ``forget --vacuum``.
_NO_NEW_EVENTS = frozenset({"DELETE", "OPTIMIZE", "VACUUM START", "VACUUM END"})
# Commits that only add rows: while every commit since version 0 is one, the change feed from the start
# is exactly the table.
_APPENDS = frozenset({"CREATE TABLE", "WRITE", "STREAMING UPDATE"})


@dataclass(frozen=True)
class _BronzeLog:
    """What bronze's commits after a position did, from the commit info in the Delta log."""

    added: dict[int, int]  # rows each commit appended
    without_events: frozenset[int]  # commits that added no event (their change data is never read)
    only_appended: bool  # every commit since version 0 is known and only appended rows


def _bronze_log(bronze: DeltaTable, *, since: int) -> _BronzeLog:
    pending = bronze.version() - since
    commits = bronze.history(pending) if pending > 0 else []
    added: dict[int, int] = {}
    without: set[int] = set()
    appends = 0
    for commit in commits:
        version, operation = int(commit["version"]), str(commit.get("operation"))
        metrics = commit.get("operationMetrics") or {}
        added[version] = int(metrics.get("num_added_rows", 0) or 0)
        inserted = int(metrics.get("num_target_rows_inserted", 0) or 0)
        if operation in _NO_NEW_EVENTS or (operation == "MERGE" and inserted == 0):
            without.add(version)
        mode = (commit.get("operationParameters") or {}).get("mode", "Append")
        appends += operation in _APPENDS and mode in ("Append", "Ignore", "ErrorIfExists")
    known = len(commits) == pending and since < 0  # a cleaned-up log no longer lists the first commits
    return _BronzeLog(added, frozenset(without), known and appends == len(commits))


# A bronze read for the read-ahead: (start, end, the rows of bronze versions start+1 .. end, or of part of them).
_Read = tuple[int, int, Callable[[], pa.Table]]


def _changes(
    bronze: DeltaTable, start: int, end: int, without_events: frozenset[int]
) -> Callable[[], pa.Table]:
    return lambda: _appended_rows(bronze, start, end, without_events)


def _snapshot(dataset: ds.Dataset) -> Callable[[], pa.Table]:
    return lambda: dataset.to_table(columns=BRONZE.schema.names).cast(BRONZE.schema)


def _parts(
    dataset: ds.Dataset, fragments: list[tuple[ds.Fragment, int]], version: int, *, rows: int
) -> list[_Read]:
    """All of bronze at ``version`` (``dataset``'s ``fragments``, with their rows), in reads of about
    ``rows`` rows, each reading its own files (a first build reads bronze's files as they are: no change
    feed to assemble)."""
    reads, batch, count = [], [], 0
    for i, (fragment, fragment_rows) in enumerate(fragments):
        batch.append(fragment)
        count += fragment_rows
        if count >= rows or i == len(fragments) - 1:
            reads.append((-1, version, _fragments_reader(dataset, batch)))
            batch, count = [], 0
    return reads


def _rows_by_day(fragments: list[tuple[ds.Fragment, int]]) -> dict[int, int]:
    """Bronze's rows per event date (days since 1970-01-01), from its partitions: how the first build
    cuts its buckets (``BucketPlan``)."""
    rows: dict[int, int] = defaultdict(int)
    for fragment, fragment_rows in fragments:
        day = ds.get_partition_keys(fragment.partition_expression).get("event_date")
        if isinstance(day, date):
            rows[(day - _EPOCH).days] += fragment_rows
    return dict(rows)


def _fragments_reader(dataset: ds.Dataset, fragments: list[ds.Fragment]) -> Callable[[], pa.Table]:
    files = ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)
    return lambda: files.to_table(columns=BRONZE.schema.names).cast(BRONZE.schema)


def _appended_rows(bronze: DeltaTable, start: int, end: int, without_events: frozenset[int]) -> pa.Table:
    """Rows bronze commits ``start+1 .. end`` appended. Bronze only grows but for the commits
    ``without_events`` (erasure, retention, upkeep), which are not read: they add nothing, and the files
    their change data names may be gone."""
    parts = [BRONZE.schema.empty_table()]
    if end < 1:  # version 0 creates the table
        return parts[0]
    for first, last in _runs(start + 1, end, without_events):
        changes = pa.table(bronze.load_cdf(starting_version=first, ending_version=last))
        change_type = pc.cast(changes["_change_type"], pa.string())  # delta-rs returns string_view columns
        rows = changes.select(BRONZE.schema.names).cast(BRONZE.schema)
        parts.append(rows.filter(pc.equal(change_type, "insert")))
    return pa.concat_tables(parts)


# Silver commits the engagement step skips: retention's DELETE (silver expiring leaves the engagement rows
# as they were; the first dates it takes away are found from the state, ``expired_sources``:
# docs/semantics.md), and upkeep that changes no row.
_SILVER_SKIPPED = frozenset({"DELETE", "OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES"})
# Silver commits whose changes the engagement step follows: the pipeline's and an erasure's MERGEs, and
# appends (a version recorded without rows). Anything else (an overwrite: a full refresh, a rebuild)
# makes it build from all of silver.
_SILVER_FOLLOWED = frozenset({"MERGE", "WRITE", "STREAMING UPDATE"})


class SilverChanges(NamedTuple):
    rows: pa.Table  # the changed jobs' JOB_COLUMNS, every image
    expired: bool  # retention deleted silver's oldest days among these versions


def silver_changes(silver: DeltaTable, *, since: int, until: int) -> SilverChanges | None:
    """Silver's ``JOB_COLUMNS`` in the change data feed of versions ``since+1 .. until``, every image
    (inserted, deleted, before and after an update): what ``EngagementTables.merge_sources`` needs of the
    changed jobs; and whether retention ran among them. None when the changes cannot be followed: a commit that replaced silver, a log cleaned
    up past ``since``, change data vacuumed away; the engagement tables are then built from silver.

    A silver created without the change data feed still answers, with the rows of the files each commit
    added and removed (a superset of the changed rows: more pairs recomputed, the same result)."""
    if until <= since:
        return SilverChanges(_ENGAGEMENT_CHANGES.empty_table(), expired=False)
    commits = silver.history(until - since)
    skipped, expired = set(), False
    for commit in commits:
        operation = str(commit.get("operation"))
        mode = (commit.get("operationParameters") or {}).get("mode", "Append")
        expired = expired or operation == "DELETE"
        if operation in _SILVER_SKIPPED:
            skipped.add(int(commit["version"]))
        elif operation not in _SILVER_FOLLOWED or mode not in ("Append", None):
            return None
    if {int(c["version"]) for c in commits} != set(range(since + 1, until + 1)):
        return None  # the log no longer lists them all
    parts = [_ENGAGEMENT_CHANGES.empty_table()]
    try:
        for first, last in _runs(since + 1, until, frozenset(skipped)):
            changes = silver.load_cdf(starting_version=first, ending_version=last, columns=JOB_COLUMNS)
            parts.append(pa.table(changes).select(JOB_COLUMNS).cast(_ENGAGEMENT_CHANGES))
    except (DeltaError, OSError):
        return None
    return SilverChanges(pa.concat_tables(parts), expired=expired)


_ENGAGEMENT_CHANGES = pa.schema([SILVER.schema.field(name) for name in JOB_COLUMNS])


def _runs(first: int, last: int, skipped: frozenset[int]) -> Iterator[tuple[int, int]]:
    """The runs of consecutive versions ``first .. last`` that are not ``skipped``."""
    begin = None
    for version in range(first, last + 1):
        if version in skipped:
            if begin is not None:
                yield begin, version - 1
            begin = None
        elif begin is None:
            begin = version
    if begin is not None:
        yield begin, last


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


SILVER_KEYS = ("job_id", "marketplace", "created_date")


def _silver_source(folded: pa.Table, before: pa.Table) -> pa.Table:
    """The MERGE source for silver: folded jobs, and a ``_deleted`` marker for each old row of a job whose
    partition (marketplace, created_date) changed. Matching on the partition columns too lets the MERGE
    touch only the partitions the batch lives in, and the move is one commit."""
    old_keys = before.select(list(SILVER_KEYS))  # Arrow joins cannot carry map columns along
    moved = old_keys.join(folded.select(list(SILVER_KEYS)), keys=list(SILVER_KEYS), join_type="left anti")
    return merge_source(SILVER, folded, moved)

"""The incremental path: each bronze range MERGEd into quarantine, silver, gold and job events, exactly once.

The events that pass the expectations are typed once and kept in ``validation_job_events``, filed by job;
for the jobs a range touches, their history is read from the few partitions it lives in and re-folded
whole, so the result never depends on how events were batched or ordered, and the work follows the new
data, not the size of bronze.

Within a range the tables commit in the order quarantine, silver, gold restatements, gold, job events: the
history is written last, so after a crash the tables still to be written are computed from the history they
were computed from before. A rerun skips, table by table, what is already there. The restatements
(``gold_restatements``: what gold's MERGE changes in groups written before) compare gold before and after
that MERGE, so they go just before it, with its own transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.duck.arrow import registered
from vhlake.duck.lake_relations import table_relation
from vhlake.lake.delta import Lake, merge_source
from vhlake.lake.key_index import KeyIndex
from vhlake.lake.tables import BRONZE, GOLD, GOLD_RESTATEMENTS, JOB_EVENTS, QUARANTINE, SILVER, TableDef
from vhlake.pipeline.gold_groups import GROUP_KEYS, GROUP_TABLES, KEYS, GroupTables, groups_of
from vhlake.pipeline.ranges import DERIVED, PIPELINE_APP, Read, snapshot_reader
from vhlake.pipeline.read_ahead import Prepared, ReadAhead
from vhlake.pipeline.restatements import events_by_group, no_events, restatements
from vhlake.pipeline.run_log import Progress, RunLog, RunReport
from vhlake.pipeline.silver import TYPED_SCHEMA, file_events, fold_jobs

SILVER_KEYS = ("job_id", "marketplace", "created_date")
_PLACES = pa.schema([JOB_EVENTS.schema.field("job_id"), JOB_EVENTS.schema.field("job_date")])


def upsert_each(
    lake: Lake,
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
        lake.upsert_once(
            table,
            sources[table.name],
            keys=keys[table.name],
            app_id=app_id,
            version=version,
            delete_flag="_deleted",
        )


@dataclass(frozen=True)
class Change:
    """Who changes the gold groups, and under which application transaction: what a restatement
    records (``run_id``, ``bronze_version``, ``at``) and what its append commits with."""

    run_id: str
    bronze_version: int
    app_id: str
    version: int
    at: datetime


class Incremental:
    """Folds bronze ranges into what the derived tables hold (module docstring)."""

    def __init__(
        self,
        lake: Lake,
        con: duckdb.DuckDBPyConnection,
        *,
        places: KeyIndex,
        group_tables: GroupTables,
        read_ahead: ReadAhead,
        run_log: RunLog,
    ) -> None:
        self._lake = lake
        self._con = con
        # Where each job and event is filed (lake/key_index.py): a batch finds its partitions by binary
        # search instead of scanning the whole job events table.
        self._places = places
        self._group_tables = group_tables
        self._read_ahead = read_ahead
        self._run_log = run_log

    def rebuild(
        self,
        run_id: str,
        done: dict[str, int],
        report: RunReport,
        stop: threading.Event | None,
        progress: Progress,
    ) -> None:
        """Build the derived tables from bronze as it is now, in one range: replaying its change feed from
        the start would bring back what an erasure or retention deleted, or fail on the files vacuum
        removed. A table already past the start is reset, so that all are built from the same rows."""
        for table in DERIVED:
            if done[table.name] >= 0:
                self._lake.replace_once(table, table.schema.empty_table(), app_id=PIPELINE_APP, version=-1)
        target = report.bronze_to
        self.run_ranges(
            run_id,
            [(-1, target, snapshot_reader(self._lake.dataset(BRONZE, version=target)))],
            report,
            stop,
            progress,
        )

    def run_ranges(
        self,
        run_id: str,
        reads: list[Read],
        report: RunReport,
        stop: threading.Event | None,
        progress: Progress,
    ) -> None:
        """Process the ranges ``reads`` read, in order; a set ``stop`` ends the run between two ranges."""
        position = reads[0][0] if reads else report.bronze_to
        ends = {start: end for start, end, _ in reads}
        try:
            for prepared in self._read_ahead.prepared(reads, stop):
                started, clock = datetime.now(UTC), time.perf_counter()
                self._run_range(run_id, prepared, report, started=started, clock=clock)
                position = prepared.end
                progress("bronze commits", position - reads[0][0], reads[-1][1] - reads[0][0])
        except Exception as exc:
            self._run_log.failure(run_id, position, ends.get(position, position), exc)
            raise
        report.bronze_to = min(report.bronze_to, position)  # where a stopped run got to

    def _run_range(
        self, run_id: str, prepared: Prepared, report: RunReport, *, started: datetime, clock: float
    ) -> None:
        start, end = prepared.start, prepared.end
        self._lake.append_once(
            QUARANTINE, prepared.quarantined, app_id=PIPELINE_APP, version=end, start=start
        )
        folded, groups = self.apply(prepared.typed, version=end, app_id=PIPELINE_APP, run_id=run_id)
        report.add(prepared, jobs=folded.num_rows, groups=groups.num_rows)
        self._run_log.range_done(
            run_id, started, time.perf_counter() - clock, start, end, prepared, folded.num_rows
        )

    def apply(self, events: pa.Table, *, version: int, app_id: str, run_id: str) -> tuple[pa.Table, pa.Table]:
        """Fold typed new ``events`` into their jobs: silver, then the gold groups they touch (their
        restatements first, recorded as ``run_id``'s), then the job events themselves. Returns the folded
        silver rows and the touched gold groups."""
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
        jobs = pa.concat_tables([folded, before])
        groups = groups_of(jobs)
        sources = self._group_tables.merge_sources(groups, now)
        change = Change(run_id=run_id, bronze_version=version, app_id=app_id, version=version, at=now)
        self.restate(groups, sources, lambda: events_by_group(self._con, events, history, jobs), change)
        self.upsert_groups(sources, app_id=app_id, version=version)
        filed = file_events(self._con, events, _with_new_jobs(places, folded))
        self._lake.append_once(JOB_EVENTS, filed, app_id=app_id, version=version)
        return folded, groups

    def restate(
        self, groups: pa.Table, sources: dict[str, pa.Table], counted: Callable[[], pa.Table], change: Change
    ) -> None:
        """Append to ``gold_restatements`` what the gold MERGE of ``sources`` (the touched ``groups``'
        rows, :meth:`GroupTables.merge_sources`) is about to change in groups already written, under the
        MERGE's own ``(app_id, version)`` and before it: a rerun after a crash between the two finds the
        rows there and skips them; one after the MERGE finds gold's version and computes nothing.
        ``counted``: the events behind the change per group (restatements.py, ``EVENT_COUNTS``)."""
        if self._holds(GOLD, change) or self._holds(GOLD_RESTATEMENTS, change):
            return
        gold = sources[GOLD.name]
        stored = self._group_tables.stored(GOLD, groups)
        known = groups if stored.num_rows else groups.slice(0, 0)  # no group stored: none restated
        rows = restatements(
            self._con,
            groups=groups,
            stored=stored,
            recomputed=gold.filter(pc.invert(gold["_deleted"])),
            counted=counted() if known.num_rows else no_events(),
            earlier=self._group_tables.stored(GOLD_RESTATEMENTS, known),
            run_id=change.run_id,
            bronze_version=change.bronze_version,
            restated_at=change.at,
        )
        self._lake.append_once(GOLD_RESTATEMENTS, rows, app_id=change.app_id, version=change.version)

    def restate_all(self, gold: pa.Table, change: Change) -> None:
        """Restate what replacing all of gold with ``gold`` (rebuilt from silver) changes, without events."""
        stored = (
            self._lake.dataset(GOLD).to_table(columns=list(GROUP_KEYS)) if self._lake.open(GOLD) else None
        )
        keys = gold.select(list(GROUP_KEYS))
        groups = pa.concat_tables([keys, stored.cast(keys.schema)]) if stored is not None else keys
        unique = groups.group_by(list(GROUP_KEYS)).aggregate([])
        self.restate(unique, {GOLD.name: merge_source(GOLD, gold, gold.slice(0, 0))}, no_events, change)

    def _holds(self, table: TableDef, change: Change) -> bool:
        """Whether ``table`` already holds ``change``'s ``(app_id, version)``."""
        done = self._lake.txn_version(table, change.app_id)
        return done is not None and done >= change.version

    def upsert_groups(self, sources: dict[str, pa.Table], *, app_id: str, version: int) -> None:
        upsert_each(self._lake, GROUP_TABLES, sources, KEYS, app_id=app_id, version=version)

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


def _with_new_jobs(places: pa.Table, folded: pa.Table) -> pa.Table:
    """``places`` plus a place for each job seen for the first time: the date it was created on."""
    first_seen = folded.select(["job_id", "created_date"]).rename_columns(["job_id", "job_date"])
    new = first_seen.join(places, keys="job_id", join_type="left anti")
    return pa.concat_tables([places, new.select(places.column_names).cast(places.schema)])


def _silver_source(folded: pa.Table, before: pa.Table) -> pa.Table:
    """The MERGE source for silver: folded jobs, and a ``_deleted`` marker for each old row of a job whose
    partition (marketplace, created_date) changed. Matching on the partition columns too lets the MERGE
    touch only the partitions the batch lives in, and the move is one commit."""
    old_keys = before.select(list(SILVER_KEYS))  # Arrow joins cannot carry map columns along
    moved = old_keys.join(folded.select(list(SILVER_KEYS)), keys=list(SILVER_KEYS), join_type="left anti")
    return merge_source(SILVER, folded, moved)

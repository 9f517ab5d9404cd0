"""The first build of a large bronze (and a full refresh): every derived table from all of bronze, no MERGE.

The incremental path folds each bronze range into what is stored, which suits a stream; for a first build
of 10M events it would MERGE some fifty times into a growing silver. Here bronze is read once (ranges read,
checked and typed ahead, as in the incremental path) and the typed events are spilled to disk in buckets
cut by date, then by job (``BucketPlan``, pipeline/build_spill.py), so that a job's whole history is in one
bucket, or, for the few jobs whose events fall on two dates, set aside and folded whole at the end. Each
bucket is then folded natively and written as it is: its events filed under their job's created date; its
silver rows are spilled by day. Silver is then written a few days at a time (one row group per file,
however many buckets), and gold computed from the same rows (its groups are per day). Memory is bounded by
one bucket or one part of the days, and the event keys that find copies across buckets are compared a part
at a time.

Exactly once: each table's files are written directly (lake/direct_write.py) and committed at the end
in one commit that replaces the table's contents and records ``(PIPELINE_APP, bronze version)``, in the
incremental path's order (quarantine, silver, gold, job events). A crash before the last commit leaves job
events without it, and the next run builds again the tables still without it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from vhlake.lake.delta import Lake
from vhlake.lake.direct_write import DirectWrite
from vhlake.lake.key_index import KeyIndex
from vhlake.lake.tables import BRONZE, JOB_EVENTS, QUARANTINE, SILVER, TableDef, table_by_name
from vhlake.pipeline.build_spill import (
    SUPERSEDED,
    BucketPlan,
    JobBuckets,
    Spill,
    bucket_count,
    set_aside,
    spill_directory,
    taken_back,
)
from vhlake.pipeline.gold_groups import GOLD_INPUTS, group_rows, groups_of
from vhlake.pipeline.ranges import DERIVED, PIPELINE_APP, Read
from vhlake.pipeline.read_ahead import ReadAhead
from vhlake.pipeline.run_log import Progress, RunLog, RunReport, silent
from vhlake.pipeline.silver import TYPED_SCHEMA, fold_and_file

# A first build reads bronze in parts of about this many rows (three in memory at once: two being typed
# ahead while the third is spilled).
_BUILD_READ_ROWS = 125_000
# A first build's job events file gets a row group or two from each bucket; its files are closed every
# this many buckets (a partition then gets another file), so open footers stay bounded (measured: 400 row
# groups a file, ~0.5 GB of footers held, for the 200 buckets of a 100M-event build).
_SEAL_EVERY_BUCKETS = 32
_EPOCH = date(1970, 1, 1)
_Loaded = TypeVar("_Loaded")


class FirstBuild:
    """Builds every derived table from all of bronze (module docstring).

    ``threads`` read bronze ahead and write the tables' files; the spill goes to a temporary folder in
    ``spill_dir`` (None: the system's). ``update_engagement`` brings the engagement tables to silver once
    it is committed.
    """

    def __init__(
        self,
        lake: Lake,
        con: duckdb.DuckDBPyConnection,
        *,
        places: KeyIndex,
        read_ahead: ReadAhead,
        run_log: RunLog,
        update_engagement: Callable[[], bool],
        bucket_rows: int,
        threads: int,
        spill_dir: str | None,
    ) -> None:
        self._lake = lake
        self._con = con
        self._places = places
        self._read_ahead = read_ahead
        self._run_log = run_log
        self._update_engagement = update_engagement
        self._bucket_rows = bucket_rows  # ~170 MB of typed events each
        self._threads = threads
        self._spill_dir = spill_dir
        self._progress: Progress = silent

    def build(
        self,
        run_id: str,
        done: dict[str, int],
        rows: int,
        report: RunReport,
        stop: threading.Event | None,
        progress: Progress,
    ) -> None:
        """The first build of the ``rows`` rows of bronze: typed into job buckets, each bucket folded and
        written whole, gold computed from the folded jobs spilled by day, each table committed once; no
        MERGE. A set ``stop`` abandons it (nothing is committed; the next run starts again)."""
        self._progress = progress
        started, clock, target = datetime.now(UTC), time.perf_counter(), report.bronze_to
        pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="vhlake-write")
        writes = {t.name: DirectWrite(self._lake, t, pool) for t in DERIVED if done[t.name] < target}
        try:
            with spill_directory(self._spill_dir) as spill:
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
            # Job events indexed now (not in the first incremental run), beside the engagement tables
            # brought to all of silver as just committed: the two read different tables.
            self._progress("indexing job events, engagement", 0, 2)
            indexed = pool.submit(self._places.refresh)
            self._update_engagement()
            self._progress("indexing job events, engagement", 1, 2)
            indexed.result()
            self._progress("indexing job events, engagement", 2, 2)
        except Exception as exc:
            self._run_log.failure(run_id, -1, target, exc)
            raise
        finally:
            for write in writes.values():
                write.close()
            pool.shutdown()
        self._run_log.log(
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
        plan = BucketPlan.of(_rows_by_day(fragments), per_bucket=self._bucket_rows)
        buckets = JobBuckets(plan, TYPED_SCHEMA, directory)
        try:
            reads = _parts(dataset, fragments, report.bronze_to, rows=_BUILD_READ_ROWS)
            for prepared in self._read_ahead.prepared(reads, stop, workers=self._threads):
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
        aside_parts = bucket_count(moved, per_bucket=self._bucket_rows) if moved else 0
        aside = Spill(max(1, aside_parts), aside_schema, directory, "aside")
        silver_days = Spill(buckets.count, SILVER.schema, directory, "silver", compression="lz4")
        steps = buckets.count + aside_parts

        def bucket(k: int) -> tuple[pa.Table, npt.NDArray[np.int64] | None]:
            events, later = buckets.read(k), superseded.get(k)
            if k in straddling:  # jobs also in other buckets: folded whole once every bucket was read
                events, later = set_aside(events, later, straddling[k], aside)
            return events, later

        for k, (events, later) in enumerate(_one_ahead(bucket, range(buckets.count))):
            self._fold_bucket(events, later, writes, silver_days, now, report, step=k + 1)
            self._progress("folding job buckets", k + 1, steps)
        aside.close()
        taken = _one_ahead(lambda p: taken_back(aside.read(p).combine_chunks()), range(aside_parts))
        for p, (events, later) in enumerate(taken):
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
        for k, silver in enumerate(_one_ahead(days.read, range(days.count))):
            if SILVER.name in writes:
                writes[SILVER.name].seal()  # the days before are whole: their files are done
            _write(writes, SILVER, silver)
            for name, rows in group_rows(self._con, silver.select(GOLD_INPUTS), now=now).items():
                _write(writes, table_by_name(name), rows)
            groups += groups_of(silver).num_rows
            self._progress("writing silver by day", k + 1, days.count)
        return groups


def _one_ahead(load: Callable[[int], _Loaded], keys: range) -> Iterator[_Loaded]:
    """``load(k)`` for each of ``keys`` in order, the next one loaded on a thread while the caller works
    on this one: every phase of a build is CPU-bound on few cores, and a part read from the spill (and
    split) would otherwise leave a core idle. Two loaded parts at most are held."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vhlake-load-ahead") as loader:
        pending = loader.submit(load, keys[0]) if keys else None
        for i in range(len(keys)):
            assert pending is not None
            loaded = pending.result()
            pending = loader.submit(load, keys[i + 1]) if i + 1 < len(keys) else None
            yield loaded


def _write(writes: dict[str, DirectWrite], table: TableDef, rows: pa.Table) -> None:
    """Write ``rows`` to ``table`` unless the build leaves it alone (it already holds the target)."""
    if table.name in writes:
        writes[table.name].write(rows)


def _parts(
    dataset: ds.Dataset, fragments: list[tuple[ds.Fragment, int]], version: int, *, rows: int
) -> list[Read]:
    """All of bronze at ``version`` (``dataset``'s ``fragments``, with their rows), in reads of about
    ``rows`` rows, each reading its own files (a first build reads bronze's files as they are: no change
    feed to assemble), in the order of their dates: a read then holds a day or two, most often of one job
    bucket (``BucketPlan``), which takes it whole."""
    fragments = sorted(fragments, key=lambda pair: _partition_day(pair[0]))
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
        day = _partition_day(fragment)
        if day >= 0:
            rows[day] += fragment_rows
    return dict(rows)


def _partition_day(fragment: ds.Fragment) -> int:
    """The event date of a bronze file's partition, as days since 1970-01-01 (-1 when it has none)."""
    day = ds.get_partition_keys(fragment.partition_expression).get("event_date")
    return (day - _EPOCH).days if isinstance(day, date) else -1


def _fragments_reader(dataset: ds.Dataset, fragments: list[ds.Fragment]) -> Callable[[], pa.Table]:
    files = ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)
    # use_threads=False: the read-ahead threads are the parallelism (Arrow's own pool only added CPU)
    return lambda: files.to_table(columns=BRONZE.schema.names, use_threads=False).cast(BRONZE.schema)

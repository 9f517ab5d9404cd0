"""The first build's spill (pipeline/first_build.py): typed events in job buckets on disk, and parts by key.

A :class:`BucketPlan` cuts the buckets by date, then by job, so that a job's whole history is in one bucket,
or, for the few jobs whose events fall on two dates, found (:meth:`JobBuckets.straddling`) and set aside to
be folded whole at the end (:func:`set_aside`, :func:`taken_back`). Copies of an event across buckets are
found by comparing event keys a part at a time (:meth:`JobBuckets.superseded`). A :class:`Spill` holds
tables split by an integer key, on disk when there is more than one part, so memory holds one part.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.duck.arrow import registered
from vhlake.native import keys_in_several_groups, library


def bucket_count(rows: int, *, per_bucket: int) -> int:
    return max(1, math.ceil(rows / per_bucket))


class Spill:
    """Tables split into ``count`` parts by an integer key (``key % count``): Arrow IPC streams on disk
    when there is more than one part, so that memory holds one part at a time; held in memory otherwise."""

    def __init__(
        self, count: int, schema: pa.Schema, directory: Path, name: str, *, compression: str | None = None
    ) -> None:
        self.count = count
        self.schema = schema
        self._paths = [directory / f"{name}-{k}.arrows" for k in range(count)]
        self._writers: list[pa.ipc.RecordBatchStreamWriter] = []
        self._held: list[pa.Table] = []  # one part: kept in memory
        if count > 1:
            options = pa.ipc.IpcWriteOptions(compression=compression)
            self._writers = [pa.ipc.new_stream(str(path), schema, options=options) for path in self._paths]

    def add(self, rows: pa.Table, keys: npt.NDArray[np.int64]) -> None:
        """Add ``rows``, each to the part of its key."""
        if self.count == 1:
            self._held.append(rows)
            return
        # 16-bit parts when they fit: numpy's stable sort is then a radix sort (~4x faster than on int32)
        narrow = np.int16 if self.count <= np.iinfo(np.int16).max else np.int32
        part = (keys % self.count).astype(narrow)
        if len(part) and (part == part[0]).all():  # one part (a first build's read of one bucket's days)
            self._writers[int(part[0])].write_table(rows)
            return
        order = np.argsort(part, kind="stable")
        grouped = rows.take(pa.array(order))
        bounds = np.searchsorted(part[order], np.arange(self.count + 1))
        for k, writer in enumerate(self._writers):
            if bounds[k + 1] > bounds[k]:
                writer.write_table(grouped.slice(bounds[k], bounds[k + 1] - bounds[k]))

    def close(self) -> None:
        for writer in self._writers:
            writer.close()

    def read(self, k: int) -> pa.Table:
        """Part ``k``, read into memory (not memory-mapped: its pages would count as ours until freed)."""
        if self.count == 1:
            return pa.concat_tables(self._held) if self._held else self.schema.empty_table()
        with pa.OSFile(str(self._paths[k])) as source:
            return pa.ipc.open_stream(source).read_all()


_KEYS = pa.schema([pa.field("event_key", pa.int64()), pa.field("bucket", pa.int32())])
_JOBS = pa.schema([pa.field("job_key", pa.int64()), pa.field("bucket", pa.int32())])
SUPERSEDED = "_superseded"  # the column marking later copies in the events set aside (bool)


@dataclass(frozen=True)
class BucketPlan:
    """Which bucket a job's events go to: cut by the events' date first, then by job key.

    Buckets cut by job key alone each hold jobs of every day: each bucket then writes a row group to every
    day's job events file and spills its silver rows over every day, a cost per (bucket, day) that grows
    with the square of the lake (measured: 0.88 s a bucket at 100 days against 0.5 s at 10). Here the days
    are taken in order and grouped while a group holds at most ``per_bucket`` rows (a larger day is a group
    of its own); a group gets ``ceil(rows / per_bucket)`` buckets, an event the bucket of its group chosen
    by its job key. So a bucket holds the jobs of a day or a few, and a group of ordinary days is one
    bucket: bronze's files of those days, read in day order, go to it whole, without a split by job. A job whose events fall in two groups (a
    midnight between its start and its end, a late event) is then in two buckets: :meth:`JobBuckets.straddling`
    finds those jobs and the fold sets them aside to fold them whole. An event whose date is not in the
    plan goes to a bucket by its job key alone."""

    days: npt.NDArray[np.int64]  # the days with rows (days since 1970-01-01), sorted
    group_of_day: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]  # each group's first bucket
    sizes: npt.NDArray[np.int64]  # each group's number of buckets
    count: int

    @staticmethod
    def of(day_rows: Mapping[int, int], *, per_bucket: int) -> BucketPlan:
        days = np.array(sorted(day_rows), np.int64)
        group_of_day = np.zeros(len(days), np.int64)
        starts: list[int] = [0]
        sizes: list[int] = []
        held = 0
        for i, day in enumerate(days):
            rows = day_rows[int(day)]
            if held and held + rows > per_bucket:  # the group so far is closed
                sizes.append(bucket_count(held, per_bucket=per_bucket))
                starts.append(starts[-1] + sizes[-1])
                held = 0
            group_of_day[i] = len(sizes)
            held += rows
        if len(days):
            sizes.append(bucket_count(held, per_bucket=per_bucket))
            starts.append(starts[-1] + sizes[-1])
        count = max(1, starts[-1])
        return BucketPlan(
            days, group_of_day, np.array(starts[:-1], np.int64), np.array(sizes, np.int64), count
        )

    def buckets(self, days: npt.NDArray[np.int64], job_keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
        """The bucket of each event, from its day and its job key."""
        if len(self.days) == 0:
            return (job_keys % self.count).astype(np.int32)
        at = np.minimum(np.searchsorted(self.days, days), len(self.days) - 1)
        planned = self.days[at] == days
        group = self.group_of_day[at]
        within = self.starts[group] + job_keys % self.sizes[group]
        return np.where(planned, within, job_keys % self.count).astype(np.int32)


def event_days(timestamps: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """Each event's UTC date as days since 1970-01-01 (-1 without a timestamp)."""
    days = pc.cast(pc.cast(timestamps, pa.date32()), pa.int32())
    filled: npt.NDArray[np.int64] = pc.fill_null(days, -1).to_numpy().astype(np.int64)
    return filled


class JobBuckets:
    """Typed events split into buckets by a :class:`BucketPlan` (a :class:`Spill`); the (event_key,
    bucket) of every event split by ``event_key``, to find copies of an event across buckets one part at a
    time; and the (job_key, bucket) of every event split by ``job_key``, to find the jobs in several."""

    def __init__(self, plan: BucketPlan, schema: pa.Schema, directory: Path) -> None:
        self.plan = plan
        self.count = plan.count
        self._events = Spill(self.count, schema, directory, "bucket")
        self._keys = Spill(self.count, _KEYS, directory, "keys") if self.count > 1 else None
        self._jobs = Spill(self.count, _JOBS, directory, "jobs") if self.count > 1 else None

    def add(self, events: pa.Table) -> None:
        job_keys = events["job_key"].to_numpy()
        bucket = self.plan.buckets(event_days(events["timestamp"]), job_keys)
        self._events.add(events, bucket.astype(np.int64))
        if self._keys is not None and self._jobs is not None:
            event_keys = events["event_key"].to_numpy()
            self._keys.add(pa.table({"event_key": event_keys, "bucket": bucket}, schema=_KEYS), event_keys)
            self._jobs.add(pa.table({"job_key": job_keys, "bucket": bucket}, schema=_JOBS), job_keys)

    def close(self) -> None:
        for spill in (self._events, self._keys, self._jobs):
            if spill is not None:
                spill.close()

    def read(self, k: int) -> pa.Table:
        """Bucket ``k`` in one chunk: it arrives as a slice of every bronze read (hundreds of chunks in a
        large build), and each take and filter of the fold pays per chunk."""
        return self._events.read(k).combine_chunks()

    def superseded(self, con: duckdb.DuckDBPyConnection) -> dict[int, npt.NDArray[np.int64]]:
        """Per bucket, the rows that are later copies of an event held in several buckets (the same event_id
        sent for two jobs): every later copy, in whichever bucket, for the fold of one bucket alone cannot
        tell which copy came first."""
        if self._keys is None:
            return {}
        contested = pa.array(
            np.concatenate([_contested(self._keys.read(m)) for m in range(self._keys.count)])
        )
        if len(contested) == 0:
            return {}
        copies = pa.concat_tables(self._copies(k, contested) for k in range(self.count))
        with registered(con, copies=copies):
            later = con.sql(
                """SELECT bucket, row FROM copies QUALIFY row_number() OVER (
                    PARTITION BY event_id ORDER BY ingestion_time, source, source_offset) > 1"""
            ).to_arrow_table()
        return {
            k: later.filter(pc.equal(later["bucket"], k))["row"].to_numpy()
            for k in set(later["bucket"].to_pylist())
        }

    def _copies(self, k: int, contested: pa.Array) -> pa.Table:
        events = self.read(k)
        rows = np.flatnonzero(
            pc.is_in(events["event_key"], value_set=contested).to_numpy(zero_copy_only=False)
        )
        picked = events.select(["event_id", "ingestion_time", "source", "source_offset"]).take(pa.array(rows))
        return picked.append_column("bucket", pa.repeat(pa.scalar(k, pa.int32()), len(rows))).append_column(
            "row", pa.array(rows, pa.int64())
        )

    def straddling(self) -> tuple[dict[int, npt.NDArray[np.int64]], int]:
        """Per bucket, the job keys of its jobs that are in several buckets (by key: a collision only sets
        a job aside for nothing), and how many events those jobs have in all."""
        if self._jobs is None:
            return {}, 0
        native = library()
        assert native is not None  # a first build runs only with the native fold
        found: list[pa.Table] = []
        events = 0
        for m in range(self._jobs.count):
            jobs = self._jobs.read(m).combine_chunks()
            flags = keys_in_several_groups(native, jobs["job_key"].to_numpy(), jobs["bucket"].to_numpy())
            events += int(flags.sum())
            found.append(jobs.filter(pa.array(flags)))
        if events == 0:
            return {}, 0
        pairs = pa.concat_tables(found).group_by(["bucket", "job_key"]).aggregate([])
        buckets = pairs["bucket"].to_numpy()
        keys = pairs["job_key"].to_numpy()
        return {int(k): keys[buckets == k] for k in np.unique(buckets)}, events


def set_aside(
    events: pa.Table, later: npt.NDArray[np.int64] | None, jobs: npt.NDArray[np.int64], aside: Spill
) -> tuple[pa.Table, npt.NDArray[np.int64] | None]:
    """``events`` without the events of ``jobs`` (job keys), which go to ``aside`` by job key with their
    mark of later copy (``later``: positions in ``events``); returns the rest and its later copies."""
    moving = pc.is_in(events["job_key"], value_set=pa.array(jobs)).to_numpy(zero_copy_only=False)
    marked = np.zeros(events.num_rows, np.bool_)
    if later is not None:
        marked[later] = True
    moved = events.filter(pa.array(moving)).append_column(SUPERSEDED, pa.array(marked[moving]))
    aside.add(moved, moved["job_key"].to_numpy())
    kept = ~moving
    rest = np.flatnonzero(marked[kept])
    return events.filter(pa.array(kept)), (rest if len(rest) else None)


def taken_back(rows: pa.Table) -> tuple[pa.Table, npt.NDArray[np.int64] | None]:
    """Events set aside (:func:`set_aside`), without their mark, and the positions of later copies."""
    later = np.flatnonzero(rows[SUPERSEDED].to_numpy(zero_copy_only=False))
    return rows.drop_columns([SUPERSEDED]), (later if len(later) else None)


def _contested(keys: pa.Table) -> npt.NDArray[np.int64]:
    """The event keys of ``keys`` (event_key, bucket) found in more than one bucket."""
    native = library()
    assert native is not None  # a first build runs only with the native fold
    keys = keys.combine_chunks()
    event_keys = keys["event_key"].to_numpy()
    flags = keys_in_several_groups(native, event_keys, keys["bucket"].to_numpy())
    return np.unique(event_keys[flags]).astype(np.int64)


def spill_directory(parent: str | None = None) -> tempfile.TemporaryDirectory[str]:
    """A folder for one build's spill, removed after it: in ``parent``, else the system's temporary one."""
    return tempfile.TemporaryDirectory(prefix="vhlake-build-", dir=parent or tempfile.gettempdir())

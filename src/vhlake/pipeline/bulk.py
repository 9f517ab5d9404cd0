"""The first build of a large bronze (and a full refresh): every derived table from all of bronze, no MERGE.

The incremental path folds each bronze range into what is stored, which suits a stream; for a first build
of 10M events it would MERGE some fifty times into a growing silver. Here bronze is read once (ranges read,
checked and typed ahead, as in the incremental path) and the typed events are spilled to disk in buckets
by job, so that a job's whole history is in one bucket. Each bucket is then folded natively and written
as it is: its events filed under their job's created date; its silver rows are spilled by day. Silver is
then written a few days at a time (one row group per file, however many buckets), and gold computed from
the same rows (its groups are per day). Memory is bounded by one bucket or one part of the days, and the
event keys that find copies across buckets are compared a part at a time.

Exactly once: each table's files are written directly (lake/direct_write.py) and committed at the end
in one commit that replaces the table's contents and records ``(PIPELINE_APP, bronze version)``, in the
incremental path's order (quarantine, silver, gold, job events). A crash before the last commit leaves job
events without it, and the next run builds again the tables still without it.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.native import keys_in_several_groups, library
from vhlake.query.arrow_sql import registered


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

    def add(self, rows: pa.Table, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
        """Add ``rows``, each to the part of its key; returns each row's part."""
        part = (keys % self.count).astype(np.int32)
        if self.count == 1:
            self._held.append(rows)
            return part
        order = np.argsort(part, kind="stable")
        grouped = rows.take(pa.array(order))
        bounds = np.searchsorted(part[order], np.arange(self.count + 1))
        for k, writer in enumerate(self._writers):
            if bounds[k + 1] > bounds[k]:
                writer.write_table(grouped.slice(bounds[k], bounds[k + 1] - bounds[k]))
        return part

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


class JobBuckets:
    """Typed events split by ``job_key`` into buckets (a :class:`Spill`), and the (event_key, bucket) of
    every event split by ``event_key``, to find copies of an event across buckets one part at a time."""

    def __init__(self, count: int, schema: pa.Schema, directory: Path) -> None:
        self.count = count
        self._events = Spill(count, schema, directory, "bucket")
        self._keys = Spill(count, _KEYS, directory, "keys") if count > 1 else None

    def add(self, events: pa.Table) -> None:
        bucket = self._events.add(events, events["job_key"].to_numpy())
        if self._keys is not None:
            event_keys = events["event_key"].to_numpy()
            self._keys.add(pa.table({"event_key": event_keys, "bucket": bucket}, schema=_KEYS), event_keys)

    def close(self) -> None:
        self._events.close()
        if self._keys is not None:
            self._keys.close()

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


def _contested(keys: pa.Table) -> npt.NDArray[np.int64]:
    """The event keys of ``keys`` (event_key, bucket) found in more than one bucket."""
    native = library()
    assert native is not None  # a first build runs only with the native fold
    keys = keys.combine_chunks()
    event_keys = keys["event_key"].to_numpy()
    flags = keys_in_several_groups(native, event_keys, keys["bucket"].to_numpy())
    return np.unique(event_keys[flags]).astype(np.int64)


def spill_directory() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="vhlake-build-", dir=tempfile.gettempdir())

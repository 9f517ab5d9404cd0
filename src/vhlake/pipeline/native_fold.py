"""The native fast path of :func:`vhlake.pipeline.silver.fold_jobs` (``native/fold.c``).

The fold only decides which rows win: the first received copy of each event_id, then per job its earliest
validation_started, its latest other event and its earliest event, by (timestamp, event_id). The C fold
finds those row numbers with two hash tables over the integer lookup keys (checking the id bytes, so a
key collision never merges two ids); Arrow then gathers the winners' columns. The result equals
``silver.FOLD_SQL``'s (tests/test_native_fold.py), in a fraction of the time and memory: no struct per row.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.native import address, string_buffers

STARTED = "validation_started"
# The columns whose nulls only the SQL fold orders like DuckDB and Spark do.
KEY_COLUMNS = ("job_id", "event_id", "event_type", "timestamp", "job_key", "event_key")


@dataclass(frozen=True)
class Winners:
    """Per job: its first row (for job_id) and its winning rows (-1: none); per row, its job's number,
    or -1 for a dropped copy of an event first sent for another job (it is not filed with its job)."""

    first_row: npt.NDArray[np.int64]
    started: npt.NDArray[np.int64]
    terminal: npt.NDArray[np.int64]
    earliest: npt.NDArray[np.int64]
    job_of: npt.NDArray[np.int64]


def can_fold(events: pa.Table) -> bool:
    return all(events[name].null_count == 0 for name in KEY_COLUMNS)


def find_winners(
    native: ctypes.CDLL, events: pa.Table, *, superseded: npt.NDArray[np.int64] | None = None
) -> Winners:
    """The winning rows of ``events`` (typed job events with their lookup keys, no nulls in KEY_COLUMNS);
    ``superseded`` rows are dropped copies whatever their rank among the copies in ``events``."""
    count = events.num_rows
    job_ids, event_ids = events["job_id"].combine_chunks(), events["event_id"].combine_chunks()
    jobs_buffers, ids_buffers = string_buffers(job_ids), string_buffers(event_ids)
    if jobs_buffers.count != count or ids_buffers.count != count:
        raise ValueError("job_id and event_id must have a value per row")
    job_key, event_key = _int64(events["job_key"]), _int64(events["event_key"])
    ts = _int64(events["timestamp"])
    # Every buffer the C reads is held in a name until the call returns.
    received, source, offset = (
        _int64(events["ingestion_time"]),
        _source_rank(events["source"]),
        _int64(events["source_offset"]),
    )
    keep, foreign = np.empty(count, np.uint8), np.empty(count, np.uint8)
    failed = native.dedupe_events(
        address(event_key, np.int64, count), ids_buffers.data, address(ids_buffers.offsets, np.int64, count + 1),
        address(received, np.int64, count), address(source, np.int32, count), address(offset, np.int64, count),
        address(job_key, np.int64, count), jobs_buffers.data, address(jobs_buffers.offsets, np.int64, count + 1),
        count, address(keep, np.uint8, count), address(foreign, np.uint8, count),
    )  # fmt: skip
    if failed:
        raise MemoryError("the native fold could not allocate its event table")
    if superseded is not None:
        keep[superseded] = 0
    kind = np.ascontiguousarray(
        pc.equal(events["event_type"], STARTED).to_numpy(zero_copy_only=False), np.uint8
    )
    rows = [np.empty(count, np.int64) for _ in range(4)]
    job_of = np.empty(count, np.int64)
    jobs = native.fold_jobs(
        address(job_key, np.int64, count), jobs_buffers.data, address(jobs_buffers.offsets, np.int64, count + 1),
        ids_buffers.data, address(ids_buffers.offsets, np.int64, count + 1), address(ts, np.int64, count),
        address(kind, np.uint8, count), address(keep, np.uint8, count), count,
        *(address(r, np.int64, count) for r in rows), address(job_of, np.int64, count),
    )  # fmt: skip
    if jobs < 0:
        raise MemoryError("the native fold could not allocate its job table")
    job_of[foreign.view(bool)] = -1  # never filed: a later re-fold of that job alone would count it
    if superseded is not None:
        job_of[superseded] = -1  # first sent for a job in another bucket: foreign too
    first_row, started, terminal, earliest = (r[:jobs] for r in rows)
    return Winners(first_row, started, terminal, earliest, job_of)


def _int64(column: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    array = column.combine_chunks()
    if not pa.types.is_int64(array.type):
        array = array.cast(pa.int64())
    return np.ascontiguousarray(array.to_numpy(zero_copy_only=False), dtype=np.int64)


def _source_rank(sources: pa.ChunkedArray) -> npt.NDArray[np.int32]:
    """Each row's source as its rank among the distinct sources in byte order (what the SQL compares)."""
    distinct = pc.unique(sources)
    ordered = distinct.take(pc.sort_indices(distinct))
    ranks = pc.index_in(sources, value_set=ordered)
    return np.ascontiguousarray(ranks.to_numpy(zero_copy_only=False), dtype=np.int32)

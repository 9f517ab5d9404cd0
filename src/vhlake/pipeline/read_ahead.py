"""Bronze reads checked against the expectations and typed, the next ones ahead of the one being applied.

Both paths read bronze this way: the incremental path one range ahead, a first build with a few threads.
Reading ahead touches only bronze (immutable commits), on DuckDB connections of its own, so it cannot see or
change what the current range writes.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.pipeline.expectations import Checked, Expectation, check_expectations
from vhlake.pipeline.ranges import Read
from vhlake.pipeline.silver import type_events

# Events a service publishes to measure its own end-to-end lag carry this source_system; they stop at
# bronze (never in silver, gold or the quarantine) and only their lag is recorded.
CANARY_SOURCE = "vhlake-canary"


@dataclass(frozen=True)
class Prepared:
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


class ReadAhead:
    """Prepares bronze reads (checked, typed) on cursors of the pipeline's DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, expectations: tuple[Expectation, ...]) -> None:
        self._con = con
        self._expectations = expectations

    def prepared(
        self, reads: Sequence[Read], stop: threading.Event | None, *, workers: int = 1
    ) -> Iterator[Prepared]:
        """Each of ``reads`` prepared, in order, the next ones read and typed (by ``workers`` threads)
        while the caller applies this one (module docstring)."""
        cursors: queue.SimpleQueue[duckdb.DuckDBPyConnection] = queue.SimpleQueue()
        for _ in range(workers):
            cursor = self._con.cursor()
            cursor.execute("SET TimeZone = 'UTC'")
            cursors.put(cursor)

        def prepare(read: Read) -> Prepared:
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

    def _prepare(
        self, con: duckdb.DuckDBPyConnection, start: int, end: int, read: Callable[[], pa.Table]
    ) -> Prepared:
        """Bronze rows (what ``read`` returns, from bronze versions ``start+1 .. end``), checked and typed."""
        checked, canaries, rescued = self._checked(con, read())  # the rows read are freed here
        quarantined = checked.quarantined.append_column(
            "ingestion_date", pc.cast(checked.quarantined["ingestion_time"], pa.date32())
        )
        return Prepared(
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

"""A table rewritten by writing its Parquet files directly, then adding them to the Delta log in one commit.

For a first build of a large table, writing through ``write_deltalake`` part by part costs a commit per
part and, measured on 10M job events, ~2.5 GB of writer memory. Here each partition gets one Parquet file,
kept open while the parts stream in (a row group per part), so memory stays at one part; ``commit``
closes the files, reads their footers for the Delta statistics and replaces the table's contents with
them, with the application transaction, in one commit. Until then nothing is visible; the files of a
write that is abandoned are deleted (those of a killed process go with the next ``VACUUM``). Local lakes
only.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, Transaction
from deltalake.exceptions import DeltaError
from deltalake.transaction import AddAction, RemoveAction

from vhlake.errors import LakeError
from vhlake.lake.delta import Lake, partition_text
from vhlake.lake.encoding import parquet_writer_options
from vhlake.lake.file_stats import delta_statistics
from vhlake.lake.tables import TableDef

_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


@dataclass
class _File:
    relative: str
    writer: pq.ParquetWriter
    partition: dict[str, str | None]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def append(self, rows: pa.Table) -> None:
        with self.lock:  # a file's row groups are written one at a time, in any order
            self.writer.write_table(rows)


class _PartitionFiles:
    """One open Parquet file per partition of ``table`` under its directory ``root``, named as Delta names
    them; closing gives the add actions that make them part of the table."""

    def __init__(self, root: Path, table: TableDef) -> None:
        self._root, self._table = root, table
        self.schema = pa.schema([f for f in table.schema if f.name not in table.partition_by])
        self._options = parquet_writer_options(table, self.schema)
        self._files: dict[tuple[object, ...], _File] = {}
        self._sealed: list[AddAction] = []

    def file(self, values: tuple[object, ...]) -> _File:
        held = self._files.get(values)
        if held is None:
            partition = {
                name: None if value is None else partition_text(value)
                for name, value in zip(self._table.partition_by, values, strict=True)
            }
            folders = [
                f"{name}={quote(text or _NULL_PARTITION, safe='')}" for name, text in partition.items()
            ]
            relative = "/".join([*folders, f"part-{uuid.uuid4()}-c000.{self._table.compression}.parquet"])
            (self._root / relative).parent.mkdir(parents=True, exist_ok=True)
            writer = pq.ParquetWriter(self._root / relative, self.schema, **self._options)
            held = self._files[values] = _File(relative, writer, partition)
        return held

    def seal(self) -> None:
        """Close the open files (a partition written to again gets a new file): an open file holds its
        row groups' metadata, and its writer's buffers, until it closes."""
        self._sealed += [self._close(f) for f in self._files.values()]
        self._files.clear()

    def close(self) -> list[AddAction]:
        """Close every file; the add actions for all the files written."""
        self.seal()
        actions, self._sealed = self._sealed, []
        return actions

    def abandon(self) -> None:
        """Close every file and delete it, sealed ones too (nothing references them)."""
        for f in self._files.values():
            f.writer.close()
            (self._root / f.relative).unlink(missing_ok=True)
        for action in self._sealed:
            (self._root / action.path).unlink(missing_ok=True)
        self._files.clear()
        self._sealed = []

    def _close(self, f: _File) -> AddAction:
        f.writer.close()
        path = self._root / f.relative
        stats = delta_statistics(pq.read_metadata(path), self.schema)
        return AddAction(
            f.relative, path.stat().st_size, f.partition, int(time.time() * 1000), True, json.dumps(stats)
        )


def write_files(root: Path, table: TableDef, rows: pa.Table) -> list[AddAction]:
    """``rows`` (the table's columns) written under the table's directory ``root``, a file per partition,
    not yet in the Delta log: the add actions a commit makes them part of the table with. For writers in
    other processes than the committer's (Spark executors); an empty ``rows`` writes nothing."""
    files = _PartitionFiles(root, table)
    if rows.num_rows:
        rows = rows.select(table.schema.names).cast(table.schema)
        for values, part in _by_partition(rows, table.partition_by):
            files.file(values).append(part.select(files.schema.names))
    return files.close()


class DirectWrite:
    """The new contents of ``table``, written part by part, committed once (replacing what was there)."""

    def __init__(self, lake: Lake, table: TableDef, pool: ThreadPoolExecutor) -> None:
        if not lake.is_local:
            raise LakeError(f"{table.name}: direct writes need a local lake")
        self._lake, self._table = lake, table
        self._files = _PartitionFiles(Path(lake.table_uri(table)), table)
        self._pool = pool
        self._pending: list[Future[None]] = []

    def write(self, rows: pa.Table) -> None:
        """Add ``rows`` (the table's columns): one row group in each partition's file.

        The files are written on ``pool`` while the caller goes on; a write first waits for the one
        before it, so at most one call's rows are held in flight.
        """
        self._wait()
        if rows.num_rows == 0:
            return
        rows = rows.select(self._table.schema.names).cast(self._table.schema)
        self._pending = [
            self._pool.submit(self._files.file(values).append, part.select(self._files.schema.names))
            for values, part in _by_partition(rows, self._table.partition_by)
        ]

    def seal(self) -> None:
        """Close the files written so far (once their rows are written); the rows written next go to new
        files. A file's footer grows by a row group per write, held in memory until the file closes."""
        self._wait()
        self._files.seal()

    def _wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def commit(self, *, app_id: str, version: int) -> None:
        """Replace the table's files with the written ones and record ``(app_id, version)``, in one commit."""
        self._wait()
        delta = self._lake.ensure(self._table)
        actions: list[AddAction | RemoveAction] = [*self._files.close()]
        try:
            delta.create_write_transaction(
                actions,
                mode="overwrite",
                schema=self._table.schema,
                partition_by=list(self._table.partition_by) or None,
                commit_properties=CommitProperties(app_transactions=[Transaction(app_id, version)]),
            )
        except (DeltaError, OSError) as exc:
            raise LakeError(f"cannot commit the rewrite of {self._table.name}: {exc}") from exc

    def close(self) -> None:
        """Abandon what was not committed: close its files and delete them (nothing references them)."""
        for future in self._pending:
            future.cancel()
        for future in self._pending:
            if not future.cancelled():
                future.exception()  # finished, whatever its outcome: the file is free to close
        self._pending = []
        self._files.abandon()


def _by_partition(rows: pa.Table, columns: tuple[str, ...]) -> list[tuple[tuple[object, ...], pa.Table]]:
    """``rows`` split by the values of ``columns``: long runs of one partition (rows arriving in time
    order mostly are) as slices, the rest gathered in one take. A partition may get several parts."""
    if not columns:
        return [((), rows)]
    codes, values_of = _partition_codes(rows, columns)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], len(codes)]
    long = (ends - starts) >= _LONG_RUN
    parts = [
        (values_of(int(codes[s])), rows.slice(s, e - s))
        for s, e in zip(starts[long], ends[long], strict=True)
    ]
    short = np.ones(len(codes), bool)
    for s, e in zip(starts[long], ends[long], strict=True):
        short[s:e] = False
    rest = np.flatnonzero(short)
    if len(rest):
        order = rest[np.argsort(codes[rest], kind="stable")]
        ordered, sorted_codes = rows.take(pa.array(order)), codes[order]
        bounds = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        for s, e in zip(bounds, np.r_[bounds[1:], len(order)], strict=True):
            parts.append((values_of(int(sorted_codes[s])), ordered.slice(s, e - s)))
    return parts


# A run of at least this many rows of one partition is written as it lies (a slice, no copy).
_LONG_RUN = 4096


def _partition_codes(
    rows: pa.Table, columns: tuple[str, ...]
) -> tuple[npt.NDArray[np.int64], Callable[[int], tuple[object, ...]]]:
    """One integer per row for its partition values, and the values of a code."""
    code = np.zeros(rows.num_rows, np.int64)
    dictionaries = []
    for name in columns:
        encoded = pc.dictionary_encode(rows[name]).combine_chunks()
        indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        size = len(encoded.dictionary) + 1
        code = code * size + indices + 1  # 0: null
        dictionaries.append((encoded.dictionary.to_pylist(), size))

    def values_of(value: int) -> tuple[object, ...]:
        values = []
        for dictionary, size in reversed(dictionaries):
            value, index = divmod(value, size)
            values.append(None if index == 0 else dictionary[index - 1])
        return tuple(reversed(values))

    return code, values_of

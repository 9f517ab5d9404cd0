"""Parquet files for a Delta table's partitions, written with pyarrow and named as Delta names them.

Closing them gives the add actions (statistics read from their footers, lake/file_stats.py) that a commit
makes them part of the table with. Local directories only. Three writers use them: a first build's direct
writes (lake/direct_write.py), Spark tasks (``write_files``), and local appends (``Lake``), where pyarrow
writes a file in ~0.7 us a row against ~1.15 for delta-rs's writer with the same encoding
(lake/encoding.py), the bulk of a file ingest's time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import quote

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake.transaction import AddAction

from vhlake.lake.encoding import parquet_writer_options
from vhlake.lake.file_stats import delta_statistics
from vhlake.lake.tables import TableDef


def partition_text(value: object) -> str:
    """A partition value as Delta writes it in a hive-style path."""
    return value.isoformat() if isinstance(value, date) else str(value)


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


class PartitionFiles:
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
    files = PartitionFiles(root, table)
    if rows.num_rows:
        rows = rows.select(table.schema.names).cast(table.schema)
        for values, part in by_partition(rows, table.partition_by):
            files.file(values).append(part.select(files.schema.names))
    return files.close()


def by_partition(rows: pa.Table, columns: tuple[str, ...]) -> list[tuple[tuple[object, ...], pa.Table]]:
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

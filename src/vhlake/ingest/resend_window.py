"""Recognising records a Kafka producer sent twice, so bronze stores each published event once.

An idempotent producer's own retries never duplicate, but no producer can tell whether a record that was
in flight when the broker died was stored: it never got the acknowledgement. Our publisher re-sends such
records from its outbox once the broker is back (losing them is worse), and when the broker had stored
them, the partition holds the event twice, at two offsets. The soak of ``bench/soak.py`` found dozens per
broker kill.

The rule, which only depends on the partition's contents (so a consumer that restarts, or takes the
partition over from another, decides exactly as the first one did):

    a record is a re-send when an earlier record of the same partition, at most ``window`` offsets
    before it, carries the same ``event_id`` and is in bronze.

Re-sends follow their original closely (the broker was down in between, so little else was appended), so
a window of 100,000 offsets is ample. Re-sends go to the rejects table with the reason, not to bronze:
nothing the producer sent is dropped. Events a client published twice on purpose, further apart than the
window or in other partitions, stay in bronze as received (silver counts each ``event_id`` once).

Checking costs a hash per record and a binary search in the window's sorted hashes; only a record whose
hash is already known (a re-send, or a 64-bit collision) is compared by its ``event_id`` and position.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from vhlake.duck.arrow import registered
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE

_Hashes = npt.NDArray[np.uint64]
# The rows the exact check and the window hold: a record's identity and position.
KEY_COLUMNS = ("source", "source_offset", "event_id")
_HASH_SQL = "SELECT hash(source, event_id) AS h FROM batch"
_RESENT_SQL = """
    SELECT b.row
    FROM batch AS b
    WHERE EXISTS (
        SELECT 1 FROM earlier AS e
        WHERE e.source = b.source AND e.event_id = b.event_id
          AND e.source_offset < b.source_offset AND e.source_offset >= b.source_offset - $window
    )
"""


@dataclass(frozen=True)
class _Chunk:
    """Rows held together: their keys, hashes, and per source the highest offset among them."""

    keys: pa.Table
    hashes: _Hashes
    newest: dict[str, int]


class ResendWindow:
    """The ``(source, source_offset, event_id)`` of bronze's latest rows per source, to find re-sends."""

    def __init__(self, window: int) -> None:
        if window <= 0:
            raise ValueError("the re-send window must be at least one offset")
        self.window = window
        self._con = duckdb.connect()
        self._chunks: deque[_Chunk] = deque()
        self._sorted: _Hashes = np.empty(0, np.uint64)
        self._newest: dict[str, int] = {}  # per source, the highest offset held

    def __len__(self) -> int:
        return sum(chunk.keys.num_rows for chunk in self._chunks)

    def admit(self, rows: pa.Table) -> npt.NDArray[np.bool_]:
        """Which of ``rows`` (at least :data:`KEY_COLUMNS`) are re-sends of a held row or of an earlier
        one among ``rows`` (rows without an ``event_id`` never are); the others are held from now on.

        Rows held whose commit then fails are harmless: read again, a row is never a re-send of itself
        (same position), and a consumer that starts again rebuilds its window from bronze."""
        keys = rows.select(list(KEY_COLUMNS))
        hashes = self._hash(keys)
        valid = pc.is_valid(keys["event_id"]).to_numpy(zero_copy_only=False)
        distinct, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
        known = (self._known(distinct) | (counts > 1))[inverse] & valid
        resent = self._compare(keys, hashes, known) if known.any() else known
        fresh = valid & ~resent
        self._hold(keys.filter(pa.array(fresh)), hashes[fresh])
        return resent

    def remember(self, rows: pa.Table) -> None:
        """Hold ``rows`` (in bronze already)."""
        keys = rows.select(list(KEY_COLUMNS)).filter(pc.is_valid(rows["event_id"]))
        self._hold(keys, self._hash(keys))

    def _hold(self, keys: pa.Table, hashes: _Hashes) -> None:
        """Hold ``keys`` and let go of what fell out of every source's window."""
        if keys.num_rows == 0:
            return
        by_source = keys.group_by("source").aggregate([("source_offset", "max")]).to_pydict()
        newest = dict(zip(by_source["source"], by_source["source_offset_max"], strict=True))
        self._chunks.append(_Chunk(keys, hashes, newest))
        self._sorted = np.concatenate([self._sorted, hashes])
        self._sorted.sort(kind="stable")  # sorted + a small tail: a merge of two runs
        for source, offset in newest.items():
            self._newest[source] = max(offset, self._newest.get(source, offset))
        self._forget_old()

    def _hash(self, keys: pa.Table) -> _Hashes:
        with registered(self._con, batch=keys):
            column = self._con.execute(_HASH_SQL).fetchnumpy()["h"]
        return np.asarray(column, dtype=np.uint64)

    def _known(self, distinct: _Hashes) -> npt.NDArray[np.bool_]:
        """Which of the sorted, distinct ``distinct`` are held (sorted needles search fast)."""
        if self._sorted.size == 0:
            return np.zeros(distinct.size, dtype=bool)
        at = np.minimum(np.searchsorted(self._sorted, distinct), self._sorted.size - 1)
        return np.asarray(self._sorted[at] == distinct)

    def _compare(
        self, keys: pa.Table, hashes: _Hashes, known: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.bool_]:
        """The exact check, over the rows whose hashes matched: same source and id, an earlier position."""
        wanted = np.unique(hashes[known])
        batch = keys.append_column("row", pa.array(np.arange(keys.num_rows))).filter(pa.array(known))
        held = [chunk.keys.filter(pa.array(np.isin(chunk.hashes, wanted))) for chunk in self._chunks]
        earlier = pa.concat_tables([*held, batch.drop_columns(["row"])])
        with registered(self._con, batch=batch, earlier=earlier):
            rows = self._con.execute(_RESENT_SQL, {"window": self.window}).fetchnumpy()["row"]
        resent = np.zeros(keys.num_rows, dtype=bool)
        resent[np.asarray(rows, dtype=np.int64)] = True
        return resent

    def _forget_old(self) -> None:
        """Drop whole chunks past every source's window, once they are half of what is held (amortised:
        the sorted hashes are rebuilt from what stays)."""
        floors = {source: newest - self.window for source, newest in self._newest.items()}
        stale = list(itertools.takewhile(lambda chunk: _all_below(chunk, floors), self._chunks))
        if not stale or 2 * sum(chunk.keys.num_rows for chunk in stale) < len(self):
            return
        for _ in stale:
            self._chunks.popleft()
        kept = [chunk.hashes for chunk in self._chunks]
        self._sorted = np.sort(np.concatenate(kept)) if kept else np.empty(0, np.uint64)


def _all_below(chunk: _Chunk, floors: Mapping[str, int]) -> bool:
    """Whether every row of ``chunk`` is older than its source's window."""
    return all(offset < floors[source] for source, offset in chunk.newest.items())


def bronze_rows_before(lake: Lake, starts: Mapping[str, int], window: int) -> pa.Table:
    """Bronze's :data:`KEY_COLUMNS` of the rows of each source in ``[start - window, start)``: what a
    consumer about to read from ``start`` must hold. Only the files whose statistics may hold such rows
    are read (a few recent ones), whatever bronze's size."""
    delta = lake.open(BRONZE)
    if delta is None or not starts:
        return _empty_keys()
    actions = pa.table(delta.get_add_actions(flatten=True))
    stats = ("min.source", "max.source", "min.source_offset", "max.source_offset")
    files = pa.table(
        {"path": actions["path"]}
        | {  # a column no file has statistics for is missing: every file may hold anything
            name: actions[name]
            if name in actions.column_names
            else pa.nulls(actions.num_rows, BRONZE.schema.field(name.split(".")[1]).type)
            for name in stats
        }
    )
    wanted = [_may_hold(files, source, max(0, start - window), start - 1) for source, start in starts.items()]
    paths = files.filter(functools.reduce(pc.or_, wanted))["path"].to_pylist()
    if not paths:
        return _empty_keys()
    keep = [
        (ds.field("source") == source)
        & (ds.field("source_offset") >= start - window)
        & (ds.field("source_offset") < start)
        for source, start in starts.items()
    ]
    dataset = lake.dataset(BRONZE, only=paths)
    return dataset.to_table(columns=list(KEY_COLUMNS), filter=functools.reduce(operator.or_, keep))


def _may_hold(files: pa.Table, source: str, low: int, high: int) -> pa.ChunkedArray:
    """Files that may hold rows of ``source`` with offsets in ``[low, high]`` (missing statistics: may)."""
    return pc.and_kleene(
        pc.and_kleene(
            pc.less_equal(files["min.source"], source), pc.greater_equal(files["max.source"], source)
        ),
        pc.and_kleene(
            pc.less_equal(files["min.source_offset"], high), pc.greater_equal(files["max.source_offset"], low)
        ),
    ).fill_null(True)


def _empty_keys() -> pa.Table:
    return pa.schema([BRONZE.schema.field(name) for name in KEY_COLUMNS]).empty_table()

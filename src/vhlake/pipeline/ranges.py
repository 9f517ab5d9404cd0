"""Where each derived table stands in bronze, and the bronze version ranges a run processes.

Each derived table records, as a Delta application transaction ``(PIPELINE_APP, bronze version)``, how far
into bronze it has been brought. A run reads only the bronze commits after that (the change data feed), in
bounded version ranges cut at every table's committed position; bronze's commit log tells which commits
appended rows, how many, and which brought no new event (erasure, retention, upkeep: never read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, ERROR_TYPE_GOLD, GOLD, JOB_EVENTS, QUARANTINE, SILVER, TableDef

PIPELINE_APP = "pipeline:bronze"
# In commit order. The engagement tables are not among them: they follow silver's versions, not bronze's
# (pipeline/engagement_step.py).
DERIVED = (QUARANTINE, SILVER, GOLD, ERROR_TYPE_GOLD, JOB_EVENTS)

# Commits that bring bronze no new event: an erasure's MERGE (deletes only), retention's DELETE, compaction
# and vacuum. The change data an erasure's deletes recorded is purged with ``forget --vacuum``.
_NO_NEW_EVENTS = frozenset({"DELETE", "OPTIMIZE", "VACUUM START", "VACUUM END"})
# Commits that only add rows: while every commit since version 0 is one, the change feed from the start
# is exactly the table.
_APPENDS = frozenset({"CREATE TABLE", "WRITE", "STREAMING UPDATE"})

# A bronze read for the read-ahead: (start, end, the rows of bronze versions start+1 .. end, or of part of them).
Read = tuple[int, int, Callable[[], pa.Table]]


def processed(lake: Lake, table: TableDef) -> int:
    """The bronze version ``table`` was brought to (-1: none yet)."""
    version = lake.txn_version(table, PIPELINE_APP)
    return -1 if version is None else version


@dataclass(frozen=True)
class BronzeLog:
    """What bronze's commits after a position did, from the commit info in the Delta log."""

    added: dict[int, int]  # rows each commit appended
    without_events: frozenset[int]  # commits that added no event (their change data is never read)
    only_appended: bool  # every commit since version 0 is known and only appended rows


def bronze_log(lake: Lake, *, since: int, target: int) -> BronzeLog:
    """Bronze's commits ``since+1 .. target``, from their commit files (:meth:`Lake.commit_infos`: not
    ``DeltaTable.history``, whose version numbers shift when the ingest commits meanwhile)."""
    pending = target - since
    commits = lake.commit_infos(BRONZE, since + 1, target) if pending > 0 else {}
    added: dict[int, int] = {}
    without: set[int] = set()
    appends = 0
    for version, commit in commits.items():
        operation = str(commit.get("operation"))
        metrics = commit.get("operationMetrics") or {}
        added[version] = int(metrics.get("num_added_rows", 0) or 0)
        inserted = int(metrics.get("num_target_rows_inserted", 0) or 0)
        if operation in _NO_NEW_EVENTS or (operation == "MERGE" and inserted == 0):
            without.add(version)
        mode = (commit.get("operationParameters") or {}).get("mode", "Append")
        appends += operation in _APPENDS and mode in ("Append", "Ignore", "ErrorIfExists")
    known = len(commits) == pending and since < 0  # a cleaned-up log no longer lists the first commits
    return BronzeLog(added, frozenset(without), known and appends == len(commits))


def plan_ranges(
    start: int, target: int, done: dict[str, int], added: dict[int, int], *, rows: int, versions: int
) -> list[tuple[int, int]]:
    """The bronze version ranges to process, cut at every table's committed position."""
    ranges, position = [], start
    for boundary in sorted({v for v in done.values() if v > position} | {target}):
        while position < boundary:
            end = range_end(position, boundary, added, rows=rows, versions=versions)
            ranges.append((position, end))
            position = end
    return ranges


def range_end(position: int, boundary: int, added: dict[int, int], *, rows: int, versions: int) -> int:
    """The end of the range starting after ``position``: at most ``versions`` commits and about ``rows``
    rows (always at least one commit), so memory stays bounded whatever the backlog."""
    end, total = position + 1, added.get(position + 1, 0)
    while end < boundary and end - position < versions:
        more = added.get(end + 1, 0)
        if total + more > rows:
            break
        end, total = end + 1, total + more
    return end


def changes_reader(
    bronze: DeltaTable, start: int, end: int, without_events: frozenset[int]
) -> Callable[[], pa.Table]:
    """What bronze commits ``start+1 .. end`` appended, read when called (by the read-ahead)."""
    return lambda: appended_rows(bronze, start, end, without_events)


def snapshot_reader(dataset: ds.Dataset) -> Callable[[], pa.Table]:
    """All of bronze as ``dataset`` holds it, read when called."""
    return lambda: dataset.to_table(columns=BRONZE.schema.names).cast(BRONZE.schema)


def appended_rows(bronze: DeltaTable, start: int, end: int, without_events: frozenset[int]) -> pa.Table:
    """Rows bronze commits ``start+1 .. end`` appended. Bronze only grows but for the commits
    ``without_events`` (erasure, retention, upkeep), which are not read: they add nothing, and the files
    their change data names may be gone."""
    parts = [BRONZE.schema.empty_table()]
    if end < 1:  # version 0 creates the table
        return parts[0]
    for first, last in runs(start + 1, end, without_events):
        changes = pa.table(bronze.load_cdf(starting_version=first, ending_version=last))
        change_type = pc.cast(changes["_change_type"], pa.string())  # delta-rs returns string_view columns
        rows = BRONZE.conform(changes)
        parts.append(rows.filter(pc.equal(change_type, "insert")))
    return pa.concat_tables(parts)


def runs(first: int, last: int, skipped: frozenset[int]) -> Iterator[tuple[int, int]]:
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

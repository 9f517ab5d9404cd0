"""The derived tables changed outside a run: quarantined events replayed with the rules of now, and gold
recomputed after rows left silver other than through the pipeline (an erasure).

Both fold through the incremental path's MERGEs, each under an application id of its own, and then bring
the engagement tables to silver. :class:`vhlake.pipeline.runner.Pipeline` takes the derived tables' writer
lock (lake/writer_lock.py) around them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, QUARANTINE
from vhlake.pipeline.expectations import Expectation, check_expectations
from vhlake.pipeline.gold_groups import GROUP_TABLES, GroupTables, groups_of
from vhlake.pipeline.incremental import Change, Incremental
from vhlake.pipeline.restatements import no_events
from vhlake.pipeline.silver import type_events


def replay_quarantine(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    expectations: tuple[Expectation, ...],
    incremental: Incremental,
    update_engagement: Callable[[], bool],
    reason: str | None,
) -> int:
    """Re-check quarantined events (all, or one ``reason``) with ``expectations``; fold those that pass
    and take them out of the quarantine, after their jobs were folded. Returns how many left."""
    quarantine = lake.open(QUARANTINE)
    bronze = lake.open(BRONZE)
    if quarantine is None or bronze is None:
        return 0
    rows = pa.table(quarantine.to_pyarrow_table())
    if reason is not None:
        rows = rows.filter(pc.equal(rows["reason"], reason))
    passing = check_expectations(con, rows.select(BRONZE.schema.names), expectations).passed
    if passing.num_rows == 0:
        return 0
    version = bronze.version()
    app_id = f"replay:{uuid.uuid4()}"
    incremental.apply(type_events(con, passing), version=version, app_id=app_id, run_id=app_id)
    update_engagement()  # what the replayed jobs changed in silver, before the events leave
    leaving = passing.select(["source", "source_offset"]).append_column(
        "_deleted", pa.repeat(pa.scalar(True), passing.num_rows)
    )
    lake.upsert_once(
        QUARANTINE,
        leaving,
        keys=("source", "source_offset"),
        app_id=app_id,
        version=version,
        delete_flag="_deleted",
    )
    return int(passing.num_rows)


def recompute_gold(
    group_tables: GroupTables,
    incremental: Incremental,
    update_engagement: Callable[[], bool],
    jobs: pa.Table,
    *,
    app_id: str,
    bronze_version: int,
) -> int:
    """Recompute the gold groups of ``jobs`` (silver rows, or their created_date, marketplace and
    category) from silver as it is now, then ``update_engagement``. Returns the number of groups.

    What the recomputation changes in groups already written is recorded in ``gold_restatements`` first,
    as ``app_id``'s, at ``bronze_version`` (the bronze version gold reflects), with no events: no event
    caused it."""
    groups, now = groups_of(jobs), datetime.now(UTC)
    # A group is of one day: recomputed a day at a time, what is read of silver at once is one day's
    # partitions (a user seen every day would otherwise bring the whole of silver into memory).
    days = pc.unique(groups["date"]).to_pylist()
    day_groups = [groups.filter(pc.equal(groups["date"], day)) for day in days] or [groups]
    sources = [group_tables.merge_sources(of_day, now) for of_day in day_groups]
    merged = {table.name: pa.concat_tables([s[table.name] for s in sources]) for table in GROUP_TABLES}
    change = Change(run_id=app_id, bronze_version=bronze_version, app_id=app_id, version=0, at=now)
    incremental.restate(groups, merged, no_events, change)
    incremental.upsert_groups(merged, app_id=app_id, version=0)
    update_engagement()
    return int(groups.num_rows)

"""The gold tables kept per (date, marketplace, category) group: their rows recomputed from silver.

``marketplace_daily_metrics_gold`` and ``error_type_daily_gold`` both hold, for each group, what the
group's silver jobs say and nothing else; so a change of silver is brought to both by recomputing the
groups its jobs were in, before and after it, from silver's rows of those groups (read once, for both).
A group left without jobs, or an error type no longer reported in a group, is deleted in the same MERGE.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from vhlake.duck.arrow import registered
from vhlake.lake.delta import Lake, merge_source
from vhlake.lake.tables import ERROR_TYPE_GOLD, GOLD, SILVER, TableDef
from vhlake.pipeline.error_types import error_type_daily
from vhlake.pipeline.gold import UNKNOWN_CATEGORY, daily_metrics

GROUP_TABLES = (GOLD, ERROR_TYPE_GOLD)
GROUP_KEYS = ("date", "marketplace", "category")
KEYS = {GOLD.name: GROUP_KEYS, ERROR_TYPE_GOLD.name: (*GROUP_KEYS, "error_type")}
# What the group tables need of silver.
GOLD_INPUTS = [
    "created_date",
    "marketplace",
    "category",
    "status",
    "total_rows",
    "processing_time_ms",
    "user_id",
    "error_types",
]
# Days of silver read at once when a table is rebuilt from all of silver.
_REBUILD_DAYS = 7


def groups_of(jobs: pa.Table) -> pa.Table:
    """The distinct (date, marketplace, category) groups of silver rows ``jobs``."""
    keys = pa.table(
        {
            "date": jobs["created_date"],
            "marketplace": jobs["marketplace"],
            "category": pc.fill_null(jobs["category"], UNKNOWN_CATEGORY),
        }
    )
    return keys.group_by(list(GROUP_KEYS)).aggregate([])


def group_rows(con: duckdb.DuckDBPyConnection, jobs: pa.Table, *, now: datetime) -> dict[str, pa.Table]:
    """Each group table's rows for the groups of ``jobs``, which must hold all of silver's rows of each
    group it touches (``GOLD_INPUTS`` at least)."""
    return {
        GOLD.name: daily_metrics(con, jobs, updated_at=now),
        ERROR_TYPE_GOLD.name: error_type_daily(con, jobs, updated_at=now),
    }


class GroupTables:
    """Reads what the group tables need of silver, and the error types they hold, for given groups."""

    def __init__(self, lake: Lake, con: duckdb.DuckDBPyConnection) -> None:
        self._lake, self._con = lake, con

    def merge_sources(self, groups: pa.Table, now: datetime) -> dict[str, pa.Table]:
        """Per group table, the MERGE source that brings ``groups`` to what silver holds now: their
        recomputed rows, and a ``_deleted`` marker for each stored row the recomputation no longer has."""
        rows = group_rows(self._con, self._silver_of(groups), now=now)
        gold, errors = rows[GOLD.name], rows[ERROR_TYPE_GOLD.name]
        return {
            GOLD.name: merge_source(GOLD, gold, _missing(groups, gold, GROUP_KEYS)),
            ERROR_TYPE_GOLD.name: merge_source(
                ERROR_TYPE_GOLD,
                errors,
                _missing(self._stored_error_types(groups), errors, KEYS[ERROR_TYPE_GOLD.name]),
            ),
        }

    def stored(self, table: TableDef, groups: pa.Table) -> pa.Table:
        """The rows ``table`` (one partitioned by year and month, with the group's columns: gold,
        ``gold_restatements``) holds for ``groups``, reading only the partitions of their months."""
        if groups.num_rows == 0:
            return table.schema.empty_table()
        dates = pc.unique(groups["date"])
        months = ds.field("year").isin(pc.unique(pc.year(dates)).cast(pa.int32())) & ds.field("month").isin(
            pc.unique(pc.month(dates)).cast(pa.int32())
        )
        rows = self._lake.dataset(table).to_table(filter=months & ds.field("date").isin(dates))
        return rows.join(groups.select(list(GROUP_KEYS)), keys=list(GROUP_KEYS), join_type="left semi")

    def rebuilt(self, table: TableDef, now: datetime) -> pa.Table:
        """``table`` computed from all of silver, read a few days at a time (a group is of one day)."""
        parts = [group_rows(self._con, jobs, now=now)[table.name] for jobs in self._silver_by_days()]
        return pa.concat_tables(parts) if parts else table.schema.empty_table()

    def _silver_of(self, groups: pa.Table) -> pa.Table:
        """Silver's rows of ``groups`` (``GOLD_INPUTS``), reading only their partitions."""
        if groups.num_rows == 0:
            return SILVER.schema.empty_table().select(GOLD_INPUTS)
        partitions = ds.field("created_date").isin(pc.unique(groups["date"])) & ds.field("marketplace").isin(
            pc.unique(groups["marketplace"])
        )
        candidates = self._lake.dataset(SILVER).to_table(columns=GOLD_INPUTS, filter=partitions)
        with registered(self._con, candidates=candidates, groups=groups):
            return self._con.sql(
                f"""SELECT c.* FROM candidates c
                SEMI JOIN groups g ON c.created_date = g.date AND c.marketplace = g.marketplace
                    AND coalesce(c.category, '{UNKNOWN_CATEGORY}') = g.category"""  # noqa: S608
            ).to_arrow_table()

    def _stored_error_types(self, groups: pa.Table) -> pa.Table:
        """The keys of the error-type rows stored for ``groups``."""
        keys = list(KEYS[ERROR_TYPE_GOLD.name])
        if groups.num_rows == 0 or self._lake.open(ERROR_TYPE_GOLD) is None:
            return ERROR_TYPE_GOLD.schema.empty_table().select(keys)
        stored = self._lake.dataset(ERROR_TYPE_GOLD).to_table(
            columns=keys, filter=ds.field("date").isin(pc.unique(groups["date"]))
        )
        return stored.join(groups, keys=list(GROUP_KEYS), join_type="left semi")

    def _silver_by_days(self) -> Iterator[pa.Table]:
        silver = self._lake.dataset(SILVER)
        days = sorted(
            {ds.get_partition_keys(f.partition_expression)["created_date"] for f in silver.get_fragments()}
        )
        for first in range(0, len(days), _REBUILD_DAYS):
            chosen = days[first : first + _REBUILD_DAYS]
            yield silver.to_table(columns=GOLD_INPUTS, filter=ds.field("created_date").isin(chosen))


def _missing(stored: pa.Table, recomputed: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """The keys of ``stored`` that ``recomputed`` does not have, with the partition columns of each."""
    gone = stored.select(list(keys)).join(
        recomputed.select(list(keys)), keys=list(keys), join_type="left anti"
    )
    return gone.append_column("year", pc.year(gone["date"])).append_column("month", pc.month(gone["date"]))

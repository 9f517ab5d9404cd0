"""The engagement step: ``user_engagement_daily_gold`` and its state ``user_first_seen`` brought to silver.

The engagement tables follow silver, not bronze: their rows span 28 days, so recomputing them for every
range would cost a micro-batch seconds. :meth:`EngagementStep.update` reads silver's change data feed since
the silver version they record as ``(ENGAGEMENT_APP, silver version)``, recomputes the pairs those changes
touch and merges them, gold first, its state after. ``pipeline run`` runs it once at the end of a run (one
step for all its ranges); the service runs it on its own schedule. After silver's retention deleted its
oldest days, the step first moves the first dates older than silver's earliest day to the earliest silver
still holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from vhlake.lake.delta import Lake
from vhlake.lake.tables import SILVER
from vhlake.pipeline.engagement_tables import ENGAGEMENT_TABLES, JOB_COLUMNS, EngagementTables
from vhlake.pipeline.engagement_tables import KEYS as ENGAGEMENT_KEYS
from vhlake.pipeline.incremental import upsert_each
from vhlake.pipeline.ranges import runs

# The engagement tables' transaction: the silver version they reflect (module docstring).
ENGAGEMENT_APP = "pipeline:silver_engagement"
# The engagement tables taken past silver's retention, at the silver version that found it (a crash
# between gold's commit and the state's is completed from the same stored first dates).
ENGAGEMENT_EXPIRY_APP = "pipeline:silver_engagement_expiry"

# Silver commits the engagement step skips: retention's DELETE (silver expiring leaves the engagement rows
# as they were; the first dates it takes away are found from the state, ``expired_sources``:
# docs/semantics.md), and upkeep that changes no row.
_SILVER_SKIPPED = frozenset({"DELETE", "OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES"})
# Silver commits whose changes the engagement step follows: the pipeline's and an erasure's MERGEs, and
# appends (a version recorded without rows). Anything else (an overwrite: a full refresh, a rebuild)
# makes it build from all of silver.
_SILVER_FOLLOWED = frozenset({"MERGE", "WRITE", "STREAMING UPDATE"})
_ENGAGEMENT_CHANGES = pa.schema([SILVER.schema.field(name) for name in JOB_COLUMNS])


class EngagementStep:
    """Brings the engagement tables (``engagement``) to silver's current version (module docstring)."""

    def __init__(self, lake: Lake, engagement: EngagementTables) -> None:
        self._lake = lake
        self._engagement = engagement

    def update(self) -> bool:
        """Silver's changes since the version the state records, recomputed and merged, gold first and
        the state after, each recording the silver version they reflect: after a crash between the two,
        gold is skipped and the state computed from the same changes. Built from all of silver when there
        is no record yet or the changes cannot be followed (``silver_changes``). False when the tables
        already were at silver's version."""
        silver = self._lake.open(SILVER)
        if silver is None:
            return False
        target = silver.version()
        gold_at, state_at = (self._lake.txn_version(t, ENGAGEMENT_APP) for t in ENGAGEMENT_TABLES)
        if gold_at is not None and state_at is not None and min(gold_at, state_at) >= target:
            return False
        changes = None
        if gold_at is not None and state_at is not None:
            changes = silver_changes(self._lake, silver, since=min(gold_at, state_at), until=target)
        now = datetime.now(UTC)
        if changes is None:
            rows = self._engagement.rebuilt(now)
            for table in ENGAGEMENT_TABLES:  # in commit order
                self._lake.replace_once(table, rows[table.name], app_id=ENGAGEMENT_APP, version=target)
            self._engagement.refresh_index()
            return True
        expired = self._engagement.expired_sources(now) if changes.expired else None
        if expired is not None:  # before the changes, which then read the state as silver gives it
            upsert_each(
                self._lake,
                ENGAGEMENT_TABLES,
                expired,
                ENGAGEMENT_KEYS,
                app_id=ENGAGEMENT_EXPIRY_APP,
                version=target,
            )
        sources = self._engagement.merge_sources(changes.rows, changes.rows.schema.empty_table(), now)
        upsert_each(
            self._lake, ENGAGEMENT_TABLES, sources, ENGAGEMENT_KEYS, app_id=ENGAGEMENT_APP, version=target
        )
        return True


class SilverChanges(NamedTuple):
    rows: pa.Table  # the changed jobs' JOB_COLUMNS, every image
    expired: bool  # retention deleted silver's oldest days among these versions


def silver_changes(lake: Lake, silver: DeltaTable, *, since: int, until: int) -> SilverChanges | None:
    """Silver's ``JOB_COLUMNS`` in the change data feed of versions ``since+1 .. until``, every image
    (inserted, deleted, before and after an update): what ``EngagementTables.merge_sources`` needs of the
    changed jobs; and whether retention ran among them. None when the changes cannot be followed: a commit that replaced silver, a log cleaned
    up past ``since``, change data vacuumed away; the engagement tables are then built from silver.

    A silver created without the change data feed still answers, with the rows of the files each commit
    added and removed (a superset of the changed rows: more pairs recomputed, the same result).

    The commits are read by number from their files (``Lake.commit_infos``): ``DeltaTable.history``
    numbers them wrongly when another writer (``vhlake forget``, ``maintain``) committed meanwhile."""
    if until <= since:
        return SilverChanges(_ENGAGEMENT_CHANGES.empty_table(), expired=False)
    commits = lake.commit_infos(SILVER, since + 1, until)
    if set(commits) != set(range(since + 1, until + 1)):
        return None  # the log no longer lists them all
    skipped, expired = set(), False
    for version, commit in commits.items():
        operation = str(commit.get("operation"))
        mode = (commit.get("operationParameters") or {}).get("mode", "Append")
        expired = expired or operation == "DELETE"
        if operation in _SILVER_SKIPPED:
            skipped.add(version)
        elif operation not in _SILVER_FOLLOWED or mode not in ("Append", None):
            return None
    parts = [_ENGAGEMENT_CHANGES.empty_table()]
    try:
        for first, last in runs(since + 1, until, frozenset(skipped)):
            changes = silver.load_cdf(starting_version=first, ending_version=last, columns=JOB_COLUMNS)
            parts.append(pa.table(changes).select(JOB_COLUMNS).cast(_ENGAGEMENT_CHANGES))
    except (DeltaError, OSError):
        return None
    return SilverChanges(pa.concat_tables(parts), expired=expired)

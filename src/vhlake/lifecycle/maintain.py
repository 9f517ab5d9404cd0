"""``vhlake maintain``: retention by partition, compaction, Z-order, vacuum and checkpoints, per table.

Retention follows the tiers of docs/operations.md (bronze, rejects and quarantine 90 days; silver and the job events 1
year; gold and predictions 2 years; each a setting): rows older than the cutoff are deleted by their
date column, a commit like any other (readers and the change data feed see a delete, never a gap in
what they already read). Compaction rewrites small files into large ones, Z-order clusters gold and the
last complete day of silver by the columns queries filter on, vacuum removes the files no version within
the vacuum retention needs (never less than the configured minimum, so a reader or a time-travel query
inside it always finds its files), and a checkpoint keeps opening each table cheap. Last, on an object
store, the files of partitions past a storage tier's age move to that tier's class in place
(lifecycle/tiers.py): after compaction, so the files it just wrote are moved in the same pass. The moves
are reported per partition and recorded in ``storage_tier_moves``.

Every step is a Delta commit that may meet a concurrent writer (the pipeline MERGEs into silver and gold,
the service compacts): Delta refuses the second commit instead of corrupting, and the step is retried on
the new version a few times, then skipped and reported, never failing anything else. Inside ``vhlake
serve`` it runs in the pipeline's own thread, between two runs, so it never races the pipeline at all.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError

from vhlake.errors import ConfigError, LakeError
from vhlake.lake.delta import Lake, no_such_partition
from vhlake.lake.encoding import delta_writer_properties
from vhlake.lake.object_tiers import ObjectTiers
from vhlake.lake.tables import (
    BRONZE,
    ERROR_TYPE_GOLD,
    GOLD,
    GOLD_RESTATEMENTS,
    INGEST_LEDGER,
    JOB_EVENTS,
    ML_PREDICTIONS,
    QUARANTINE,
    REJECTED,
    SILVER,
    STORAGE_TIER_MOVES,
    USER_ENGAGEMENT_GOLD,
    USER_FIRST_SEEN,
    TableDef,
)
from vhlake.lifecycle.tiers import DataFile, PartitionMove, TierPlan, TierPolicy, partition_date, plan_moves

# Columns queries filter on within a partition: Z-order clusters files by them (gold: the dashboard and
# the API ask for a marketplace, sometimes a category, over a range of dates).
Z_ORDER: dict[str, tuple[str, ...]] = {
    GOLD.name: ("marketplace", "category", "date"),
    ERROR_TYPE_GOLD.name: ("marketplace", "category", "date"),
    USER_ENGAGEMENT_GOLD.name: ("marketplace", "date"),
    SILVER.name: ("status", "created_at"),
}
_ATTEMPTS = 4


@dataclass(frozen=True)
class Retention:
    """Days each tier keeps (docs/operations.md), and the vacuum's retention and its floor, in hours."""

    bronze_days: int = 90
    silver_days: int = 365
    gold_days: int = 730
    vacuum_hours: float = 168.0
    min_vacuum_hours: float = 168.0

    def tables(self) -> list[tuple[TableDef, int | None]]:
        """(table, days kept, None: no expiry); a row's age is measured on the table's ``date_column``."""
        return [
            (BRONZE, self.bronze_days),
            (REJECTED, self.bronze_days),
            (QUARANTINE, self.bronze_days),
            (INGEST_LEDGER, self.bronze_days),
            (SILVER, self.silver_days),
            (JOB_EVENTS, self.silver_days),
            (GOLD, self.gold_days),
            (ERROR_TYPE_GOLD, self.gold_days),
            (USER_ENGAGEMENT_GOLD, self.gold_days),
            (GOLD_RESTATEMENTS, self.gold_days),  # a group's audit goes with its gold row
            # the pipeline's state: a user's row lives as long as the user has a first date (a first date
            # expiring with silver's day would leave the user's later jobs without one); compacted and
            # vacuumed like the others
            (USER_FIRST_SEEN, None),
            (ML_PREDICTIONS, self.gold_days),
        ]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Tiering:
    """What moves old partitions to cheaper storage: the ages per layer, the store's classes, and the
    clock the moves are recorded with."""

    policy: TierPolicy
    store: ObjectTiers
    clock: Callable[[], datetime] = _now


@dataclass
class TableReport:
    table: str
    rows_expired: int = 0
    files_compacted: int = 0
    files_written: int = 0
    files_z_ordered: int = 0
    files_vacuumed: int = 0
    bytes_vacuumed: int = 0
    checkpoint: bool = False
    files_tiered: int = 0  # moved to another storage tier (a dry run: would be)
    bytes_tiered: int = 0
    skipped: list[str] = field(default_factory=list)  # steps given up after conflicts, and why
    tier_moves: list[PartitionMove] = field(default_factory=list)  # per partition and destination tier
    tier_held: dict[str, int] = field(default_factory=dict)  # why files past their age stayed: how many


def maintain(
    lake: Lake,
    retention: Retention,
    *,
    today: date,
    dry_run: bool = False,
    on_table: Callable[[str], None] | None = None,
    tiering: Tiering | None = None,
) -> list[TableReport]:
    """Run every step on every table that exists; with ``dry_run``, only count what would go. With
    ``tiering`` on a store that has tiers, also move old partitions' files and record the moves."""
    if retention.vacuum_hours < retention.min_vacuum_hours:
        raise ConfigError(
            f"vacuum retention {retention.vacuum_hours:g} h is below the minimum of "
            f"{retention.min_vacuum_hours:g} h: readers and time travel inside it would lose their files"
        )
    reports = []
    for table, days in retention.tables():
        if lake.open(table) is None:
            continue
        if on_table is not None:
            on_table(table.name)
        cutoff = None if days is None else today - timedelta(days=days)
        report = _maintain_table(lake, table, cutoff, retention, today, dry_run)
        if tiering is not None and tiering.store.moves:
            _tier(lake, table, report, tiering, today, dry_run)
        reports.append(report)
    if tiering is not None and not dry_run:
        _record_moves(lake, reports, tiering, today)
    return reports


def _maintain_table(
    lake: Lake, table: TableDef, cutoff: date | None, retention: Retention, today: date, dry_run: bool
) -> TableReport:
    report = TableReport(table.name)
    if cutoff is not None:
        _step(lake, table, report, "retention", lambda d: _expire(lake, d, table, cutoff, report, dry_run))
    if dry_run:
        _step(lake, table, report, "compaction", lambda d: _plan_compaction(d, table, cutoff, report))
    else:
        _step(lake, table, report, "compaction", lambda d: _compact(d, table, report))
        if table.name in Z_ORDER:
            _step(lake, table, report, "z-order", lambda d: _z_order(d, table, today, report))
    _step(lake, table, report, "vacuum", lambda d: _vacuum(lake, d, table, retention, report, dry_run))
    if not dry_run:
        _step(lake, table, report, "checkpoint", lambda d: _checkpoint(d, report))
    return report


def _step(
    lake: Lake, table: TableDef, report: TableReport, name: str, work: Callable[[DeltaTable], None]
) -> None:
    """``work`` on the latest version; a conflicting commit is retried on the next one, then skipped."""
    for attempt in range(_ATTEMPTS):
        delta = lake.open(table)  # refreshed to the latest version
        assert delta is not None
        try:
            work(delta)
            return
        except CommitFailedError as exc:
            if attempt == _ATTEMPTS - 1:
                report.skipped.append(f"{name}: kept conflicting with another writer ({exc})")
            else:
                time.sleep(0.2 * 2**attempt)


def _expire(
    lake: Lake, delta: DeltaTable, table: TableDef, cutoff: date, report: TableReport, dry_run: bool
) -> None:
    column = table.date_column
    assert column is not None and table.schema.field(column).type == pa.date32(), table.name
    if dry_run:
        report.rows_expired = lake.dataset(table).count_rows(filter=ds.field(column) < cutoff)
        return
    # delta-rs takes a delete predicate only as text (it prunes whole partitions from it, where a MERGE
    # would scan): built from the contract's date column and a ``date``, whose ISO form is digits and
    # dashes, never from input.
    metrics = delta.delete(
        f"{column} < '{cutoff.isoformat()}'", writer_properties=delta_writer_properties(table)
    )
    report.rows_expired = int(metrics.get("num_deleted_rows", 0))


def _compact(delta: DeltaTable, table: TableDef, report: TableReport) -> None:
    """Compact every partition; the new files follow the encoding policy, like every file the lake writes."""
    metrics = delta.optimize.compact(writer_properties=delta_writer_properties(table))
    report.files_compacted += int(metrics.get("numFilesRemoved", 0))
    report.files_written += int(metrics.get("numFilesAdded", 0))


# delta-rs' file size goal for compaction when the table sets no ``delta.targetFileSize``.
_DEFAULT_TARGET_FILE_SIZE = 100 * 1024 * 1024


def _plan_compaction(delta: DeltaTable, table: TableDef, cutoff: date | None, report: TableReport) -> None:
    """What ``optimize.compact()`` would rewrite, planned as delta-rs plans it, without writing: in each
    partition, the files under the target size, largest first, packed into bins of up to that size; a bin
    of one file is left alone. Files in partitions retention is about to drop are left out."""
    target = int(delta.metadata().configuration.get("delta.targetFileSize", _DEFAULT_TARGET_FILE_SIZE))
    files = pa.table(delta.get_add_actions(flatten=True))
    partitions = [f"partition.{c}" for c in delta.metadata().partition_columns]
    expiring = f"partition.{table.date_column}"
    if expiring in partitions and cutoff is not None:
        files = files.filter(pc.greater_equal(files[expiring], pa.scalar(cutoff)))
    small = files.filter(pc.less(files["size_bytes"], target))
    by_partition: dict[tuple[object, ...], list[int]] = {}
    for row in small.select([*partitions, "size_bytes"]).to_pylist():  # one row per file, not per event
        by_partition.setdefault(tuple(row[c] for c in partitions), []).append(row["size_bytes"])
    for sizes in by_partition.values():
        for bin_files in _bins(sorted(sizes, reverse=True), target):
            if bin_files > 1:
                report.files_compacted += bin_files
                report.files_written += 1


def _bins(sizes: list[int], target: int) -> list[int]:
    """How many files each bin holds when ``sizes`` (largest first) are packed into bins of ``target``."""
    counts: list[int] = []
    filled = target + 1  # no open bin yet
    for size in sizes:
        if filled + size > target:
            counts.append(0)
            filled = 0
        counts[-1] += 1
        filled += size
    return counts


def _z_order(delta: DeltaTable, table: TableDef, today: date, report: TableReport) -> None:
    """Gold whole (it is small); silver's last complete day only (each day once, when it is final)."""
    filters: Any = None
    if table is SILVER:
        filters = [("created_date", "=", (today - timedelta(days=1)).isoformat())]
    try:
        metrics = delta.optimize.z_order(
            list(Z_ORDER[table.name]),
            partition_filters=filters,
            writer_properties=delta_writer_properties(table),
        )
    except DeltaError as exc:
        if no_such_partition(exc):  # a day without a partition yet: nothing to order
            return
        raise
    report.files_z_ordered += int(metrics.get("numFilesAdded", 0))


def _vacuum(
    lake: Lake, delta: DeltaTable, table: TableDef, retention: Retention, report: TableReport, dry_run: bool
) -> None:
    # Whole hours, rounded up: never below the floor checked on the exact value.
    hours = math.ceil(retention.vacuum_hours)
    files = delta.vacuum(retention_hours=hours, dry_run=True, enforce_retention_duration=False)
    report.files_vacuumed = len(files)
    if lake.is_local:
        root = Path(lake.table_uri(table))
        report.bytes_vacuumed = sum((root / f).stat().st_size for f in files if (root / f).exists())
    if not dry_run and files:
        delta.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=False)


def _checkpoint(delta: DeltaTable, report: TableReport) -> None:
    delta.create_checkpoint()
    report.checkpoint = True


def _tier(
    lake: Lake, table: TableDef, report: TableReport, tiering: Tiering, today: date, dry_run: bool
) -> None:
    """Move the current files of the table's partitions past a tier's age to that tier. A store error
    stops the table's moves there (those made are reported); the next pass carries on."""
    delta = lake.open(table)
    assert delta is not None
    files = _data_files(delta, table)
    if not any(f.day is not None for f in files):
        return  # not partitioned by a date: stays hot, nothing to list
    root = lake.table_uri(table)
    store = tiering.store
    done = TierPlan()
    try:
        stored = {found.key: found for found in store.list(root)}
        plan = plan_moves(
            files,
            stored,
            tiering.policy.ages(table),
            today=today,
            min_object_bytes=tiering.policy.min_object_bytes,
            max_object_bytes=store.max_object_bytes,
        )
        done.held = plan.held
        for move in plan.moves:
            if not dry_run:
                store.move(root, move.path, move.to_tier)
            done.moves.append(move)
    except LakeError as exc:
        report.skipped.append(f"tiering: {exc}")
    report.files_tiered = len(done.moves)
    report.bytes_tiered = sum(move.size for move in done.moves)
    report.tier_moves = done.by_partition()
    report.tier_held = dict(done.held)


def _data_files(delta: DeltaTable, table: TableDef) -> list[DataFile]:
    """The current version's files, each with its partition folder and the date it is aged by."""
    actions = pa.table(delta.get_add_actions(flatten=True))
    columns = [c for c in actions.column_names if c.startswith("partition.")]
    files = []
    for row in actions.select(["path", *columns]).to_pylist():  # one row per file
        path = unquote(row["path"])
        values = {c.removeprefix("partition."): row[c] for c in columns}
        folder = path.rsplit("/", 1)[0] if "/" in path else ""
        files.append(DataFile(path, folder, partition_date(table, values)))
    return files


def _record_moves(lake: Lake, reports: list[TableReport], tiering: Tiering, today: date) -> None:
    """One ``storage_tier_moves`` row per table, partition and destination tier moved to in this pass."""
    now, run_id = tiering.clock(), str(uuid.uuid4())
    rows = [
        {
            "run_id": run_id,
            "moved_at": now,
            "table_name": report.table,
            "partition_path": move.partition,
            "partition_date": move.day,
            "tier": move.tier,
            "storage_class": tiering.store.storage_class(move.tier),
            "files": move.files,
            "bytes": move.bytes,
            "moved_date": today,
        }
        for report in reports
        for move in report.tier_moves
    ]
    if rows:
        lake.append(STORAGE_TIER_MOVES, pa.Table.from_pylist(rows, schema=STORAGE_TIER_MOVES.schema))

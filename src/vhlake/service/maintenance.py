"""Keeping a streaming lake fast: compact the small files of recent partitions, and drop expired logs.

A micro-batch a second is 86,400 commits and as many small files a day per table. Delta checkpoints
(every 100 commits, deltalake's default) keep opening a table cheap; compaction rewrites the recent
partitions' small files into large ones (a commit that changes no data, so readers and the change
data feed see nothing new); ``cleanup_metadata`` removes log files older than the table's log retention
(one hour for the streamed tables, see ``lake/tables.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from deltalake.exceptions import CommitFailedError, DeltaError

from vhlake.lake.delta import Lake, no_such_partition
from vhlake.lake.encoding import delta_writer_properties
from vhlake.lake.tables import (
    ALERT_EVENTS,
    AUDIT_LOG,
    BRONZE,
    DATA_QUALITY_METRICS,
    JOB_EVENTS,
    PIPELINE_RUNS,
    QUARANTINE,
    SILVER,
    TableDef,
)

# Tables a stream keeps appending to, in partitions by their date column (TableDef.date_column).
# Bronze too: its change data feed (what the pipeline reads) ignores compaction commits (checked).
COMPACTED: tuple[TableDef, ...] = (
    BRONZE,
    SILVER,
    JOB_EVENTS,
    QUARANTINE,
    # the service's own logs get a commit per batch, request second or evaluation too
    PIPELINE_RUNS,
    DATA_QUALITY_METRICS,
    AUDIT_LOG,
    ALERT_EVENTS,
)
# Files at this size are left alone, so each round rewrites at most this much per partition: the write
# amplification stays bounded however long the day (a day at 1,000 events/s is ~10 GB of bronze).
_TARGET_FILE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class MaintenanceReport:
    files_removed: int
    files_added: int
    conflicts: int


def compact_recent(
    lake: Lake, *, today: date, days: int = 2, clean_bronze_log: bool = False
) -> MaintenanceReport:
    """Compact the last ``days`` date partitions of the streaming tables and drop their expired logs; a
    conflict with a concurrent writer skips that table until next time (the rewrite simply did not
    commit). Bronze's log, which the pipeline reads, is cleaned only with ``clean_bronze_log`` (the
    pipeline has processed every bronze commit)."""
    removed = added = conflicts = 0
    recent = [(today - timedelta(days=n)).isoformat() for n in range(days)]
    for table in COMPACTED:
        column = table.date_column
        assert column in table.partition_by, table.name
        delta = lake.open(table)
        if delta is None:
            continue
        try:
            metrics = delta.optimize.compact(
                partition_filters=[(column, "in", recent)],
                target_size=_TARGET_FILE_BYTES,
                writer_properties=delta_writer_properties(table),  # rewritten files follow the policy too
            )
            if table is not BRONZE or clean_bronze_log:
                delta.cleanup_metadata()
        except CommitFailedError:
            conflicts += 1
            continue
        except DeltaError as exc:
            if no_such_partition(exc):  # none of those partitions exists yet
                continue
            raise
        removed += int(metrics.get("numFilesRemoved", 0))
        added += int(metrics.get("numFilesAdded", 0))
    return MaintenanceReport(removed, added, conflicts)

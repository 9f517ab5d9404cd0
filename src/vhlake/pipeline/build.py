"""Building every derived table from all of bronze at once: the first run over a backlog, a full refresh.

Folding bronze range by range re-reads each range's jobs and MERGEs into silver; for a large backlog that is
most of the work. A build instead reads bronze once, spills its typed events to local Parquet split by a hash
of ``job_id`` into buckets of about a million events, folds bucket after bucket (so memory follows the bucket,
not the backlog) and writes each table with one overwrite that records the bronze version it reflects. The
results are the same as the ranges' (the property tests check it); tables already written at that version
by an earlier, interrupted build are skipped.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, GOLD, JOB_EVENTS, QUARANTINE, SILVER
from vhlake.pipeline.expectations import Expectation, count_violations, enforce, kept, reason
from vhlake.pipeline.gold import daily_metrics
from vhlake.pipeline.silver import TYPE_SQL, file_events, fold_jobs
from vhlake.query.lake_relations import table_relation

EVENTS_PER_BUCKET = 500_000
GOLD_INPUTS = [
    "created_date",
    "marketplace",
    "category",
    "status",
    "total_rows",
    "processing_time_ms",
    "user_id",
]


@dataclass(frozen=True)
class Built:
    """What a build read and wrote."""

    events_in: int
    quarantined: int
    jobs: int
    gold_groups: int
    violations: dict[str, int]


def build(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    expectations: Sequence[Expectation],
    *,
    version: int,
    app_id: str,
) -> Built:
    """Rebuild quarantine, silver, gold and job events from bronze at ``version``."""
    table_relation(con, lake, BRONZE, version=version).create_view("bronze_all", replace=True)
    violations = count_violations(con, "bronze_all", expectations)
    enforce(expectations, violations)
    quarantine = _quarantine(con, expectations)
    lake.replace_once(QUARANTINE, quarantine, app_id=app_id, version=version)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="vhlake-build-") as scratch:
        events_in, buckets = _spill(con, expectations, Path(scratch))
        jobs = _Folds(con, buckets, now)
        lake.replace_once(SILVER, jobs.silver(), app_id=app_id, version=version)
        silver = table_relation(con, lake, SILVER).select(*GOLD_INPUTS).to_arrow_table()
        gold = daily_metrics(con, silver, updated_at=now)
        lake.replace_once(GOLD, gold, app_id=app_id, version=version)
        lake.replace_once(JOB_EVENTS, jobs.filed_events(), app_id=app_id, version=version)
    return Built(events_in, quarantine.num_rows, silver.num_rows, gold.num_rows, violations)


def _quarantine(con: duckdb.DuckDBPyConnection, expectations: Sequence[Expectation]) -> pa.Table:
    why, params = reason(expectations)
    query = f"""SELECT * FROM (
        SELECT *, {why} AS reason, CAST(ingestion_time AS DATE) AS ingestion_date FROM bronze_all
    ) WHERE reason IS NOT NULL"""  # noqa: S608
    return con.sql(query, params=params).to_arrow_table()


def _spill(
    con: duckdb.DuckDBPyConnection, expectations: Sequence[Expectation], scratch: Path
) -> tuple[int, list[list[str]]]:
    """Type the events that pass into Parquet under ``scratch``, one folder per job bucket.

    Returns how many events passed and each bucket's files.
    """
    con.sql(f"SELECT * FROM bronze_all WHERE {kept(expectations)}").create_view("events", replace=True)  # noqa: S608
    (passed,) = con.sql("SELECT count(*) FROM events").fetchall()[0]
    count = max(1, math.ceil(passed / EVENTS_PER_BUCKET))
    typed = con.sql(f"SELECT *, hash(job_id) % {count} AS bucket FROM ({TYPE_SQL})")  # noqa: S608
    typed.write_parquet(str(scratch), partition_by=["bucket"], compression="lz4")
    buckets = [sorted(str(p) for p in (scratch / f"bucket={b}").glob("*.parquet")) for b in range(count)]
    return int(passed), buckets


class _Folds:
    """Folds the spilled buckets one at a time, remembering where each bucket's jobs are filed."""

    def __init__(self, con: duckdb.DuckDBPyConnection, buckets: list[list[str]], now: datetime) -> None:
        self._con, self._buckets, self._now = con, [b for b in buckets if b], now
        self._places: dict[int, pa.Table] = {}

    def silver(self) -> pa.RecordBatchReader:
        batches = (batch for b in range(len(self._buckets)) for batch in self._fold(b).to_batches())
        return pa.RecordBatchReader.from_batches(SILVER.schema, batches)

    def filed_events(self) -> pa.RecordBatchReader:
        """The typed events of every bucket with their job's ``job_date``."""
        batches = (
            batch
            for b, files in enumerate(self._buckets)
            for batch in file_events(self._con, self._events(files), self._where(b)).to_batches()
        )
        return pa.RecordBatchReader.from_batches(JOB_EVENTS.schema, batches)

    def _fold(self, bucket: int) -> pa.Table:
        folded = fold_jobs(self._con, self._events(self._buckets[bucket]), updated_at=self._now)
        self._places[bucket] = folded.select(["job_id", "created_date"]).rename_columns(
            ["job_id", "job_date"]
        )
        return folded

    def _where(self, bucket: int) -> pa.Table:
        if bucket not in self._places:  # silver was written by an interrupted build: fold again
            self._fold(bucket)
        return self._places.pop(bucket)

    def _events(self, files: list[str]) -> pa.Table:
        return self._con.read_parquet(files).to_arrow_table()

"""``vhlake reconcile``: measure the chain of counts (reconciliation/links.py), record it, verify it later.

A reconciliation lists the derived tables' files while holding their write lock (lake/writer_lock.py), so
the pipeline is between two ranges and every derived table stands at the same bronze version; bronze is
read at that version for the events link, and as it is now for the sources (the ledger is written after
the rows it counts, so rows past it are simply not asked about). The counting itself runs after the lock
is released, over the files listed.

Each run is a row of ``reconciliation``: its counts in a canonical JSON form (keys sorted, no spaces,
ASCII) and the sha256 of that text, which anyone can recompute from the stored counts and compare.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from vhlake.duck.lake_relations import table_relation
from vhlake.errors import LakeError
from vhlake.lake.delta import Lake
from vhlake.lake.tables import (
    BRONZE,
    GOLD,
    INGEST_LEDGER,
    JOB_EVENTS,
    QUARANTINE,
    RECONCILIATION,
    REJECTED,
    SILVER,
)
from vhlake.lake.writer_lock import derived_tables_writer
from vhlake.pipeline.ranges import DERIVED, processed
from vhlake.pipeline.runner import PipelineResources
from vhlake.reconciliation.links import Link, events_link, gold_links, source_links

# The columns each link reads (on an object store the tables are read into memory: only these).
_BRONZE_COLUMNS = ("source", "source_offset", "event_id", "source_system", "event_date")
_COUNTED = (
    (REJECTED, ("source", "source_offset")),
    (QUARANTINE, ("source", "source_offset", "event_date")),
    (JOB_EVENTS, ("event_id", "timestamp")),
    (SILVER, ("created_date", "marketplace", "category", "job_id", "status")),
    (
        GOLD,
        (
            "date",
            "marketplace",
            "category",
            "total_validations",
            "successful_validations",
            "failed_validations",
        ),
    ),
)


@dataclass(frozen=True)
class Reconciliation:
    """One reconciliation: when, over what, and its links in the order data flows."""

    run_id: str
    reconciled_at: datetime
    since: date | None
    bronze_version: int
    links: list[Link]

    @property
    def imbalances(self) -> list[Link]:
        return [link for link in self.links if not link.balanced]

    @property
    def balanced(self) -> bool:
        return not self.imbalances

    @property
    def first_imbalance(self) -> Link | None:
        return next(iter(self.imbalances), None)

    def counts(self) -> str:
        """The canonical text of what was covered and counted (what :attr:`sha256` is taken of)."""
        return canonical_json(
            {
                "since": None if self.since is None else self.since.isoformat(),
                "bronze_version": self.bronze_version,
                "links": [link.canonical() for link in self.links],
            }
        )

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.counts().encode("ascii")).hexdigest()

    def row(self) -> pa.Table:
        first = self.first_imbalance
        return pa.Table.from_pylist(
            [
                {
                    "run_id": self.run_id,
                    "reconciled_at": self.reconciled_at,
                    "since": self.since,
                    "bronze_version": self.bronze_version,
                    "links": len(self.links),
                    "imbalances": len(self.imbalances),
                    "balanced": self.balanced,
                    "first_imbalance": None if first is None else first.describe(),
                    "counts": self.counts(),
                    "sha256": self.sha256,
                    "reconciled_date": self.reconciled_at.date(),
                }
            ],
            schema=RECONCILIATION.schema,
        )


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def reconcile(
    lake: Lake,
    *,
    since: date | None,
    now: datetime,
    resources: PipelineResources | None = None,
    wait_s: float | None = None,
) -> Reconciliation:
    """Measure every link from the sources to gold for data dated ``since`` or later (all: None).

    Waits for a pipeline run in progress (at most ``wait_s`` seconds when given); raises
    :class:`LakeError` when the derived tables stand at different bronze versions (a run was
    interrupted: the next run repairs it).
    """
    with _connection(resources or PipelineResources()) as con:
        # The lock only while the tables' files are listed: the views read those files, which no writer
        # deletes (vacuum keeps a week), so the pipeline goes on while the counts are taken.
        with derived_tables_writer(lake, wait_s=wait_s):
            version = _derived_version(lake)
            _views(con, lake, version)
        links = [
            *source_links(con, since),
            events_link(con, since, version),
            *gold_links(con, since),
        ]
    return Reconciliation(str(uuid.uuid4()), now, since, version, links)


def record(lake: Lake, reconciliation: Reconciliation) -> None:
    """Append the run to ``reconciliation``."""
    lake.append(RECONCILIATION, reconciliation.row())


@dataclass(frozen=True)
class Verified:
    """A stored run's hash, and the hash of its stored counts computed again."""

    run_id: str
    balanced: bool
    stored_sha256: str
    recomputed_sha256: str

    @property
    def matches(self) -> bool:
        return self.stored_sha256 == self.recomputed_sha256


def verify(lake: Lake, run_id: str) -> Verified:
    """Recompute the sha256 of run ``run_id``'s stored counts; :class:`LakeError` when there is no such run."""
    if lake.open(RECONCILIATION) is None:
        raise LakeError("no reconciliation has been recorded yet: run vhlake reconcile first")
    rows = lake.dataset(RECONCILIATION).to_table(
        columns=["run_id", "balanced", "counts", "sha256"],
        filter=ds.field("run_id") == run_id,
    )
    if rows.num_rows == 0:
        raise LakeError(f"no reconciliation run {run_id!r} in the reconciliation table")
    row = rows.slice(0, 1).to_pylist()[0]
    recomputed = hashlib.sha256(str(row["counts"]).encode("ascii")).hexdigest()
    return Verified(run_id, bool(row["balanced"]), str(row["sha256"]), recomputed)


def _derived_version(lake: Lake) -> int:
    versions = {table.name: processed(lake, table) for table in DERIVED}
    if len(set(versions.values())) > 1:
        where = ", ".join(f"{name} at {version}" for name, version in versions.items())
        raise LakeError(
            f"the derived tables stand at different bronze versions ({where}): a pipeline run was "
            "interrupted; run `vhlake pipeline run` (it repairs this), then reconcile"
        )
    return versions[SILVER.name]


def _views(con: duckdb.DuckDBPyConnection, lake: Lake, version: int) -> None:
    """The tables as DuckDB views named as in the lake; bronze twice, as it is now (``bronze_now``) and at
    the version the derived tables stand at (``bronze_done``).

    The ledger is listed first: ingestion commits a span's bronze rows and rejects before its ledger row,
    so the bronze and rejects listed after it hold every row the ledger counts (and maybe later ones,
    which no link asks about); the other way round, a span committed in between would look short.
    """
    table_relation(con, lake, INGEST_LEDGER).create_view(INGEST_LEDGER.name, replace=True)
    bronze = lake.open(BRONZE)
    current = None if bronze is None else bronze.version()
    table_relation(con, lake, BRONZE, columns=_BRONZE_COLUMNS).create_view("bronze_now", replace=True)
    if version >= 0:
        at = None if version == current else version
        done = table_relation(con, lake, BRONZE, version=at, columns=_BRONZE_COLUMNS)
    else:
        done = con.from_arrow(BRONZE.schema.empty_table().select(list(_BRONZE_COLUMNS)))
    done.create_view("bronze_done", replace=True)
    for table, columns in _COUNTED:
        table_relation(con, lake, table, columns=columns).create_view(table.name, replace=True)


@contextmanager
def _connection(resources: PipelineResources) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection within the pipeline's resources (memory, threads, where it spills)."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET memory_limit = ?", [resources.memory_limit])
        con.execute("SET threads = ?", [resources.threads])
        spill = resources.spill_dir or tempfile.gettempdir()
        con.execute("SET temp_directory = ?", [spill + "/vhlake-duckdb"])
        yield con
    finally:
        con.close()

"""Where the Spark jobs read and write the lake's tables: Delta either way.

Both adapters give the jobs the same operations, each safe to repeat when a micro-batch runs again after a
failure:

- ``append(table, rows, app_id, version)`` writes once per ``(app_id, version)``, recorded in the table's
  Delta log as an application transaction (``txnAppId``/``txnVersion``), and says whether it wrote.
- ``replace(table, rows, keys, touched)`` makes the rows whose ``keys`` are in ``touched`` equal ``rows``:
  updated, inserted, or deleted when ``rows`` has none for a touched key; one MERGE.
- ``read`` a table, or only some of its partitions (``read_partitions``): a micro-batch reads what it
  touches, not the table's history.

``DeltaTables`` is Delta on Databricks (Unity Catalog tables, Delta's Spark data source). ``LocalDeltaTables``
is Delta on a local disk without Delta's Spark jars (they cannot be downloaded here): Spark reads the files
the Delta log lists, executors write Parquet files into the table's directory, and the driver commits them
through delta-rs (``vhlake.lake.delta``), the same log and application transactions the embedded engine
writes, so either engine can continue the other's lake.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

import pyarrow as pa

from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, JOB_EVENTS, TableDef
from vhlake.spark.jobs import schema_ddl

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class SparkTables(Protocol):
    def read(self, table: TableDef) -> DataFrame: ...

    def is_empty(self, table: TableDef) -> bool:
        """Whether ``table`` holds no row (cheap: from the table's metadata where it can)."""
        ...

    def partitions_holding(self, keys: DataFrame) -> list[object]:
        """The job events' ``job_date`` partitions holding a row with one of ``keys``' ``job_key`` or
        ``event_key`` values (a scan of those two integer columns only)."""
        ...

    def read_partitions(self, table: TableDef, column: str, values: Sequence[object]) -> DataFrame:
        """The rows of ``table`` in the partitions where ``column`` (a partition column) is in ``values``."""
        ...

    def append(self, table: TableDef, rows: DataFrame, *, app_id: str, version: int) -> bool:
        """Append ``rows`` unless ``(app_id, version)`` or a later version was appended; whether it did."""
        ...

    def replace(
        self,
        table: TableDef,
        rows: DataFrame,
        *,
        keys: list[str],
        touched: DataFrame,
        app_id: str,
        version: int,
    ) -> None:
        """``touched`` holds ``keys`` and may hold partition columns (which narrow the MERGE)."""
        ...


# ---- Databricks ------------------------------------------------------------------------------------


class DeltaTables:
    """Unity Catalog tables ``<catalog>.<schema>.<name>``, created by ``vhlake databricks render``'s DDL.

    ``delta_table`` stands in for ``delta.tables.DeltaTable`` and ``writer`` for ``DataFrame.write``
    (tests record the calls made on them: Delta's Spark jars cannot run here)."""

    def __init__(
        self,
        spark: SparkSession,
        *,
        catalog: str = "validahub",
        schema: str = "analytics",
        delta_table: Any = None,
        writer: Callable[[DataFrame], Any] | None = None,
    ) -> None:
        self._spark = spark
        self._prefix = f"{catalog}.{schema}"
        self._delta_table = delta_table
        self._writer = writer or (lambda rows: rows.write)

    def name(self, table: TableDef) -> str:
        return f"{self._prefix}.{table.name}"

    def read(self, table: TableDef) -> DataFrame:
        return self._spark.read.table(self.name(table))

    def is_empty(self, table: TableDef) -> bool:
        return bool(self.read(table).isEmpty())

    def partitions_holding(self, keys: DataFrame) -> list[object]:
        from pyspark.sql.functions import broadcast

        # Two columns of the job events, skipped by file where they are clustered (Z-order/liquid on job_key).
        index = self.read(JOB_EVENTS).select("job_key", "event_key", "job_date")
        by_job = index.join(broadcast(keys.select("job_key").distinct()), "job_key", "left_semi")
        by_event = index.join(broadcast(keys.select("event_key").distinct()), "event_key", "left_semi")
        dates = by_job.select("job_date").union(by_event.select("job_date")).distinct().collect()
        return sorted(row[0] for row in dates)

    def read_partitions(self, table: TableDef, column: str, values: Sequence[object]) -> DataFrame:
        from pyspark.sql.functions import col

        # A filter on a partition column: Delta reads only those partitions' files.
        return self.read(table).where(col(column).isin(list(values)))

    def stream(self, table: TableDef, *, max_files_per_trigger: int | None = None) -> DataFrame:
        # Retention and erasure rewrite bronze files; those commits hold no new events.
        reader = self._spark.readStream.format("delta").option("skipChangeCommits", "true")
        if max_files_per_trigger:
            reader = reader.option("maxFilesPerTrigger", max_files_per_trigger)
        return reader.table(self.name(table))

    def changes(self, table: TableDef) -> DataFrame:
        """The table's change data feed as a stream (rows with ``_change_type``)."""
        return self._spark.readStream.format("delta").option("readChangeFeed", "true").table(self.name(table))

    def append(self, table: TableDef, rows: DataFrame, *, app_id: str, version: int) -> bool:
        # Delta skips the write when the table's log already holds this app_id at this version or later,
        # without saying so: a skipped write leaves the table's version where it was.
        before = self._version(table)
        (
            self._writer(rows.select(*table.schema.names))
            .format("delta")
            .mode("append")
            .option("txnAppId", app_id)
            .option("txnVersion", version)
            .saveAsTable(self.name(table))
        )
        return self._version(table) != before

    def _version(self, table: TableDef) -> int:
        history = self._forName(table).history(1).select("version").collect()
        return int(history[0][0]) if history else -1

    def _forName(self, table: TableDef) -> Any:
        if self._delta_table is not None:
            return self._delta_table.forName(self._spark, self.name(table))
        from delta.tables import DeltaTable

        return DeltaTable.forName(self._spark, self.name(table))

    def replace(
        self,
        table: TableDef,
        rows: DataFrame,
        *,
        keys: list[str],
        touched: DataFrame,
        app_id: str,
        version: int,
    ) -> None:
        from pyspark.sql.functions import lit

        # Every new row, and every touched key left without one (_present NULL), which deletes it. The
        # partition columns ``touched`` carries join the condition: the MERGE reads those partitions only.
        match = keys + [c for c in table.partition_by if c in touched.columns and c not in keys]
        present = rows.select(*table.schema.names).withColumn("_present", lit(True))
        gone = touched.select(*match).distinct().join(present.select(*keys), keys, "left_anti")
        source = present.unionByName(gone, allowMissingColumns=True)
        columns = table.schema.names
        on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in match)
        conf = self._spark.conf
        # MERGE takes its idempotency from the session (Delta's DML transaction options).
        conf.set("spark.databricks.delta.write.txnAppId", app_id)
        conf.set("spark.databricks.delta.write.txnVersion", str(version))
        try:
            (
                self._forName(table)
                .alias("t")
                .merge(source.alias("s"), on)
                .whenMatchedDelete(condition="s._present IS NULL")
                .whenMatchedUpdate(set={c: f"s.`{c}`" for c in columns})
                .whenNotMatchedInsert(condition="s._present", values={c: f"s.`{c}`" for c in columns})
                .execute()
            )
        finally:
            conf.unset("spark.databricks.delta.write.txnAppId")
            conf.unset("spark.databricks.delta.write.txnVersion")


# ---- a local lake ----------------------------------------------------------------------------------

# What an executor reports of a file it wrote (a Delta add action), and for which part of the work.
ADDS = pa.schema(
    [
        ("table", pa.string()),
        ("part", pa.int64()),
        ("path", pa.string()),
        ("size", pa.int64()),
        ("partition_values", pa.string()),
        ("modification_time", pa.int64()),
        ("stats", pa.string()),
    ]
)


def add_rows(table: TableDef, part: int, actions: Sequence[Any]) -> pa.RecordBatch:
    """``actions`` (delta-rs add actions) as rows of ADDS."""
    return pa.RecordBatch.from_pylist(
        [
            {
                "table": table.name,
                "part": part,
                "path": a.path,
                "size": a.size,
                "partition_values": json.dumps(dict(a.partition_values)),
                "modification_time": a.modification_time,
                "stats": a.stats,
            }
            for a in actions
        ],
        schema=ADDS,
    )


def add_actions(rows: Sequence[Any]) -> list[Any]:
    """Rows of ADDS (collected from Spark) as delta-rs add actions."""
    from deltalake.transaction import AddAction

    return [
        AddAction(
            r["path"], r["size"], json.loads(r["partition_values"]), r["modification_time"], True, r["stats"]
        )
        for r in rows
    ]


def write_task(root: str, table: TableDef) -> Any:
    """A ``mapInArrow`` function writing its task's rows as ``table``'s files under ``root``; yields ADDS."""

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from vhlake.lake.partition_files import write_files

        received = list(batches)
        if received:
            rows = pa.Table.from_batches(received)
            yield add_rows(table, 0, write_files(Path(root), table, conformed(rows, table)))

    return write


def conformed(rows: pa.Table, table: TableDef) -> pa.Table:
    """Spark's Arrow columns as the contract's types (Spark may send large strings, nullable fields)."""
    return pa.Table.from_arrays(
        [rows[f.name].cast(f.type) for f in table.schema], schema=table.schema.remove_metadata()
    ).cast(table.schema)


@dataclass(frozen=True)
class BronzeRange:
    """Bronze commits ``(start, end]``: the files they appended and how many rows."""

    start: int
    end: int
    files: list[str]
    rows: int


class LocalDeltaTables:
    """The lake's Delta tables on a local disk (``lake``), read and written from Spark without Delta's jars."""

    def __init__(self, spark: SparkSession, lake: Lake) -> None:
        if not lake.is_local:
            raise ValueError("LocalDeltaTables needs a local lake; on Databricks use DeltaTables")
        self._spark = spark
        self.lake = lake

    def read(self, table: TableDef) -> DataFrame:
        return self._files(table, self.lake.local_files(table) or [])

    def is_empty(self, table: TableDef) -> bool:
        return not self.lake.local_files(table)

    def partitions_holding(self, keys: DataFrame) -> list[object]:
        # The keys (a batch's worth of integers) to the driver, and DuckDB over the two columns of the
        # local files, as the embedded pipeline looks them up (4M events: well under a second, where two
        # Spark semi-joins took 7-15 s on this machine).
        import duckdb

        from vhlake.duck.arrow import registered
        from vhlake.duck.lake_relations import table_relation

        con = duckdb.connect()
        with registered(con, wanted=keys.toArrow()):
            table_relation(con, self.lake, JOB_EVENTS).create_view("job_events")
            found = con.sql(
                """SELECT DISTINCT job_date FROM job_events
                WHERE job_key IN (SELECT job_key FROM wanted) OR event_key IN (SELECT event_key FROM wanted)"""
            ).to_arrow_table()
        return sorted(found["job_date"].to_pylist())

    def read_partitions(self, table: TableDef, column: str, values: Sequence[object]) -> DataFrame:
        return self._files(table, self.lake.local_files(table, where=(column, list(values))) or [])

    def read_files(self, table: TableDef, files: Sequence[str]) -> DataFrame:
        return self._files(table, files)

    def _files(self, table: TableDef, files: Sequence[str]) -> DataFrame:
        if not files:
            return self._spark.createDataFrame([], schema_ddl(table.schema))
        reader = self._spark.read.schema(schema_ddl(table.schema))
        return reader.option("basePath", self.lake.table_uri(table)).parquet(*files)

    def append(self, table: TableDef, rows: DataFrame, *, app_id: str, version: int) -> bool:
        done = self.lake.txn_version(table, app_id)
        if done is not None and done >= version:
            return False
        # Each table partition's rows in one task: a file per partition, not one per task and partition.
        parts = rows.select(*table.schema.names)
        if table.partition_by:
            parts = parts.repartition(*table.partition_by)
        written = parts.mapInArrow(write_task(self.lake.table_uri(table), table), schema_ddl(ADDS)).collect()
        return self.lake.add_files_once(table, add_actions(written), app_id=app_id, version=version)

    def replace(
        self,
        table: TableDef,
        rows: DataFrame,
        *,
        keys: list[str],
        touched: DataFrame,
        app_id: str,
        version: int,
    ) -> None:
        done = self.lake.txn_version(table, app_id)
        if done is not None and done >= version:
            return
        new = conformed(rows.select(*table.schema.names).toArrow(), table)
        if not self.lake.local_files(table):  # nothing stored to match: the rows are all new
            self.lake.append_once(table, new, app_id=app_id, version=version)
            return
        old = touched.distinct().toArrow()
        gone = old.join(new.select(keys), keys=keys, join_type="left anti")
        self.lake.upsert_once(
            table, merge_source(table, new, gone), keys=tuple(keys), app_id=app_id, version=version,
            delete_flag="_deleted",
        )  # fmt: skip

    def overwrite(self, table: TableDef, rows: DataFrame, *, app_id: str, version: int) -> None:
        """Replace the whole of ``table`` with ``rows`` (a small table: through the driver) and record
        ``(app_id, version)``, as the embedded pipeline rebuilds a table behind silver."""
        self.lake.replace_once(
            table,
            conformed(rows.select(*table.schema.names).toArrow(), table),
            app_id=app_id,
            version=version,
        )

    def bronze_ranges(
        self, tables: Sequence[TableDef], app_id: str, *, rows_per_batch: int
    ) -> list[BronzeRange]:
        """The bronze commits ``tables`` have not all processed (by ``app_id``'s version), in ranges of
        about ``rows_per_batch`` rows cut at each table's position, as the embedded pipeline cuts them
        (a range is then either wholly in a table or not at all)."""
        bronze = self.lake.open(BRONZE)
        if bronze is None:
            return []
        done = {t.name: _or_minus_one(self.lake.txn_version(t, app_id)) for t in tables}
        start, target = min(done.values()), bronze.version()
        commits = _appended(Path(self.lake.table_uri(BRONZE)), start + 1, target)
        ranges, position = [], start
        for boundary in sorted({v for v in done.values() if v > position} | {target}):
            while position < boundary:
                end, files, count = position + 1, list(commits[position + 1][0]), commits[position + 1][1]
                while end < boundary and count + commits[end + 1][1] <= rows_per_batch:
                    end += 1
                    files += commits[end][0]
                    count += commits[end][1]
                ranges.append(
                    BronzeRange(
                        position, end, [str(Path(self.lake.table_uri(BRONZE)) / f) for f in files], count
                    )
                )
                position = end
        return ranges


def _or_minus_one(version: int | None) -> int:
    return -1 if version is None else version


# Commits that append events; others (an erasure's MERGE, retention's DELETE, OPTIMIZE) bring none.
_APPENDS = frozenset({"WRITE", "STREAMING UPDATE", "CREATE TABLE"})


def _appended(root: Path, first: int, last: int) -> dict[int, tuple[list[str], int]]:
    """For each commit ``first .. last`` of the Delta table at ``root``: the files it appended (relative
    paths) and their rows, from the commit's JSON (a local table keeps them: bronze never cleans its log
    on its own)."""
    commits = {}
    for version in range(first, last + 1):
        files, rows, operation, mode = [], 0, None, "Append"
        with (root / "_delta_log" / f"{version:020d}.json").open("rb") as log:
            for line in log:
                action = json.loads(line)
                if "add" in action:
                    files.append(unquote(action["add"]["path"]))
                    rows += int(json.loads(action["add"].get("stats") or "{}").get("numRecords", 0))
                elif "commitInfo" in action:
                    operation = action["commitInfo"].get("operation")
                    mode = (action["commitInfo"].get("operationParameters") or {}).get("mode", "Append")
        appends = operation in _APPENDS and mode in ("Append", "Ignore", "ErrorIfExists")
        commits[version] = (files, rows) if appends else ([], 0)
    return commits


def merge_source(table: TableDef, rows: pa.Table, gone: pa.Table) -> pa.Table:
    """A MERGE source: ``rows`` and a ``_deleted`` marker for each row of ``gone`` (keys, partitions)."""
    schema = pa.schema([f.with_nullable(True) for f in table.schema] + [pa.field("_deleted", pa.bool_())])
    markers = pa.table(
        {
            f.name: gone[f.name] if f.name in gone.column_names else pa.nulls(gone.num_rows, f.type)
            for f in table.schema
        }
        | {"_deleted": pa.repeat(pa.scalar(True), gone.num_rows)}
    )
    upserts = rows.append_column("_deleted", pa.repeat(pa.scalar(False), rows.num_rows))
    return pa.concat_tables([upserts.cast(schema), markers.cast(schema)])


def local_path(uri: str) -> Path:
    """The path of a ``file:`` URI as Spark writes them (``file:/a%20b``, ``file:///a``)."""
    return Path(unquote(urlparse(uri).path))


def count_rows(lake: Lake, table: TableDef) -> int:
    """The table's rows now (0 when it was never written)."""
    return int(lake.dataset(table).count_rows()) if lake.open(table) is not None else 0

"""Where the Spark jobs read and write the lake's tables: Delta on Databricks, Parquet to try them locally.

Both adapters give the jobs the same four operations, each safe to repeat when Structured Streaming runs a
micro-batch again after a failure:

- ``append(table, rows, app_id, version)`` writes once per ``(app_id, version)``. Delta records it in the
  table's log (``txnAppId``/``txnVersion``); the Parquet adapter in a marker of its own.
- ``replace(table, rows, keys, touched)`` makes the rows whose ``keys`` are in ``touched`` equal ``rows``:
  updated, inserted, or deleted when ``rows`` has none for a touched key. Delta does it as one MERGE; the
  Parquet adapter rewrites the partitions those rows live in.
- ``read`` and ``stream`` a table (and Delta's change data feed of silver, which Parquet does not have).

Parquet has no transaction log, so the Parquet adapter keeps a small one (``ParquetTables._commit``): a
batch killed at any point and run again leaves every row exactly once (tests/test_spark_streaming.py kills
``vhlake spark run-all`` mid-batch). What it cannot give is isolation: a reader in the middle of a commit
may see a partition's new files beside the ones they replace. It is the format for trying the jobs here
(Delta's Spark jars cannot be downloaded on these machines); on Databricks the jobs use Delta.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlparse

from vhlake.lake.tables import TableDef
from vhlake.spark.jobs import schema_ddl

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class SparkTables(Protocol):
    def read(self, table: TableDef) -> DataFrame: ...

    def stream(self, table: TableDef, *, max_files_per_trigger: int | None = None) -> DataFrame: ...

    def append(self, table: TableDef, rows: DataFrame, *, app_id: str, version: int) -> bool:
        """Append ``rows`` unless ``(app_id, version)`` or a later version was appended; False when it is
        known to have been (Delta decides inside the commit and does not say: always True there)."""
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
    ) -> None: ...


class DeltaTables:
    """Unity Catalog tables ``<catalog>.<schema>.<name>``, created by ``vhlake databricks render``'s DDL."""

    def __init__(self, spark: SparkSession, *, catalog: str = "validahub", schema: str = "analytics") -> None:
        self._spark = spark
        self._prefix = f"{catalog}.{schema}"

    def name(self, table: TableDef) -> str:
        return f"{self._prefix}.{table.name}"

    def read(self, table: TableDef) -> DataFrame:
        return self._spark.read.table(self.name(table))

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
        # Delta skips the write when the table's log already holds this app_id at this version or later.
        (
            rows.select(*table.schema.names)
            .write.format("delta")
            .mode("append")
            .option("txnAppId", app_id)
            .option("txnVersion", version)
            .saveAsTable(self.name(table))
        )
        return True

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
        from delta.tables import DeltaTable
        from pyspark.sql.functions import lit

        # Every touched key once: with its new row, or with none (_present NULL), which deletes it.
        present = rows.select(*table.schema.names).withColumn("_present", lit(True))
        source = touched.select(*keys).distinct().join(present, keys, "left")
        columns = table.schema.names
        on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
        conf = self._spark.conf
        # MERGE takes its idempotency from the session (Delta's DML transaction options).
        conf.set("spark.databricks.delta.write.txnAppId", app_id)
        conf.set("spark.databricks.delta.write.txnVersion", str(version))
        try:
            (
                DeltaTable.forName(self._spark, self.name(table))
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


class ParquetTables:
    """Tables as Parquet directories ``<root>/<layer>/<name>`` on a local file system."""

    def __init__(self, spark: SparkSession, root: Path) -> None:
        self._spark = spark
        self.root = root

    def path(self, table: TableDef) -> Path:
        return self.root / table.relative_path

    def read(self, table: TableDef) -> DataFrame:
        path = self.path(table)
        if not any(path.rglob("*.parquet")):
            return self._spark.createDataFrame([], schema_ddl(table.schema))
        return (
            self._spark.read.schema(schema_ddl(table.schema)).option("basePath", str(path)).parquet(str(path))
        )

    def stream(self, table: TableDef, *, max_files_per_trigger: int | None = None) -> DataFrame:
        path = self.path(table)
        path.mkdir(parents=True, exist_ok=True)
        reader = self._spark.readStream.schema(schema_ddl(table.schema))
        if max_files_per_trigger:
            reader = reader.option("maxFilesPerTrigger", max_files_per_trigger)
        return reader.parquet(str(path))

    def version(self, table: TableDef, app_id: str) -> int | None:
        """The last version of ``app_id`` committed to ``table``, as Delta's ``transaction_version``."""
        marker = self._marker(table, app_id)
        return int(marker.read_text()) if marker.exists() else None

    def append(self, table: TableDef, rows: DataFrame, *, app_id: str, version: int) -> bool:
        if not self._begin(table, app_id, version):
            return False
        self._commit(table, app_id, version, rows.select(*table.schema.names), replaced=[])
        return True

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
        from pyspark.sql.functions import col

        if not self._begin(table, app_id, version):
            return
        if not any(self.path(table).rglob("*.parquet")):  # nothing to replace yet
            self._commit(table, app_id, version, rows.select(*table.schema.names), replaced=[])
            return
        parts = list(table.partition_by)
        current = self.read(table).withColumn("_file", col("_metadata.file_path"))
        touched = touched.select(*keys).distinct()
        stale = current.join(touched, keys, "left_semi")
        affected = stale.select(*parts).unionByName(rows.select(*parts)).distinct()
        rewritten = current.join(affected, parts, "left_semi")
        kept = rewritten.join(touched, keys, "left_anti").drop("_file")
        # Materialised: the commit deletes the files these rows were read from.
        result = kept.unionByName(rows.select(*table.schema.names)).localCheckpoint(eager=True)
        files = [local_path(row[0]) for row in rewritten.select("_file").distinct().collect()]
        self._commit(table, app_id, version, result, replaced=files)

    # A commit, so that a batch killed at any point and run again leaves each row exactly once:
    #   1. the new files are written to a staging directory, then moved into the table under names that
    #      carry (app_id, version), one rename each (a reader never sees half a file);
    #   2. a pending record lists the files they replace;
    #   3. those files are deleted, then the version marker is written and the record removed.
    # A run that finds a pending record finishes steps 3; one that finds none deletes the files an
    # interrupted attempt had moved in (step 1 is redone from scratch).

    def _begin(self, table: TableDef, app_id: str, version: int) -> bool:
        """Whether (app_id, version) still has to be written; finishes or undoes an interrupted attempt."""
        done = self.version(table, app_id)
        if done is not None and done >= version:
            return False
        pending = self._marker(table, app_id).with_suffix(".pending")
        if pending.exists():
            record = json.loads(pending.read_text())
            self._finish(table, app_id, record["version"], [Path(f) for f in record["replaced"]])
            if record["version"] >= version:
                return False
        for leftover in self.path(table).rglob(f"part-{_tag(app_id, version)}-*.parquet"):
            leftover.unlink()
        return True

    def _commit(
        self, table: TableDef, app_id: str, version: int, rows: DataFrame, *, replaced: list[Path]
    ) -> None:
        tag = _tag(app_id, version)
        path = self.path(table)
        staging = self.root / "_staging" / table.name / tag
        shutil.rmtree(staging, ignore_errors=True)
        _by_partition(rows, table).write.mode("overwrite").partitionBy(*table.partition_by).parquet(
            str(staging)
        )
        for number, written in enumerate(sorted(staging.rglob("*.parquet"))):
            target = path / written.parent.relative_to(staging) / f"part-{tag}-{number:05d}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            written.replace(target)
        shutil.rmtree(staging)
        for emptied in (staging.parent, staging.parent.parent):  # left only while another batch stages
            with contextlib.suppress(OSError):
                emptied.rmdir()
        if replaced:
            record = {"version": version, "replaced": [str(f) for f in replaced]}
            _write_atomically(self._marker(table, app_id).with_suffix(".pending"), json.dumps(record))
        self._finish(table, app_id, version, replaced)

    def _finish(self, table: TableDef, app_id: str, version: int, replaced: list[Path]) -> None:
        for file in replaced:
            file.unlink(missing_ok=True)
        marker = self._marker(table, app_id)
        _write_atomically(marker, str(version))
        marker.with_suffix(".pending").unlink(missing_ok=True)

    def _marker(self, table: TableDef, app_id: str) -> Path:
        return self.root / "_txn" / table.name / _safe(app_id)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _tag(app_id: str, version: int) -> str:
    return f"{_safe(app_id)}-{version}"


def _safe(app_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", app_id)  # no dots: the markers' suffixes are theirs


def local_path(uri: str) -> Path:
    """The path of a ``file:`` URI as Spark writes them (``file:/a%20b``, ``file:///a``)."""
    return Path(unquote(urlparse(uri).path))


def _by_partition(rows: DataFrame, table: TableDef) -> DataFrame:
    """``rows`` with each table partition's rows in one task: a file per partition, not one per task and
    partition (measured: many small files made the first silver write of ~400k jobs take 14 s)."""
    return rows.repartition(*table.partition_by) if table.partition_by else rows

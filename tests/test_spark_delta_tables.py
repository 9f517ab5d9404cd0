"""``DeltaTables``, the adapter the jobs use on Databricks, sends exactly the calls and options recorded in
tests/recorded_delta_tables.json: the Delta sink's ``txnAppId``/``txnVersion``, the MERGE's conditions and
the session's DML transaction options while it runs, partition filters, the change data feed reads. Delta's
Spark jars cannot run here, so ``delta.tables.DeltaTable`` and the DataFrame's Delta writer are stand-ins
that record what they are sent (as tests/fake_warehouse.py does for Databricks SQL); the DataFrames are
real Spark ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from test_spark_streaming import gold_row
from vhlake.lake.tables import BRONZE, GOLD, QUARANTINE, SILVER

pyspark = pytest.importorskip("pyspark", reason="the spark extra is installed by make and CI")
RECORDED = json.loads((Path(__file__).parent / "recorded_delta_tables.json").read_text())


class FakeDelta:
    """Stands in for ``delta.tables.DeltaTable`` and the Delta sink of ``DataFrame.write``: records what is
    sent, and keeps each table's version and application transactions as Delta documents them (a write
    whose ``txnVersion`` is not above the one stored for its ``txnAppId`` is skipped, no new version)."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.sent: list[dict[str, Any]] = []
        self.versions: dict[str, int] = {}
        self.txns: dict[tuple[str, str], int] = {}

    def commit(self, table: str, app_id: str | None, version: str | None) -> None:
        if app_id is not None and version is not None:
            if self.txns.get((table, app_id), -1) >= int(version):
                return
            self.txns[(table, app_id)] = int(version)
        self.versions[table] = self.versions.get(table, 0) + 1

    def writer(self, rows: Any) -> Any:
        fake, call = self, {"call": "write", "rows": rows.count(), "options": {}}

        class Writer:
            def format(self, name: str) -> Writer:
                call["format"] = name
                return self

            def mode(self, name: str) -> Writer:
                call["mode"] = name
                return self

            def option(self, key: str, value: Any) -> Writer:
                call["options"][key] = str(value)
                return self

            def saveAsTable(self, name: str) -> None:
                call["table"] = name
                fake.sent.append(call)
                fake.commit(name, call["options"].get("txnAppId"), call["options"].get("txnVersion"))

        return Writer()

    def forName(self, spark: Any, name: str) -> Any:
        fake = self

        class Merge:
            def __init__(self, source: Any, on: str) -> None:
                rows = source.toArrow().to_pylist()
                self.call: dict[str, Any] = {"call": "merge", "table": name, "on": on, "clauses": []}
                self.call["source"] = sorted(json.dumps(r, default=str, sort_keys=True) for r in rows)

            def whenMatchedDelete(self, condition: str) -> Merge:
                self.call["clauses"].append(["whenMatchedDelete", condition])
                return self

            def whenMatchedUpdate(self, set: dict[str, str]) -> Merge:
                self.call["clauses"].append(["whenMatchedUpdate", set])
                return self

            def whenNotMatchedInsert(self, condition: str, values: dict[str, str]) -> Merge:
                self.call["clauses"].append(["whenNotMatchedInsert", condition, values])
                return self

            def execute(self) -> None:
                conf = fake.spark.conf
                app_id = conf.get("spark.databricks.delta.write.txnAppId", None)
                version = conf.get("spark.databricks.delta.write.txnVersion", None)
                self.call["session"] = {"txnAppId": app_id, "txnVersion": version}
                fake.sent.append(self.call)
                fake.commit(name, app_id, version)

        class Table:
            def history(self, limit: int) -> Any:
                version = fake.versions.get(name)
                return fake.spark.createDataFrame([] if version is None else [(version,)], "version BIGINT")

            def alias(self, alias: str) -> Table:
                assert alias == "t"
                return self

            def merge(self, source: Any, on: str) -> Merge:
                return Merge(source.alias("s"), on)

        return Table()


class RecordingReads:
    """Stands in for the session's ``read`` and ``readStream``: records the options and the table."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.sent: list[dict[str, Any]] = []
        self.conf = real.conf

    def _reader(self, kind: str) -> Any:
        call: dict[str, Any] = {"call": kind, "options": {}}
        self.sent.append(call)
        real = self.real

        class Reader:
            def format(self, name: str) -> Reader:
                call["format"] = name
                return self

            def option(self, key: str, value: Any) -> Reader:
                call["options"][key] = str(value)
                return self

            def table(self, name: str) -> Any:
                call["table"] = name
                frame = real.createDataFrame([(1,)], "job_date INT")

                class Filtered:
                    def where(self, condition: Any) -> Any:
                        call["where"] = str(condition)
                        return frame

                return Filtered()

        return Reader()

    @property
    def read(self) -> Any:
        return self._reader("read")

    @property
    def readStream(self) -> Any:
        return self._reader("readStream")


def recorded(name: str) -> Any:
    return RECORDED[name]


def test_append_sends_the_app_transaction_and_reports_what_happened(spark: Any) -> None:
    from vhlake.spark.tables import DeltaTables

    fake = FakeDelta(spark)
    tables = DeltaTables(spark, delta_table=fake, writer=fake.writer)
    rows = spark.createDataFrame(QUARANTINE.schema.empty_table())
    assert tables.append(QUARANTINE, rows, app_id="vhlake:bronze_to_silver", version=7)
    assert not tables.append(QUARANTINE, rows, app_id="vhlake:bronze_to_silver", version=7)  # Delta skips it
    assert tables.append(QUARANTINE, rows, app_id="vhlake:bronze_to_silver", version=8)
    assert fake.sent == recorded("append")


def test_replace_is_one_merge_under_the_batch_s_transaction(spark: Any) -> None:
    from datetime import date

    from vhlake.spark.tables import DeltaTables

    fake = FakeDelta(spark)
    tables = DeltaTables(spark, delta_table=fake, writer=fake.writer)

    rows = spark.createDataFrame(pa.Table.from_pylist([gold_row("2026-11-02", "c", 30)], schema=GOLD.schema))
    touched = spark.createDataFrame(
        [(date(2026, 10, 1), "shopee", "a", 2026, 10), (date(2026, 11, 2), "shopee", "c", 2026, 11)],
        "date DATE, marketplace STRING, category STRING, year INT, month INT",
    )
    keys = ["date", "marketplace", "category"]
    tables.replace(GOLD, rows, keys=keys, touched=touched, app_id="vhlake:silver_to_gold", version=3)
    assert fake.sent == recorded("replace")
    # The session's transaction options are the MERGE's alone: gone once it ran.
    assert spark.conf.get("spark.databricks.delta.write.txnAppId", None) is None


def test_reads_filter_partitions_and_stream_the_change_feed(spark: Any) -> None:
    from datetime import date

    from vhlake.spark.tables import DeltaTables

    reads = RecordingReads(spark)
    tables = DeltaTables(reads, catalog="validahub", schema="analytics")  # type: ignore[arg-type]
    tables.read_partitions(SILVER, "created_date", [date(2026, 11, 2), date(2026, 11, 3)])
    tables.stream(BRONZE, max_files_per_trigger=1000)
    tables.changes(SILVER)
    assert reads.sent == recorded("reads")

"""The streaming Spark jobs (file source in place of Kafka, Delta through delta-rs in place of Delta's jars)
land what the embedded ingest and pipeline land: the same bronze, rejects, quarantine, silver and gold, batch
after batch; a micro-batch run again changes nothing; a micro-batch reads only the partitions it touches; and
the two engines take turns on one lake."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from conftest import kill_when, make_silver_job, ordered_rows, silver_table, write_lines
from conftest import version as delta_version
from test_engagement_gold import UPDATED, awkward_silver, day_of, random_silver
from test_spark_jobs import ENGAGEMENT_KEYS, embedded_engagement, same
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.delta import Lake
from vhlake.lake.tables import (
    BRONZE,
    ERROR_TYPE_GOLD,
    GOLD,
    GOLD_RESTATEMENTS,
    JOB_EVENTS,
    QUARANTINE,
    REJECTED,
    SILVER,
    USER_ENGAGEMENT_GOLD,
    TableDef,
)
from vhlake.pipeline.runner import Pipeline
from vhlake.samples import SampleSpec, generate_lines, write_jsonl

pyspark = pytest.importorskip("pyspark", reason="the spark extra is installed by make and CI")
pytestmark = pytest.mark.slow

KEYS = {
    BRONZE.name: ["source", "source_offset"],
    REJECTED.name: ["source", "source_offset"],
    QUARANTINE.name: ["source", "source_offset"],
    SILVER.name: ["job_id"],
    GOLD.name: ["date", "marketplace", "category"],
    ERROR_TYPE_GOLD.name: ["date", "marketplace", "category", "error_type"],
    USER_ENGAGEMENT_GOLD.name: ENGAGEMENT_KEYS,
}


def feed(directory: Path, *, parts: int) -> list[Path]:
    """A generated feed (duplicates, failing events, garbage, disorder) cut into ``parts`` files."""
    directory.mkdir()
    lines = generate_lines(SampleSpec(jobs=400, seed=12, bad_event_rate=0.02, garbage_rate=0.01))
    size = -(-lines.num_rows // parts)
    return [
        directory / f"events-{i}.jsonl"
        for i in range(parts)
        if write_jsonl(lines.slice(i * size, size), directory / f"events-{i}.jsonl")
    ]


def embedded(lake: Lake, table: TableDef) -> pa.Table:
    return pa.table(lake.open(table).to_pyarrow_table())  # type: ignore[union-attr]


def written(out: Path, table: TableDef) -> pa.Table:
    """A table of the lake the Spark jobs wrote, as any Delta reader sees it."""
    delta = Lake(str(out)).open(table)
    return table.schema.empty_table() if delta is None else pa.table(delta.to_pyarrow_table())


def comparable(table: pa.Table, spec: TableDef) -> list[dict[str, Any]]:
    """Rows without what differs by design: when each engine ingested them."""
    drop = [c for c in ("ingestion_time", "ingestion_date") if c in table.column_names]
    return ordered_rows(table.drop_columns(drop), KEYS[spec.name])


def assert_same_lake(lake: Lake, out: Path, *, spark_only: bool = True) -> None:
    for table in (BRONZE, REJECTED, QUARANTINE):
        theirs, ours = comparable(embedded(lake, table), table), comparable(written(out, table), table)
        assert theirs == ours, table.name
    for table in (SILVER, GOLD):
        same(comparable(embedded(lake, table), table), comparable(written(out, table), table))
    # Error types exactly: counts, sums and one division each, the same in either engine.
    errors = comparable(embedded(lake, ERROR_TYPE_GOLD), ERROR_TYPE_GOLD)
    assert errors == comparable(written(out, ERROR_TYPE_GOLD), ERROR_TYPE_GOLD)
    assert errors
    # Engagement exactly: the embedded transform over the embedded engine's silver (the same silver).
    engagement = comparable(written(out, USER_ENGAGEMENT_GOLD), USER_ENGAGEMENT_GOLD)
    assert engagement == embedded_engagement(embedded(lake, SILVER))
    assert engagement
    # The Spark jobs store each event once; the embedded pipeline keeps a job's copies and drops them as it
    # folds (on a lake both engines wrote, some copies are the embedded engine's).
    stored = written(out, JOB_EVENTS)["event_id"].to_pylist()
    assert len(set(stored)) == len(set(embedded(lake, JOB_EVENTS)["event_id"].to_pylist()))
    assert len(stored) == len(set(stored)) or not spark_only


def test_run_all_lands_what_the_embedded_engine_lands(spark: Any, tmp_path: Path) -> None:
    from vhlake.spark.streams import run_all

    files = feed(tmp_path / "events", parts=3)
    later = files.pop()
    held = tmp_path / later.name
    later.rename(held)
    out = tmp_path / "spark"
    lake = Lake(str(tmp_path / "lake"))
    ingestor = BronzeIngestor(lake, source_system="test", batch_bytes=1 << 16)

    # Ranges of 16 KiB: each file is read as several line ranges, numbered as vhlake ingest numbers them.
    counts = run_all(
        spark, tmp_path / "events", out, source_system="test", max_files_per_trigger=1, range_bytes=1 << 14
    )
    for file in files:
        ingestor.ingest_file(file)
    Pipeline(lake).run()
    assert_same_lake(lake, out)
    assert counts[SILVER.name] == embedded(lake, SILVER).num_rows > 100
    assert counts[REJECTED.name] > 0 and counts[QUARANTINE.name] > 0

    # The last file comes later: late events, copies of stored events, jobs that finish now.
    held.rename(later)
    run_all(spark, tmp_path / "events", out, source_system="test")
    ingestor.ingest_file(later)
    Pipeline(lake).run()
    assert_same_lake(lake, out)

    # Nothing new: nothing changes.
    assert run_all(spark, tmp_path / "events", out, source_system="test") == {
        table.name: written(out, table).num_rows
        for table in (
            BRONZE, REJECTED, QUARANTINE, JOB_EVENTS, SILVER, GOLD, ERROR_TYPE_GOLD, USER_ENGAGEMENT_GOLD,
            GOLD_RESTATEMENTS,
        )
    }  # fmt: skip

    # A lake built before the tables existed: nothing new in bronze, yet they are built from silver.
    shutil.rmtree(out / ERROR_TYPE_GOLD.relative_path)
    shutil.rmtree(out / USER_ENGAGEMENT_GOLD.relative_path)
    run_all(spark, tmp_path / "events", out, source_system="test")
    assert_same_lake(lake, out)


def test_a_micro_batch_run_again_changes_nothing(spark: Any, tmp_path: Path) -> None:
    from vhlake.spark.streams import silver_batch
    from vhlake.spark.tables import LocalDeltaTables

    (file,) = feed(tmp_path / "events", parts=1)
    lake = Lake(str(tmp_path / "lake"))
    BronzeIngestor(lake, source_system="test", batch_bytes=1 << 16).ingest_file(file)
    out = tmp_path / "spark"
    tables = LocalDeltaTables(spark, Lake(str(out)))
    bronze = spark.createDataFrame(embedded(lake, BRONZE))
    first, second = bronze.randomSplit([0.5, 0.5], seed=3)

    def run(batch: Any, batch_id: int) -> None:
        silver_batch(batch, batch_id, tables, gold=True)

    run(first, 0)
    run(second, 1)
    derived = (QUARANTINE, SILVER, GOLD, ERROR_TYPE_GOLD, USER_ENGAGEMENT_GOLD)
    after = {t.name: comparable(written(out, t), t) for t in derived}
    events = written(out, JOB_EVENTS).num_rows
    run(second, 1)  # Structured Streaming runs a batch again when it failed before its checkpoint
    assert {t.name: comparable(written(out, t), t) for t in derived} == after
    assert written(out, JOB_EVENTS).num_rows == events

    # Two batches in any order fold to what one run over the whole of bronze gives.
    Pipeline(lake).run()
    for table in (SILVER, GOLD):
        same(comparable(embedded(lake, table), table), after[table.name])
    assert comparable(embedded(lake, ERROR_TYPE_GOLD), ERROR_TYPE_GOLD) == after[ERROR_TYPE_GOLD.name]
    assert embedded_engagement(embedded(lake, SILVER)) == after[USER_ENGAGEMENT_GOLD.name]


def test_vhlake_spark_run_all(spark: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vhlake.cli.app import app

    (file,) = feed(tmp_path / "events", parts=1)
    (file.parent / "notes.txt").write_text("not events")
    out = file.parent / "spark-out"  # beside the file, as the README has it: a file means that file alone
    runner = CliRunner()
    result = runner.invoke(app, ["spark", "run-all", "--events", str(file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "events → bronze" in result.output
    for table in (BRONZE, SILVER, GOLD, ERROR_TYPE_GOLD):
        assert f"{table.name}: {written(out, table).num_rows:,} rows" in result.output
    assert written(out, SILVER).num_rows > 100
    silver = written(out, SILVER).num_rows
    again = runner.invoke(app, ["spark", "run-all", "--events", str(file), "--out", str(out)])
    assert again.exit_code == 0, again.output  # spark-out's partitioned folders are not read as input
    assert written(out, SILVER).num_rows == silver

    refused = runner.invoke(
        app, ["spark", "run-all", "--events", str(file), "--out", str(out), "--format", "parquet"]
    )
    assert refused.exit_code == 2 and "Delta" in refused.output
    missing = runner.invoke(
        app, ["spark", "run-all", "--events", str(tmp_path / "nope.jsonl"), "--out", str(out)]
    )
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())


def test_kafka_messages_parse_as_the_embedded_kafka_source_files_them(spark: Any) -> None:
    """Spark's Kafka connector cannot be downloaded here: its rows (the connector's documented columns) are
    built by hand and go through the same projection and parser."""
    from datetime import UTC, datetime

    from conftest import make_event
    from vhlake.spark.streams import parse, records_of_messages

    good = orjson.dumps(make_event(1))
    framed = orjson.dumps(make_event(4))
    messages = spark.createDataFrame(
        [
            (b"job-1", good, "validation-events", 2, 41, datetime(2026, 11, 27, tzinfo=UTC), 0),
            (b"job-2", None, "validation-events", 2, 42, datetime(2026, 11, 27, tzinfo=UTC), 0),
            (b"job-3", b"{not json", "validation-events", 0, 7, datetime(2026, 11, 27, tzinfo=UTC), 0),
            # Confluent's wire format: magic byte 0, schema id 5 (big-endian), then the JSON
            (
                b"job-4",
                b"\x00\x00\x00\x00\x05" + framed,
                "validation-events",
                1,
                3,
                datetime(2026, 11, 27, tzinfo=UTC),
                0,
            ),
        ],
        "key BINARY, value BINARY, topic STRING, partition INT, offset BIGINT, timestamp TIMESTAMP, "
        "timestampType INT",
    )
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    parsed = parse(records_of_messages(messages), ingestion_time=now, source_system="kafka").toArrow()
    by_offset = {row["source_offset"]: row for row in parsed.to_pylist()}
    assert by_offset[41]["error"] is None and by_offset[41]["event_id"] == make_event(1)["event_id"]
    assert by_offset[41]["source"] == "kafka:validation-events:2"
    assert (
        by_offset[42]["error"] is not None and by_offset[42]["raw"] == ""
    )  # a tombstone is kept as a reject
    assert by_offset[7]["source"] == "kafka:validation-events:0"
    assert by_offset[7]["error"].startswith("invalid JSON") and by_offset[7]["raw"] == "{not json"
    assert by_offset[3]["error"] is None and by_offset[3]["event_id"] == make_event(4)["event_id"]
    assert by_offset[3]["schema_id"] == 5 and by_offset[41]["schema_id"] is None


def gold_row(day: str, category: str, total: int) -> dict[str, Any]:
    from datetime import UTC, date, datetime

    when = date.fromisoformat(day)
    return {
        "date": when, "marketplace": "shopee", "category": category, "total_validations": total,
        "successful_validations": total, "failed_validations": 0, "total_rows_processed": 0,
        "avg_processing_time_ms": None, "p50_processing_time": None, "p95_processing_time": None,
        "p99_processing_time": None, "unique_users": 1, "error_rate": 0.0, "year": when.year,
        "month": when.month, "updated_at": datetime(2026, 11, 27, tzinfo=UTC),
    }  # fmt: skip


def test_local_delta_tables_replace_moves_and_deletes_rows_and_append_once(
    spark: Any, tmp_path: Path
) -> None:
    from vhlake.spark.tables import LocalDeltaTables

    lake = Lake(str(tmp_path))
    tables = LocalDeltaTables(spark, lake)

    def frame(*rows: dict[str, Any]) -> Any:
        return spark.createDataFrame(pa.Table.from_pylist(list(rows), schema=GOLD.schema))

    def stored() -> set[tuple[str, str, int]]:
        return {
            (str(r["date"]), r["category"], r["total_validations"])
            for r in written(tmp_path, GOLD).to_pylist()
        }

    keys = ["date", "marketplace", "category"]
    start = frame(
        gold_row("2026-10-01", "a", 1), gold_row("2026-11-01", "b", 2), gold_row("2026-11-02", "c", 3)
    )
    assert tables.append(GOLD, start, app_id="t", version=0)
    assert not tables.append(GOLD, start, app_id="t", version=0)  # the same batch again: nothing
    assert stored() == {("2026-10-01", "a", 1), ("2026-11-01", "b", 2), ("2026-11-02", "c", 3)}
    assert lake.txn_version(GOLD, "t") == 0

    # October's only row goes, c changes and d is new; b is not touched.
    touched = frame(
        gold_row("2026-10-01", "a", 0), gold_row("2026-11-02", "c", 0), gold_row("2026-11-03", "d", 0)
    )
    rows = frame(gold_row("2026-11-02", "c", 30), gold_row("2026-11-03", "d", 4))
    tables.replace(GOLD, rows, keys=keys, touched=touched.select(*keys), app_id="t", version=1)
    assert stored() == {("2026-11-01", "b", 2), ("2026-11-02", "c", 30), ("2026-11-03", "d", 4)}
    version = lake.open(GOLD).version()  # type: ignore[union-attr]
    tables.replace(GOLD, frame(), keys=keys, touched=touched.select(*keys), app_id="t", version=1)
    assert lake.open(GOLD).version() == version  # type: ignore[union-attr]  # done: not even a commit

    # Files an attempt of batch 2 wrote before it died are not in the log: they are not rows.
    leftover = next((tmp_path / GOLD.relative_path).rglob("*.parquet"))
    (leftover.parent / "part-orphan.parquet").write_bytes(leftover.read_bytes())
    assert tables.append(GOLD, frame(gold_row("2026-11-04", "e", 5)), app_id="t", version=2)
    assert len(written(tmp_path, GOLD)) == 4
    assert tables.read(GOLD).count() == 4


class RecordingTables:
    """The local Delta tables, noting which partitions each micro-batch reads."""

    def __init__(self, spark: Any, lake: Lake) -> None:
        from vhlake.spark.tables import LocalDeltaTables

        self.inner = LocalDeltaTables(spark, lake)
        self.partitions_read: list[tuple[str, list[Any]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read_partitions(self, table: TableDef, column: str, values: Any) -> Any:
        self.partitions_read.append((table.name, sorted(values)))
        return self.inner.read_partitions(table, column, values)


def test_a_micro_batch_reads_only_the_partitions_of_its_jobs(spark: Any, tmp_path: Path) -> None:
    from datetime import date

    from vhlake.spark.streams import silver_batch

    (file,) = feed(tmp_path / "events", parts=1)
    lake = Lake(str(tmp_path / "lake"))
    BronzeIngestor(lake, source_system="test", batch_bytes=1 << 16).ingest_file(file)
    bronze = embedded(lake, BRONZE)
    tables = RecordingTables(spark, Lake(str(tmp_path / "spark")))
    silver_batch(spark.createDataFrame(bronze), 0, tables)
    history = written(tmp_path / "spark", JOB_EVENTS)
    days = set(history["job_date"].to_pylist())
    assert len(days) > 20

    # A late event of one job, and a copy of another job's event sent again for a third job.
    jobs = history.group_by("job_id").aggregate([("job_date", "min")]).sort_by("job_id").to_pylist()
    late, copied = jobs[0], jobs[1]
    stored_ids = pa.array(history["event_id"].to_pylist())

    def stored_event_of(job: str) -> dict[str, Any]:
        mine = bronze.filter(pc.equal(bronze["job_id"], job))
        event: dict[str, Any] = (
            mine.filter(pc.is_in(mine["event_id"], value_set=stored_ids)).slice(0, 1).to_pylist()[0]
        )
        return event

    late_event, copy = stored_event_of(late["job_id"]), stored_event_of(copied["job_id"])
    late_event |= {"event_id": "late-one", "source_offset": 10_000_001}
    copy |= {"job_id": "a-new-job", "source_offset": 10_000_002}
    batch = pa.Table.from_pylist([late_event, copy], schema=bronze.schema)
    tables.partitions_read.clear()
    silver_batch(spark.createDataFrame(batch), 1, tables)
    read = dict(tables.partitions_read)
    assert read[JOB_EVENTS.name] == sorted({late["job_date_min"], copied["job_date_min"]})
    assert all(isinstance(day, date) for day in read[JOB_EVENTS.name])
    # The copy stays with the job it was first received for; the late event joined its job.
    stored = written(tmp_path / "spark", JOB_EVENTS)
    assert "a-new-job" not in set(stored["job_id"].to_pylist())
    assert stored.num_rows == history.num_rows + 1


def killed_when(command: list[str], ready: Any, log: Path) -> None:
    """Run ``command`` and SIGKILL it, Spark's JVM and workers included, once ``ready()``."""
    with log.open("wb") as output:
        child = subprocess.Popen(command, stdout=output, stderr=output, start_new_session=True)
    kill_when(child, ready, session=True, timeout_s=240)


def logged(out: Path, table: TableDef, app_id: str) -> bool:
    """Whether ``app_id`` committed to ``table`` (read from its Delta log's commits, cheaply)."""
    log = out / table.relative_path / "_delta_log"
    return any(f'"appId":"{app_id}"' in commit.read_text() for commit in sorted(log.glob("*.json")))


def test_run_all_killed_mid_batch_and_run_again_lands_every_event_once(tmp_path: Path) -> None:
    from vhlake.ingest.files import file_digest
    from vhlake.pipeline.runner import PIPELINE_APP

    files = feed(tmp_path / "events", parts=3)
    apps = [f"file:{file_digest(file)[0]}" for file in files]
    out = tmp_path / "spark"
    command = [sys.executable, "-m", "vhlake", "spark", "run-all", "--events", str(tmp_path / "events")]
    command += ["--out", str(out), "--files-per-batch", "1", "--source-system", "test"]
    # Killed once a first file is in bronze (the next one is under way), then once the first
    # bronze → silver batch stored its quarantine (its silver, gold and events are under way).
    log = tmp_path / "run-all.log"
    killed_when(command, lambda: any(logged(out, BRONZE, app) for app in apps), log)
    assert not all(logged(out, BRONZE, app) for app in apps)  # killed mid-ingest
    killed_when(command, lambda: logged(out, QUARANTINE, PIPELINE_APP), log)
    assert not logged(out, JOB_EVENTS, PIPELINE_APP)  # killed mid-batch
    finished = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]

    lake = Lake(str(tmp_path / "lake"))
    ingestor = BronzeIngestor(lake, source_system="test", batch_bytes=1 << 16)
    for file in files:
        ingestor.ingest_file(file)
    Pipeline(lake).run()
    assert_same_lake(lake, out)


def test_the_engines_take_turns_on_one_lake(spark: Any, tmp_path: Path) -> None:
    from vhlake.spark.streams import run_all

    files = feed(tmp_path / "events", parts=4)
    shared, alone = Lake(str(tmp_path / "shared")), Lake(str(tmp_path / "alone"))
    spark_turn = tmp_path / "spark-turn"
    spark_turn.mkdir()

    def embedded_turn(lake: Lake, *turn: Path) -> None:
        ingestor = BronzeIngestor(lake, source_system="test", batch_bytes=1 << 16)
        for file in turn:
            ingestor.ingest_file(file)
        Pipeline(lake).run()

    # Spark first, the embedded engine next (it finds nothing left to do, then goes on), Spark again
    # (a file the embedded engine ingested is not ingested twice).
    for file in files[:2]:
        file.rename(spark_turn / file.name)
    run_all(spark, spark_turn, Path(shared.uri), source_system="test")
    assert Pipeline(shared).run().was_noop
    files[2].rename(spark_turn / files[2].name)
    embedded_turn(shared, spark_turn / files[2].name)
    files[3].rename(spark_turn / files[3].name)
    counts = run_all(spark, spark_turn, Path(shared.uri), source_system="test")

    embedded_turn(alone, *sorted(spark_turn.glob("*.jsonl")))
    assert_same_lake(alone, Path(shared.uri), spark_only=False)
    assert counts[BRONZE.name] == embedded(alone, BRONZE).num_rows
    assert Pipeline(shared).run().was_noop


def restated_by_group(out: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {
        (r["date"], r["marketplace"], r["category"]): r for r in written(out, GOLD_RESTATEMENTS).to_pylist()
    }


def test_spark_restates_what_the_embedded_pipeline_restates(spark: Any, tmp_path: Path) -> None:
    from test_pipeline import end
    from test_restatements import LATE, at, begin, finish, first_batch, group, lateness, ts
    from vhlake.spark.streams import run_all

    events = tmp_path / "events"
    events.mkdir()
    mover = [begin("mover", at(2)), finish("mover", at(2, 5), kind="failed")]
    errors = end("errors", ts(at(4)), kind="failed", payload={"error_types": {"missing_sku": 2}})
    first = write_lines(events / "first.jsonl", [*first_batch(), *mover, errors])
    second = write_lines(
        tmp_path / "second.jsonl",
        [
            *LATE.values(),
            LATE["completion"],  # twice in the batch, and an event held already: not counted again
            finish("retried", at(0, 20), ms=200),
            finish("twice", at(0, 2), ms=10, marketplace="shopee"),  # again: nothing changes
            begin("mover", at(-1)),  # the mover's day changes: its group is left empty
            begin("new-group", at(3), marketplace="magalu"),
        ],
    )
    out, lake = tmp_path / "spark", Lake(str(tmp_path / "lake"))
    ingestor = BronzeIngestor(lake, source_system="test", batch_bytes=1 << 16)
    run_all(spark, events, out, source_system="test")
    ingestor.ingest_file(first)
    Pipeline(lake).run()
    first_writes = {
        engine: {(r["date"], r["marketplace"], r["category"]): r["updated_at"] for r in rows.to_pylist()}
        for engine, rows in (("spark", written(out, GOLD)), ("embedded", embedded(lake, GOLD)))
    }

    second = second.rename(events / second.name)
    run_all(spark, events, out, source_system="test")
    ingestor.ingest_file(second)
    Pipeline(lake).run()
    assert_same_lake(lake, out)

    earliest = {group(at(0)): at(0, 30), group(at(1), "shopee"): at(1, 5), group(at(2)): at(-1)}
    by_engine = {"spark": restated_by_group(out), "embedded": restated_by_group(Path(lake.uri))}
    bronze = {"spark": delta_version(Lake(str(out)), BRONZE), "embedded": delta_version(lake, BRONZE)}
    for engine, found in by_engine.items():
        assert set(found) == set(earliest), engine
        for key, row in found.items():  # what differs by engine: when it wrote, and its bronze versions
            assert row["first_written_at"] == first_writes[engine][key], engine
            assert row["max_lateness_s"] == lateness(row["first_written_at"], earliest[key]), engine
            assert row["bronze_version"] == bronze[engine], engine
    by_design = ["run_id", "restated_at", "first_written_at", "max_lateness_s", "bronze_version"]
    spark_rows, embedded_rows = (
        ordered_rows(
            written(root, GOLD_RESTATEMENTS).drop_columns(by_design), ["date", "marketplace", "category"]
        )
        for root in (out, Path(lake.uri))
    )
    assert spark_rows == embedded_rows
    assert embedded_rows[-1]["new_total_validations"] == 0 and embedded_rows[0]["events"] == 2

    # Run again with nothing new: nothing restated again.
    run_all(spark, events, out, source_system="test")
    assert restated_by_group(out) == by_engine["spark"]


def silver_row(
    job: str, category: str | None, status: str, errors: dict[str, int] | None, *, folded: int = 1
) -> dict[str, Any]:
    """A silver job created on 2 November in shopee, completed and (last) folded on day ``folded`` of
    November (a MERGE rewrites a row whose scalar columns changed, not one whose map alone did)."""
    from datetime import UTC, date, datetime

    return {
        "job_id": job, "user_id": "u1", "marketplace": "shopee", "category": category, "ruleset": None,
        "status": status, "total_rows": 10, "valid_rows": None, "invalid_rows": None,
        "error_types": None if errors is None else list(errors.items()), "processing_time_ms": 5,
        "file_size_bytes": None, "s3_path": None, "created_at": datetime(2026, 11, 2, 9, tzinfo=UTC),
        "completed_at": datetime(2026, 11, folded, tzinfo=UTC), "created_date": date(2026, 11, 2), "updated_at": datetime(2026, 11, folded, tzinfo=UTC),
    }  # fmt: skip


def test_gold_batch_deletes_the_error_types_a_group_no_longer_reports(spark: Any, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    import duckdb

    from vhlake.pipeline.error_types import error_type_daily
    from vhlake.spark.streams import SILVER_KEYS, gold_batch
    from vhlake.spark.tables import LocalDeltaTables

    tables = LocalDeltaTables(spark, Lake(str(tmp_path)))
    keys = ["date", "marketplace", "category", "error_type"]

    def frame(*jobs: dict[str, Any]) -> Any:
        return spark.createDataFrame(pa.Table.from_pylist(list(jobs), schema=SILVER.schema))

    def stored() -> list[dict[str, Any]]:
        return comparable(written(tmp_path, ERROR_TYPE_GOLD), ERROR_TYPE_GOLD)

    def reference() -> list[dict[str, Any]]:
        silver = written(tmp_path, SILVER)
        when = datetime(2026, 11, 27, tzinfo=UTC)  # updated_at is not compared
        return ordered_rows(error_type_daily(duckdb.connect(), silver, updated_at=when), keys)

    before = [
        silver_row("a", "toys", "failed", {"x": 2, "y": 1}),
        silver_row("b", "toys", "success", {"y": 3, "w": 0}),
        silver_row("c", None, "failed", {"z": 4}),
    ]
    tables.append(SILVER, frame(*before), app_id="t", version=0)
    gold_batch(frame(*before), 0, tables, app_id="t")
    assert stored() == reference()
    assert {(r["category"], r["error_type"]) for r in stored()} == {
        ("toys", "x"), ("toys", "y"), ("unknown", "z")
    }  # fmt: skip

    # Job a no longer reports x, job c no error at all: x's row and the unknown group's rows go.
    after = [
        silver_row("a", "toys", "failed", {"y": 1}, folded=3),
        silver_row("c", None, "failed", {}, folded=3),
    ]
    changed = frame(*after)
    tables.replace(
        SILVER, changed, keys=SILVER_KEYS, touched=changed.select(*SILVER_KEYS), app_id="t", version=1
    )
    gold_batch(frame(*before).unionByName(changed), 1, tables, app_id="t")
    assert stored() == reference()
    assert [(r["error_type"], r["jobs"], r["occurrences"]) for r in stored()] == [("y", 2, 4)]


def test_streamed_engagement_equals_a_batch_build_after_late_moved_and_deleted_jobs(
    spark: Any, tmp_path: Path
) -> None:
    import random

    from vhlake.spark.jobs import silver_to_engagement
    from vhlake.spark.streams import SILVER_KEYS, gold_batch

    tables = RecordingTables(spark, Lake(str(tmp_path)))
    silver = [*awkward_silver(), *random_silver(random.Random(41), 300)]

    def frame(jobs: list[dict[str, Any]]) -> Any:
        return spark.createDataFrame(silver_table(jobs))

    def stored() -> list[dict[str, Any]]:
        return comparable(written(tmp_path, USER_ENGAGEMENT_GOLD), USER_ENGAGEMENT_GOLD)

    def batch_build() -> list[dict[str, Any]]:
        whole = tables.read(SILVER)
        built = silver_to_engagement(whole, updated_at=UPDATED).toArrow().cast(USER_ENGAGEMENT_GOLD.schema)
        return ordered_rows(built, ENGAGEMENT_KEYS)

    def change(version: int, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
        """Silver's MERGE of a micro-batch (``before``: the changed jobs as stored), then gold's."""
        tables.replace(
            SILVER, frame(after), keys=SILVER_KEYS, touched=frame(before).select(*SILVER_KEYS),
            app_id="t", version=version,
        )  # fmt: skip
        tables.partitions_read.clear()
        gold_batch(frame(before).unionByName(frame(after)), version, tables, app_id="t")
        assert stored() == batch_build() == embedded_engagement(written(tmp_path, SILVER))

    tables.append(SILVER, frame(silver), app_id="t", version=0)
    gold_batch(frame(silver), 0, tables, app_id="t")
    assert stored() == batch_build() == embedded_engagement(written(tmp_path, SILVER))
    assert stored()

    def first_job(market: str, user: str) -> dict[str, Any]:
        return min((j for j in silver if j["marketplace"] == market and j["user_id"] == user), key=day_of)

    # A late job 45 days before a user's first: its window and the old first day (beyond it) change.
    old_first = first_job("br", "u3")
    late = make_silver_job(
        "late", old_first["created_at"] - timedelta(days=45), marketplace="br", user_id="u3"
    )
    change(1, [], [late])
    # Silver read by marketplace (for the first dates): the changed one only.
    by_market = [v for t, v in tables.partitions_read if t == SILVER.name and isinstance(v[0], str)]
    assert by_market == [["br"]]
    by_pair = {(r["marketplace"], r["date"]): r for r in stored()}
    assert by_pair[("br", day_of(late))]["new_users"] >= 1

    # A user's first job moves 30 days later to another marketplace; another user's first job goes; a job
    # without a user gets one (a late start event).
    mover, gone = first_job("mx", "u5"), first_job("cl", "u6")
    moved = {**mover, "marketplace": "pe", "created_at": mover["created_at"] + timedelta(days=30)}
    moved["created_date"] = day_of(moved)
    anonymous = next(j for j in silver if j["user_id"] is None and j["marketplace"] == "br")
    named = {**anonymous, "user_id": "u24"}
    change(2, [mover, gone, anonymous], [moved, named])
    assert ("pe", moved["created_date"]) in {(r["marketplace"], r["date"]) for r in stored()}

    # Run again (a micro-batch retried after a failure): nothing changes.
    before = stored()
    gold_batch(frame([mover, gone, anonymous]).unionByName(frame([moved, named])), 2, tables, app_id="t")
    assert stored() == before

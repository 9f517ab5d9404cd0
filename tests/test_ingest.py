"""File ingestion into real Delta tables: exactly once, resumable, nothing lost."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

from conftest import kill_after_commits, make_event, read_table, write_lines
from vhlake.ingest.bronze import BronzeIngestor, RecordBatch
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, REJECTED
from vhlake.samples import SampleSpec, generate_lines, write_jsonl


def mixed_file(path: Path, events: int = 50) -> Path:
    lines: list[object] = [
        make_event(i, timestamp=f"2026-11-{10 + i % 5}T23:30:00-03:00") for i in range(events)
    ]
    lines[3] = "not json"
    lines[7] = b"\xff\xfe broken"
    lines[9] = "[1, 2]"
    lines[11] = ""
    return write_lines(path, lines)  # type: ignore[arg-type]


def test_ingest_splits_lines_between_bronze_and_rejects(
    ingestor: BronzeIngestor, lake: Lake, tmp_path: Path
) -> None:
    report = ingestor.ingest_file(mixed_file(tmp_path / "events.jsonl"))
    assert (report.bronze_rows, report.rejected_rows) == (46, 3)
    bronze, rejected = read_table(lake, "bronze"), read_table(lake, "rejected")
    assert bronze.num_rows == 46
    assert rejected["source_offset"].to_pylist() == [4, 8, 10]
    assert set(bronze["source_offset"].to_pylist()).isdisjoint({4, 8, 10, 12})
    assert bronze["source"][0].as_py() == f"file:{(tmp_path / 'events.jsonl').resolve()}"


def test_tables_follow_the_contract_and_bronze_is_partitioned_by_utc_date(
    ingestor: BronzeIngestor, lake: Lake, tmp_path: Path
) -> None:
    ingestor.ingest_file(mixed_file(tmp_path / "events.jsonl"))
    bronze = lake.open(BRONZE)
    rejected = lake.open(REJECTED)
    assert bronze is not None and rejected is not None
    assert bronze.metadata().partition_columns == ["event_date"]
    assert rejected.metadata().partition_columns == ["ingestion_date"]
    assert pa.schema(bronze.schema()).names == BRONZE.schema.names
    # 23:30 at -03:00 is 02:30 UTC the next day
    dates = {p["event_date"] for p in bronze.partitions()}
    assert dates == {"2026-11-11", "2026-11-12", "2026-11-13", "2026-11-14", "2026-11-15"}


def test_ingesting_the_same_content_twice_adds_nothing(
    ingestor: BronzeIngestor, lake: Lake, tmp_path: Path
) -> None:
    path = mixed_file(tmp_path / "events.jsonl")
    ingestor.ingest_file(path)
    version = lake.open(BRONZE).version()  # type: ignore[union-attr]
    copy = tmp_path / "renamed-copy.jsonl"
    copy.write_bytes(path.read_bytes())
    for again in (path, copy):
        report = ingestor.ingest_file(again)
        assert report.already_ingested
        assert report.bronze_rows == report.rejected_rows == 0
    assert read_table(lake, "bronze").num_rows == 46
    assert read_table(lake, "rejected").num_rows == 3
    assert lake.open(BRONZE).version() == version  # type: ignore[union-attr]


def test_different_content_is_a_different_source(
    ingestor: BronzeIngestor, lake: Lake, tmp_path: Path
) -> None:
    ingestor.ingest_file(write_lines(tmp_path / "a.jsonl", [make_event(1)]))
    ingestor.ingest_file(write_lines(tmp_path / "a.jsonl", [make_event(1), make_event(2)]))
    assert read_table(lake, "bronze").num_rows == 3  # duplicates are bronze's to keep, silver dedupes


def test_small_batches_give_the_same_rows_as_one_batch(lake: Lake, tmp_path: Path) -> None:
    path = mixed_file(tmp_path / "events.jsonl", events=120)
    small = Lake(str(tmp_path / "small"))
    BronzeIngestor(lake, source_system="vh", batch_bytes=1 << 20).ingest_file(path)
    report = BronzeIngestor(small, source_system="vh", batch_bytes=1024).ingest_file(path)
    assert report.batches > 20
    columns = ["source_offset", "event_id", "timestamp", "payload", "_rescued_data"]
    assert read_table(small, "bronze").select(columns) == read_table(lake, "bronze").select(columns)
    assert read_table(small, "rejected").select(["source_offset", "error"]) == read_table(
        lake, "rejected"
    ).select(["source_offset", "error"])


class Crash(Exception):
    pass


def test_a_failure_between_batches_resumes_without_duplicates(lake: Lake, tmp_path: Path) -> None:
    path = mixed_file(tmp_path / "events.jsonl", events=400)
    ingestor = BronzeIngestor(lake, source_system="vh", batch_bytes=2048)
    original = ingestor.ingest_batches

    def crash_after_three(app_id: str, batches: object, **kwargs: object) -> Iterator[RecordBatch]:
        for count, batch in enumerate(original(app_id, batches, **kwargs)):  # type: ignore[arg-type]
            yield batch
            if count == 2:
                raise Crash

    ingestor.ingest_batches = crash_after_three  # type: ignore[method-assign]
    with pytest.raises(Crash):
        ingestor.ingest_file(path)
    partial = read_table(lake, "bronze").num_rows
    assert 0 < partial < 397
    report = BronzeIngestor(lake, source_system="vh", batch_bytes=2048).ingest_file(path)
    assert report.resumed_from
    assert_exactly_once(lake, path)


def assert_exactly_once(lake: Lake, path: Path) -> None:
    """Every non-blank line of ``path`` is in exactly one table, once."""
    lines = path.read_bytes().split(b"\n")
    expected = {i + 1 for i, line in enumerate(lines) if line.strip()}
    offsets = pa.concat_arrays(
        [
            read_table(lake, "bronze")["source_offset"].combine_chunks(),
            read_table(lake, "rejected")["source_offset"].combine_chunks(),
        ]
    )
    assert len(offsets) == len(expected), "rows are missing or duplicated"
    assert pc.count_distinct(offsets).as_py() == len(expected)
    assert set(offsets.to_pylist()) == expected


@pytest.mark.slow
def test_kill_9_mid_ingest_then_rerun_gives_every_line_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    write_jsonl(generate_lines(SampleSpec(jobs=10_000, bad_event_rate=0.01, garbage_rate=0.01)), path)
    lake_dir = tmp_path / "lake"
    env = {**os.environ, "VHLAKE_INGEST_BATCH_BYTES": str(64 * 1024), "VHLAKE_LAKE_URI": str(lake_dir)}
    command = [sys.executable, "-m", "vhlake", "ingest", str(path)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_after_commits(process, lake_dir / "bronze" / "validation_events_bronze" / "_delta_log", 20)
    lake = Lake(str(lake_dir))
    partial = read_table(lake, "bronze").num_rows
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed" in rerun.stdout
    assert read_table(lake, "bronze").num_rows > partial
    assert_exactly_once(lake, path)
    # and the table is still a consistent Delta table
    assert DeltaTable(str(lake_dir / "bronze" / "validation_events_bronze")).version() > 20


@pytest.mark.slow
def test_kafka_ingest_without_a_reachable_broker_fails_after_a_bounded_wait_with_one_line(
    tmp_path: Path,
) -> None:
    from servers import free_port

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing listens there
        "VHLAKE_LAKE_URI": str(tmp_path / "lake"),
    }
    command = [sys.executable, "-m", "vhlake", "ingest", "--kafka", "--until-idle", "1"]
    # The timeout only keeps a regression from hanging the suite: the command gives up far sooner.
    quiet = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert quiet.returncode == 1
    lines = quiet.stderr.strip().splitlines()
    assert "did not answer" in lines[-1] and env["KAFKA_BOOTSTRAP_SERVERS"] in lines[-1]
    assert len(lines) <= 3, quiet.stderr  # the "consuming ..." line, "created a new lake", the error
    assert not any("rdkafka" in line.lower() or "Connection refused" in line for line in lines)
    verbose = subprocess.run(
        [*command, "--verbose", "--connect-timeout", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verbose.returncode == 1
    assert "Connection refused" in verbose.stderr  # librdkafka's own lines, when asked for


def test_a_bronze_written_before_schema_id_gains_it_and_the_pipeline_reads_across(
    ingestor: BronzeIngestor, lake: Lake, tmp_path: Path
) -> None:
    """A lake from an earlier vhlake: bronze and quarantine without ``schema_id``. The next write adds
    the column to the stored schema (else appended files would carry it invisibly), older rows read NULL,
    and the incremental pipeline reads the change data across the schema change."""
    from vhlake.duck.lake_relations import table_relation
    from vhlake.lake.tables import QUARANTINE, SILVER
    from vhlake.pipeline.runner import Pipeline

    earlier = {
        table.name: dataclasses.replace(
            table, schema=pa.schema([f for f in table.schema if f.name != "schema_id"]), added_columns=()
        )
        for table in (BRONZE, QUARANTINE)
    }
    for table in earlier.values():
        Lake(lake.uri).ensure(table)
    first = [make_event(i, timestamp="2026-11-20T10:00:00Z") for i in range(20)] + [
        make_event(99, job_id=None)
    ]
    scratch = Lake(str(tmp_path / "scratch"))
    BronzeIngestor(scratch, source_system="validahub", batch_bytes=1 << 20).ingest_file(
        write_lines(tmp_path / "a.jsonl", first)
    )
    old_rows = read_table(scratch, "bronze").drop_columns(["schema_id"])
    write_deltalake(lake.table_uri(BRONZE), old_rows.cast(earlier[BRONZE.name].schema), mode="append")
    Pipeline(Lake(lake.uri)).run()
    later = [make_event(i, timestamp="2026-11-21T10:00:00Z") for i in range(100, 130)] + [
        make_event(199, job_id=None)
    ]
    ingestor.ingest_file(write_lines(tmp_path / "b.jsonl", later))
    Pipeline(lake).run()

    for table in (BRONZE, QUARANTINE):
        stored = lake.open(table)
        assert stored is not None and "schema_id" in pa.schema(stored.schema()).names, table.name
    con = duckdb.connect()
    bronze = table_relation(con, lake, BRONZE).to_arrow_table()
    assert bronze.num_rows == 52 and bronze["schema_id"].null_count == 52
    silver = table_relation(con, lake, SILVER).to_arrow_table()
    assert silver.num_rows == 50
    assert table_relation(con, lake, QUARANTINE).to_arrow_table().num_rows == 2

"""The embedded event log: durable offsets, and exactly-once ingestion into bronze."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conftest import read_table
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.events.model import ValidationEvent
from vhlake.events.publisher import EmbeddedLogPublisher
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.ingest.log_source import ingest_log
from vhlake.lake.delta import Lake


def events(count: int, start: int = 0) -> list[ValidationEvent]:
    return [
        ValidationEvent(
            event_id=f"e-{i}",
            event_type="validation_started",
            job_id=f"job-{i % 7}",
            marketplace="shopee",
            timestamp="2026-11-27T10:00:00-03:00",  # type: ignore[arg-type]
        )
        for i in range(start, start + count)
    ]


def test_offsets_are_sequential_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with EmbeddedEventLog(path, topic="t") as log:
        assert log.append([b"a", b"b"], ["k1", "k2"]) == [1, 2]
        assert log.append([b"c"]) == [3]
    with EmbeddedEventLog(path, topic="t") as log:
        assert log.end_offset() == 3
        chunk = log.read(1, 10)
        assert chunk.records["source_offset"].to_pylist() == [2, 3]
        assert chunk.records["raw"].to_pylist() == [b"b", b"c"]
        assert log.read(0, 10, up_to=2).last_offset == 2
        assert log.read(3, 10).records.num_rows == 0


def test_mismatched_keys_are_refused(tmp_path: Path) -> None:
    with EmbeddedEventLog(tmp_path / "log.db", topic="t") as log, pytest.raises(ValueError):
        log.append([b"a"], ["k1", "k2"])


def test_publisher_keys_by_job_and_returns_deliveries(tmp_path: Path) -> None:
    publisher = EmbeddedLogPublisher(EmbeddedEventLog(tmp_path / "log.db", topic="validation-events"))
    deliveries = publisher.send_batch(events(3))
    assert [d.offset for d in deliveries] == [1, 2, 3]
    assert [d.key for d in deliveries] == ["job-0", "job-1", "job-2"]
    assert {d.status for d in deliveries} == {"delivered"}
    assert asyncio.run(publisher.send_event(events(1, start=3)[0])).offset == 4
    publisher.close()


def test_log_to_bronze_is_exactly_once_and_incremental(tmp_path: Path, lake: Lake) -> None:
    log = EmbeddedEventLog(tmp_path / "log.db", topic="validation-events")
    publisher = EmbeddedLogPublisher(log)
    publisher.send_batch(events(25))
    log.append([b"not json"])
    ingestor = BronzeIngestor(lake, source_system="vh", batch_bytes=1 << 20)

    first = ingest_log(ingestor, log, max_records=10)
    assert (first.bronze_rows, first.rejected_rows) == (25, 1)
    assert ingest_log(ingestor, log).bronze_rows == 0  # nothing new: nothing added

    publisher.send_batch(events(5, start=25))
    assert ingest_log(ingestor, log, max_records=2).bronze_rows == 5
    bronze = read_table(lake, "bronze")
    assert bronze["source_offset"].to_pylist() == [*range(1, 26), *range(27, 32)]
    assert set(bronze["source"].to_pylist()) == {"log:validation-events"}
    assert read_table(lake, "rejected")["source_offset"].to_pylist() == [26]
    log.close()

"""The job-events key index: an incremental run finds its jobs' partitions without reading the others."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from test_pipeline import Lakehouse, end, start
from vhlake.lake.delta import Lake
from vhlake.lake.key_index import KeyIndex
from vhlake.lake.tables import JOB_EVENTS, TableDef

DAYS = [f"2026-11-{day:02d}" for day in range(10, 16)]


@pytest.fixture
def house(tmp_path: Path) -> Lakehouse:
    return Lakehouse(tmp_path)


def job_events_files(lake: Lake, day: str) -> list[Path]:
    return sorted((Path(lake.table_uri(JOB_EVENTS)) / f"job_date={day}").glob("*.parquet"))


def index(lake: Lake) -> KeyIndex:
    return KeyIndex(lake, JOB_EVENTS, keys=("job_key", "event_key"), partition="job_date")


def keys_of(lake: Lake, table: TableDef, **where: Any) -> tuple[pa.Array, pa.Array]:
    rows = pa.table(lake.open(table).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    chosen = [r for r in rows if all(r[k] == v for k, v in where.items())]
    return pa.array([r["job_key"] for r in chosen], pa.int64()), pa.array(
        [r["event_key"] for r in chosen], pa.int64()
    )


def a_week_of_jobs(house: Lakehouse) -> None:
    """One job a day, each in its own job_date partition, each run in its own batch."""
    for n, day in enumerate(DAYS):
        house.run(start(f"j{n}", f"{day}T09:00:00Z"))


def test_an_incremental_run_reads_only_the_partitions_its_jobs_and_events_live_in(house: Lakehouse) -> None:
    a_week_of_jobs(house)
    for day in DAYS[:-1]:  # every partition but the last becomes unreadable
        for path in job_events_files(house.lake, day):
            path.write_bytes(b"not parquet")
    house.run(end("j5", f"{DAYS[-1]}T10:00:00Z"), start("new", f"{DAYS[-1]}T11:00:00Z"))
    silver = house.silver()
    assert silver["j5"]["status"] == "success"
    assert silver["new"]["status"] == "running"


def test_a_copy_of_an_old_event_sent_for_another_job_is_still_found(house: Lakehouse) -> None:
    a_week_of_jobs(house)
    first = start("j0", f"{DAYS[0]}T09:00:00Z")  # the very event of j0, sent again for another job
    house.run({**first, "job_id": "other"})
    assert "other" not in house.silver()


def test_lookups_answer_every_partition_holding_a_key_and_nothing_for_unknown_keys(house: Lakehouse) -> None:
    a_week_of_jobs(house)
    jobs, events = keys_of(house.lake, JOB_EVENTS, job_id="j2")
    assert index(house.lake).partitions(jobs, pa.array([], pa.int64())) == [date(2026, 11, 12)]
    assert index(house.lake).partitions(pa.array([], pa.int64()), events) == [date(2026, 11, 12)]
    assert index(house.lake).partitions(pa.array([12345], pa.int64())) == []


@pytest.mark.slow
def test_the_index_is_rebuilt_when_lost_or_when_the_log_it_would_follow_is_gone(house: Lakehouse) -> None:
    a_week_of_jobs(house)
    jobs, _ = keys_of(house.lake, JOB_EVENTS, job_id="j3")
    directory = Path(house.lake.uri) / "_index" / JOB_EVENTS.name
    index(house.lake).refresh()
    shutil.rmtree(directory)
    assert index(house.lake).partitions(jobs) == [date(2026, 11, 13)]
    # commits after the index's version whose commit files were cleaned from the log
    house.run(start("late", f"{DAYS[1]}T09:00:00Z"))
    late, _ = keys_of(house.lake, JOB_EVENTS, job_id="late")
    journal = house.lake.open(JOB_EVENTS)
    assert journal is not None
    last = Path(house.lake.table_uri(JOB_EVENTS)) / "_delta_log" / f"{journal.version():020d}.json"
    journal.create_checkpoint()
    last.unlink()
    assert index(house.lake).partitions(late) == [date(2026, 11, 11)]


@pytest.mark.slow
def test_a_full_refresh_starts_the_index_again(house: Lakehouse) -> None:
    a_week_of_jobs(house)
    idx = index(house.lake)
    idx.refresh()
    house.pipeline.run(full_refresh=True)
    jobs, _ = keys_of(house.lake, JOB_EVENTS, job_id="j4")
    assert idx.partitions(jobs) == [date(2026, 11, 14)]
    runs = list((Path(house.lake.uri) / "_index" / JOB_EVENTS.name).glob("run-*.u64"))
    assert len(runs) == 1  # the rows before the overwrite were dropped, not kept beside the new ones


@pytest.mark.slow
def test_many_small_commits_are_merged_into_few_runs(house: Lakehouse) -> None:
    for n in range(16):
        house.run(start(f"k{n}", f"{DAYS[n % len(DAYS)]}T09:00:00Z"))
        index(house.lake).refresh()
    runs = list((Path(house.lake.uri) / "_index" / JOB_EVENTS.name).glob("run-*.u64"))
    assert 1 <= len(runs) <= 5  # a binary counter: about log2(16) runs, never one per commit
    jobs, _ = keys_of(house.lake, JOB_EVENTS, job_id="k9")
    assert index(house.lake).partitions(jobs) == [date.fromisoformat(DAYS[9 % len(DAYS)])]


@pytest.mark.slow
def test_rows_a_compaction_moved_before_the_index_saw_them_are_found(house: Lakehouse) -> None:
    a_week_of_jobs(house)
    index(house.lake).refresh()
    house.run(start("moved", f"{DAYS[0]}T10:00:00Z"))  # a second file in the first partition
    delta = house.lake.open(JOB_EVENTS)
    assert delta is not None
    delta.optimize.compact()  # both files of that partition rewritten into one (no data change)
    delta.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    moved, _ = keys_of(house.lake, JOB_EVENTS, job_id="moved")
    assert index(house.lake).partitions(moved) == [date(2026, 11, 10)]


@pytest.mark.slow
def test_an_index_larger_than_memory_allows_is_sorted_in_key_ranges_on_disk(
    house: Lakehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vhlake.lake.key_index as key_index

    a_week_of_jobs(house)
    monkeypatch.setattr(key_index, "_IN_MEMORY", 3)  # every run past three entries goes through the spill
    for n, day in enumerate(DAYS):
        jobs, events = keys_of(house.lake, JOB_EVENTS, job_id=f"j{n}")
        assert index(house.lake).partitions(jobs, events) == [date.fromisoformat(day)]
    directory = Path(house.lake.uri) / "_index" / JOB_EVENTS.name
    assert not list(directory.glob("spill-*"))  # the spill is removed once the run is written

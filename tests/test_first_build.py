"""A first build (pipeline/first_build.py) gives exactly the tables the incremental path gives, exactly once."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import pyarrow.parquet as pq
import pytest

from conftest import ingest, make_event, ordered_rows, rows, version, write_lines
from vhlake.lake import direct_write
from vhlake.lake.delta import Lake
from vhlake.lake.tables import (
    BRONZE,
    ERROR_TYPE_GOLD,
    GOLD,
    JOB_EVENTS,
    PIPELINE_RUNS,
    QUARANTINE,
    SILVER,
    USER_ENGAGEMENT_GOLD,
    USER_FIRST_SEEN,
)
from vhlake.pipeline import first_build
from vhlake.pipeline.runner import PIPELINE_APP, Pipeline
from vhlake.samples import SampleSpec, generate_lines, write_jsonl


# Small sizes so that a few thousand events take the first-build path, in several buckets.
class BuildSizes(TypedDict):
    rows_per_batch: int
    build_bucket_rows: int


BUILD = BuildSizes(rows_per_batch=500, build_bucket_rows=700)  # buckets of whole days (~100 events each)
SPLIT_DAYS = BuildSizes(rows_per_batch=500, build_bucket_rows=60)  # each day cut by job into buckets
KEYS = {
    SILVER.name: ["job_id"],
    GOLD.name: ["date", "marketplace", "category"],
    ERROR_TYPE_GOLD.name: ["date", "marketplace", "category", "error_type"],
    QUARANTINE.name: ["source", "source_offset"],
    JOB_EVENTS.name: ["source", "source_offset"],
    USER_ENGAGEMENT_GOLD.name: ["date", "marketplace"],
    USER_FIRST_SEEN.name: ["marketplace", "user_id"],
}


# Several bronze commits per file, as a large feed lands.
BATCH_BYTES = 64 * 1024
# What may differ between two correct builds: when they ran (updated_at) and where a job's events are filed
# (job_date: its created date when first seen).
BUILD_DEPENDENT = ("updated_at", "job_date")


def same_tables(built: Lake, reference: Lake) -> None:
    for table in (
        SILVER,
        GOLD,
        ERROR_TYPE_GOLD,
        USER_ENGAGEMENT_GOLD,
        USER_FIRST_SEEN,
        QUARANTINE,
        JOB_EVENTS,
    ):
        keys = KEYS[table.name]
        assert ordered_rows(rows(built, table), keys, without=BUILD_DEPENDENT) == ordered_rows(
            rows(reference, table), keys, without=BUILD_DEPENDENT
        ), table.name


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    spec = SampleSpec(jobs=1500, bad_event_rate=0.01, duplicate_rate=0.03, garbage_rate=0.005)
    write_jsonl(generate_lines(spec), path)
    return path


def two_lakes(tmp_path: Path, path: Path) -> tuple[Lake, Lake]:
    """The same bronze in two lakes: one to build at once, one to build range by range."""
    built = Lake(str(tmp_path / "built"))
    ingest(built, path, batch_bytes=BATCH_BYTES)
    shutil.copytree(tmp_path / "built", tmp_path / "reference")
    return built, Lake(str(tmp_path / "reference"))


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [BUILD, SPLIT_DAYS], ids=["whole-days", "split-days"])
def test_a_first_build_equals_the_incremental_build(tmp_path: Path, samples: Path, sizes: BuildSizes) -> None:
    built, reference = two_lakes(tmp_path, samples)
    report = Pipeline(built, **sizes).run()
    Pipeline(reference, versions_per_batch=1).run()
    same_tables(built, reference)
    assert report.jobs_upserted == rows(built, SILVER).num_rows
    assert report.quarantined == rows(built, QUARANTINE).num_rows > 0
    assert rows(built, ERROR_TYPE_GOLD).num_rows > 0
    assert rows(built, USER_ENGAGEMENT_GOLD).num_rows > 0
    # one commit per table: the build's (the incremental path merges once per range)
    for table in (SILVER, GOLD, ERROR_TYPE_GOLD, JOB_EVENTS):
        assert version(built, table) == 1, table.name
    logged = rows(built, PIPELINE_RUNS).to_pylist()
    assert [(r["upstream_from_version"], r["status"], r["rows_out"]) for r in logged] == [
        (-1, "success", report.jobs_upserted)
    ]


@pytest.mark.slow
def test_after_a_first_build_the_next_runs_are_incremental(tmp_path: Path, samples: Path) -> None:
    built, reference = two_lakes(tmp_path, samples)
    Pipeline(built, **BUILD).run()
    Pipeline(reference, versions_per_batch=1).run()
    later = write_lines(
        tmp_path / "later.jsonl",
        [make_event(1, event_id="late-1", job_id="job-late", marketplace="shopee"), make_event(2)],
    )
    ingest(built, later, batch_bytes=BATCH_BYTES)
    shutil.rmtree(tmp_path / "reference" / "bronze")  # the same bronze: same ingestion times
    shutil.copytree(tmp_path / "built" / "bronze", tmp_path / "reference" / "bronze")
    for lake in (built, reference):
        Pipeline(lake, **BUILD).run()
    same_tables(built, reference)
    assert version(built, SILVER) == 2


def test_each_silver_file_of_a_first_build_is_one_row_group(tmp_path: Path, samples: Path) -> None:
    # Buckets are by job and files by day: writing each bucket's silver rows as they were folded gave every
    # file a row group per bucket, whose footers the open files held in memory (files x buckets).
    built, _ = two_lakes(tmp_path, samples)
    Pipeline(built, **BUILD).run()
    silver = built.open(SILVER)
    assert silver is not None
    files = silver.file_uris()
    assert len(files) > 30  # a month of days, several marketplaces
    assert {pq.ParquetFile(f).metadata.num_row_groups for f in files} == {1}


def bucket_of(job_id: str, buckets: int) -> int:
    return int(hashlib.md5(job_id.encode()).hexdigest()[:15], 16) % buckets


def test_a_copy_of_an_event_sent_for_a_job_in_another_bucket_is_dropped(tmp_path: Path) -> None:
    events = [make_event(n, job_id=f"job-{n}") for n in range(1200)]  # 2 buckets of 700
    first, second = (
        "job-1",
        next(f"job-{n}" for n in range(2, 1200) if bucket_of(f"job-{n}", 2) != bucket_of("job-1", 2)),
    )
    copy = make_event(1, job_id=second, marketplace="shopee", event_type="validation_completed")
    path = write_lines(tmp_path / "a.jsonl", events)
    built = Lake(str(tmp_path / "built"))
    ingest(built, path, batch_bytes=BATCH_BYTES)
    ingest(
        built, write_lines(tmp_path / "b.jsonl", [copy]), batch_bytes=BATCH_BYTES
    )  # received later: a duplicate of evt-1
    shutil.copytree(tmp_path / "built", tmp_path / "reference")
    reference = Lake(str(tmp_path / "reference"))
    Pipeline(built, **BUILD).run()
    Pipeline(reference, versions_per_batch=1).run()
    same_tables(built, reference)
    silver = {r["job_id"]: r for r in rows(built, SILVER).to_pylist()}
    assert silver[first]["marketplace"] == "mercado_livre"
    assert silver[second]["status"] == "running"  # its own start only: the copy did not count
    assert all(e["event_id"] != "evt-1" or e["job_id"] == first for e in rows(built, JOB_EVENTS).to_pylist())


@pytest.mark.slow
def test_jobs_whose_events_fall_on_several_days_are_folded_whole(tmp_path: Path, samples: Path) -> None:
    """Buckets are cut by the events' date: a job whose end falls a day or two after its start, or whose
    late event arrives later, has events in several buckets, and must still be folded as one job."""
    lines = []
    for line in samples.read_text().splitlines():
        try:
            event = json.loads(line)
            late = event["event_type"] != "validation_started" and bucket_of(event["job_id"], 4) == 0
            stamp = datetime.fromisoformat(event["timestamp"])
        except (ValueError, KeyError, TypeError):  # the samples' garbage stays as it is
            lines.append(line)
            continue
        if late:  # its end (and any other event after the start) a day or two later
            days = 1 + bucket_of(event["job_id"] + "+", 2)
            event["timestamp"] = (stamp + timedelta(days=days)).isoformat()
        lines.append(json.dumps(event))
    path = write_lines(tmp_path / "spread.jsonl", lines)
    built, reference = two_lakes(tmp_path, path)
    days_of: dict[str, set[str]] = {}
    for e in rows(built, BRONZE).select(["job_id", "event_date"]).to_pylist():
        days_of.setdefault(e["job_id"], set()).add(str(e["event_date"]))
    assert sum(len(d) > 1 for d in days_of.values()) > 100  # many jobs span days, so buckets

    report = Pipeline(built, **BUILD).run()
    Pipeline(reference, versions_per_batch=1).run()
    same_tables(built, reference)
    assert report.jobs_upserted == rows(built, SILVER).num_rows


@pytest.mark.slow
def test_a_build_that_fails_before_its_last_commit_is_redone_exactly_once(
    tmp_path: Path, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built, reference = two_lakes(tmp_path, samples)
    commit = direct_write.DirectWrite.commit
    monkeypatch.setattr(
        first_build, "_SEAL_EVERY_BUCKETS", 1
    )  # files closed before the commit are abandoned too

    def crash_on_job_events(self: direct_write.DirectWrite, **kwargs: Any) -> None:
        if self._table is JOB_EVENTS:
            raise OSError("disk gone")
        commit(self, **kwargs)

    monkeypatch.setattr(direct_write.DirectWrite, "commit", crash_on_job_events)
    with pytest.raises(OSError, match="disk gone"):
        Pipeline(built, **SPLIT_DAYS).run()
    assert built.txn_version(SILVER, PIPELINE_APP) is not None
    assert built.txn_version(JOB_EVENTS, PIPELINE_APP) is None
    assert not list(Path(built.table_uri(JOB_EVENTS)).rglob("*.parquet"))  # its abandoned files are gone
    silver_version = version(built, SILVER)
    monkeypatch.setattr(direct_write.DirectWrite, "commit", commit)
    Pipeline(built, **SPLIT_DAYS).run()
    Pipeline(reference, versions_per_batch=1).run()
    same_tables(built, reference)
    assert version(built, SILVER) == silver_version  # done tables are left alone
    files = [f.parent for f in Path(built.table_uri(JOB_EVENTS)).rglob("*.parquet")]
    assert len(files) > len(set(files))  # each bucket closed its files: a partition has several
    failed = [r for r in built.open(PIPELINE_RUNS).to_pyarrow_table().to_pylist() if r["status"] == "failed"]  # type: ignore[union-attr]
    assert len(failed) == 1 and "disk gone" in failed[0]["error"]


def test_a_stopped_build_commits_nothing(tmp_path: Path, samples: Path) -> None:
    built = Lake(str(tmp_path / "built"))
    ingest(built, samples, batch_bytes=BATCH_BYTES)
    stop = threading.Event()
    stop.set()
    report = Pipeline(built, **BUILD).run(stop=stop)
    assert report.was_noop
    assert all(built.txn_version(t, PIPELINE_APP) is None for t in (SILVER, GOLD, QUARANTINE, JOB_EVENTS))


@pytest.mark.slow
def test_a_run_reports_its_progress_phase_by_phase(tmp_path: Path, samples: Path) -> None:
    built, reference = two_lakes(tmp_path, samples)
    heard: dict[str, tuple[int, int]] = {}
    Pipeline(built, **BUILD).run(
        on_progress=lambda phase, done, total: heard.__setitem__(phase, (done, total))
    )
    assert set(heard) == {
        "reading bronze (rows)",
        "folding job buckets",
        "writing silver by day",
        "committing tables",
        "indexing job events, engagement",
    }
    assert all(done == total > 0 for done, total in heard.values())
    heard.clear()
    Pipeline(reference, versions_per_batch=1).run(
        on_progress=lambda phase, done, total: heard.__setitem__(phase, (done, total))
    )
    done, total = heard["bronze commits"]
    assert done == total == version(reference, BRONZE) + 1


def test_the_same_pipeline_rebuilds_after_a_first_build_with_a_full_refresh(
    tmp_path: Path, samples: Path
) -> None:
    """The first build commits its files through handles of its own: the overwrite a full refresh starts
    with must see those commits, or Delta refuses it as a concurrent transaction."""
    built, reference = two_lakes(tmp_path, samples)
    pipeline = Pipeline(built, **BUILD)
    first = pipeline.run()
    again = pipeline.run(full_refresh=True)
    assert again.events_in == first.events_in > 0
    Pipeline(reference, versions_per_batch=1).run()
    same_tables(built, reference)

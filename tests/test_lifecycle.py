"""vhlake maintain: retention removes exactly what is past its age, vacuum keeps what versions need,
a dry run changes nothing, and maintenance next to a running pipeline leaves correct tables. On local
disk and on a real S3-compatible server (moto)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import CliResult, build_analytics_lake
from servers import MotoS3
from test_pipeline_properties import comparable
from vhlake.errors import ConfigError
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, GOLD, SILVER, TableDef
from vhlake.lifecycle.maintain import Retention, maintain
from vhlake.pipeline.runner import Pipeline
from vhlake.samples import SampleSpec, generate_lines, write_jsonl

TODAY = date(2026, 11, 27)  # the sample feed's last day
SHORT = Retention(bronze_days=10, silver_days=20, gold_days=25)


def per_day(lake: Lake, table: TableDef, column: str) -> Counter[date]:
    rows = pa.table(lake.open(table).to_pyarrow_table(columns=[column]))  # type: ignore[union-attr]
    return Counter(rows[column].to_pylist())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_analytics_lake(tmp_path_factory.mktemp("lifecycle"), jobs=2_000, seed=3).uri  # type: ignore[return-value]


@pytest.fixture
def lake(built: str, tmp_path: Path) -> Lake:
    import shutil

    shutil.copytree(built, tmp_path / "lake")
    return Lake(str(tmp_path / "lake"))


def test_retention_removes_exactly_the_partitions_past_their_age(lake: Lake) -> None:
    before = {
        t.name: per_day(lake, t, c)
        for t, c in ((BRONZE, "event_date"), (SILVER, "created_date"), (GOLD, "date"))
    }
    reports = {r.table: r for r in maintain(lake, SHORT, today=TODAY)}
    for table, column, days in ((BRONZE, "event_date", 10), (SILVER, "created_date", 20), (GOLD, "date", 25)):
        cutoff = TODAY - timedelta(days=days)
        kept = {d: n for d, n in before[table.name].items() if d >= cutoff}
        assert per_day(lake, table, column) == kept, table.name
        expired = sum(n for d, n in before[table.name].items() if d < cutoff)
        assert expired > 0 and reports[table.name].rows_expired == expired
    assert not any(r.skipped for r in reports.values())


def test_a_dry_run_changes_nothing_and_counts_what_would_go(lake: Lake) -> None:
    tables = (BRONZE, SILVER, GOLD)
    versions = [lake.open(t).version() for t in tables]  # type: ignore[union-attr]
    planned = {r.table: r.rows_expired for r in maintain(lake, SHORT, today=TODAY, dry_run=True)}
    assert [lake.open(t).version() for t in tables] == versions  # type: ignore[union-attr]
    done = {r.table: r.rows_expired for r in maintain(lake, SHORT, today=TODAY)}
    assert planned == done and planned[BRONZE.name] > 0


@pytest.mark.slow
def test_a_dry_run_plans_the_compaction_the_real_run_does(tmp_path: Path) -> None:
    """Many small commits leave many small files; the dry run counts, per table, the files the real
    compaction then rewrites and the files it writes (nothing expires here, so only compaction differs)."""
    feed = tmp_path / "feed.jsonl"
    write_jsonl(generate_lines(SampleSpec(jobs=1_200, seed=4)), feed)
    lake = Lake(str(tmp_path / "lake"))
    BronzeIngestor(lake, source_system="test", batch_bytes=16 * 1024).ingest_file(feed)
    Pipeline(lake).run()
    keep_all = Retention(bronze_days=10_000, silver_days=10_000, gold_days=10_000)
    planned = {
        r.table: (r.files_compacted, r.files_written)
        for r in maintain(lake, keep_all, today=TODAY, dry_run=True)
    }
    done = {r.table: (r.files_compacted, r.files_written) for r in maintain(lake, keep_all, today=TODAY)}
    assert planned == done
    assert planned[BRONZE.name][0] > 10


def test_vacuum_never_removes_files_a_current_version_needs(lake: Lake) -> None:
    rows_before = lake.open(SILVER).to_pyarrow_table().num_rows  # type: ignore[union-attr]
    first = {r.table: r for r in maintain(lake, SHORT, today=TODAY)}  # 168 h: the files just removed stay
    assert first[SILVER.name].files_vacuumed == 0
    assert maintain(lake, Retention(10, 20, 25, vacuum_hours=0, min_vacuum_hours=0), today=TODAY)
    delta = lake.open(SILVER)
    assert delta is not None
    assert all(Path(uri.removeprefix("file://")).exists() for uri in delta.file_uris())
    kept = rows_before - first[SILVER.name].rows_expired
    assert delta.to_pyarrow_table().num_rows == kept  # the current version reads whole


def test_a_vacuum_below_the_minimum_is_refused(lake: Lake) -> None:
    with pytest.raises(ConfigError, match="below the minimum"):
        maintain(lake, Retention(vacuum_hours=1), today=TODAY)


@pytest.mark.slow
def test_maintenance_beside_a_running_pipeline_leaves_correct_tables(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    write_jsonl(generate_lines(SampleSpec(jobs=1_500, seed=9, duplicate_rate=0.02)), feed)
    lakes = [Lake(str(tmp_path / name)) for name in ("maintained", "reference")]
    for lake in lakes:
        BronzeIngestor(lake, source_system="test", batch_bytes=32 * 1024).ingest_file(feed)
    stop, errors = threading.Event(), []

    def maintain_in_a_loop() -> None:
        try:
            while not stop.is_set():
                maintain(lakes[0], Retention(), today=TODAY)  # nothing expires: only rewrites race
        except Exception as exc:  # the test fails below with it
            errors.append(exc)

    worker = threading.Thread(target=maintain_in_a_loop)
    worker.start()
    try:
        Pipeline(lakes[0], versions_per_batch=1).run()  # many small MERGEs next to the rewrites
    finally:
        stop.set()
        worker.join()
    assert not errors
    Pipeline(lakes[1]).run()
    assert comparable(lakes[0]) == comparable(lakes[1])


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    server = MotoS3()
    yield server
    server.stop()


def test_ingest_pipeline_query_and_maintenance_on_s3(
    s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)  # what delta-rs's object store reads
    lake = Lake(f"s3://{s3.create_bucket('lake-test')}/vhlake")
    feed = tmp_path / "feed.jsonl"
    write_jsonl(generate_lines(SampleSpec(jobs=800, seed=4, bad_event_rate=0.01)), feed)
    BronzeIngestor(lake, source_system="test", batch_bytes=64 * 1024).ingest_file(feed)
    report = Pipeline(lake).run()
    assert report.jobs_upserted > 0
    from vhlake.query.duckdb_engine import DuckDBEngine

    engine = DuckDBEngine(lake)
    jobs = engine.execute("SELECT count(*) AS n FROM validation_results_silver")["n"][0].as_py()
    assert jobs == len(pa.table(lake.open(SILVER).to_pyarrow_table()))  # type: ignore[union-attr]
    before = per_day(lake, BRONZE, "event_date")
    done = {r.table: r for r in maintain(lake, SHORT, today=TODAY)}
    cutoff = TODAY - timedelta(days=10)
    assert per_day(lake, BRONZE, "event_date") == {d: n for d, n in before.items() if d >= cutoff}
    assert done[BRONZE.name].rows_expired == sum(n for d, n in before.items() if d < cutoff) > 0


def test_forget_on_s3_leaves_no_row_of_the_user(
    s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vhlake.lifecycle.erasure import forget_user
    from vhlake.query.duckdb_engine import DuckDBEngine

    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    lake = Lake(f"s3://{s3.create_bucket('forget-test')}/vhlake")
    feed = tmp_path / "feed.jsonl"
    write_jsonl(generate_lines(SampleSpec(jobs=600, seed=6)), feed)
    BronzeIngestor(lake, source_system="test", batch_bytes=64 * 1024).ingest_file(feed)
    pipeline = Pipeline(lake)
    pipeline.run()
    user = (
        DuckDBEngine(lake).execute("SELECT min(user_id) AS u FROM validation_results_silver")["u"][0].as_py()
    )
    report = forget_user(lake, pipeline, user, requested_by="test", vacuum=True)
    assert report.rows[SILVER.name] > 0 and report.rows[BRONZE.name] > 0
    engine = DuckDBEngine(lake)
    for table in ("validation_events_bronze", "validation_job_events", "validation_results_silver"):
        assert (
            engine.execute(f"SELECT count(*) AS n FROM {table} WHERE user_id = $u", {"u": user})["n"][
                0
            ].as_py()
            == 0
        )


def test_forget_on_s3_needs_no_event_log_setting_and_erases_a_configured_log(
    s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., CliResult]
) -> None:
    """A lake only fed by ``vhlake ingest FILE`` has no embedded log: nothing to set for an erasure."""
    from vhlake.events.embedded_log import EmbeddedEventLog
    from vhlake.query.duckdb_engine import DuckDBEngine

    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    for name in ("VHLAKE_EVENT_LOG_PATH", "VHLAKE_LAKE_URI", "VHLAKE_EVENT_LOG"):
        monkeypatch.delenv(name, raising=False)
    uri = f"s3://{s3.create_bucket('forget-cli')}/prefix"
    feed = tmp_path / "feed.jsonl"
    write_jsonl(generate_lines(SampleSpec(jobs=300, seed=9)), feed)
    assert run_cli("--lake", uri, "ingest", str(feed)).exit_code == 0
    users = ["user-1", "user-2"]

    def left(user: str) -> int:
        engine = DuckDBEngine(Lake(uri))
        return sum(
            engine.execute(f"SELECT count(*) AS n FROM {table} WHERE user_id = $u", {"u": user})["n"][
                0
            ].as_py()
            for table in ("validation_events_bronze", "validation_results_silver")
        )

    assert all(left(user) > 0 for user in users)
    forgot = run_cli("--lake", uri, "forget", "--user-id", users[0])
    assert forgot.exit_code == 0, forgot.stderr
    assert left(users[0]) == 0 and left(users[1]) > 0

    log_path = tmp_path / "log.db"  # configured: its records of the user go too
    log = EmbeddedEventLog(log_path, topic="validation-events")
    log.append([json.dumps({"user_id": users[1]}).encode(), b'{"user_id": "user-3"}'], ["a", "b"])
    log.close()
    monkeypatch.setenv("VHLAKE_EVENT_LOG_PATH", str(log_path))
    forgot = run_cli("--lake", uri, "forget", "--user-id", users[1])
    assert forgot.exit_code == 0, forgot.stderr
    assert left(users[1]) == 0 and "1 event log records" in " ".join(forgot.stdout.split())
    log = EmbeddedEventLog(log_path, topic="validation-events")
    assert [json.loads(r) for r in log.read(0, 10).records["raw"].to_pylist()] == [{"user_id": "user-3"}]
    log.close()

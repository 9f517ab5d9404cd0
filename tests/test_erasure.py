"""vhlake forget: no row of the user anywhere (checked with SQL), gold equal to a rebuild, evidence kept."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from conftest import CliResult, build_analytics_lake, make_event, write_lines
from test_pipeline_properties import comparable
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.delta import Lake
from vhlake.lake.tables import (
    AUDIT_LOG,
    BRONZE,
    ERROR_TYPE_GOLD,
    GOLD,
    JOB_EVENTS,
    QUARANTINE,
    SILVER,
    TableDef,
)
from vhlake.lifecycle.erasure import forget_user
from vhlake.pipeline.error_types import error_type_daily
from vhlake.pipeline.gold import daily_metrics
from vhlake.pipeline.gold_groups import KEYS
from vhlake.pipeline.runner import Pipeline, RunReport
from vhlake.query.duckdb_engine import DuckDBEngine

USER_TABLES = (
    "validation_events_bronze",
    "validation_events_quarantine",
    "validation_job_events",
    "validation_results_silver",
)


def test_forget_erases_a_user_everywhere_and_keeps_only_evidence(tmp_path: Path) -> None:
    lake = build_analytics_lake(tmp_path, jobs=1_500, seed=8)
    engine = DuckDBEngine(lake)
    user = engine.execute(
        "SELECT user_id FROM validation_results_silver GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    )["user_id"][0].as_py()
    jobs = engine.execute("SELECT job_id FROM validation_results_silver WHERE user_id = $u", {"u": user})
    # a terminal event of one of the user's jobs without the user, a quarantined event, and a reject
    job = jobs["job_id"][0].as_py()
    extra: list[str | dict[str, Any]] = [
        make_event(1, event_id="late-terminal", job_id=job, user_id=None, event_type="validation_completed"),
        make_event(2, event_id="bad-one", job_id="", user_id=user),
        '{"user_id": ' + json.dumps(user) + ', "oops"',
    ]
    BronzeIngestor(lake, source_system="test", batch_bytes=1 << 20).ingest_file(
        write_lines(tmp_path / "more.jsonl", extra)
    )
    log = EmbeddedEventLog(tmp_path / "log.db", topic="validation-events")
    log.append(
        [json.dumps({"user_id": user}).encode(), b'{"user_id": "someone-else"}', b"not json"], ["x", "y", job]
    )
    assert engine.execute("SELECT count(*) AS n FROM validation_events_rejected")["n"][0].as_py() > 0

    report = forget_user(lake, Pipeline(lake), user, requested_by="dpo", event_log=log, vacuum=True)

    engine = DuckDBEngine(lake)
    for table in USER_TABLES:
        left = engine.execute(
            f"SELECT count(*) AS n FROM {table} WHERE user_id = $u OR job_id IN (SELECT unnest($jobs))",
            {"u": user, "jobs": jobs["job_id"].to_pylist()},
        )
        assert left["n"][0].as_py() == 0, table
        assert report.rows[table] > 0 or table == "validation_events_quarantine"
    rejects = engine.execute(
        "SELECT count(*) AS n FROM validation_events_rejected WHERE contains(raw, $u)", {"u": user}
    )
    assert rejects["n"][0].as_py() == 0
    assert log.read(0, 100).records.num_rows == 1 and report.log_records == 2  # by user id and by job key

    silver = pa.table(lake.open(SILVER).to_pyarrow_table())  # type: ignore[union-attr]
    for gold, compute in ((GOLD, daily_metrics), (ERROR_TYPE_GOLD, error_type_daily)):
        rebuilt = compute(duckdb.connect(), silver, updated_at=datetime.now(UTC)).drop_columns(["updated_at"])
        stored = pa.table(lake.open(gold).to_pyarrow_table()).drop_columns(["updated_at"])  # type: ignore[union-attr]
        order = [(key, "ascending") for key in KEYS[gold.name]]
        assert stored.num_rows > 0, gold.name
        assert stored.sort_by(order).to_pylist() == rebuilt.cast(stored.schema).sort_by(order).to_pylist()

    evidence = pa.table(lake.open(AUDIT_LOG).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    [record] = [r for r in evidence if r["method"] == "FORGET"]
    assert record["key_id"] == "dpo" and user not in record["details"]
    assert json.loads(record["details"])["rows_removed"]["validation_results_silver"] == jobs.num_rows
    change_data = Path(lake.table_uri(BRONZE)) / "_change_data"  # what the deletes themselves recorded
    left = (
        duckdb.sql(
            "SELECT count(*) FROM read_parquet($files, union_by_name = true) WHERE user_id = $u",
            params={"files": [str(f) for f in change_data.rglob("*.parquet")] or [""], "u": user},
        )
        if list(change_data.rglob("*.parquet"))
        else None
    )
    assert left is None or left.fetchall() == [(0,)]
    before = DeltaTable(lake.table_uri(SILVER), version=1)  # the pipeline's first silver, with the user
    with pytest.raises(OSError):  # vacuumed: the files of the versions that held the user are gone
        before.to_pyarrow_table()


def files_by_day(lake: Lake, table: TableDef, *, version: int | None = None) -> dict[date, set[str]]:
    """The table's data files (as its Delta log names them) per date partition."""
    delta = DeltaTable(lake.table_uri(table), version=version)
    actions = pa.table(delta.get_add_actions(flatten=True))
    days: dict[date, set[str]] = {}
    for path, day in zip(
        actions["path"].to_pylist(), actions[f"partition.{table.date_column}"].to_pylist(), strict=True
    ):
        days.setdefault(day, set()).add(path)
    return days


def days_holding(lake: Lake, table: TableDef, user: str) -> set[date]:
    """The date partitions of ``table`` holding rows of ``user`` or of the user's jobs, by SQL."""
    rows = DuckDBEngine(lake).execute(
        f"""SELECT DISTINCT {table.date_column} AS day FROM {table.name}
        WHERE user_id = $u OR job_id IN (SELECT job_id FROM validation_job_events WHERE user_id = $u
            UNION SELECT job_id FROM validation_results_silver WHERE user_id = $u)""",
        {"u": user},
    )
    return set(rows["day"].to_pylist())


@pytest.mark.slow
def test_forget_reads_and_rewrites_only_the_partitions_holding_the_user(tmp_path: Path) -> None:
    """Each delete MERGE names only date partitions holding rows of the user or the user's jobs (here one
    partition per MERGE: a bound of one row per MERGE), scans only their files, and the files of every
    other partition are the same files after the erasure as before."""
    lake = build_analytics_lake(tmp_path, jobs=1_500, seed=8)
    user = busiest_user(lake)
    tables = (BRONZE, QUARANTINE, JOB_EVENTS, SILVER)
    holding = {table.name: days_holding(lake, table, user) for table in tables}
    assert 0 < len(holding[BRONZE.name]) < len(files_by_day(lake, BRONZE))  # days without the user exist
    before = {t.name: (lake.open(t).version(), files_by_day(lake, t)) for t in tables}  # type: ignore[union-attr]

    forget_user(lake, Pipeline(lake), user, requested_by="dpo", rows_per_merge=1)

    for table in tables:
        start, files = before[table.name]
        after = files_by_day(lake, table)
        for day in files.keys() - holding[table.name]:
            assert after.get(day) == files[day], (table.name, day)
        for day in holding[table.name]:  # the files that held the user were rewritten
            assert not files[day] <= after.get(day, set()), (table.name, day)
        history = DeltaTable(lake.table_uri(table)).history()
        merges = [c for c in history if c["version"] > start and c["operation"] == "MERGE"]
        named = set()
        for commit in merges:
            predicate = commit["operationParameters"].get("predicate", "")  # the partitions it named
            days = {date.fromisoformat(d) for d in re.findall(r"\d{4}-\d{2}-\d{2}", predicate)}
            assert len(days) == 1, (table.name, commit["operationParameters"])
            [day] = days
            read = files_by_day(lake, table, version=commit["readVersion"])
            assert commit["operationMetrics"]["num_target_files_scanned"] <= len(read[day]), commit
            named.add(day)
        assert named == holding[table.name], table.name
        left = DuckDBEngine(lake).execute(
            f"SELECT count(*) AS n FROM {table.name} WHERE user_id = $u", {"u": user}
        )
        assert left["n"][0].as_py() == 0


# -- after an erasure, every command works and the erased rows stay erased ---------------------------------


def feed_lines(seed: int, jobs: int = 300) -> list[str]:
    from vhlake.samples import SampleSpec, generate_lines

    return [
        str(line) for line in generate_lines(SampleSpec(jobs=jobs, seed=seed, bad_event_rate=0.01))["line"]
    ]


def without_user(lines: list[str], user: str) -> list[str]:
    """``lines`` without the events of ``user`` and of the user's jobs: what an erasure leaves."""
    parsed = [_event_or_none(line) for line in lines]
    jobs = {e.get("job_id") for e in parsed if e is not None and e.get("user_id") == user}
    return [
        line
        for line, event in zip(lines, parsed, strict=True)
        if event is None or (event.get("user_id") != user and event.get("job_id") not in jobs)
    ]


def _event_or_none(line: str) -> dict[str, object] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def reference_lake(root: Path, feeds: list[list[str]]) -> Lake:
    """The lake the feeds build when ingested in order and run once: what an erased lake must equal."""
    lake = Lake(str(root))
    ingestor = BronzeIngestor(lake, source_system="test", batch_bytes=1 << 20)
    for n, lines in enumerate(feeds):
        ingestor.ingest_file(write_lines(root.parent / f"{root.name}-{n}.jsonl", lines))
    Pipeline(lake).run()
    return lake


def busiest_user(lake: Lake) -> str:
    return str(
        DuckDBEngine(lake)
        .execute(
            "SELECT user_id FROM validation_results_silver GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
        )["user_id"][0]
        .as_py()
    )


@pytest.mark.slow
def test_every_command_works_after_forget_vacuum_and_the_erased_stay_erased(
    tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    lake_dir = tmp_path / "lake"
    lake = Lake(str(lake_dir))
    ingested: list[list[str]] = []

    def vhlake(*args: str) -> CliResult:
        result = run_cli("--lake", str(lake_dir), *args)
        assert result.exit_code == 0, result.stdout + result.stderr
        return result

    def ingest(lines: list[str]) -> None:
        ingested.append(lines)
        vhlake("ingest", str(write_lines(tmp_path / f"feed-{len(ingested)}.jsonl", lines)))

    def forget(user: str) -> None:
        vhlake("forget", "--user-id", user, "--vacuum")
        ingested[:] = [without_user(lines, user) for lines in ingested]

    def assert_equals_reference() -> None:
        expected = reference_lake(tmp_path / f"reference-{uuid.uuid4().hex[:8]}", ingested)
        assert comparable(lake) == comparable(expected)

    ingest(feed_lines(seed=1))
    vhlake("pipeline", "run")
    first = busiest_user(lake)
    forget(first)
    ingest(feed_lines(seed=2))  # the same user ids come back with new jobs: those are new data, kept
    vhlake("pipeline", "run")
    assert_equals_reference()
    vhlake("pipeline", "run", "--full-refresh")  # from bronze as it is now: nothing erased comes back
    assert_equals_reference()
    forget(busiest_user(lake))  # a later erasure runs the pipeline first: it must still work
    forget(first)
    ingest(feed_lines(seed=3))
    vhlake("pipeline", "run")
    assert_equals_reference()
    assert "validation_results_silver" in vhlake("tables").stdout

    # time travel to a version whose files were vacuumed: one line, no traceback
    travel = run_cli(
        "--lake", str(lake_dir), "query", "SELECT count(*) FROM validation_events_bronze VERSION AS OF 1"
    )
    assert travel.exit_code == 1
    message = travel.stderr.strip()
    assert message.startswith("error:") and "\n" not in message and "vacuum" in message, message


@pytest.mark.slow
def test_full_refresh_after_forget_without_vacuum_brings_nothing_back(
    tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    """The erased rows' old files are still there without --vacuum: a rebuild must not read them."""
    lake_dir = tmp_path / "lake"
    lines = feed_lines(seed=4)
    for args in (("ingest", str(write_lines(tmp_path / "feed.jsonl", lines))), ("pipeline", "run")):
        assert run_cli("--lake", str(lake_dir), *args).exit_code == 0
    user = busiest_user(Lake(str(lake_dir)))
    for command in (("forget", "--user-id", user), ("pipeline", "run", "--full-refresh")):
        result = run_cli("--lake", str(lake_dir), *command)
        assert result.exit_code == 0, result.stdout + result.stderr
    expected = reference_lake(tmp_path / "reference", [without_user(lines, user)])
    assert comparable(Lake(str(lake_dir))) == comparable(expected)


class IngestingAfterFirstRun(Pipeline):
    """A pipeline beside which ``vhlake serve`` ingests: a commit lands in bronze right after the erasure's
    first run, before its deletes (the deletes then rewrite that commit's files)."""

    def __init__(self, lake: Lake, racing: Path) -> None:
        super().__init__(lake)
        self._racing: Path | None = racing

    def run(self, **options: object) -> RunReport:
        report = super().run(**options)  # type: ignore[arg-type]
        if self._racing is not None:
            BronzeIngestor(self._lake, source_system="test", batch_bytes=1 << 20).ingest_file(self._racing)
            self._racing = None
        return report


@pytest.mark.slow
def test_a_commit_racing_the_erasure_is_processed_and_its_rows_of_the_user_erased(tmp_path: Path) -> None:
    first, racing = feed_lines(seed=5), feed_lines(seed=6)
    lake = reference_lake(tmp_path / "lake", [first])
    user = busiest_user(lake)
    racing_file = write_lines(tmp_path / "racing.jsonl", racing)
    forget_user(lake, IngestingAfterFirstRun(lake, racing_file), user, requested_by="dpo", vacuum=True)
    Pipeline(lake).run()  # what serve does next: the racing commit's files were vacuumed by then
    expected = reference_lake(tmp_path / "reference", [without_user(first, user), without_user(racing, user)])
    assert comparable(lake) == comparable(expected)

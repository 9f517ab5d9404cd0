"""vhlake forget: no row of the user anywhere (checked with SQL), gold equal to a rebuild, evidence kept."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from conftest import CliResult, build_analytics_lake, make_event, write_lines
from test_pipeline_properties import comparable
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.delta import Lake
from vhlake.lake.tables import AUDIT_LOG, BRONZE, GOLD, SILVER
from vhlake.lifecycle.erasure import forget_user
from vhlake.pipeline.gold import daily_metrics
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
    extra = [
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
    rebuilt = daily_metrics(duckdb.connect(), silver, updated_at=datetime.now(UTC)).drop_columns(
        ["updated_at"]
    )
    gold = pa.table(lake.open(GOLD).to_pyarrow_table()).drop_columns(["updated_at"])  # type: ignore[union-attr]
    order = [("date", "ascending"), ("marketplace", "ascending"), ("category", "ascending")]
    assert gold.sort_by(order).to_pylist() == rebuilt.cast(gold.schema).sort_by(order).to_pylist()

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


def test_full_refresh_after_forget_without_vacuum_brings_nothing_back(
    tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    """The erased rows' old files are still there without --vacuum: a rebuild must not read them."""
    lake_dir = tmp_path / "lake"
    lines = feed_lines(seed=4)
    for args in (("ingest", str(write_lines(tmp_path / "feed.jsonl", lines))), ("pipeline", "run")):
        assert run_cli("--lake", str(lake_dir), *args).exit_code == 0
    user = busiest_user(Lake(str(lake_dir)))
    for args in (("forget", "--user-id", user), ("pipeline", "run", "--full-refresh")):
        result = run_cli("--lake", str(lake_dir), *args)
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


def test_a_commit_racing_the_erasure_is_processed_and_its_rows_of_the_user_erased(tmp_path: Path) -> None:
    first, racing = feed_lines(seed=5), feed_lines(seed=6)
    lake = reference_lake(tmp_path / "lake", [first])
    user = busiest_user(lake)
    racing_file = write_lines(tmp_path / "racing.jsonl", racing)
    forget_user(lake, IngestingAfterFirstRun(lake, racing_file), user, requested_by="dpo", vacuum=True)
    Pipeline(lake).run()  # what serve does next: the racing commit's files were vacuumed by then
    expected = reference_lake(tmp_path / "reference", [without_user(first, user), without_user(racing, user)])
    assert comparable(lake) == comparable(expected)

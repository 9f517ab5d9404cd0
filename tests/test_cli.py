"""The command line, through its real entry point: output formats and one-line errors."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult, make_event, write_lines

Run = Callable[..., CliResult]


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    lines: list[object] = [
        make_event(1, marketplace="shopee", timestamp="2026-11-27T23:00:00-03:00"),
        make_event(2, marketplace="magalu", category="moda íntima"),
        make_event(3, marketplace="shopee", event_id=12),
        "{broken",
    ]
    return write_lines(tmp_path / "events.jsonl", lines)  # type: ignore[arg-type]


def test_ingest_reports_counts_and_is_idempotent(run_cli: Run, lake_dir: Path, events_file: Path) -> None:
    first = run_cli("--lake", str(lake_dir), "ingest", str(events_file))
    assert first.exit_code == 0, first.stderr
    assert "3 ingested" in first.stdout
    assert "1 rejected" in first.stdout
    second = run_cli("--lake", str(lake_dir), "ingest", str(events_file))
    assert "already ingested" in second.stdout


def test_query_json_output_is_an_array_of_row_objects_with_iso_dates(
    run_cli: Run, lake_dir: Path, events_file: Path
) -> None:
    run_cli("--lake", str(lake_dir), "ingest", str(events_file))
    result = run_cli(
        "--lake",
        str(lake_dir),
        "query",
        "SELECT event_id, marketplace, category, timestamp, event_date, _rescued_data "
        "FROM validahub.analytics.validation_events_bronze ORDER BY source_offset",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["marketplace"] for r in rows] == ["shopee", "magalu", "shopee"]
    assert rows[0]["timestamp"] == "2026-11-28T02:00:00+00:00"
    assert rows[0]["event_date"] == "2026-11-28"
    assert rows[1]["category"] == "moda íntima"
    assert rows[2]["event_id"] is None
    assert json.loads(rows[2]["_rescued_data"]) == {"event_id": 12}


def test_query_csv_and_table_output(run_cli: Run, lake_dir: Path, events_file: Path) -> None:
    run_cli("--lake", str(lake_dir), "ingest", str(events_file))
    sql = "SELECT marketplace, count(*) AS n FROM validation_events_bronze GROUP BY 1 ORDER BY 1"
    as_csv = run_cli("--lake", str(lake_dir), "query", sql, "--format", "csv")
    assert list(csv.DictReader(io.StringIO(as_csv.stdout))) == [
        {"marketplace": "magalu", "n": "1"},
        {"marketplace": "shopee", "n": "2"},
    ]
    as_table = run_cli("--lake", str(lake_dir), "query", sql)
    assert "shopee" in as_table.stdout
    assert "2 rows" in as_table.stdout


def test_query_with_an_empty_lake_sees_empty_tables(run_cli: Run, lake_dir: Path) -> None:
    result = run_cli(
        "--lake", str(lake_dir), "query", "SELECT count(*) AS n FROM validation_events_rejected", "-f", "json"
    )
    assert json.loads(result.stdout) == [{"n": 0}]


def test_tables_lists_rows_and_versions(run_cli: Run, lake_dir: Path, events_file: Path) -> None:
    run_cli("--lake", str(lake_dir), "ingest", str(events_file))
    result = run_cli("--lake", str(lake_dir), "tables")
    assert result.exit_code == 0
    bronze_line = next(line for line in result.stdout.splitlines() if "validation_events_bronze" in line)
    assert "│ 3 " in bronze_line


def test_schema_prints_the_event_json_schema(run_cli: Run) -> None:
    schema = json.loads(run_cli("schema").stdout)
    assert schema["properties"]["event_type"]["enum"] == [
        "validation_started",
        "validation_completed",
        "validation_failed",
    ]
    assert set(schema["required"]) >= {"event_type", "job_id", "marketplace"}


def test_publish_then_ingest_from_log(run_cli: Run, lake_dir: Path, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "p.jsonl", [make_event(1), make_event(2, event_type="validation_paused")])
    published = run_cli("--lake", str(lake_dir), "publish", str(source))
    assert "1 delivered, 0 waiting in the outbox, 0 failed, 1 invalid" in published.stdout
    assert "p.jsonl:2" in published.stderr
    ingested = run_cli("--lake", str(lake_dir), "ingest", "--from-log")
    assert "1 ingested" in ingested.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "/no/such/file.jsonl"], "no such file"),
        (["query", "SELEC nonsense FROM"], "error:"),
        (["query", "SELECT * FROM no_such_table"], "no_such_table"),
    ],
)
def test_errors_are_one_line_with_a_non_zero_exit(
    run_cli: Run, lake_dir: Path, args: list[str], message: str
) -> None:
    result = run_cli("--lake", str(lake_dir), *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


def test_ingest_without_arguments_explains_itself(run_cli: Run, lake_dir: Path) -> None:
    result = run_cli("--lake", str(lake_dir), "ingest")
    assert result.exit_code == 2
    assert "--from-log" in result.stderr


def test_ingest_pipeline_query_gold_end_to_end(run_cli: Run, lake_dir: Path, tmp_path: Path) -> None:
    events = write_lines(
        tmp_path / "jobs.jsonl",
        [
            make_event(1, event_id="a", timestamp="2026-11-27T10:00:00Z"),
            make_event(
                1,
                event_id="b",
                event_type="validation_failed",
                timestamp="2026-11-27T10:00:02Z",
                payload={"total_rows": 4, "processing_time_ms": 2000},
            ),
            make_event(2, event_id="c", job_id=""),
        ],
    )
    run_cli("--lake", str(lake_dir), "ingest", str(events))
    ran = run_cli("--lake", str(lake_dir), "pipeline", "run")
    assert "1 quarantined (missing_job_id: 1)" in ran.stdout
    assert "nothing new" in run_cli("--lake", str(lake_dir), "pipeline", "run").stdout
    gold = json.loads(
        run_cli(
            "--lake", str(lake_dir), "query", "SELECT * FROM marketplace_daily_metrics_gold", "-f", "json"
        ).stdout
    )
    assert len(gold) == 1
    assert (gold[0]["failed_validations"], gold[0]["total_rows_processed"], gold[0]["error_rate"]) == (
        1,
        4,
        1.0,
    )
    # a SUM of integers is a JSON number, as Databricks' BIGINT is (DuckDB alone gives a HUGEINT, a string here)
    summed = run_cli(
        "--lake", str(lake_dir), "query",
        "SELECT date, SUM(total_validations) AS v FROM marketplace_daily_metrics_gold GROUP BY date", "-f", "json",
    )  # fmt: skip
    assert json.loads(summed.stdout) == [{"date": "2026-11-27", "v": 1}]
    summary = run_cli("--lake", str(lake_dir), "quarantine", "summary")
    assert "missing_job_id" in summary.stdout

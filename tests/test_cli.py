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


def test_query_sees_a_table_not_written_yet_as_empty(run_cli: Run, lake_dir: Path, tmp_path: Path) -> None:
    run_cli("--lake", str(lake_dir), "ingest", str(write_lines(tmp_path / "ok.jsonl", [make_event(1)])))
    result = run_cli(
        "--lake", str(lake_dir), "query", "SELECT count(*) AS n FROM validation_results_silver", "-f", "json"
    )
    assert result.exit_code == 0, result.stderr
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
    run_cli: Run, lake_dir: Path, events_file: Path, args: list[str], message: str
) -> None:
    run_cli("--lake", str(lake_dir), "ingest", str(events_file))
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


# ---- which lake: a wrong one is an error, and only writing commands create one ----------------------------

READ_COMMANDS = [
    ["query", "SELECT count(*) FROM validation_results_silver"],
    ["tables"],
    ["pipeline", "run"],
    ["quarantine", "summary"],
    ["quarantine", "replay"],
    ["ml", "score"],
    ["ml", "train"],
    ["keys", "list"],
    ["keys", "revoke", "k1"],
    ["alerts", "validate"],
    ["alerts", "run"],
    ["maintain", "--dry-run"],
    ["history", "validation_results_silver"],
    ["lineage", "validation_results_silver"],
]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: "-".join(a[:2]))
@pytest.mark.parametrize("wrong", ["missing", "a-file"])
def test_a_read_command_on_a_wrong_lake_exits_1_saying_so(
    run_cli: Run, tmp_path: Path, args: list[str], wrong: str
) -> None:
    lake = tmp_path / "lakee"
    if wrong == "a-file":
        lake.write_text("not a lake")
    result = run_cli("--lake", str(lake), *args)
    assert result.exit_code == 1, result.stdout
    assert ("does not exist" if wrong == "missing" else "is a file, not a lake") in result.stderr
    assert str(lake) in " ".join(result.stderr.split())
    assert lake.exists() == (wrong == "a-file") and not lake.is_dir()  # nothing was created


def test_a_folder_holding_no_lake_is_not_a_lake(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    result = run_cli("--lake", str(tmp_path / "photos"), "pipeline", "run")
    assert result.exit_code == 1
    assert "holds no lake" in result.stderr


def test_writing_commands_create_a_lake_and_say_so(run_cli: Run, tmp_path: Path, events_file: Path) -> None:
    for args in (["ingest", str(events_file)], ["publish", str(events_file)]):
        lake = tmp_path / f"new-{args[0]}"
        first = run_cli("--lake", str(lake), *args)
        assert first.exit_code in (0, 1), first.stderr
        assert f"created a new lake at {lake}" in " ".join(first.stderr.split())
        again = run_cli("--lake", str(lake), *args)
        assert "new lake" not in again.stderr
    pipeline = run_cli("--lake", str(tmp_path / "new-ingest"), "pipeline", "run")
    assert pipeline.exit_code == 0 and "jobs upserted" in pipeline.stdout


def test_lake_option_works_after_the_subcommand(
    run_cli: Run, tmp_path: Path, events_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default ./lake, if the option were ignored, is not ours to fill
    lake = tmp_path / "elsewhere"
    assert run_cli("ingest", str(events_file), "--lake", str(lake)).exit_code == 0
    assert (lake / "bronze").is_dir() and not (tmp_path / "lake").exists()
    listed = run_cli("tables", "--lake", str(lake))
    assert listed.exit_code == 0, listed.stderr
    assert "│ 3 " in next(line for line in listed.stdout.splitlines() if "validation_events_bronze" in line)
    ran = run_cli("pipeline", "run", f"--lake={lake}")
    assert ran.exit_code == 0 and "jobs upserted" in ran.stdout
    sql = "SELECT count(*) AS n FROM validation_events_bronze WHERE marketplace = '--lake'"
    queried = run_cli("query", sql, "-f", "json", "--lake", str(lake))
    assert json.loads(queried.stdout) == [{"n": 0}]


# ---- files: directories, compressed files, and files that are not JSON lines ------------------------------


def test_ingest_a_directory_ingests_its_json_lines_files(
    run_cli: Run, lake_dir: Path, tmp_path: Path
) -> None:
    feed = tmp_path / "feed"
    feed.mkdir()
    write_lines(feed / "a.jsonl", [make_event(1), make_event(2)])
    write_lines(feed / "b.jsonl", [make_event(3)])
    (feed / "README.txt").write_text("not events")
    result = run_cli("--lake", str(lake_dir), "ingest", str(feed))
    assert result.exit_code == 0, result.stderr
    assert "a.jsonl: 2 ingested" in result.stdout and "b.jsonl: 1 ingested" in result.stdout
    (tmp_path / "empty").mkdir()
    empty = run_cli("--lake", str(lake_dir), "ingest", str(tmp_path / "empty"))
    assert empty.exit_code == 1 and "is a directory with no" in empty.stderr


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_ingest_reads_compressed_json_lines(
    run_cli: Run, lake_dir: Path, events_file: Path, tmp_path: Path, codec: str
) -> None:
    import gzip

    import pyarrow as pa

    packed = tmp_path / f"events.jsonl.{'gz' if codec == 'gzip' else 'zst'}"
    if codec == "gzip":
        packed.write_bytes(gzip.compress(events_file.read_bytes()))
    else:
        with pa.CompressedOutputStream(str(packed), "zstd") as out:
            out.write(events_file.read_bytes())
    result = run_cli("--lake", str(lake_dir), "ingest", str(packed))
    assert result.exit_code == 0, result.stderr
    assert "3 ingested" in result.stdout and "1 rejected" in result.stdout
    plain = run_cli("--lake", str(lake_dir), "ingest", str(events_file))
    assert "already ingested" in plain.stdout  # the same content, whatever the container


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("events.csv", b"event_id,event_type,job_id\nevt-1,validation_started,job-1\n", "looks like CSV"),
        ("events.parquet", b"PAR1" + bytes(range(256)) * 8, "binary data"),
    ],
)
def test_ingest_refuses_a_file_that_is_not_json_lines_before_writing_anything(
    run_cli: Run, lake_dir: Path, events_file: Path, tmp_path: Path, name: str, content: bytes, why: str
) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    result = run_cli("--lake", str(lake_dir), "ingest", str(events_file), str(bad))
    assert result.exit_code == 1
    assert why in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not lake_dir.exists()  # refused before anything was written, even the good file


def test_publish_warns_when_the_file_was_already_ingested_from_the_file(
    run_cli: Run, lake_dir: Path, events_file: Path, tmp_path: Path
) -> None:
    fresh = write_lines(tmp_path / "fresh.jsonl", [make_event(7)])
    first = run_cli("--lake", str(lake_dir), "publish", str(fresh))
    assert first.exit_code == 0 and "already ingested" not in first.stderr
    run_cli("--lake", str(lake_dir), "ingest", str(events_file))
    again = run_cli("--lake", str(lake_dir), "publish", str(events_file))
    assert again.exit_code == 0
    warning = " ".join(again.stderr.split())
    assert "events.jsonl was already ingested into bronze from the file" in warning
    assert "twice" in warning


def test_a_misspelled_table_suggests_a_lake_table_not_a_duckdb_internal(
    run_cli: Run, lake_dir: Path, events_file: Path, tmp_path: Path
) -> None:
    run_cli("--lake", str(lake_dir), "ingest", str(events_file))
    queried = run_cli("--lake", str(lake_dir), "query", "SELECT count(*) FROM validation_result_silver")
    assert queried.exit_code == 1
    message = " ".join(queried.stderr.split())
    assert 'no table validation_result_silver: did you mean "validation_results_silver"?' in message
    assert "pragma" not in message
    rules = tmp_path / "alerts.yaml"
    rules.write_text(
        "alerts:\n  - name: typo\n    query: SELECT marketplace FROM marketplace_daily_metric_gold\n"
        "    condition: {column: marketplace, aggregate: count, op: '>', threshold: 1}\n"
    )
    validated = run_cli("--lake", str(lake_dir), "alerts", "validate", "--config", str(rules))
    assert validated.exit_code == 1
    assert 'did you mean "marketplace_daily_metrics_gold"?' in " ".join(validated.stderr.split())
    assert "pragma" not in validated.stderr


# ---- the smaller defects --------------------------------------------------------------------------------


def test_quarantine_summary_shows_the_timestamp_value_in_its_example(
    run_cli: Run, lake_dir: Path, tmp_path: Path
) -> None:
    bad = write_lines(tmp_path / "bad.jsonl", [make_event(1, job_id="", timestamp="2026-11-27T10:00:00Z")])
    run_cli("--lake", str(lake_dir), "ingest", str(bad))
    run_cli("--lake", str(lake_dir), "pipeline", "run")
    summary = run_cli("--lake", str(lake_dir), "quarantine", "summary")
    assert summary.exit_code == 0, summary.stderr
    example = next(line for line in summary.stdout.splitlines() if "missing_job_id" in line)
    assert "2026-11-27 10:00:00" in example and "timestamp" not in example


def test_quarantine_replay_of_an_unknown_reason_lists_the_known_ones(
    run_cli: Run, lake_dir: Path, events_file: Path
) -> None:
    run_cli("--lake", str(lake_dir), "ingest", str(events_file))
    result = run_cli("--lake", str(lake_dir), "quarantine", "replay", "--reason", "typo")
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "no quarantine reason 'typo'" in message and "missing_job_id" in message
    assert "bad_timestamp" in message


def test_keys_create_warns_about_a_marketplace_the_lake_has_never_seen(
    run_cli: Run, lake_dir: Path, events_file: Path
) -> None:
    run_cli("--lake", str(lake_dir), "ingest", str(events_file))
    typo = run_cli("--lake", str(lake_dir), "keys", "create", "--scope", "read", "--marketplace", "shoppe")
    assert typo.exit_code == 0  # a marketplace may come later: a warning, not a refusal
    assert "never seen marketplace 'shoppe'" in " ".join(typo.stderr.split())
    assert "shopee" in typo.stderr  # what it knows
    known = run_cli("--lake", str(lake_dir), "keys", "create", "--scope", "read", "--marketplace", "shopee")
    assert "never seen" not in known.stderr


def test_tables_sizes_suggests_only_options_it_has(run_cli: Run, lake_dir: Path, tmp_path: Path) -> None:
    days = [make_event(n, timestamp=f"2026-{1 + n // 28:02d}-{1 + n % 28:02d}T10:00:00Z") for n in range(45)]
    run_cli("--lake", str(lake_dir), "ingest", str(write_lines(tmp_path / "days.jsonl", days)))
    result = run_cli("--lake", str(lake_dir), "tables", "--sizes")
    assert result.exit_code == 0, result.stderr
    assert "more rows" in result.stdout
    assert "--format" not in result.stdout
    everything = run_cli("--lake", str(lake_dir), "tables", "--sizes", "--max-rows", "100")
    assert everything.exit_code == 0 and "more rows" not in everything.stdout


def test_maintain_dry_run_shows_only_what_it_counts(run_cli: Run, lake_dir: Path, events_file: Path) -> None:
    run_cli("--lake", str(lake_dir), "ingest", str(events_file))
    dry = run_cli("--lake", str(lake_dir), "maintain", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "files_compacted" in dry.stdout and "rows_expired" in dry.stdout
    assert "files_z_ordered" not in dry.stdout and "not simulated" in " ".join(dry.stdout.split())


def test_alerts_run_names_the_failing_channel_and_key_and_exits_1(
    run_cli: Run, lake_dir: Path, events_file: Path, tmp_path: Path
) -> None:
    from servers import free_port

    run_cli("--lake", str(lake_dir), "ingest", str(events_file))
    rules = tmp_path / "alerts.yaml"
    rules.write_text(
        "channels:\n"
        f"  ops-webhook: {{type: webhook, url: 'http://127.0.0.1:{free_port()}/hook', retries: 1}}\n"
        "alerts:\n  - name: busy\n"
        "    query: SELECT marketplace, count(*) AS n FROM validation_events_bronze GROUP BY 1\n"
        "    condition: {column: n, op: '>', threshold: 1}\n    key: marketplace\n"
        "    channels: [ops-webhook]\n"
    )
    result = run_cli("--lake", str(lake_dir), "alerts", "run", "--config", str(rules))
    assert result.exit_code == 1
    failure = next(line for line in result.stderr.splitlines() if "failed" in line)
    assert "ops-webhook" in failure and "shopee" in failure and "busy" in failure


def test_timestamp_as_of_before_the_table_existed_is_refused(
    run_cli: Run, lake_dir: Path, events_file: Path
) -> None:
    run_cli("--lake", str(lake_dir), "ingest", str(events_file))
    sql = "SELECT count(*) AS n FROM validation_events_bronze TIMESTAMP AS OF '2000-01-01'"
    result = run_cli("--lake", str(lake_dir), "query", sql)
    assert result.exit_code == 1
    assert "before the earliest version" in " ".join(result.stderr.split())


@pytest.mark.slow
def test_serve_with_json_logs_prints_only_json_lines(lake_dir: Path, events_file: Path) -> None:
    import signal
    import subprocess
    import sys

    from servers import free_port

    base = [sys.executable, "-m", "vhlake", "--lake", str(lake_dir)]
    subprocess.run([*base, "ingest", str(events_file)], capture_output=True, check=True)
    port = free_port()
    serve = [*base, "serve", "--port", str(port), "--log-format", "json"]
    server = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        assert server.stderr is not None
        for line in server.stderr:
            lines.append(line)
            if "serving on" in line or len(lines) > 200:
                break
        _until_healthy(port)  # SIGTERM stops it cleanly once the HTTP server runs
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=120)
        finally:
            server.kill()
    assert any("serving on" in line for line in lines)
    for line in lines:
        if line.strip():
            json.loads(line)  # every line a JSON object, the "serving on" line included


def _until_healthy(port: int) -> None:
    import time
    import urllib.request

    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)

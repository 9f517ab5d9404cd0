"""vhlake forget: no row of the user anywhere (checked with SQL), gold equal to a rebuild, evidence kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from conftest import build_analytics_lake, make_event, write_lines
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.tables import AUDIT_LOG, BRONZE, GOLD, SILVER
from vhlake.lifecycle.erasure import forget_user
from vhlake.pipeline.gold import daily_metrics
from vhlake.pipeline.runner import Pipeline
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

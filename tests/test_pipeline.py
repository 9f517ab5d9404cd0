"""Silver and gold semantics (docs/semantics.md), checked field by field on hand-written event sets."""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conftest import make_event, write_lines
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, GOLD, PIPELINE_RUNS, QUARANTINE, SILVER
from vhlake.pipeline.expectations import MAX_PAYLOAD_BYTES, Expectation, ExpectationFailed
from vhlake.pipeline.runner import CANARY_SOURCE, PIPELINE_APP, Pipeline
from vhlake.query.duckdb_engine import DuckDBEngine

_batch = itertools.count()


class Lakehouse:
    """A real lake in a tmp dir: ingest event batches, run the pipeline, read silver and gold."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lake = Lake(str(root / "lake"))
        self.ingestor = BronzeIngestor(self.lake, source_system="test", batch_bytes=1 << 20)
        self.pipeline = Pipeline(self.lake)

    def ingest(self, *events: dict[str, Any] | str) -> None:
        path = write_lines(self.root / f"batch-{next(_batch)}.jsonl", events)
        self.ingestor.ingest_file(path)

    def run(self, *events: dict[str, Any] | str) -> None:
        if events:
            self.ingest(*events)
        self.pipeline.run()

    def table(self, table: Any, order: list[str]) -> list[dict[str, Any]]:
        delta = self.lake.open(table)
        if delta is None:
            return []
        rows: list[dict[str, Any]] = (
            pa.table(delta.to_pyarrow_table()).sort_by([(c, "ascending") for c in order]).to_pylist()
        )
        for row in rows:
            row.pop("updated_at", None)
        return rows

    def silver(self) -> dict[str, dict[str, Any]]:
        return {row["job_id"]: row for row in self.table(SILVER, ["job_id"])}

    def gold(self) -> list[dict[str, Any]]:
        return self.table(GOLD, ["date", "marketplace", "category"])


@pytest.fixture
def house(tmp_path: Path) -> Lakehouse:
    return Lakehouse(tmp_path)


def start(job: str, ts: str, **kw: Any) -> dict[str, Any]:
    return make_event(0, event_id=f"{job}-start-{ts}", job_id=job, timestamp=ts, **kw)


def end(job: str, ts: str, kind: str = "completed", **kw: Any) -> dict[str, Any]:
    return make_event(
        0, event_id=f"{job}-{kind}-{ts}", event_type=f"validation_{kind}", job_id=job, timestamp=ts, **kw
    )


def test_completed_job_takes_counts_from_the_terminal_and_identity_from_the_start(house: Lakehouse) -> None:
    house.run(
        start(
            "j1",
            "2026-11-27T09:00:00-03:00",
            user_id="ana",
            category="moda",
            payload={"ruleset": "ml_v2", "file_size_bytes": 100, "s3_path": "s3://a/j1.csv"},
        ),
        end(
            "j1",
            "2026-11-27T09:00:05-03:00",
            user_id="bot",
            category="outra",
            payload={
                "ruleset": "ml_v3",
                "total_rows": 10,
                "valid_rows": 7,
                "invalid_rows": 3,
                "error_types": {"missing_sku": 2, "invalid_price": 1},
                "processing_time_ms": 5000,
            },
        ),
    )
    job = house.silver()["j1"]
    assert job["status"] == "success"
    assert job["user_id"] == "ana" and job["category"] == "moda"
    assert job["ruleset"] == "ml_v3"  # terminal payload first
    assert job["file_size_bytes"] == 100 and job["s3_path"] == "s3://a/j1.csv"  # else the start's
    assert (job["total_rows"], job["valid_rows"], job["invalid_rows"]) == (10, 7, 3)
    assert dict(job["error_types"]) == {"missing_sku": 2, "invalid_price": 1}
    assert job["processing_time_ms"] == 5000
    assert job["created_at"].isoformat() == "2026-11-27T12:00:00+00:00"
    assert job["completed_at"].isoformat() == "2026-11-27T12:00:05+00:00"
    assert str(job["created_date"]) == "2026-11-27"


def test_terminal_before_start_and_late_start_fix_created_at_and_move_the_gold_group(
    house: Lakehouse,
) -> None:
    house.run(
        end("j1", "2026-11-28T00:30:00Z", kind="failed", payload={"total_rows": 4, "processing_time_ms": 10})
    )
    assert house.silver()["j1"]["created_at"].isoformat() == "2026-11-28T00:30:00+00:00"
    assert [g["date"].isoformat() for g in house.gold()] == ["2026-11-28"]
    house.run(start("j1", "2026-11-27T23:59:00Z"))  # arrives later, happened earlier
    job = house.silver()["j1"]
    assert job["created_at"].isoformat() == "2026-11-27T23:59:00+00:00"
    assert job["status"] == "failed"
    gold = house.gold()
    assert [g["date"].isoformat() for g in gold] == ["2026-11-27"]  # the 28th's group is gone
    assert gold[0]["failed_validations"] == 1


def test_latest_terminal_wins_and_running_jobs_count_in_the_total_only(house: Lakehouse) -> None:
    house.run(
        start("j1", "2026-11-27T10:00:00Z"),
        end("j1", "2026-11-27T10:10:00Z", kind="completed", payload={"total_rows": 1}),
        end("j1", "2026-11-27T10:05:00Z", kind="failed", payload={"total_rows": 2}),
        start("j2", "2026-11-27T11:00:00Z", user_id="bia"),
    )
    silver = house.silver()
    assert silver["j1"]["status"] == "success" and silver["j1"]["total_rows"] == 1
    assert silver["j2"]["status"] == "running" and silver["j2"]["completed_at"] is None
    (gold,) = house.gold()
    assert gold["total_validations"] == 2
    assert (gold["successful_validations"], gold["failed_validations"]) == (1, 0)
    assert gold["error_rate"] == 0.0
    assert gold["unique_users"] == 2


def test_without_a_start_the_earliest_event_is_the_creation(house: Lakehouse) -> None:
    house.run(
        end("j1", "2026-11-27T10:10:00Z", kind="failed"),
        end("j1", "2026-11-27T10:00:00Z", kind="completed", user_id="only-terminal"),
    )
    job = house.silver()["j1"]
    assert job["created_at"].isoformat() == "2026-11-27T10:00:00+00:00"
    assert job["status"] == "failed"


def test_negative_processing_time_is_null_and_skipped_by_the_metrics(house: Lakehouse) -> None:
    house.run(end("j1", "2026-11-27T10:00:00Z", payload={"processing_time_ms": -5, "total_rows": 3}))
    assert house.silver()["j1"]["processing_time_ms"] is None
    (gold,) = house.gold()
    assert gold["avg_processing_time_ms"] is None and gold["p50_processing_time"] is None
    assert gold["total_rows_processed"] == 3


def test_percentiles_are_exact_with_linear_interpolation(house: Lakehouse) -> None:
    house.run(
        *[end(f"j{t}", "2026-11-27T10:00:00Z", payload={"processing_time_ms": t}) for t in (10, 20, 30, 40)]
    )
    (gold,) = house.gold()
    assert gold["p50_processing_time"] == 25.0
    assert gold["p95_processing_time"] == pytest.approx(38.5)
    assert gold["p99_processing_time"] == pytest.approx(39.7)
    assert gold["avg_processing_time_ms"] == 25.0


def test_null_category_is_unknown_and_rows_default_to_zero(house: Lakehouse) -> None:
    house.run(start("j1", "2026-11-27T10:00:00Z", category=None))
    (gold,) = house.gold()
    assert gold["category"] == "unknown"
    assert gold["total_rows_processed"] == 0
    assert (gold["year"], gold["month"]) == (2026, 11)


def test_first_received_copy_of_an_event_wins_even_in_a_later_batch(house: Lakehouse) -> None:
    first = end("j1", "2026-11-27T10:00:00Z", payload={"total_rows": 1})
    house.run(first)
    before = house.silver(), house.gold()
    house.run({**first, "payload": {"total_rows": 999}})  # same event_id, other content
    house.run(first)  # the very same event again
    assert (house.silver(), house.gold()) == before


def test_a_copy_of_an_event_under_another_job_is_a_duplicate_too(house: Lakehouse) -> None:
    first = end("j1", "2026-11-27T10:00:00Z", payload={"total_rows": 1})
    house.run(first, {**first, "job_id": "j2"})  # same batch: the first line wins
    house.run({**first, "job_id": "j3"})  # a later batch
    assert set(house.silver()) == {"j1"}
    assert [g["total_validations"] for g in house.gold()] == [1]


def test_a_copy_under_another_job_never_counts_when_that_job_is_folded_again(house: Lakehouse) -> None:
    first = end("j1", "2026-11-27T12:00:00Z")
    house.run(first, start("j2", "2026-11-27T09:00:00Z"), {**first, "job_id": "j2"})
    house.run(end("j2", "2026-11-27T10:00:00Z", kind="failed"))  # j2 is folded again from its history
    assert house.silver()["j2"]["status"] == "failed"
    assert house.silver()["j2"]["completed_at"].hour == 10


def test_bad_payload_values_become_nulls_without_failing(house: Lakehouse) -> None:
    house.run(
        end(
            "j1",
            "2026-11-27T10:00:00Z",
            payload={"total_rows": "12", "error_types": [], "processing_time_ms": 1e30, "ruleset": 7},
        ),
        end("j2", "2026-11-27T10:00:00Z", payload="{not json"),
        end(
            "j3",
            "2026-11-27T10:00:00Z",
            payload={"error_types": {"a": "3"}, "valid_rows": 99999999999999999999},
        ),
    )
    house.run(
        end("j4", "2026-11-27T10:00:00Z", payload=' {"ruleset": "r\\"1\\u00e9", "total_rows": -5}'),
        end("j5", "2026-11-27T10:00:00Z", payload=[1, 2]),
        end("j6", "2026-11-27T10:00:00Z", payload={"error_types": {'a"b': 2}, "total_rows": 1.0}),
        end("j7", "2026-11-27T10:00:00Z", payload={"error_types": {"a": 1, "b": 2147483648}}),
    )
    silver = house.silver()
    assert silver["j7"]["error_types"] is None  # one value beyond 32 bits: the whole map, as Spark
    assert silver["j4"]["ruleset"] == 'r"1é' and silver["j4"]["total_rows"] == -5
    assert silver["j5"]["status"] == "success" and silver["j5"]["ruleset"] is None
    assert dict(silver["j6"]["error_types"]) == {'a"b': 2} and silver["j6"]["total_rows"] is None
    assert silver["j1"]["total_rows"] is None and silver["j1"]["error_types"] is None
    assert silver["j1"]["processing_time_ms"] is None and silver["j1"]["ruleset"] is None
    assert silver["j2"]["status"] == "success" and silver["j2"]["total_rows"] is None
    assert silver["j3"]["error_types"] is None and silver["j3"]["valid_rows"] is None


# A ruleset whose payload, minified as bronze keeps it ('{"ruleset":"…"}', 14 bytes besides), is
# exactly MAX_PAYLOAD_BYTES long.
_AT_LIMIT = "é" * ((MAX_PAYLOAD_BYTES - 14) // 2)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (make_event(1, event_id=""), "missing_event_id"),
        (make_event(1, job_id=None), "missing_job_id"),
        (make_event(1, marketplace="  "), "missing_marketplace"),
        (make_event(1, event_type="validation_paused"), "unknown_event_type"),
        (make_event(1, timestamp="yesterday"), "bad_timestamp"),
        # one byte over the limit in UTF-8 (each "é" is 2 bytes: in characters it is half the limit)
        (make_event(1, payload={"ruleset": _AT_LIMIT + "x"}), "payload_too_large"),
    ],
)
def test_events_failing_an_expectation_are_quarantined_with_the_rule_name(
    house: Lakehouse, event: dict[str, Any], reason: str
) -> None:
    house.run(event, make_event(2))
    (row,) = house.table(QUARANTINE, ["source_offset"])
    assert row["reason"] == reason
    assert set(house.silver()) == {"job-2"}


def test_a_payload_of_exactly_the_limit_passes(house: Lakehouse) -> None:
    house.run(make_event(1, payload={"ruleset": _AT_LIMIT}))
    assert house.table(QUARANTINE, ["source_offset"]) == []
    assert len(house.silver()["job-1"]["ruleset"]) == len(_AT_LIMIT)


def test_a_fail_expectation_stops_the_run_and_commits_nothing(house: Lakehouse) -> None:
    house.ingest(make_event(1), make_event(2, marketplace="nowhere"))
    strict = Pipeline(
        house.lake, expectations=[Expectation("known_marketplace", "marketplace <> 'nowhere'", "fail")]
    )
    with pytest.raises(ExpectationFailed, match="known_marketplace"):
        strict.run()
    assert house.silver() == {} and house.gold() == []
    (logged,) = house.table(PIPELINE_RUNS, ["started_at"])
    assert logged["status"] == "failed" and "known_marketplace" in logged["error"]


def test_every_run_is_logged_with_counts_per_rule(house: Lakehouse) -> None:
    house.run(make_event(1), make_event(2, job_id=""), make_event(3, event_type="nope"))
    (logged,) = house.table(PIPELINE_RUNS, ["started_at"])
    assert logged["status"] == "success"
    assert (logged["rows_in"], logged["rows_out"], logged["rows_quarantined"]) == (3, 1, 2)
    assert dict(logged["expectations"])["unknown_event_type"] == 1


def test_an_event_breaking_two_rules_is_one_quarantined_row(house: Lakehouse) -> None:
    house.run(make_event(1, job_id="", event_type="nope"))
    (logged,) = house.table(PIPELINE_RUNS, ["started_at"])
    violations = dict(logged["expectations"])
    assert violations["unknown_event_type"] == 1 and sum(violations.values()) == 2
    assert logged["rows_quarantined"] == len(house.table(QUARANTINE, ["source_offset"])) == 1


def test_rerunning_with_nothing_new_changes_nothing(house: Lakehouse) -> None:
    house.run(start("j1", "2026-11-27T10:00:00Z"))
    versions = [house.lake.open(t).version() for t in (SILVER, GOLD)]  # type: ignore[union-attr]
    report = house.pipeline.run()
    assert report.was_noop
    assert [house.lake.open(t).version() for t in (SILVER, GOLD)] == versions  # type: ignore[union-attr]


def test_full_refresh_rebuilds_the_same_tables(house: Lakehouse) -> None:
    house.run(
        start("j1", "2026-11-27T10:00:00Z"), end("j1", "2026-11-27T10:01:00Z"), make_event(3, job_id="")
    )
    before = house.silver(), house.gold(), house.table(QUARANTINE, ["source_offset"])
    house.pipeline.run(full_refresh=True)
    assert (house.silver(), house.gold(), house.table(QUARANTINE, ["source_offset"])) == before


def test_replay_brings_events_back_after_a_rule_change(house: Lakehouse) -> None:
    house.ingest(make_event(1, marketplace="kabum"), make_event(2))
    strict = Pipeline(house.lake, expectations=[Expectation("known_marketplace", "marketplace <> 'kabum'")])
    strict.run()
    assert set(house.silver()) == {"job-2"}
    assert house.pipeline.replay_quarantine(reason="known_marketplace") == 1
    assert set(house.silver()) == {"job-1", "job-2"}
    assert house.table(QUARANTINE, ["source_offset"]) == []
    assert house.pipeline.replay_quarantine() == 0


def test_pipeline_tables_answer_queries_with_bound_string_filters(house: Lakehouse) -> None:
    # delta-rs records string_view in its files; filters pushed into them once failed (equal(string, view)).
    house.run(start("j1", "2026-11-27T10:00:00Z", marketplace="shopee"), make_event(2, marketplace="magalu"))
    engine = DuckDBEngine(house.lake)
    gold = engine.execute(
        "SELECT marketplace, total_validations FROM marketplace_daily_metrics_gold WHERE marketplace = :m",
        {"m": "shopee"},
    )
    silver = engine.execute(
        "SELECT job_id FROM validation_results_silver WHERE marketplace = ? AND created_date = ?",
        ["shopee", date(2026, 11, 27)],
    )
    assert gold.to_pylist() == [{"marketplace": "shopee", "total_validations": 1}]
    assert silver.to_pylist() == [{"job_id": "j1"}]


def test_a_range_of_canaries_only_reads_no_silver_or_gold_file(house: Lakehouse) -> None:
    # A service with a canary every second runs the pipeline on ranges that fold no job; a MERGE of an
    # empty source named no partition and scanned every file of silver (10 s on a 10M-event lake).
    house.run(make_event(1), make_event(2, marketplace="magalu"))
    for table in (SILVER, GOLD):
        for name in house.lake.open(table).file_uris():  # type: ignore[union-attr]
            Path(name).write_bytes(b"not parquet: reading this file fails")
    canaries = BronzeIngestor(house.lake, source_system=CANARY_SOURCE, batch_bytes=1 << 20)
    canaries.ingest_file(write_lines(house.root / "canary.jsonl", [make_event(3)]))
    report = house.pipeline.run()
    bronze = house.lake.open(BRONZE)
    assert bronze is not None and report.canaries == 1
    for table in (SILVER, GOLD):
        assert house.lake.txn_version(table, PIPELINE_APP) == bronze.version()

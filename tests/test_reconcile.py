"""``vhlake reconcile``: the chain of counts balances on an awkward feed, and names the link a deliberate
break in a copy of the lake breaks (a deleted bronze row, a missing reject, a duplicated silver row, an
edited gold count)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from conftest import CliResult, make_event, rows, write_lines
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.ingest.log_source import ingest_log
from vhlake.lake.delta import Lake
from vhlake.lake.tables import (
    BRONZE,
    GOLD,
    GOLD_RESTATEMENTS,
    INGEST_LEDGER,
    RECONCILIATION,
    REJECTED,
    SILVER,
)
from vhlake.pipeline.runner import Pipeline
from vhlake.reconciliation.run import Reconciliation, reconcile, record, verify

BASE = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)  # any fixed time: nothing here depends on today


def _at(hours: float) -> str:
    return (BASE + timedelta(hours=hours)).isoformat()


def _job(
    n: int, *, day: int, status: str | None = "validation_completed", ms: int = 100
) -> list[dict[str, Any]]:
    """A job's events: its start on ``day`` (days after BASE), and its terminal event unless None."""
    start = make_event(
        n * 10,
        job_id=f"job-{n}",
        user_id=f"user-{n % 4}",
        timestamp=_at(24 * day),
        marketplace=["amazon", "shopee"][n % 2],
    )
    if status is None:
        return [start]
    end = make_event(
        n * 10 + 1,
        job_id=f"job-{n}",
        event_type=status,
        timestamp=_at(24 * day + 1),
        marketplace=start["marketplace"],
        user_id=start["user_id"],
        payload={"total_rows": 10, "processing_time_ms": ms},
    )
    return [start, end]


def _first_feed() -> list[dict[str, Any] | str]:
    jobs = [
        e
        for n in range(12)
        for e in _job(n, day=n % 3, status=None if n in (3, 4) else "validation_completed")
    ]
    events: list[dict[str, Any] | str] = [*jobs, dict(jobs[0])]  # and a copy
    events.append(make_event(900, job_id="", timestamp=_at(1)))  # quarantined: empty job_id
    events += ["not json", "[1, 2]"]  # rejected
    return events


def _second_feed() -> list[dict[str, Any] | str]:
    late_completions = [e for n in (3, 4) for e in _job(n, day=n % 3)[1:]]
    retried = make_event(
        21 * 10 + 5,
        job_id="job-2",
        event_type="validation_failed",
        timestamp=_at(24 * 2 + 5),
        marketplace="amazon",
        payload={"total_rows": 10, "processing_time_ms": 900},
    )
    older = [e for n in (30, 31) for e in _job(n, day=0)]  # new jobs on an already written day
    return [*late_completions, retried, *older, "{broken", dict(late_completions[0])]


def _build(root: Path) -> tuple[Lake, dict[tuple[Any, ...], dict[str, Any]]]:
    """A lake fed by two files and the embedded log, in two pipeline runs, with every kind of detour; and
    gold as the first run left it."""
    lake = Lake(str(root / "lake"))
    ingestor = BronzeIngestor(lake, source_system="test", batch_bytes=512)  # several bronze commits
    pipeline = Pipeline(lake)
    ingestor.ingest_file(write_lines(root / "first.jsonl", _first_feed()))
    pipeline.run()
    first_gold = _gold_by_group(lake)
    ingestor.ingest_file(write_lines(root / "second.jsonl", _second_feed()))
    with EmbeddedEventLog(root / "log.db", topic="validation-events") as log:
        log.append([json.dumps(e).encode() for e in _job(40, day=1)] + [b"\xff not utf-8"])
        ingest_log(BronzeIngestor(lake, source_system="test", batch_bytes=1 << 20), log, max_records=2)
    pipeline.run()
    return lake, first_gold


def _gold_by_group(lake: Lake) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {(r["date"], r["marketplace"], r["category"]): r for r in rows(lake, GOLD).to_pylist()}


@pytest.fixture
def built(tmp_path: Path) -> Lake:
    return _build(tmp_path)[0]


def _reconciled(lake: Lake) -> Reconciliation:
    return reconcile(lake, since=None, now=BASE + timedelta(days=30))


def test_every_link_balances_on_a_feed_with_late_retried_copied_and_bad_events(built: Lake) -> None:
    result = _reconciled(built)
    assert result.balanced, [link.describe() for link in result.imbalances]
    sources = {link.key: link.counts for link in result.links if link.kind == "source"}
    assert {key.rsplit("/", 1)[-1] for key in sources} == {
        "first.jsonl",
        "second.jsonl",
        "log:validation-events",
    }
    first = next(counts for key, counts in sources.items() if key.endswith("first.jsonl"))
    assert first["records_read"] == len(_first_feed())
    assert first["rejected_rows"] == 2
    log = next(counts for key, counts in sources.items() if key.startswith("log:"))
    assert (log["records_read"], log["bronze_rows"], log["rejected_rows"]) == (3, 2, 1)
    events = next(link for link in result.links if link.kind == "events")
    bronze = rows(built, BRONZE)
    assert events.counts["bronze_events"] == bronze.num_rows
    assert events.counts["quarantined"] == 1
    assert events.counts["copies_dropped"] == 2
    assert events.counts["events_folded"] == len(set(bronze["event_id"].to_pylist()) - {"evt-900"})
    gold = next(link for link in result.links if link.kind == "gold")
    assert gold.counts["total_validations"] == rows(built, SILVER).num_rows == 15
    assert gold.counts["groups"] == rows(built, GOLD).num_rows


def _delete_one(lake: Lake, table: Any, predicate: str) -> None:
    delta = DeltaTable(lake.table_uri(table))
    assert delta.delete(predicate)["num_deleted_rows"] == 1


def _break_bronze(lake: Lake) -> str:
    row = rows(lake, BRONZE).filter(pa.compute.equal(rows(lake, BRONZE)["event_id"], "evt-51"))
    _delete_one(lake, BRONZE, f"event_id = 'evt-51' AND source_offset = {row['source_offset'][0].as_py()}")
    return "source"


def _break_reject(lake: Lake) -> str:
    _delete_one(lake, REJECTED, "raw = 'not json'")
    return "source"


def _break_silver(lake: Lake) -> str:
    silver = rows(lake, SILVER)
    lake.append(SILVER, silver.filter(pa.compute.equal(silver["job_id"], "job-5")))
    return "gold"


def _break_gold(lake: Lake) -> str:
    delta = DeltaTable(lake.table_uri(GOLD))
    metrics = delta.update(
        updates={"total_validations": "total_validations + 1"},
        predicate="marketplace = 'amazon' AND date = '2026-10-05'",
    )
    assert metrics["num_updated_rows"] >= 1
    return "gold"


@pytest.mark.parametrize(
    ("name", "breaks"),
    [
        ("deleted bronze row", _break_bronze),
        ("missing reject", _break_reject),
        ("duplicated silver row", _break_silver),
        ("edited gold count", _break_gold),
    ],
)
def test_a_broken_link_is_named(
    built: Lake, tmp_path: Path, name: str, breaks: Callable[[Lake], str]
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(built.uri.removeprefix("file://"), copy)
    lake = Lake(str(copy))
    kind = breaks(lake)
    result = _reconciled(lake)
    assert not result.balanced, name
    first = result.first_imbalance
    assert first is not None and first.kind == kind, first
    assert _reconciled(built).balanced  # the original is untouched


def test_the_broken_links_say_what_does_not_hold(built: Lake, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(built.uri.removeprefix("file://"), copy)
    lake = Lake(str(copy))
    _break_reject(lake)
    _break_silver(lake)
    described = [link.describe() for link in _reconciled(lake).imbalances]
    assert any("first.jsonl" in d and "rejects = rejects ingested: 1 ≠ 2" in d for d in described), described
    # job-5 shares its group (day 2, shopee) with job-11: two jobs, three rows
    assert any("2026-10-07 shopee" in d and "silver rows = silver jobs: 3 ≠ 2" in d for d in described), (
        described
    )


def test_a_run_is_recorded_with_a_hash_anyone_can_recompute(built: Lake) -> None:
    result = _reconciled(built)
    record(built, result)
    stored = rows(built, RECONCILIATION).to_pylist()
    assert len(stored) == 1
    row = stored[0]
    assert row["balanced"] and row["imbalances"] == 0 and row["first_imbalance"] is None
    assert hashlib.sha256(row["counts"].encode()).hexdigest() == row["sha256"]
    counts = json.loads(row["counts"])
    assert counts["bronze_version"] == result.bronze_version
    assert [link["kind"] for link in counts["links"]][-2:] == ["events", "gold"]
    assert verify(built, result.run_id).matches


def test_verify_catches_edited_counts(built: Lake) -> None:
    result = _reconciled(built)
    record(built, result)
    DeltaTable(built.table_uri(RECONCILIATION)).update(
        updates={"counts": "replace(counts, '\"balanced\":true', '\"balanced\":false')"}
    )
    assert not verify(built, result.run_id).matches


def test_a_lake_ingested_before_the_ledger_gets_it_on_the_next_ingest(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    feed = write_lines(tmp_path / "feed.jsonl", _first_feed())
    BronzeIngestor(lake, source_system="test", batch_bytes=512).ingest_file(feed)
    bronze_before = rows(lake, BRONZE).num_rows
    shutil.rmtree(tmp_path / "lake" / INGEST_LEDGER.relative_path)  # as before the ledger existed
    lake = Lake(str(tmp_path / "lake"))
    report = BronzeIngestor(lake, source_system="test", batch_bytes=512).ingest_file(feed)
    assert report.bronze_rows == 0 and rows(lake, BRONZE).num_rows == bronze_before
    Pipeline(lake).run()
    result = _reconciled(lake)
    assert result.balanced, [link.describe() for link in result.imbalances]
    assert sum(link.counts["records_read"] for link in result.links if link.kind == "source") == len(
        _first_feed()
    )


def test_cli_exits_1_naming_the_first_link(
    built: Lake, tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    lake_dir = built.uri.removeprefix("file://")
    ok = run_cli("--lake", lake_dir, "reconcile", "--all", "--format", "json")
    assert ok.exit_code == 0, ok.stderr
    answer = json.loads(ok.stdout)
    assert answer["balanced"] and len(answer["sha256"]) == 64
    checked = run_cli("--lake", lake_dir, "reconcile", "--verify", answer["run_id"])
    assert checked.exit_code == 0 and "matches" in checked.stdout
    _break_gold(built)
    broken = run_cli("--lake", lake_dir, "reconcile", "--all")
    assert broken.exit_code == 1
    assert "imbalance" in broken.stderr and "gold 2026-10-05 amazon" in broken.stderr
    assert rows(built, RECONCILIATION).num_rows == 2


def test_an_erasure_leaves_the_events_and_gold_links_balanced_and_the_sources_short_by_it(
    built: Lake,
) -> None:
    from vhlake.lifecycle.erasure import forget_user

    bronze_before, rejects_before = rows(built, BRONZE).num_rows, rows(built, REJECTED).num_rows
    forget_user(built, Pipeline(built), "user-2", requested_by="dpo")
    erased = bronze_before - rows(built, BRONZE).num_rows
    assert erased > 0
    result = _reconciled(built)
    assert {link.kind for link in result.imbalances} == {"source"}
    short = sum(
        (link.counts["ledger_bronze"] - link.counts["bronze_rows"])
        + (link.counts["ledger_rejected"] - link.counts["rejected_rows"])
        for link in result.links
        if link.kind == "source"
    )
    assert short == erased + rejects_before - rows(built, REJECTED).num_rows


def test_done_when_the_feed_balances_and_every_changed_group_is_restated_and_nothing_else(
    tmp_path: Path,
) -> None:
    """P19's acceptance: late completions, a retried terminal and older jobs in a second batch."""
    lake, before = _build(tmp_path)
    after = _gold_by_group(lake)
    assert _reconciled(lake).balanced

    def values(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k != "updated_at"}

    changed = {k for k, row in before.items() if k not in after or values(after[k]) != values(row)}
    restated = {
        (r["date"], r["marketplace"], r["category"]): r for r in rows(lake, GOLD_RESTATEMENTS).to_pylist()
    }
    assert len(changed) >= 3 and set(restated) == changed  # the late, the retried and the older jobs' days
    for key, row in restated.items():
        now = after.get(key)
        assert row["previous_total_validations"] == before[key]["total_validations"]
        assert row["previous_error_rate"] == before[key]["error_rate"]
        assert row["previous_p95_processing_time"] == before[key]["p95_processing_time"]
        assert row["new_total_validations"] == (now["total_validations"] if now else 0)
        assert row["new_error_rate"] == (now["error_rate"] if now else None)
        assert row["new_p95_processing_time"] == (now["p95_processing_time"] if now else None)
        assert row["first_written_at"] == before[key]["updated_at"]
        assert row["events"] > 0

"""Freshness reports the newest event and its lag whatever their age: a feed that stopped weeks ago is
exactly when the lag must show, not read as "no data yet". Lakes are built through the real ingest and
pipeline from events placed relative to an injected "now", so nothing here depends on today's date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import make_event, write_lines
from vhlake.analytics.models import Freshness
from vhlake.analytics.repository import AnalyticsRepository
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.delta import Lake
from vhlake.pipeline.runner import Pipeline
from vhlake.query.duckdb_engine import DuckDBEngine
from vhlake.result import Ok

NOW = datetime(2031, 3, 14, 15, 9, 26, tzinfo=UTC)  # the injected clock; far from any real date on purpose
STALE_END = NOW - timedelta(days=40)  # when the stale marketplace's feed stopped
# A job created three days before the stale feed's last created day, completed after everything else.
LATE_JOB_CREATED = STALE_END - timedelta(days=3, hours=6)
LATE_JOB_COMPLETED = STALE_END + timedelta(hours=2)
FRESH_NEWEST = NOW - timedelta(minutes=5)


def _job(n: int, marketplace: str, started: datetime, completed: datetime | None) -> list[dict[str, Any]]:
    events = [make_event(2 * n, job_id=f"job-{n}", marketplace=marketplace, timestamp=started.isoformat())]
    if completed is not None:
        events.append(
            make_event(
                2 * n + 1,
                job_id=f"job-{n}",
                marketplace=marketplace,
                event_type="validation_completed",
                timestamp=completed.isoformat(),
                payload={"total_rows": 10, "valid_rows": 10, "invalid_rows": 0, "processing_time_ms": 5},
            )
        )
    return events


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> AnalyticsRepository:
    """shopee: a daily job from 70 to 40 days before now (the last one still running), and one job whose
    completion, 2 h after the last start, lands three created-days later. mercado_livre: flowing now."""
    root = tmp_path_factory.mktemp("freshness")
    events: list[dict[str, Any]] = []
    for day in range(31):
        started = STALE_END - timedelta(days=30 - day)
        events += _job(day, "shopee", started, started + timedelta(minutes=1) if day < 30 else None)
    events += _job(100, "shopee", LATE_JOB_CREATED, LATE_JOB_COMPLETED)
    events += _job(200, "mercado_livre", FRESH_NEWEST - timedelta(hours=1), FRESH_NEWEST)
    lake = Lake(str(root / "lake"))
    BronzeIngestor(lake, source_system="test", batch_bytes=1 << 20).ingest_file(
        write_lines(root / "events.jsonl", events)
    )
    Pipeline(lake).run()
    return AnalyticsRepository(DuckDBEngine(lake), clock=lambda: NOW)


def freshness(result: Any) -> Freshness:
    assert isinstance(result, Ok), result
    value: Freshness = result.value
    return value


def test_a_feed_stopped_40_days_ago_reports_its_newest_event_and_lag(repository: AnalyticsRepository) -> None:
    stale = freshness(repository.get_freshness("shopee"))
    assert stale.newest_event_at == LATE_JOB_COMPLETED  # a completion in an older created day counts
    assert stale.lag_seconds == (NOW - LATE_JOB_COMPLETED).total_seconds()
    assert stale.lag_seconds > 39 * 86400


def test_each_marketplace_has_its_own_freshness_and_the_lake_its_newest(
    repository: AnalyticsRepository,
) -> None:
    fresh = freshness(repository.get_freshness("mercado_livre"))
    assert (fresh.newest_event_at, fresh.lag_seconds) == (FRESH_NEWEST, 300.0)
    assert freshness(repository.get_freshness()).newest_event_at == FRESH_NEWEST
    only_stale = repository.restricted_to(frozenset({"shopee"}))
    assert freshness(only_stale.get_freshness()).newest_event_at == LATE_JOB_COMPLETED


def test_a_marketplace_never_seen_has_no_freshness(repository: AnalyticsRepository) -> None:
    assert freshness(repository.get_freshness("magalu")) == Freshness(newest_event_at=None, lag_seconds=None)

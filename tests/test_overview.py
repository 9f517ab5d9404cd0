"""The overview (``get_overview``, ``GET /v1/overview``) on a lake built by the real ingest and pipeline
from hand-written events over two periods; every expected number is computed here in plain Python from
the events, not by the repository's SQL."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import api_deps_for
from test_pipeline import Lakehouse, end, start
from vhlake.analytics.models import Overview
from vhlake.analytics.repository import AnalyticsRepository
from vhlake.api.app import install_api
from vhlake.query.duckdb_engine import DuckDBEngine
from vhlake.result import Err, Ok

PERIOD = 3
END = date(2026, 11, 27)
NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # END is today: a partial day
SEEN = ("mercado_livre", "shopee")
HIDDEN = "magalu"

# (marketplace, day offset from the previous period's first day, user, failed, processing ms)
JOBS: list[tuple[str, int, str | None, bool, int | None]] = [
    # mercado_livre: previous period 1 failure in 4, current 3 in 5 (error rate up most)
    ("mercado_livre", 0, "ana", False, 100),
    ("mercado_livre", 1, "bia", False, 200),
    ("mercado_livre", 2, "ana", True, 300),
    ("mercado_livre", 2, None, False, 400),
    ("mercado_livre", 3, "ana", True, 1_000),
    ("mercado_livre", 3, "caio", True, 50),
    ("mercado_livre", 5, "duda", False, 700),
    ("mercado_livre", 5, "ana", True, None),
    ("mercado_livre", 5, "ana", False, 20),
    # shopee: error rate down, more volume; day 4 of the current period has no job
    ("shopee", 0, "eva", True, 10),
    ("shopee", 1, "eva", False, 30),
    ("shopee", 3, "fabio", False, 90),
    ("shopee", 3, "gil", False, 60),
    ("shopee", 5, "gil", False, 45),
    # magalu: the restricted key never sees it
    ("magalu", 1, "hugo", True, 5),
    ("magalu", 4, "hugo", True, 5),
]


def _events() -> Iterator[dict[str, Any]]:
    first = END - timedelta(days=2 * PERIOD - 1)
    for i, (market, offset, user, failed, ms) in enumerate(JOBS):
        at = datetime.combine(first + timedelta(days=offset), datetime.min.time(), UTC) + timedelta(
            hours=1 + i
        )
        job = f"job-{i}"
        payload: dict[str, Any] = {"total_rows": 10}
        if ms is not None:
            payload["processing_time_ms"] = ms
        yield start(job, at.isoformat(), marketplace=market, user_id=user, category="moda")
        yield end(
            job,
            (at + timedelta(seconds=5)).isoformat(),
            kind="failed" if failed else "completed",
            marketplace=market,
            user_id=user,
            category="moda",
            payload=payload,
        )


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> Lakehouse:
    house = Lakehouse(tmp_path_factory.mktemp("overview"))
    house.run(*_events())
    return house


def p95(values: list[int]) -> float | None:
    """The interpolated 95th percentile (docs/semantics.md), written out."""
    if not values:
        return None
    ordered = sorted(values)
    rank = 0.95 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def expected(market: str, current: bool) -> dict[str, Any]:
    jobs = [j for j in JOBS if j[0] == market and (j[1] >= PERIOD) == current]
    failed = sum(j[3] for j in jobs)
    return {
        "validations": len(jobs),
        "error_rate": failed / len(jobs) if jobs else None,
        "p95": p95([j[4] for j in jobs if j[4] is not None]),
        "sellers": len({j[2] for j in jobs if j[2] is not None}),
    }


def overview(house: Lakehouse, marketplaces: frozenset[str] | None, **kw: Any) -> Overview:
    repository = AnalyticsRepository(DuckDBEngine(house.lake), clock=lambda: NOW, marketplaces=marketplaces)
    result = repository.get_overview(PERIOD, **kw)
    assert isinstance(result, Ok), result
    return result.value


def test_each_visible_marketplace_has_both_periods_numbers(house: Lakehouse) -> None:
    answer = overview(house, frozenset(SEEN))
    assert [c.marketplace for c in answer.marketplaces] == ["mercado_livre", "shopee"]  # HIDDEN absent
    for card in answer.marketplaces:
        now, before = expected(card.marketplace, True), expected(card.marketplace, False)
        assert card.validations.current == now["validations"]
        assert card.validations.previous == before["validations"]
        assert card.validations.change == now["validations"] - before["validations"]
        assert card.validations.relative_change == pytest.approx(
            (now["validations"] - before["validations"]) / before["validations"]
        )
        assert card.error_rate.current == pytest.approx(now["error_rate"])
        assert card.error_rate.previous == pytest.approx(before["error_rate"])
        assert card.p95_processing_time.current == pytest.approx(now["p95"])
        assert card.p95_processing_time.previous == pytest.approx(before["p95"])
        assert card.active_sellers.current == now["sellers"]
        assert card.active_sellers.previous == before["sellers"]


def test_the_largest_error_rate_increase_comes_first(house: Lakehouse) -> None:
    cards = overview(house, None).marketplaces
    increases = [c.error_rate.change for c in cards]
    assert increases == sorted(increases, key=lambda v: -(v or 0.0))  # every one has a previous rate
    by_hand = {m: expected(m, True)["error_rate"] - expected(m, False)["error_rate"] for m in (*SEEN, HIDDEN)}
    assert [c.marketplace for c in cards] == sorted(by_hand, key=lambda m: -by_hand[m])


def test_the_sparkline_has_every_day_and_marks_today_partial(house: Lakehouse) -> None:
    answer = overview(house, None)
    assert answer.partial_date == END
    assert (answer.start_date, answer.previous_start_date) == (
        END - timedelta(days=2),
        END - timedelta(days=5),
    )
    shopee = next(c for c in answer.marketplaces if c.marketplace == "shopee")
    days = [p.date for p in shopee.sparkline]
    assert days == [END - timedelta(days=d) for d in (2, 1, 0)]
    per_day = [sum(1 for j in JOBS if j[0] == "shopee" and j[1] == PERIOD + i) for i in range(PERIOD)]
    assert [p.total_validations for p in shopee.sparkline] == per_day
    assert shopee.sparkline[1].error_rate is None  # no job that day: no rate, not 0
    assert [p.partial for p in shopee.sparkline] == [False, False, True]


def test_a_past_period_is_not_partial_and_a_missing_previous_has_no_relative_change(house: Lakehouse) -> None:
    answer = overview(house, None, end_date=END - timedelta(days=PERIOD))
    assert answer.partial_date is None and not any(
        p.partial for c in answer.marketplaces for p in c.sparkline
    )
    for card in answer.marketplaces:
        assert card.validations.previous == 0 and card.validations.relative_change is None
        assert card.error_rate.previous is None and card.error_rate.change is None


def test_a_bad_period_is_refused(house: Lakehouse) -> None:
    repository = AnalyticsRepository(DuckDBEngine(house.lake), clock=lambda: NOW)
    assert isinstance(repository.get_overview(0), Err)
    assert isinstance(repository.get_overview(3661), Err)


@pytest.fixture(scope="module")
def client(house: Lakehouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    deps = api_deps_for(house.lake, tmp_path_factory.mktemp("api"), clock=lambda: NOW)
    _, key = deps.keys.create("read", marketplaces=list(SEEN))
    app = FastAPI()
    install_api(app, deps)
    with TestClient(app) as test_client:
        yield test_client, key
    deps.audit.close()


def test_the_route_answers_the_keys_marketplaces_with_freshness(client: tuple[TestClient, str]) -> None:
    http, key = client
    response = http.get("/v1/overview", params={"days": PERIOD}, headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["marketplace"] for c in body["data"]["marketplaces"]] == ["mercado_livre", "shopee"]
    assert body["data"]["partial_date"] == END.isoformat()
    assert body["freshness"]["newest_event_at"] is not None
    mercado = body["data"]["marketplaces"][0]
    assert mercado["active_sellers"]["current"] == expected("mercado_livre", True)["sellers"]


def test_the_route_refuses_a_bad_period_and_no_key(client: tuple[TestClient, str]) -> None:
    http, key = client
    assert http.get("/v1/overview", params={"days": 0}, headers={"X-API-Key": key}).status_code == 422
    assert http.get("/v1/overview").status_code == 401

"""AnalyticsRepository on a real lake built from generated events, checked against values computed here
in Python from silver and gold rows (not by the repository's SQL); every shipped statement runs on DuckDB,
and on Databricks is sent exactly as recorded in tests/recorded_sql/."""

from __future__ import annotations

import tomllib
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import SecretStr

from conftest import (
    RESTATED_AT,
    build_analytics_lake,
    engagement_gold,
    plant_restatements,
    restated_days,
    rows,
)
from fake_warehouse import FakeWarehouse
from vhlake.analytics.repository import AnalyticsRepository
from vhlake.lake.delta import Lake
from vhlake.lake.tables import (
    ALERT_EVENTS,
    ANOMALIES,
    DATA_QUALITY_METRICS,
    GOLD,
    GOLD_RESTATEMENTS,
    ML_PREDICTIONS,
    SILVER,
    USER_ENGAGEMENT_GOLD,
)
from vhlake.query.databricks_engine import DatabricksConfig, DatabricksSQLEngine
from vhlake.query.duckdb_engine import DuckDBEngine
from vhlake.query.statements import statement, statement_names
from vhlake.result import Err, Ok

RECORDED = Path(__file__).parent / "recorded_sql"
MARKETPLACE = "shopee"
TRAINED = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
RESTATED_DAYS = (date(2026, 11, 20), date(2026, 11, 24))


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = build_analytics_lake(tmp_path_factory.mktemp("repository"), jobs=4_000, seed=11)
    lake.append(ML_PREDICTIONS, _predictions())
    lake.append(DATA_QUALITY_METRICS, _quality())
    lake.append(ALERT_EVENTS, _alert_events())
    lake.append(ANOMALIES, _anomalies())
    plant_restatements(lake, MARKETPLACE, RESTATED_DAYS, "magalu")
    engagement_gold(lake)
    return lake


def _anomalies() -> pa.Table:
    """A flagged day of shopee, a flagged job of shopee (not a day), and a flagged day of magalu."""
    day = {
        "marketplace": MARKETPLACE,
        "date": date(2026, 11, 20),
        "metric": "validations",
        "observed": 500.0,
        "expected": 100.0,
        "z_score": 12.5,
        "detector": "mad",
        "reason": "validations 500 vs expected 100",
        "scored_at": TRAINED,
        "job_id": None,
        "baseline": "same-weekday",
        "baseline_days": 8,
    }
    job = day | {"metric": "error_rate", "detector": "kmeans-distance", "job_id": "j1", "baseline": None}
    return pa.Table.from_pylist(
        [day, job | {"baseline_days": None}, day | {"marketplace": "magalu"}], schema=ANOMALIES.schema
    )


def _alert_events() -> pa.Table:
    at = datetime(2026, 11, 26, 10, tzinfo=UTC)
    rows = [
        {
            "evaluated_at": at + timedelta(minutes=5 * i),
            "rule": "high_error_rate",
            "key": key,
            "state": state,
            "previous_state": "ok",
            "value": value,
            "threshold": 0.1,
            "severity": "critical",
            "notification": note,
            "channel_results": None,
            "evaluated_date": at.date(),
        }
        for i, (key, state, value, note) in enumerate(
            [
                (MARKETPLACE, "triggered", 0.2, "triggered"),
                (MARKETPLACE, "triggered", 0.25, None),
                ("magalu", "ok", 0.02, None),
            ]
        )
    ]
    return pa.Table.from_pylist(rows, schema=ALERT_EVENTS.schema)


def _quality() -> pa.Table:
    at = [datetime(2026, 11, 26, 10, tzinfo=UTC), datetime(2026, 11, 26, 11, tzinfo=UTC)]
    rows = [
        {
            "measured_at": t,
            "run_id": "r",
            "metric": "freshness_p95_s",
            "dimension": None,
            "value": v,
            "measured_date": t.date(),
        }
        for t, v in zip(at, (1.5, 0.8), strict=True)
    ]
    return pa.Table.from_pylist(rows, schema=DATA_QUALITY_METRICS.schema)


def _predictions() -> pa.Table:
    rows = []
    for version, trained in (("v1", TRAINED - timedelta(days=7)), ("v2", TRAINED)):
        for day in range(3):
            rows.append(
                {
                    "marketplace": MARKETPLACE,
                    "category": "categoria_01",
                    "prediction_date": date(2026, 11, 28) + timedelta(days=day),
                    "model_version": version,
                    "model_type": "forecast",
                    "predicted_validations": 40.0 + day,
                    "predicted_error_rate": 0.1,
                    "lower_bound": 30.0,
                    "upper_bound": 50.0,
                    "trained_at": trained,
                    "created_at": trained,
                }
            )
    rows.append(
        rows[0] | {"category": "categoria_02", "model_version": "v9", "trained_at": TRAINED + timedelta(1)}
    )
    return pa.Table.from_pylist(rows, schema=ML_PREDICTIONS.schema)


@pytest.fixture(scope="module")
def engine(lake: Lake) -> DuckDBEngine:
    return DuckDBEngine(lake)


@pytest.fixture(scope="module")
def silver(lake: Lake) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pa.table(lake.open(SILVER).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    return rows


@pytest.fixture(scope="module")
def gold(lake: Lake) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pa.table(lake.open(GOLD).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    return rows


def ok(result: Any) -> Any:
    assert isinstance(result, Ok), result
    return result.value


def test_marketplace_metrics_match_silver(engine: DuckDBEngine, silver: list[dict[str, Any]]) -> None:
    start, end = date(2026, 11, 10), date(2026, 11, 20)
    metrics = ok(AnalyticsRepository(engine).get_marketplace_metrics(MARKETPLACE, start, end))
    expected: dict[tuple[date, str], list[dict[str, Any]]] = defaultdict(list)
    for job in silver:
        if job["marketplace"] == MARKETPLACE and start <= job["created_date"] <= end:
            expected[(job["created_date"], job["category"] or "unknown")].append(job)
    assert {(d.date, d.category) for d in metrics.daily} == set(expected)
    for day in metrics.daily:
        jobs = expected[(day.date, day.category)]
        assert day.total_validations == len(jobs)
        assert day.failed_validations == sum(j["status"] == "failed" for j in jobs)
        assert day.total_rows_processed == sum(j["total_rows"] or 0 for j in jobs)
    summary = metrics.summary
    everything = [j for jobs in expected.values() for j in jobs]
    assert summary.total_validations == len(everything)
    assert summary.successful_validations == sum(j["status"] == "success" for j in everything)
    assert summary.error_rate == pytest.approx(
        sum(j["status"] == "failed" for j in everything) / len(everything)
    )
    assert summary.days_with_data == len({d for d, _ in expected})


def test_real_time_stats_count_the_last_hour_of_silver(
    engine: DuckDBEngine, silver: list[dict[str, Any]]
) -> None:
    now = max(j["created_at"] for j in silver) + timedelta(minutes=1)
    stats = ok(AnalyticsRepository(engine, clock=lambda: now).get_real_time_stats())
    recent = [j for j in silver if j["created_at"] >= now - timedelta(hours=1)]
    assert stats.total_jobs == len(recent) > 0
    by_marketplace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job in recent:
        by_marketplace[job["marketplace"]].append(job)
    assert {m.marketplace: m.total_jobs for m in stats.marketplaces} == {
        k: len(v) for k, v in by_marketplace.items()
    }
    for row in stats.marketplaces:
        jobs = by_marketplace[row.marketplace]
        assert row.running_jobs == sum(j["status"] == "running" for j in jobs)
        assert row.last_job_at == max(j["created_at"] for j in jobs)
    only = ok(AnalyticsRepository(engine, clock=lambda: now).get_real_time_stats(MARKETPLACE))
    assert [m.marketplace for m in only.marketplaces] == (
        [MARKETPLACE] if by_marketplace[MARKETPLACE] else []
    )


def test_marketplace_performance_series_and_categories(
    engine: DuckDBEngine, gold: list[dict[str, Any]]
) -> None:
    end = date(2026, 11, 26)
    performance = ok(AnalyticsRepository(engine).get_marketplace_performance(MARKETPLACE, 30, end_date=end))
    start = end - timedelta(days=29)
    rows = [g for g in gold if g["marketplace"] == MARKETPLACE and start <= g["date"] <= end]
    per_day: dict[date, int] = defaultdict(int)
    for g in rows:
        per_day[g["date"]] += g["total_validations"]
    days = sorted(per_day)
    assert [d.date for d in performance.daily] == days
    for i, day in enumerate(performance.daily):
        assert day.total_validations == per_day[day.date]
        assert day.daily_change == (None if i == 0 else per_day[days[i]] - per_day[days[i - 1]])
        window = [per_day[d] for d in days[max(0, i - 6) : i + 1]]
        assert day.moving_avg_7d == pytest.approx(sum(window) / len(window))
    per_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for g in rows:
        per_category[g["category"]].append(g)
    assert {c.category: c.total_validations for c in performance.categories} == {
        c: sum(g["total_validations"] for g in gs) for c, gs in per_category.items()
    }
    for category in performance.categories:
        timed = [
            (g["avg_processing_time_ms"], g["successful_validations"] + g["failed_validations"])
            for g in per_category[category.category]
            if g["avg_processing_time_ms"] is not None
        ]
        weight = sum(n for _, n in timed)
        expected = sum(m * n for m, n in timed) / weight if weight else None
        assert category.avg_processing_time_ms == pytest.approx(expected)


def test_restated_groups_and_days_carry_their_latest_restatement(
    engine: DuckDBEngine, lake: Lake, gold: list[dict[str, Any]]
) -> None:
    planted = rows(lake, GOLD_RESTATEMENTS).to_pylist()
    start, end = date(2026, 11, 15), date(2026, 11, 27)
    repository = AnalyticsRepository(engine, clock=lambda: datetime(2026, 11, 30, tzinfo=UTC))
    # per (day, category): the group's newest row; a deleted group has no gold row, so no answer row
    newest: dict[tuple[date, str], dict[str, Any]] = {}
    for r in sorted(planted, key=lambda r: r["restated_at"]):
        if r["marketplace"] == MARKETPLACE:
            newest[(r["date"], r["category"])] = r
    metrics = ok(repository.get_marketplace_metrics(MARKETPLACE, start, end)).daily
    restated = {(d.date, d.category): d for d in metrics if d.restated_at is not None}
    assert set(restated) == {key for key in newest if key[1] != "categoria_gone"} and len(restated) == 3
    assert all(d.restatement is None for d in metrics if d.restated_at is None)
    for key, day in restated.items():
        row, change = newest[key], day.restatement
        assert change is not None and day.restated_at == row["restated_at"]
        assert (change.previous_total_validations, change.new_total_validations) == (
            row["previous_total_validations"],
            day.total_validations,
        )
        assert (change.previous_error_rate, change.new_error_rate) == (
            pytest.approx(row["previous_error_rate"]),
            day.error_rate,
        )
    assert (
        restated[(RESTATED_DAYS[0], min(c for d, c in restated if d == RESTATED_DAYS[0]))].restated_at
        == (
            RESTATED_AT[1]  # restated twice: the later one
        )
    )

    expected = restated_days(gold, planted, MARKETPLACE)
    performance = ok(repository.get_marketplace_performance(MARKETPLACE, 13, end_date=end)).daily
    overview = ok(repository.get_overview(13, end_date=end)).marketplaces
    sparkline = next(c.sparkline for c in overview if c.marketplace == MARKETPLACE)
    for days in (performance, sparkline):
        assert {d.date: d.restated_at for d in days if d.restated_at} == {
            day: e["restated_at"] for day, e in expected.items()
        }
        assert all(d.restatement is None for d in days if d.restated_at is None)
        for d in days:
            if d.date in expected:
                previous, new = expected[d.date]["previous"], expected[d.date]["new"]
                assert d.restatement is not None and d.total_validations == new[0]
                assert (d.restatement.previous_total_validations, d.restatement.new_total_validations) == (
                    previous[0],
                    new[0],
                )
                assert d.restatement.previous_error_rate == pytest.approx(previous[1] / previous[0])
                assert d.restatement.new_error_rate == pytest.approx(new[1] / new[0])
    # by hand: the first day's latest range changed one category, which had one validation more before
    first_day = next(d for d in performance if d.date == RESTATED_DAYS[0])
    assert first_day.restatement.previous_total_validations == first_day.total_validations + 1
    magalu = next(c.sparkline for c in overview if c.marketplace == "magalu")
    assert [(p.date, p.restated_at) for p in magalu if p.restated_at] == [(RESTATED_DAYS[0], RESTATED_AT[1])]


def error_types_of_silver(
    silver: list[dict[str, Any]], start: date, end: date, category: str | None = None
) -> dict[str, dict[str, int]]:
    """Per error type, from silver's maps (not from gold): jobs giving it a value above 0, the sum of those
    values, and how many of those jobs failed."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"jobs": 0, "occurrences": 0, "failed": 0})
    for job in silver:
        if job["marketplace"] != MARKETPLACE or not start <= job["created_date"] <= end:
            continue
        if category is not None and (job["category"] or "unknown") != category:
            continue
        for error_type, value in job["error_types"] or []:
            if value is not None and value > 0:
                totals[error_type]["jobs"] += 1
                totals[error_type]["occurrences"] += value
                totals[error_type]["failed"] += job["status"] == "failed"
    return totals


@pytest.mark.parametrize("category", [None, "categoria_01"])
def test_error_types_are_silver_maps_summed_over_the_period(
    engine: DuckDBEngine, silver: list[dict[str, Any]], category: str | None
) -> None:
    end = date(2026, 11, 26)
    repository = AnalyticsRepository(engine, clock=lambda: datetime(2026, 11, 26, 12, tzinfo=UTC))
    answer = ok(repository.get_marketplace_error_types(MARKETPLACE, 20, category=category, top=2))
    start = end - timedelta(days=19)
    assert (answer.start_date, answer.end_date) == (start, end)
    expected = error_types_of_silver(silver, start, end, category)
    assert len(expected) >= 3
    assert [e.error_type for e in answer.error_types] == sorted(
        expected, key=lambda t: (-expected[t]["occurrences"], t)
    )
    for row in answer.error_types:
        totals = expected[row.error_type]
        assert (row.jobs, row.occurrences, row.failed_jobs) == (
            totals["jobs"],
            totals["occurrences"],
            totals["failed"],
        )
        assert row.share_of_failed_jobs == pytest.approx(totals["failed"] / totals["jobs"])
    first_two = {e.error_type for e in answer.error_types[:2]}
    assert {d.error_type for d in answer.trend} == first_two
    for error_type in first_two:
        assert (
            sum(d.occurrences for d in answer.trend if d.error_type == error_type)
            == (expected[error_type]["occurrences"])
        )


def test_ml_predictions_come_from_the_latest_trained_model(engine: DuckDBEngine) -> None:
    predictions = ok(AnalyticsRepository(engine).get_ml_predictions(MARKETPLACE, "categoria_01"))
    assert (predictions.model_version, predictions.trained_at) == ("v2", TRAINED)
    assert [p.prediction_date for p in predictions.predictions] == [date(2026, 11, 28 + i) for i in range(3)]
    none = ok(AnalyticsRepository(engine).get_ml_predictions(MARKETPLACE, "no_such_category"))
    assert (none.model_version, none.predictions) == (None, [])


def test_a_marketplace_forecast_takes_each_day_from_its_newest_run(engine: DuckDBEngine) -> None:
    clock = datetime(2026, 11, 29, 9, tzinfo=UTC)
    repository = AnalyticsRepository(engine, clock=lambda: clock)
    answer = ok(
        repository.get_marketplace_predictions(MARKETPLACE, 3, end_date=date(2026, 11, 29), horizon_days=1)
    )
    assert (answer.start_date, answer.end_date, answer.forecast_end_date) == (
        date(2026, 11, 27),
        date(2026, 11, 29),
        date(2026, 11, 30),
    )
    assert answer.partial_date == date(2026, 11, 29)  # the clock's today, in the period
    # by hand from _predictions(): the 28th's newest run is v9 (categoria_02 only), the 29th and 30th v2's
    assert [(f.date, f.model_version, f.categories, f.predicted_validations) for f in answer.forecast] == [
        (date(2026, 11, 28), "v9", 1, 40.0),
        (date(2026, 11, 29), "v2", 1, 41.0),
        (date(2026, 11, 30), "v2", 1, 42.0),
    ]
    assert (answer.forecast[1].lower_bound, answer.forecast[1].upper_bound) == (30.0, 50.0)
    assert answer.forecast[1].predicted_error_rate == pytest.approx(0.1)
    # the job row and magalu's day are not shopee's days; the 20th is before the period
    assert answer.anomalies == []
    wider = ok(repository.get_marketplace_predictions(MARKETPLACE, 30, end_date=date(2026, 11, 27)))
    assert [(a.date, a.metric, a.z_score) for a in wider.anomalies] == [
        (date(2026, 11, 20), "validations", 12.5)
    ]
    assert (wider.partial_date, wider.forecast) == (None, [])  # today is after the period; no forecast in it
    assert repository.get_marketplace_predictions(MARKETPLACE, 30, horizon_days=-1).kind == "invalid_argument"  # type: ignore[union-attr]


def test_engagement_is_the_gold_rows_with_window_counts_never_summed(
    engine: DuckDBEngine, lake: Lake, silver: list[dict[str, Any]]
) -> None:
    end = date(2026, 11, 26)
    repository = AnalyticsRepository(engine, clock=lambda: datetime(2026, 11, 26, 9, tzinfo=UTC))
    answer = ok(repository.get_marketplace_engagement(MARKETPLACE, 14))
    start = end - timedelta(days=13)
    assert (answer.start_date, answer.end_date, answer.partial_date) == (start, end, end)
    table = pa.table(lake.open(USER_ENGAGEMENT_GOLD).to_pyarrow_table())  # type: ignore[union-attr]
    rows = sorted(
        (r for r in table.to_pylist() if r["marketplace"] == MARKETPLACE and start <= r["date"] <= end),
        key=lambda r: r["date"],
    )
    assert len(rows) >= 10
    assert [d.model_dump() for d in answer.daily] == [
        {k: r[k] for k in answer.daily[0].model_dump()} for r in rows
    ]
    users = {
        j["user_id"]
        for j in silver
        if j["marketplace"] == MARKETPLACE and start <= j["created_date"] <= end and j["user_id"] is not None
    }
    summary = answer.summary
    assert (summary.last_date, summary.active_users_7d, summary.active_users_28d) == (
        rows[-1]["date"],
        rows[-1]["active_users_7d"],
        rows[-1]["active_users_28d"],
    )
    assert summary.active_users == len(users) < sum(r["active_users"] for r in rows)  # distinct, not summed
    assert summary.jobs == sum(r["jobs"] for r in rows)
    assert summary.new_users == sum(r["new_users"] for r in rows)
    assert summary.jobs_per_active_user == pytest.approx(summary.jobs / len(users))
    earlier = ok(repository.get_marketplace_engagement(MARKETPLACE, 7, end_date=end - timedelta(days=7)))
    assert earlier.partial_date is None and earlier.daily[-1].date <= end - timedelta(days=7)


def test_engagement_is_empty_on_a_lake_without_the_table(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    answer = ok(AnalyticsRepository(DuckDBEngine(lake)).get_marketplace_engagement(MARKETPLACE, 30))
    assert answer.daily == [] and answer.summary.days_with_data == 0
    assert (answer.summary.last_date, answer.summary.active_users_7d, answer.summary.jobs) == (None, None, 0)


def test_a_restricted_repository_sees_only_its_marketplaces(
    engine: DuckDBEngine, silver: list[dict[str, Any]]
) -> None:
    now = max(j["created_at"] for j in silver) + timedelta(minutes=1)
    restricted = AnalyticsRepository(engine, clock=lambda: now).restricted_to(frozenset({MARKETPLACE}))
    other = "mercado_livre"
    for result in (
        restricted.get_marketplace_metrics(other, date(2026, 11, 1), date(2026, 11, 30)),
        restricted.get_marketplace_performance(other, 30),
        restricted.get_ml_predictions(other, "categoria_01"),
        restricted.get_marketplace_error_types(other, 30, end_date=date(2026, 11, 27)),
        restricted.get_marketplace_predictions(other, 30, end_date=date(2026, 11, 27)),
        restricted.get_marketplace_engagement(other, 30, end_date=date(2026, 11, 27)),
        restricted.get_real_time_stats(other),
        restricted.get_freshness(other),
    ):
        assert isinstance(result, Err) and result.kind == "forbidden"
    everything = ok(restricted.get_real_time_stats(window_minutes=24 * 60))
    assert {m.marketplace for m in everything.marketplaces} == {MARKETPLACE}
    newest = max(j["completed_at"] or j["created_at"] for j in silver if j["marketplace"] == MARKETPLACE)
    assert ok(restricted.get_freshness()).newest_event_at == newest
    assert ok(AnalyticsRepository(engine, clock=lambda: now).get_freshness()).newest_event_at == max(
        j["completed_at"] or j["created_at"] for j in silver
    )


def test_alerts_give_each_rule_and_key_its_latest_state(engine: DuckDBEngine) -> None:
    repository = AnalyticsRepository(engine, clock=lambda: datetime(2026, 11, 26, 12, tzinfo=UTC))
    states = ok(repository.get_alerts())
    assert [(a.key, a.state, a.value) for a in states] == [
        (MARKETPLACE, "triggered", 0.25),
        ("magalu", "ok", 0.02),
    ]
    assert states[0].last_notified_at == datetime(2026, 11, 26, 10, tzinfo=UTC)
    restricted = ok(repository.restricted_to(frozenset({"magalu"})).get_alerts())
    assert [a.key for a in restricted] == ["magalu"]


def test_quality_gives_the_latest_value_of_each_measure(engine: DuckDBEngine) -> None:
    repository = AnalyticsRepository(engine, clock=lambda: datetime(2026, 11, 26, 12, tzinfo=UTC))
    (measure,) = ok(repository.get_quality(hours=24))
    assert (measure.metric, measure.latest_value, measure.batches) == ("freshness_p95_s", 0.8, 2)
    restricted = repository.restricted_to(frozenset({MARKETPLACE})).get_quality()
    assert isinstance(restricted, Err) and restricted.kind == "forbidden"


def test_injection_through_parameters_returns_no_foreign_rows(engine: DuckDBEngine) -> None:
    repository = AnalyticsRepository(engine)
    hostile = "shopee' OR 1=1 --"
    assert ok(repository.get_marketplace_metrics(hostile, date(2026, 1, 1), date(2026, 12, 31))).daily == []
    assert ok(repository.get_marketplace_performance(hostile, 365, end_date=date(2026, 12, 31))).daily == []
    assert ok(repository.get_ml_predictions(hostile, "x' OR '1'='1")).predictions == []
    errors = ok(repository.get_marketplace_error_types(hostile, 365, end_date=date(2026, 12, 31)))
    assert errors.error_types == [] and errors.trend == []
    errors = ok(repository.get_marketplace_error_types(MARKETPLACE, 365, category="x' OR '1'='1"))
    assert errors.error_types == []
    assert ok(repository.get_marketplace_engagement(hostile, 365, end_date=date(2026, 12, 31))).daily == []
    assert engine.execute("SELECT count(*) AS n FROM marketplace_daily_metrics_gold").to_pylist()[0]["n"] > 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.get_marketplace_metrics("shopee", date(2026, 2, 1), date(2026, 1, 1)), "is after"),
        (lambda r: r.get_marketplace_metrics(" ", date(2026, 1, 1), date(2026, 2, 1)), "must not be empty"),
        (lambda r: r.get_marketplace_performance("shopee", 0), "period_days"),
        (
            lambda r: r.get_marketplace_performance("shopee", 1905, end_date=date(6, 3, 5)),
            "before the calendar",
        ),
        (lambda r: r.get_real_time_stats(window_minutes=0), "window_minutes"),
        (lambda r: r.get_ml_predictions("shopee", ""), "must not be empty"),
        (lambda r: r.get_marketplace_error_types("shopee", top=0), "top must be"),
        (lambda r: r.get_marketplace_error_types("shopee", category=" "), "category must not be empty"),
        (lambda r: r.get_marketplace_error_types("shopee", 0), "period_days"),
        (lambda r: r.get_marketplace_engagement("shopee", 0), "period_days"),
        (lambda r: r.get_marketplace_engagement(" ", 7), "must not be empty"),
    ],
)
def test_bad_arguments_are_errors_not_exceptions(engine: DuckDBEngine, call: Any, message: str) -> None:
    result = call(AnalyticsRepository(engine))
    assert isinstance(result, Err) and result.kind == "invalid_argument" and message in result.message


def test_a_failing_engine_is_an_err(tmp_path: Path) -> None:
    class Broken:
        def execute(self, sql: str, params: Any = None) -> pa.Table:
            from vhlake.errors import QueryError

            raise QueryError("warehouse is gone")

    result = AnalyticsRepository(Broken()).get_ml_predictions("shopee", "x")  # type: ignore[arg-type]
    assert result == Err("warehouse is gone", "query")


# -- every shipped statement, on both engines ------------------------------------------------------------

STATEMENT_PARAMS: dict[str, dict[str, Any]] = {
    "marketplace_metrics": {
        "marketplace": MARKETPLACE,
        "start_date": date(2026, 11, 1),
        "end_date": date(2026, 11, 30),
    },
    "real_time_stats": {
        "since": datetime(2026, 11, 1, tzinfo=UTC),
        "since_date": date(2026, 11, 1),
        "marketplace": None,
    },
    "marketplace_daily_performance": {
        "marketplace": MARKETPLACE,
        "start_date": date(2026, 11, 1),
        "end_date": date(2026, 11, 30),
    },
    "marketplace_category_breakdown": {
        "marketplace": MARKETPLACE,
        "start_date": date(2026, 11, 1),
        "end_date": date(2026, 11, 30),
    },
    "marketplace_error_types": {
        "marketplace": MARKETPLACE,
        "start_date": date(2026, 11, 1),
        "end_date": date(2026, 11, 30),
        "category": None,
    },
    "marketplace_error_type_trend": {
        "marketplace": MARKETPLACE,
        "start_date": date(2026, 11, 1),
        "end_date": date(2026, 11, 30),
        "category": "categoria_01",
        "top": 3,
    },
    "overview_daily": {"start_date": date(2026, 11, 1), "end_date": date(2026, 11, 30)},
    "overview_periods": {
        "previous_start": date(2026, 11, 1),
        "current_start": date(2026, 11, 15),
        "end_date": date(2026, 11, 28),
    },
    "ml_predictions": {"marketplace": MARKETPLACE, "category": "categoria_01"},
    "marketplace_forecast": {
        "marketplace": MARKETPLACE,
        "start_date": date(2026, 11, 1),
        "end_date": date(2026, 11, 30),
    },
    "marketplace_day_anomalies": {
        "marketplace": MARKETPLACE,
        "start_date": date(2026, 11, 1),
        "end_date": date(2026, 11, 30),
    },
    "marketplace_engagement": {
        "marketplace": MARKETPLACE,
        "start_date": date(2026, 11, 1),
        "end_date": date(2026, 11, 30),
    },
    "marketplace_period_users": {
        "marketplace": MARKETPLACE,
        "start_date": date(2026, 11, 1),
        "end_date": date(2026, 11, 30),
    },
    "freshness": {"lookback_days": 7},
    "marketplaces": {},
    "alerts_current": {"since_date": date(2026, 11, 1)},
    "daily_series": {"since": date(2026, 11, 1), "until": date(2026, 11, 30)},
    "category_series": {"since": date(2026, 11, 1), "until": date(2026, 11, 30)},
    "quality_latest": {"since": datetime(2026, 11, 1, tzinfo=UTC), "since_date": date(2026, 11, 1)},
    # rows are filed by the date they were ingested, which is the test run's: any date of this century
    "quality_rejections": {
        "start_date": date(2000, 1, 1),
        "end_date": date(2099, 12, 31),
        "example_chars": 200,
    },
    "job_features": {"since": date(2026, 10, 1), "until": date(2026, 12, 1), "sample_below": "8000"},
    "job_count": {"since": date(2026, 10, 1), "until": date(2026, 12, 1)},
    "newest_day": {"today": date(2026, 12, 1)},
}


@pytest.mark.parametrize("name", statement_names())
def test_every_statement_runs_on_duckdb_over_real_tables(engine: DuckDBEngine, name: str) -> None:
    result = engine.execute(statement(name), STATEMENT_PARAMS[name])
    assert result.num_rows > 0, f"{name} found nothing: the test data should exercise it"


DATABRICKS_TYPES = tomllib.loads((Path(__file__).parent / "databricks_result_types.toml").read_text("utf-8"))
ARROW_OF_DATABRICKS = {
    "STRING": pa.string(),
    "BIGINT": pa.int64(),
    "INT": pa.int32(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
}


def test_every_shipped_statement_has_its_databricks_types_recorded() -> None:
    assert set(DATABRICKS_TYPES) == set(statement_names())


@pytest.mark.parametrize("name", statement_names())
def test_every_statement_returns_the_types_databricks_returns(engine: DuckDBEngine, name: str) -> None:
    schema = engine.execute(statement(name), STATEMENT_PARAMS[name]).schema
    expected = [(column, ARROW_OF_DATABRICKS[kind]) for column, kind in DATABRICKS_TYPES[name].items()]
    assert [(field.name, field.type) for field in schema] == expected


@pytest.mark.parametrize("name", statement_names())
def test_every_statement_is_sent_to_databricks_as_recorded(engine: DuckDBEngine, name: str) -> None:
    answer = engine.execute(statement(name), STATEMENT_PARAMS[name])
    warehouse = FakeWarehouse(answer=answer)
    databricks = DatabricksSQLEngine(_config(), connect=warehouse)
    assert databricks.execute(statement(name), STATEMENT_PARAMS[name]) == answer
    recorded = (RECORDED / f"{name}.sql").read_text(encoding="utf-8")
    assert warehouse.sent == [(recorded.rstrip("\n"), STATEMENT_PARAMS[name])]
    assert warehouse.connects[0]["access_token"] == "dapi-secret"


def test_the_repository_runs_on_databricks_with_native_parameters(engine: DuckDBEngine) -> None:
    answer = engine.execute(statement("ml_predictions"), STATEMENT_PARAMS["ml_predictions"])
    warehouse = FakeWarehouse(answer=answer)
    repository = AnalyticsRepository(DatabricksSQLEngine(_config(), connect=warehouse))
    predictions = ok(repository.get_ml_predictions(MARKETPLACE, "categoria_01"))
    assert predictions.model_version == "v2"
    ((sql, params),) = warehouse.sent
    assert "validahub.analytics.ml_predictions" in sql and MARKETPLACE not in sql
    assert params == {"marketplace": MARKETPLACE, "category": "categoria_01"}


def _config() -> DatabricksConfig:
    return DatabricksConfig("adb-1.azuredatabricks.net", "/sql/1.0/warehouses/abc", SecretStr("dapi-secret"))

"""Training forecasts from gold into ml_predictions and ml_models, read back by the repository."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

from vhlake.analytics.repository import AnalyticsRepository
from vhlake.cli.ml_commands import training_summary
from vhlake.lake.delta import Lake
from vhlake.lake.tables import GOLD, ML_MODELS, ML_PREDICTIONS
from vhlake.ml.training import train_forecasts
from vhlake.query.duckdb_engine import DuckDBEngine
from vhlake.result import Ok

TODAY = date(2026, 11, 27)
WEEKDAYS = [1.0, 1.05, 1.1, 1.0, 0.95, 0.6, 0.5]


def gold(lake: Lake) -> None:
    rng = np.random.default_rng(4)
    rows = []
    series = [
        ("shopee", "moda", 70, 300),
        ("shopee", "casa", 70, 120),
        ("magalu", "moda", 70, 80),
        ("magalu", "new", 5, 50),
    ]
    for marketplace, category, days, base in series:
        for back in range(days, 0, -1):
            day = TODAY - timedelta(days=back)
            total = max(1, round(base * WEEKDAYS[day.weekday()] * rng.normal(1, 0.08)))
            failed = round(total * 0.1)
            rows.append(
                {
                    "date": day,
                    "marketplace": marketplace,
                    "category": category,
                    "total_validations": total,
                    "successful_validations": total - failed,
                    "failed_validations": failed,
                    "total_rows_processed": total,
                    "avg_processing_time_ms": 1000.0,
                    "p50_processing_time": 900.0,
                    "p95_processing_time": 2000.0,
                    "p99_processing_time": 3000.0,
                    "unique_users": 5,
                    "error_rate": failed / total,
                    "year": day.year,
                    "month": day.month,
                    "updated_at": datetime.now(UTC),
                }
            )
    lake.replace_once(GOLD, pa.Table.from_pylist(rows, schema=GOLD.schema), app_id="test", version=0)


def test_training_forecasts_every_series_with_history_and_records_the_model(lake: Lake) -> None:
    gold(lake)
    report = train_forecasts(lake, DuckDBEngine(lake), today=TODAY, horizon=30)
    assert (report.series, report.forecast_series, report.not_enough_history) == (4, 3, 1)
    assert report.metrics["mase"] < report.metrics["naive_mase"]

    models = pa.table(lake.open(ML_MODELS).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    assert [m["model_version"] for m in models] == [report.model_version]
    assert dict(models[0]["metrics"])["series_not_enough_history"] == 1

    repository = AnalyticsRepository(DuckDBEngine(lake))
    result = repository.get_ml_predictions("shopee", "moda")
    assert isinstance(result, Ok)
    predictions = result.value
    assert predictions.model_version == report.model_version
    assert [p.prediction_date for p in predictions.predictions] == [
        TODAY + timedelta(days=i) for i in range(30)
    ]
    first = predictions.predictions[0]
    assert first.lower_bound <= first.predicted_validations <= first.upper_bound  # type: ignore[operator]
    assert first.confidence_level == 0.8  # the bounds' nominal coverage
    assert abs(first.predicted_error_rate - 0.1) < 0.02  # type: ignore[operator]
    weekend = [p.predicted_validations for p in predictions.predictions if p.prediction_date.weekday() >= 5]
    weekdays = [p.predicted_validations for p in predictions.predictions if p.prediction_date.weekday() < 5]
    assert max(weekend) < 0.75 * min(weekdays)  # type: ignore[type-var, operator]
    none = repository.get_ml_predictions("magalu", "new")
    assert isinstance(none, Ok) and none.value.predictions == []  # not enough history: nothing, not a guess

    again = train_forecasts(lake, DuckDBEngine(lake), today=TODAY)
    newest = repository.get_ml_predictions("shopee", "moda")
    assert (
        isinstance(newest, Ok) and newest.value.model_version == again.model_version
    )  # the latest version wins


def test_predictions_stored_before_confidence_level_existed_gain_the_column(lake: Lake) -> None:
    gold(lake)
    old = ML_PREDICTIONS.schema.remove(ML_PREDICTIONS.schema.get_field_index("confidence_level"))
    write_deltalake(lake.table_uri(ML_PREDICTIONS), old.empty_table(), mode="overwrite")
    row = {"marketplace": "m", "category": "c", "prediction_date": TODAY, "model_version": "v0",
           "model_type": "forecast", "trained_at": datetime(2026, 1, 1, tzinfo=UTC),
           "created_at": datetime(2026, 1, 1, tzinfo=UTC)}  # fmt: skip
    write_deltalake(lake.table_uri(ML_PREDICTIONS), pa.Table.from_pylist([row], schema=old), mode="append")
    train_forecasts(lake, DuckDBEngine(lake), today=TODAY)
    stored = pa.table(lake.open(ML_PREDICTIONS).to_pyarrow_table())  # type: ignore[union-attr]
    levels = dict(
        zip(stored["model_version"].to_pylist(), stored["confidence_level"].to_pylist(), strict=False)
    )
    assert levels["v0"] is None and {v for k, v in levels.items() if k != "v0"} == {0.8}


def test_a_stale_lake_is_trained_up_to_its_newest_day_without_nan_or_warnings(lake: Lake) -> None:
    """Gold ends 40 days before today: no zeros padded up to today, no NaN metrics, no numpy warnings
    (pytest turns them into errors); the forecast starts the day after the newest day and says how stale."""
    gold(lake)  # ends the day before TODAY
    later = TODAY + timedelta(days=40)
    report = train_forecasts(lake, DuckDBEngine(lake), today=later, horizon=30)
    assert (report.newest_day, report.stale_days) == (TODAY - timedelta(days=1), 41)
    assert report.forecast_series == 3 and report.metrics["mase"] < report.metrics["naive_mase"]
    models = pa.table(lake.open(ML_MODELS).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    stored = dict(models[0]["metrics"])
    assert stored and all(np.isfinite(v) for v in stored.values()), stored
    assert models[0]["train_end"] == TODAY - timedelta(days=1)
    predictions = AnalyticsRepository(DuckDBEngine(lake)).get_ml_predictions("shopee", "moda")
    assert isinstance(predictions, Ok)
    first = predictions.value.predictions[0]
    assert first.prediction_date == TODAY and first.predicted_validations > 100  # type: ignore[operator]
    line = training_summary(report)
    assert "newest day 2026-11-26, 41 days before today" in line and "nan" not in line.lower()


def test_series_whose_held_out_days_are_all_zero_store_no_nan(lake: Lake) -> None:
    """A category that went quiet two weeks ago while the lake goes on: its MAPE cannot be measured,
    which leaves it out of the medians rather than storing NaN."""
    gold(lake)
    kept = [  # the quiet series (every held-out day 0: MAPE undefined) and a new one that keeps the lake live
        r
        for r in pa.table(lake.open(GOLD).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
        if (r["marketplace"], r["category"]) == ("magalu", "new")
        or (
            (r["marketplace"], r["category"]) == ("shopee", "casa") and r["date"] < TODAY - timedelta(days=20)
        )
    ]
    lake.replace_once(GOLD, pa.Table.from_pylist(kept, schema=GOLD.schema), app_id="test", version=1)
    report = train_forecasts(lake, DuckDBEngine(lake), today=TODAY)
    assert report.forecast_series == 1
    models = pa.table(lake.open(ML_MODELS).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    assert all(np.isfinite(v) for v in dict(models[0]["metrics"]).values())
    assert "mape" not in report.metrics

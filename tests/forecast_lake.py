"""A lake whose gold has weeks of weekday-shaped days with three planted anomalies and a partial today,
forecast and scored by the real ML jobs (``train_forecasts`` twice, ``score_anomalies``): what the
marketplace predictions route and the dashboard's forecast band and anomaly marks read."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from vhlake.lake.delta import Lake
from vhlake.lake.tables import ANOMALIES, GOLD, ML_PREDICTIONS
from vhlake.ml.scoring import score_anomalies
from vhlake.ml.training import train_forecasts
from vhlake.query.duckdb_engine import DuckDBEngine

TODAY = date(2026, 11, 27)  # the clock's day: its rows are a morning's, partial
HISTORY_DAYS = 63
EARLIER_RUN = TODAY - timedelta(days=7)  # the first training run's "today": it forecasts the last week
WEEKDAYS = [1.0, 1.05, 1.1, 1.0, 0.95, 0.6, 0.5]
SERIES = [("shopee", "moda", 300), ("shopee", "casa", 120), ("magalu", "moda", 80), ("magalu", "casa", 60)]
# shopee's planted days: 5x the volume, a 45% error rate, a 4x p95 time
SPIKE, ERROR_DAY, SLOW = TODAY - timedelta(days=10), TODAY - timedelta(days=5), TODAY - timedelta(days=3)
PARTIAL_SHARE = 0.3  # the share of a day's jobs in today's rows


def _day(
    marketplace: str, category: str, day: date, base: int, rng: np.random.Generator
) -> dict[str, object]:
    total = max(1, round(base * WEEKDAYS[day.weekday()] * rng.normal(1, 0.05)))
    rate, p95 = 0.08 * rng.normal(1, 0.05), 2000.0 * rng.normal(1, 0.03)
    if marketplace == "shopee":
        total *= 5 if day == SPIKE else 1
        rate = 0.45 if day == ERROR_DAY else rate
        p95 *= 4 if day == SLOW else 1
    if day == TODAY:
        total = max(1, round(total * PARTIAL_SHARE))
    failed = round(total * rate)
    return {
        "date": day,
        "marketplace": marketplace,
        "category": category,
        "total_validations": total,
        "successful_validations": total - failed,
        "failed_validations": failed,
        "total_rows_processed": total * 10,
        "avg_processing_time_ms": p95 / 2,
        "p50_processing_time": p95 / 2.2,
        "p95_processing_time": p95,
        "p99_processing_time": p95 * 1.5,
        "unique_users": 10,
        "error_rate": failed / total,
        "year": day.year,
        "month": day.month,
        "updated_at": datetime.now(UTC),
    }


def build_forecast_lake(root: Path) -> Lake:
    """Gold from ``TODAY - HISTORY_DAYS`` to ``TODAY`` (partial), then two training runs (one a week
    ago, one today) and a scoring run, all as of the injected days."""
    rng = np.random.default_rng(8)
    lake = Lake(str(root / "lake"))
    rows = [
        _day(marketplace, category, TODAY - timedelta(days=back), base, rng)
        for marketplace, category, base in SERIES
        for back in range(HISTORY_DAYS, -1, -1)
    ]
    lake.replace_once(GOLD, pa.Table.from_pylist(rows, schema=GOLD.schema), app_id="test", version=0)
    engine = DuckDBEngine(lake)
    train_forecasts(lake, engine, today=EARLIER_RUN, horizon=30)
    train_forecasts(lake, engine, today=TODAY, horizon=30)
    score_anomalies(lake, engine, days=HISTORY_DAYS, today=TODAY)
    return lake


def table_rows(lake: Lake, name: str) -> list[dict[str, Any]]:
    table = lake.open(ANOMALIES if name == "anomalies" else ML_PREDICTIONS)
    assert table is not None, f"{name} was not written"
    rows: list[dict[str, Any]] = pa.table(table.to_pyarrow_table()).to_pylist()
    return rows


def expected_forecast(lake: Lake, marketplace: str, first: date, last: date) -> list[dict[str, Any]]:
    """Each day's forecast from ml_predictions in plain Python: the newest run (by trained_at) holding
    the day, its categories' volumes and bounds summed, their error rates weighted by their volumes."""
    rows = [
        r
        for r in table_rows(lake, "ml_predictions")
        if r["marketplace"] == marketplace and first <= r["prediction_date"] <= last
    ]
    days = []
    for day in sorted({r["prediction_date"] for r in rows}):
        of_day = [r for r in rows if r["prediction_date"] == day]
        newest = max(of_day, key=lambda r: r["trained_at"])["model_version"]
        run = [r for r in of_day if r["model_version"] == newest]
        volume = sum(r["predicted_validations"] for r in run)
        days.append(
            {
                "date": day.isoformat(),
                "model_version": newest,
                "categories": len(run),
                "predicted_validations": pytest.approx(volume),
                "lower_bound": pytest.approx(sum(r["lower_bound"] for r in run)),
                "upper_bound": pytest.approx(sum(r["upper_bound"] for r in run)),
                "predicted_error_rate": pytest.approx(
                    sum(r["predicted_error_rate"] * r["predicted_validations"] for r in run) / volume
                ),
            }
        )
    return days

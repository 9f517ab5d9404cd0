"""``vhlake ml train``: forecast the next days of every (marketplace, category) into ``ml_predictions``.

Each series is filled to one value per day (a day without jobs is 0 validations), evaluated on its last
``holdout`` days against the naive seasonal baseline (a model trained on the days before), then refitted
on everything and forecast ``horizon`` days ahead. The run is a model version: its window, parameters and
held-out metrics go to ``ml_models``, and its rows in ``ml_predictions`` carry that version, so the
repository reads the newest without anything hard-coded. Series too short say so in the metrics
(``series_not_enough_history``) and get no rows rather than a fake prediction.

"Today" is the day after gold's newest day when the lake's data ends before today (ml/newest_day.py): a
stale lake is trained on what it has and forecast from the day after, never padded with zeros up to the
calendar's today. A metric no series can measure (MAPE when every held-out day is 0) is left out of
``ml_models``, never stored as NaN.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa

from vhlake.lake.delta import Lake
from vhlake.lake.tables import ML_MODELS, ML_PREDICTIONS
from vhlake.ml.forecast import NotEnoughHistory, SeasonalMedian, mape, mase, seasonal_naive
from vhlake.ml.newest_day import data_days
from vhlake.query.engine import QueryEngine
from vhlake.query.statements import statement


@dataclass(frozen=True)
class TrainReport:
    model_version: str
    series: int
    forecast_series: int
    not_enough_history: int
    metrics: dict[str, float]
    newest_day: date | None = None  # gold's newest day: the training window ends with it
    stale_days: int = 0  # from the newest day to today


def train_forecasts(
    lake: Lake,
    engine: QueryEngine,
    *,
    model: SeasonalMedian | None = None,
    history_days: int = 180,
    horizon: int = 30,
    holdout: int = 14,
    today: date | None = None,
) -> TrainReport:
    model = model or SeasonalMedian()
    lake_days = data_days(engine, today or datetime.now(UTC).date())
    until = lake_days.until
    since = until - timedelta(days=history_days)
    rows = engine.execute(statement("category_series"), {"since": since, "until": until}).to_pylist()
    version = f"seasonal-median-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    trained_at = datetime.now(UTC)
    predictions, errors, short = [], [], 0
    for (marketplace, category), days in _series(rows).items():
        volume, failed = _filled(days, since, until)
        try:
            errors.append(_holdout_errors(model, volume, holdout))
            predictions += _rows(
                model, marketplace, category, volume, failed, until, horizon, version, trained_at
            )
        except NotEnoughHistory:
            short += 1
    metrics = _summary(errors) | {
        "series_not_enough_history": float(short),
        "series_forecast": float(len(errors)),
    }
    if predictions:
        lake.append(ML_PREDICTIONS, pa.Table.from_pylist(predictions, schema=ML_PREDICTIONS.schema))
    model_row = {
        "model_version": version,
        "model_type": "forecast",
        "trained_at": trained_at,
        "train_start": since,
        "train_end": until - timedelta(days=1),
        "parameters": json.dumps(asdict(model) | {"horizon": horizon, "holdout": holdout}),
        "metrics": list(metrics.items()),
    }
    lake.append(ML_MODELS, pa.Table.from_pylist([model_row], schema=ML_MODELS.schema))
    return TrainReport(
        version, len(errors) + short, len(errors), short, metrics, lake_days.newest_day, lake_days.stale_days
    )


def _series(rows: list[dict[str, object]]) -> dict[tuple[str, str], list[dict[str, object]]]:
    grouped: dict[tuple[str, str], list[dict[str, object]]] = {}
    for row in rows:
        grouped.setdefault((str(row["marketplace"]), str(row["category"])), []).append(row)
    return grouped


def _filled(days: list[dict[str, object]], since: date, until: date) -> tuple[np.ndarray, np.ndarray]:
    """Daily volume and failures from the first day with data to the day before ``until`` (0 when none)."""
    first = min(d["date"] for d in days)  # type: ignore[type-var]
    assert isinstance(first, date)
    length = (until - first).days
    volume, failed = np.zeros(length), np.zeros(length)
    for d in days:
        i = (d["date"] - first).days  # type: ignore[operator]
        volume[i], failed[i] = float(d["validations"]), float(d["failed"])  # type: ignore[arg-type]
    return volume, failed


def _holdout_errors(
    model: SeasonalMedian, volume: np.ndarray, holdout: int
) -> tuple[float, float, float, float]:
    """MASE and MAPE of the model and of the naive seasonal baseline on the last ``holdout`` days."""
    train, test = volume[:-holdout], volume[-holdout:]
    forecast = model.forecast(train, holdout)
    naive = seasonal_naive(train, holdout)
    return (
        mase(test, forecast.mean, train),
        mase(test, naive, train),
        mape(test, forecast.mean),
        mape(test, naive),
    )


def _rows(
    model: SeasonalMedian,
    marketplace: str,
    category: str,
    volume: np.ndarray,
    failed: np.ndarray,
    until: date,
    horizon: int,
    version: str,
    trained_at: datetime,
) -> list[dict[str, object]]:
    forecast = model.forecast(volume, horizon)
    recent = slice(-model.weeks * model.season, None)
    error_rate = float(failed[recent].sum() / volume[recent].sum()) if volume[recent].sum() else None
    return [
        {
            "marketplace": marketplace,
            "category": category,
            "prediction_date": until + timedelta(days=i),
            "model_version": version,
            "model_type": "forecast",
            "predicted_validations": float(forecast.mean[i]),
            "predicted_error_rate": error_rate,
            "lower_bound": float(forecast.lower[i]),
            "upper_bound": float(forecast.upper[i]),
            "confidence_level": forecast.coverage,
            "trained_at": trained_at,
            "created_at": trained_at,
        }
        for i in range(horizon)
    ]


def _summary(errors: list[tuple[float, float, float, float]]) -> dict[str, float]:
    """The median of each metric over the series that could measure it (MASE needs a history that
    changes week to week, MAPE a held-out day that is not 0); a metric none could measure is left out."""
    values = np.asarray(errors, dtype=float).reshape(-1, 4)
    names = ("mase", "naive_mase", "mape", "naive_mape")
    measured = {name: values[:, i][np.isfinite(values[:, i])] for i, name in enumerate(names)}
    return {name: float(np.median(v)) for name, v in measured.items() if len(v)}

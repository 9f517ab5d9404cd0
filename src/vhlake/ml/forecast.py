"""Daily forecasts with weekly seasonality: the median of the same weekday over the last few weeks.

Why this model: ValidaHub's daily volumes are a weekday pattern plus noise and one-off days. The median
of the last ``weeks`` same weekdays keeps the pattern, averages the noise away (the naive seasonal
forecast, last week's value, carries all of it) and ignores a single odd day. Prediction intervals come
from the model's own errors: the same rule is replayed over the history (a rolling one-step backtest), and
the ``coverage`` quantiles of its relative errors widen the forecast. A trend is not modelled; the
backtest metrics in ``ml_models`` show when that starts to cost.

Pure: numpy arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class NotEnoughHistory(ValueError):
    """The series is too short to forecast honestly."""


@dataclass(frozen=True)
class Forecast:
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    coverage: float


@dataclass(frozen=True)
class SeasonalMedian:
    season: int = 7
    weeks: int = 4
    coverage: float = 0.8
    min_history: int = 21

    def forecast(self, history: np.ndarray, horizon: int) -> Forecast:
        """The next ``horizon`` days after ``history`` (one value per day, oldest first)."""
        x = np.asarray(history, dtype=float)
        if len(x) < self.min_history:
            raise NotEnoughHistory(f"{len(x)} days of history; at least {self.min_history} are needed")
        extended = list(x)
        for _ in range(horizon):  # each step sees the ones before it, like the backtest
            extended.append(self._next(np.asarray(extended)))
        mean = np.asarray(extended[len(x) :])
        low, high = self._error_band(x)
        return Forecast(mean, np.maximum(mean * (1 + low), 0.0), mean * (1 + high), self.coverage)

    def backtest(self, history: np.ndarray) -> np.ndarray:
        """One-step-ahead forecasts for every day that has ``min_history`` days before it (NaN before)."""
        x = np.asarray(history, dtype=float)
        return np.asarray([np.nan if i < self.min_history else self._next(x[:i]) for i in range(len(x))])

    def _next(self, x: np.ndarray) -> float:
        same_weekday = x[len(x) - self.season :: -self.season][: self.weeks]
        return float(np.median(same_weekday))

    def _error_band(self, x: np.ndarray) -> tuple[float, float]:
        predicted = self.backtest(x)
        usable = ~np.isnan(predicted) & (predicted > 0)
        if usable.sum() < 7:
            return (-0.5, 0.5)  # too few replayed days to measure the error: a wide, honest band
        relative = x[usable] / predicted[usable] - 1
        tail = (1 - self.coverage) / 2
        return float(np.quantile(relative, tail)), float(np.quantile(relative, 1 - tail))


def seasonal_naive(history: np.ndarray, horizon: int, season: int = 7) -> np.ndarray:
    """The baseline: each day as the same weekday one week before."""
    x = np.asarray(history, dtype=float)
    return np.asarray([x[len(x) - season + (i % season)] for i in range(horizon)])


def mase(actual: np.ndarray, predicted: np.ndarray, history: np.ndarray, season: int = 7) -> float:
    """Mean absolute scaled error: the forecast's mean error over the naive seasonal one's in-sample error
    (below 1: better than repeating last week)."""
    scale = float(np.mean(np.abs(history[season:] - history[:-season])))
    return float(np.mean(np.abs(actual - predicted))) / scale if scale > 0 else float("nan")


def mape(actual: np.ndarray, predicted: np.ndarray) -> float:
    keep = actual != 0
    return (
        float(np.mean(np.abs((actual[keep] - predicted[keep]) / actual[keep])))
        if keep.any()
        else float("nan")
    )

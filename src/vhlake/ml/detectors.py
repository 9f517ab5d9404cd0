"""Anomalies in daily series, with a robust detector: rolling median and MAD (median absolute deviation).

For each marketplace and metric (validations, error rate, p95 processing time), a day is compared with a
baseline of the days before it (never with itself): ``z = 0.6745 · (observed - median) / spread``, the
spread being a MAD. Medians and MADs ignore the outliers a mean and a standard deviation would chase, so
one bad day does not hide the next. Two baselines, and every row names the one it used:

- **same-weekday** (``min_history`` or more earlier same weekdays in the ``window``): marketplaces are
  quieter at weekends, and a Saturday judged against weekdays would always look odd. A MAD of 3 to 8
  points is itself noisy (3 near-equal days make ordinary noise look extreme), so the spread is also at
  least the MAD of the week-on-week changes of every day in the window (the same noise measured on up to
  49 pairs instead of 8 points).
- **recent-days** (a new marketplace: fewer same weekdays, but ``min_days`` or more days): the median of
  all the days so far, low confidence. It cannot tell a weekend from a drop, so a day is an anomaly only
  when it lies ``fallback_margin`` times farther from the median than any of those days did.

Fewer than ``min_days`` days is "not enough history", never a guess. Either spread is at least
``min_spread`` of the median (5%: a day must then move ~26% to reach the default threshold) and what chance
alone gives a day with that many jobs (Poisson for volume, binomial for the error rate, with a rate of at
least one failure in the history's jobs: a median of 0 failures is not a certainty of none).

Pure: Arrow in, Arrow out; one Python loop per series (a handful), numpy within each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

METRICS = ("validations", "error_rate", "p95_processing_time")
SEASONAL, RECENT = "same-weekday", "recent-days"
_CONSISTENCY = 0.6745  # makes the MAD comparable to a standard deviation for normal data
_NOT_ENOUGH = "not enough history"


@dataclass(frozen=True)
class Baseline:
    kind: str  # SEASONAL | RECENT
    days: int  # the days the expected value is the median of
    expected: float
    spread: float  # a MAD


@dataclass(frozen=True)
class MadDetector:
    window: int = 56
    season: int = 7
    min_history: int = 3
    min_days: int = 7
    threshold: float = 3.5
    min_spread: float = 0.05
    fallback_margin: float = 2.0

    def score(self, daily: pa.Table) -> pa.Table:
        """Per (marketplace, date, metric): observed, expected (the baseline's median), z-score, whether
        anomalous, why, and the baseline (kind and days). ``daily`` has marketplace, date and the
        :data:`METRICS` columns, one row per day."""
        parts = []
        ordered = daily.sort_by([("marketplace", "ascending"), ("date", "ascending")])
        for marketplace in pc.unique(ordered["marketplace"]).to_pylist():
            series = ordered.filter(pc.equal(ordered["marketplace"], marketplace))
            volume = np.asarray(series["validations"].to_numpy(zero_copy_only=False), dtype=float)
            for metric in METRICS:
                parts.append(self._series(marketplace, series["date"], series[metric], metric, volume))
        return pa.concat_tables(parts) if parts else _empty()

    def _series(
        self,
        marketplace: str,
        dates: pa.ChunkedArray,
        values: pa.ChunkedArray,
        metric: str,
        volume: np.ndarray,
    ) -> pa.Table:
        x = np.asarray(values.to_numpy(zero_copy_only=False), dtype=float)
        day = np.asarray(dates.to_numpy(zero_copy_only=False), dtype="datetime64[D]").astype(np.int64)
        week_before = _index_of_days(day, day - self.season)
        baselines: list[Baseline | None] = []
        for i in range(len(x)):  # per day of one short series; the windows are tiny
            in_window = (day >= day[i] - self.window) & (day < day[i]) & ~np.isnan(x)
            baselines.append(
                None if np.isnan(x[i]) else self._baseline(metric, i, x, day, in_window, week_before, volume)
            )
        z = np.asarray(
            [
                np.nan if b is None else _CONSISTENCY * (x[i] - b.expected) / b.spread
                for i, b in enumerate(baselines)
            ]
        )
        state = [
            _NOT_ENOUGH if b is None else "anomaly" if abs(z[i]) > self.threshold else "normal"
            for i, b in enumerate(baselines)
        ]
        return pa.table(
            {
                "marketplace": pa.array([marketplace] * len(x), pa.string()),
                "date": dates.combine_chunks(),
                "metric": pa.array([metric] * len(x), pa.string()),
                "observed": pa.array(x, pa.float64(), from_pandas=True),
                "expected": pa.array([None if b is None else b.expected for b in baselines], pa.float64()),
                "z_score": pa.array(z, pa.float64(), from_pandas=True),
                "state": pa.array(state, pa.string()),
                "reason": pa.array(
                    [
                        _reason(metric, x[i], b, z[i]) if s == "anomaly" and b else None
                        for i, (b, s) in enumerate(zip(baselines, state, strict=True))
                    ],
                    pa.string(),
                ),
                "baseline": pa.array([None if b is None else b.kind for b in baselines], pa.string()),
                "baseline_days": pa.array([None if b is None else b.days for b in baselines], pa.int32()),
            }
        )

    def _baseline(
        self,
        metric: str,
        i: int,
        x: np.ndarray,
        day: np.ndarray,
        in_window: np.ndarray,
        week_before: np.ndarray,
        volume: np.ndarray,
    ) -> Baseline | None:
        """Day ``i``'s baseline from the days ``in_window`` before it, or None when they are too few."""
        same_weekday = in_window & ((day[i] - day) % self.season == 0)
        if same_weekday.sum() >= self.min_history:
            kind, basis = SEASONAL, same_weekday
        elif in_window.sum() >= self.min_days:
            kind, basis = RECENT, in_window
        else:
            return None
        if metric == "error_rate":
            expected, spread = _rate_baseline(x, volume, basis, in_window, week_before, volume[i])
        else:
            expected = float(np.median(x[basis]))
            spread = max(
                float(np.median(np.abs(x[basis] - expected))),
                _relative_week_on_week(x, in_window, week_before) * abs(expected),
                _CONSISTENCY * float(np.sqrt(max(expected, 1.0))) if metric == "validations" else 0.0,
            )
        if kind == RECENT:  # a day is news only past every day so far, by the margin: not the weekly swing
            widest = float(np.max(np.abs(x[basis] - expected)))
            spread = max(spread, _CONSISTENCY * self.fallback_margin * widest / self.threshold)
        return Baseline(kind, int(basis.sum()), expected, max(spread, self.min_spread * abs(expected), 1e-12))


def _index_of_days(day: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each ``wanted`` day, the index of that day in the sorted ``day`` (-1 when the series lacks it)."""
    if len(day) == 0:
        return np.zeros(0, dtype=np.int64)
    at = np.clip(np.searchsorted(day, wanted), 0, len(day) - 1)
    return np.where(day[at] == wanted, at, -1)


def _week_pairs(in_window: np.ndarray, week_before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(day, same weekday a week before) index pairs with both days in the window."""
    later = np.flatnonzero(in_window & (week_before >= 0))
    later = later[in_window[week_before[later]]]
    return later, week_before[later]


def _relative_week_on_week(x: np.ndarray, in_window: np.ndarray, week_before: np.ndarray) -> float:
    """The day-to-day noise as a share of the level (a MAD), measured on the changes from the same
    weekday a week before over the whole window: up to 49 pairs, where the same weekday alone gives 8.
    Relative, so a quiet weekend is not judged by the swings of a busy Monday. Each change is the
    difference of two noisy days, hence the square root of 2."""
    later, earlier = _week_pairs(in_window, week_before)
    level = (np.abs(x[later]) + np.abs(x[earlier])) / 2
    keep = level > 0
    if not keep.any():
        return 0.0
    return float(np.median(np.abs(x[later] - x[earlier])[keep] / level[keep]) / np.sqrt(2))


def _rate_baseline(
    rates: np.ndarray,
    jobs: np.ndarray,
    basis: np.ndarray,
    in_window: np.ndarray,
    week_before: np.ndarray,
    day_jobs: float,
) -> tuple[float, float]:
    """The expected error rate and its spread (a MAD) for a day of ``day_jobs`` jobs.

    A day's rate varies by chance (binomial: wide for a few jobs) plus real day-to-day swings, which the
    week-on-week changes show beyond chance. A marketplace with a handful of failures a day has daily rates
    that are mostly chance (0, 0.25, 0, 0.33...), whose median and MAD mean little: there the expected rate
    is the window's failures over its jobs, and chance alone is the spread."""
    median = float(np.median(rates[basis]))
    if median * float(np.median(jobs[basis])) < 5:
        pooled_jobs = max(float(jobs[in_window].sum()), 1.0)  # a day of 0 validations has no rate
        expected = float((rates[in_window] * jobs[in_window]).sum()) / pooled_jobs
        p = min(max(expected, 1 / pooled_jobs), 0.5)  # none failed in all those jobs is not a rate of 0
        return expected, _CONSISTENCY * float(np.sqrt(p * (1 - p) / max(day_jobs, 1.0)))
    p = min(median, 0.5)
    later, earlier = _week_pairs(in_window, week_before)
    swings = 0.0
    if len(later):
        changes = float(np.median(np.abs(rates[later] - rates[earlier]))) / np.sqrt(2) / _CONSISTENCY
        swings = max(changes**2 - float(np.median(p * (1 - p) / np.maximum(jobs[later], 1.0))), 0.0)
    return median, _CONSISTENCY * float(np.sqrt(p * (1 - p) / max(day_jobs, 1.0) + swings))


def _reason(metric: str, observed: float, baseline: Baseline, z: float) -> str:
    basis = (
        f"the {baseline.days} same weekdays before"
        if baseline.kind == SEASONAL
        else f"the {baseline.days} days so far, no weekly pattern yet: low confidence"
    )
    return (
        f"{metric} {observed:.4g} vs expected {baseline.expected:.4g} (robust z {z:.1f}; baseline: {basis})"
    )


def _empty() -> pa.Table:
    return pa.table(
        {
            "marketplace": pa.array([], pa.string()),
            "date": pa.array([], pa.date32()),
            "metric": pa.array([], pa.string()),
            "observed": pa.array([], pa.float64()),
            "expected": pa.array([], pa.float64()),
            "z_score": pa.array([], pa.float64()),
            "state": pa.array([], pa.string()),
            "reason": pa.array([], pa.string()),
            "baseline": pa.array([], pa.string()),
            "baseline_days": pa.array([], pa.int32()),
        }
    )

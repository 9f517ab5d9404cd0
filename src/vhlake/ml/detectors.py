"""Anomalies in daily series, with a robust detector: rolling median and MAD (median absolute deviation).

For each marketplace and metric (validations, error rate, p95 processing time), a day is compared with
the same weekday in the ``window`` days before it (never with itself, and never with other weekdays:
marketplaces are quieter at weekends, and a Saturday judged against weekdays would always look odd):
``z = 0.6745 · (observed - median) / MAD``. Medians and MADs ignore the outliers a mean and a standard
deviation would chase, so one bad day does not hide the next. A series with fewer than ``min_history``
earlier same-weekday days says "not enough history" instead of guessing. A few near-equal days give a
tiny MAD that would make ordinary noise look extreme, so the spread is at least ``min_spread`` of the
median (5%: a day must then move ~26% to reach the default threshold), and at least what chance alone
gives a day with that many jobs (Poisson for volume, binomial for the error rate).

Pure: Arrow in, Arrow out; one Python loop per series (a handful), numpy within each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

METRICS = ("validations", "error_rate", "p95_processing_time")
_CONSISTENCY = 0.6745  # makes the MAD comparable to a standard deviation for normal data


@dataclass(frozen=True)
class MadDetector:
    window: int = 56
    season: int = 7
    min_history: int = 3
    threshold: float = 3.5
    min_spread: float = 0.05

    def score(self, daily: pa.Table) -> pa.Table:
        """Per (marketplace, date, metric): observed, expected (the median), z-score, whether anomalous,
        and why. ``daily`` has marketplace, date and the :data:`METRICS` columns, one row per day."""
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
        n = len(x)
        expected, z, state = (
            np.full(n, np.nan),
            np.full(n, np.nan),
            np.full(n, "not enough history", dtype=object),
        )
        dates_np = np.asarray(dates.to_numpy(zero_copy_only=False), dtype="datetime64[D]")
        for i in range(n):  # per day of one short series; the windows are tiny
            same_weekday = (dates_np[i] - dates_np[:i]).astype(int)
            chosen = (same_weekday % self.season == 0) & (same_weekday <= self.window)
            history = x[:i][chosen]
            history = history[~np.isnan(history)]
            if len(history) < self.min_history or np.isnan(x[i]):
                continue
            median = float(np.median(history))
            mad = max(
                float(np.median(np.abs(history - median))),
                self.min_spread * abs(median),
                _sampling_spread(metric, median, float(np.median(volume[:i][chosen]))),
                1e-12,
            )
            expected[i] = median
            z[i] = _CONSISTENCY * (x[i] - median) / mad
            anomalous = abs(z[i]) > self.threshold
            state[i] = "anomaly" if anomalous else "normal"
        reasons = [
            f"{metric} {x[i]:.4g} vs expected {expected[i]:.4g} (robust z {z[i]:.1f})"
            if state[i] == "anomaly"
            else None
            for i in range(n)
        ]
        return pa.table(
            {
                "marketplace": pa.array([marketplace] * n, pa.string()),
                "date": dates.combine_chunks(),
                "metric": pa.array([metric] * n, pa.string()),
                "observed": pa.array(x, pa.float64(), from_pandas=True),
                "expected": pa.array(expected, pa.float64(), from_pandas=True),
                "z_score": pa.array(z, pa.float64(), from_pandas=True),
                "state": pa.array(list(state), pa.string()),
                "reason": pa.array(reasons, pa.string()),
            }
        )


def _sampling_spread(metric: str, median: float, jobs: float) -> float:
    """The spread chance alone gives a day of ``jobs`` jobs (as a MAD): Poisson for the volume,
    binomial for the error rate. Small marketplaces swing more, and that is not an anomaly."""
    if metric == "validations":
        return _CONSISTENCY * float(np.sqrt(max(median, 0.0)))
    if metric == "error_rate" and jobs > 0:
        return _CONSISTENCY * float(np.sqrt(max(median * (1 - median), 0.0) / jobs))
    return 0.0


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
        }
    )

"""Anomalous jobs: K-Means on job features, scored by distance to the centre relative to the cluster's spread.

Features (the seed's): when the job ran (hour of day, day of week, as points on a circle so that 23:00 is
next to 00:00), its size (log rows), its duration (as log milliseconds per row: time grows with size, so a
slow job is one slow for its size; raw log milliseconds hid a 30x slower job among bigger ones), its error
rate, and how busy its marketplace was in the hour before (log jobs). Sizes and durations are lognormal:
on a log scale a 10x job is as far from a typical one whether typical is 100 or 100,000 rows. Features are
standardised, then clustered.

A job's score is its distance to its cluster's centre relative to that cluster's spread, feature by
feature: the largest of |job - centre| / (the cluster's standard deviation of that feature), so a score of
3 means three of the cluster's own deviations out on some feature; a job is an anomaly at ``threshold``.
Measured first with the plain Euclidean distance over the 95% radius: it dilutes one extreme feature
among eight ordinary ones, and jobs 30x slower than their size explains were not flagged; per feature
they stand far out. The seed instead called every member of a small cluster an anomaly (score 1.0). That
rule flags whole groups of legitimate but rare jobs, and misses a lone extreme job that K-Means puts into
a big cluster, where it barely moves the centre; the distance score catches it (tests/test_ml_jobs.py
compares both). The seed's rule remains the fallback for clusters too small (under
``min_cluster_share`` of training jobs) to measure a spread.

scikit-learn is imported when a model is fitted. Pure: Arrow in, Arrow out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

# The model's inputs, computed from the job feature columns (query/sql/job_features.sql).
_INPUTS = (
    "hour_sin",
    "hour_cos",
    "weekday_sin",
    "weekday_cos",
    "log_total_rows",
    "log_processing_ms_per_row",
    "error_rate",
    "log_previous_hour_jobs",
)
# What an anomaly names: a job feature, and the model inputs it is made of.
_EXPLAINED = {
    "total_rows": (4,),
    "processing_ms_per_row": (5,),
    "error_rate": (6,),
    "previous_hour_jobs": (7,),
    "hour_of_day": (0, 1),
    "day_of_week": (2, 3),
}


class NotEnoughJobs(ValueError):
    """Too few finished jobs to learn what a normal one looks like."""


class DetectorUnavailable(RuntimeError):
    """The job detector cannot run in this installation: a bare ``pip install vhlake`` has no scikit-learn,
    and its service must still forecast and score days (a failing step would make it unready)."""


@dataclass(frozen=True)
class JobClusterModel:
    """A fitted model: the scikit-learn pipeline, and per cluster its spread (per input) and whether it is
    small."""

    pipeline: Any
    spread: npt.NDArray[np.float64]
    small: npt.NDArray[np.bool_]
    params: dict[str, float] = field(default_factory=dict)

    def score(self, jobs: pa.Table, *, threshold: float = 6.0) -> pa.Table:
        """Per job: cluster, score, whether anomalous, which detector decided, and the feature that
        stands out most with its observed and expected (cluster centre) values."""
        inputs = model_inputs(jobs)
        scaled = self.pipeline[:-1].transform(inputs)
        kmeans = self.pipeline[-1]
        cluster = kmeans.predict(scaled)
        pulls = np.abs(scaled - kmeans.cluster_centers_[cluster]) / self.spread[cluster]
        score = pulls.max(axis=1)
        small = self.small[cluster]
        score = np.where(small, threshold, score)  # the seed's rule: a small cluster's members are anomalies
        metric, observed, expected = self._explain(jobs, pulls, cluster)
        return pa.table(
            {
                "job_id": jobs["job_id"],
                "marketplace": jobs["marketplace"],
                "created_date": jobs["created_date"],
                "cluster": pa.array(cluster.astype(np.int32)),
                "score": pa.array(score),
                "anomalous": pa.array(score >= threshold),
                "detector": pa.array(np.where(small, "kmeans-small-cluster", "kmeans-distance")),
                "metric": pa.array(metric),
                "observed": pa.array(observed),
                "expected": pa.array(expected),
            }
        )

    def _explain(
        self, jobs: pa.Table, pulls: npt.NDArray[np.float64], cluster: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        names = list(_EXPLAINED)
        by_feature = np.column_stack([pulls[:, list(i)].max(axis=1) for i in _EXPLAINED.values()])
        top = np.argmax(by_feature, axis=1)
        centres = _features_of(self.pipeline[:-1].inverse_transform(self.pipeline[-1].cluster_centers_))
        observed = np.column_stack(
            [_ms_per_row(jobs) if name == "processing_ms_per_row" else _float(jobs[name]) for name in names]
        )
        expected = np.column_stack([centres[name] for name in names])[cluster]
        rows = np.arange(len(top))
        return np.array(names)[top], observed[rows, top], expected[rows, top]


def fit(
    jobs: pa.Table,
    *,
    clusters: int = 8,
    min_jobs: int = 500,
    min_cluster_share: float = 0.005,
    min_spread: float = 0.25,
    seed: int = 0,
) -> JobClusterModel:
    """Fit scaling and K-Means on ``jobs`` (job feature rows: a sample is enough, see ml/scoring.py).

    A cluster's spread on an input is at least ``min_spread`` (in standardised units): a cluster of jobs
    that all ran at 14:00 would otherwise call a 15:00 job extreme.

    Raises:
        NotEnoughJobs: with fewer than ``min_jobs`` jobs.
        DetectorUnavailable: scikit-learn (the ``ml`` extra) is not installed.
    """
    if jobs.num_rows < min_jobs:
        raise NotEnoughJobs(f"{jobs.num_rows} finished jobs; the job detector needs {min_jobs}")
    try:
        from sklearn.cluster import KMeans
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        raise DetectorUnavailable("scikit-learn is not installed (pip install 'vhlake[ml]')") from exc

    inputs = model_inputs(jobs)
    pipeline = make_pipeline(StandardScaler(), KMeans(n_clusters=clusters, n_init=4, random_state=seed))
    pipeline.fit(inputs)
    scaled, labels = pipeline[:-1].transform(inputs), pipeline[-1].labels_
    members = np.bincount(labels, minlength=clusters)
    spread = np.vstack(
        [
            scaled[labels == k].std(axis=0) if members[k] > 1 else np.ones(len(_INPUTS))
            for k in range(clusters)
        ]
    )
    small = members < max(2, min_cluster_share * len(labels))
    return JobClusterModel(
        pipeline=pipeline,
        spread=np.maximum(spread, min_spread),
        small=small,
        params={
            "clusters": clusters,
            "training_jobs": float(len(labels)),
            "min_cluster_share": min_cluster_share,
            "min_spread": min_spread,
            "small_clusters": float(small.sum()),
        },
    )


def model_inputs(jobs: pa.Table) -> npt.NDArray[np.float64]:
    """The model's input matrix (:data:`_INPUTS`) from job feature columns."""
    hour, weekday = _float(jobs["hour_of_day"]), _float(jobs["day_of_week"])
    return np.column_stack(
        [
            np.sin(2 * np.pi * hour / 24),
            np.cos(2 * np.pi * hour / 24),
            np.sin(2 * np.pi * weekday / 7),
            np.cos(2 * np.pi * weekday / 7),
            np.log1p(_float(jobs["total_rows"])),
            np.log(_ms_per_row(jobs)),
            _float(jobs["error_rate"]),
            np.log1p(_float(jobs["previous_hour_jobs"])),
        ]
    )


def _features_of(inputs: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[np.float64]]:
    """Model inputs back in the job's own units (cluster centres, for "expected")."""
    return {
        "hour_of_day": (np.arctan2(inputs[:, 0], inputs[:, 1]) * 24 / (2 * np.pi)) % 24,
        "day_of_week": (np.arctan2(inputs[:, 2], inputs[:, 3]) * 7 / (2 * np.pi)) % 7,
        "total_rows": np.expm1(inputs[:, 4]),
        "processing_ms_per_row": np.exp(inputs[:, 5]),
        "error_rate": inputs[:, 6],
        "previous_hour_jobs": np.expm1(inputs[:, 7]),
    }


def _ms_per_row(jobs: pa.Table) -> npt.NDArray[np.float64]:
    """Processing milliseconds per row (a job of 0 ms counts as half a millisecond: logs stay finite)."""
    return np.maximum(_float(jobs["processing_time_ms"]), 0.5) / _float(jobs["total_rows"])


def _float(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)

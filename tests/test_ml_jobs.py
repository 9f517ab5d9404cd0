"""The job anomaly detector (K-Means distance to the cluster centre over the cluster's spread)."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from conftest import build_analytics_lake
from vhlake.lake.tables import ANOMALIES, ML_MODELS
from vhlake.ml.job_clusters import NotEnoughJobs, fit
from vhlake.ml.scoring import score_anomalies
from vhlake.query.duckdb_engine import DuckDBEngine

KINDS = ("slow", "erroring", "huge")
TODAY = date(2026, 11, 28)  # the day after the sample feed's last day (the lakes' scoring "today")


def jobs(count: int, *, seed: int, anomalies: int = 0) -> tuple[pa.Table, np.ndarray]:
    """Job features like ValidaHub's: working hours, lognormal sizes, time proportional to size, few
    errors, hourly load; then ``anomalies`` jobs made slow (30x), erroring (90%) or huge (1000x rows in
    the usual time). Returns the table and each row's kind ("" for normal)."""
    rng = np.random.default_rng(seed)
    hour = np.clip(rng.normal(14, 3.5, count), 0, 23.99).astype(int)
    rows = np.exp(rng.normal(7, 1.0, count)).astype(int) + 1
    table: dict[str, Any] = {
        "job_id": [f"j{i}" for i in range(count)],
        "marketplace": rng.choice(["shopee", "magalu", "mercado_livre"], count),
        "created_date": [date(2026, 11, 20)] * count,
        "hour_of_day": hour,
        "day_of_week": rng.integers(0, 7, count),
        "total_rows": rows,
        "processing_time_ms": (rows * np.exp(rng.normal(0.7, 0.3, count))).astype(int),
        "error_rate": rng.beta(2, 30, count),
        "previous_hour_jobs": rng.poisson(20 + 3 * np.abs(14 - hour), count),
    }
    kind = np.array([""] * count, dtype=object)
    picked = rng.choice(count, anomalies, replace=False)
    for n, i in enumerate(picked):
        kind[i] = KINDS[n % len(KINDS)]
        if kind[i] == "slow":
            table["processing_time_ms"][i] *= 30
        elif kind[i] == "erroring":
            table["error_rate"][i] = 0.9
        else:
            table["total_rows"][i] *= 1000
    return pa.table(table), kind


@pytest.mark.slow
def test_injected_anomalies_are_found_and_normal_jobs_rarely_flagged() -> None:
    model = fit(jobs(50_000, seed=1)[0])
    scored, kind = jobs(20_000, seed=2, anomalies=300)
    flagged = np.asarray(model.score(scored)["anomalous"].to_numpy(zero_copy_only=False))
    for each in KINDS:
        assert flagged[kind == each].mean() >= 0.95, each  # recall per kind
    false_positive_rate = flagged[kind == ""].mean()
    assert false_positive_rate <= 0.005  # measured 0.01-0.15% on seeds 1, 3, 5


@pytest.mark.slow
def test_the_distance_score_finds_what_the_small_cluster_rule_misses() -> None:
    model = fit(jobs(50_000, seed=3)[0])
    scored, kind = jobs(20_000, seed=4, anomalies=300)
    result = model.score(scored)
    by_distance = np.asarray(result["anomalous"].to_numpy(zero_copy_only=False))[kind != ""].mean()
    # the seed's rule: a job is anomalous when its cluster holds under 5% of the training jobs
    share = (
        np.bincount(model.pipeline[-1].labels_, minlength=len(model.spread)) / model.params["training_jobs"]
    )
    by_small_cluster = (share[result["cluster"].to_numpy()] < 0.05)[kind != ""].mean()
    assert by_distance > 0.95 > by_small_cluster


@pytest.mark.slow
def test_an_anomaly_names_the_feature_that_stands_out() -> None:
    model = fit(jobs(20_000, seed=5)[0])
    scored, kind = jobs(3_000, seed=6, anomalies=30)
    result = model.score(scored).to_pylist()
    # a huge job in the usual time is also far too quick per row: either may be named
    named = {
        "slow": {"processing_ms_per_row"},
        "erroring": {"error_rate"},
        "huge": {"total_rows", "processing_ms_per_row"},
    }
    for row, k in zip(result, kind, strict=True):
        if k:
            assert row["metric"] in named[k]
            ratio = row["observed"] / row["expected"]
            assert ratio > 3 or ratio < 1 / 3


def test_too_few_jobs_is_said_not_guessed() -> None:
    with pytest.raises(NotEnoughJobs, match="12 finished jobs"):
        fit(jobs(12, seed=7)[0])


@pytest.mark.slow
def test_ml_score_writes_job_anomalies_and_records_the_model(tmp_path: Path) -> None:
    lake = build_analytics_lake(tmp_path, jobs=3_000, seed=5)
    engine = DuckDBEngine(lake)
    report = score_anomalies(lake, engine, today=TODAY, job_days=40, train_days=40)
    assert report.jobs_scored > 1_000
    assert report.job_detector.startswith("kmeans-jobs-")
    models = pa.table(lake.open(ML_MODELS).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    assert [m["model_type"] for m in models] == ["job_anomalies"]
    assert dict(models[0]["metrics"])["jobs_scored"] == report.jobs_scored
    rows = pa.table(lake.open(ANOMALIES).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    job_rows = [r for r in rows if r["job_id"] is not None]
    assert len(job_rows) == report.job_anomalies
    assert all(r["detector"].startswith("kmeans") and r["job_id"] in r["reason"] for r in job_rows)
    assert all(r["baseline"] is None and r["baseline_days"] is None for r in job_rows)
    assert report.job_anomalies <= 0.02 * report.jobs_scored


def test_ml_score_on_a_lake_without_enough_jobs_says_so(tmp_path: Path) -> None:
    lake = build_analytics_lake(tmp_path, jobs=50, seed=5)
    report = score_anomalies(lake, DuckDBEngine(lake), today=TODAY)
    assert report.job_detector.startswith("not enough history")
    assert report.job_anomalies == 0


@pytest.mark.slow
def test_without_scikit_learn_days_are_scored_and_the_job_detector_says_it_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a bare `pip install vhlake` has no scikit-learn: the service's ML step must not fail on every run
    lake = build_analytics_lake(tmp_path, jobs=3_000, seed=5)
    for module in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # what `import sklearn` finds when it is absent
    report = score_anomalies(lake, DuckDBEngine(lake), today=TODAY, job_days=40, train_days=40)
    assert report.job_detector == "job detector off: scikit-learn is not installed (pip install 'vhlake[ml]')"
    assert report.job_anomalies == 0 and report.anomalies >= 0

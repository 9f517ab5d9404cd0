"""The daily-series anomaly detector: injected anomalies (a day with 5x volume, an error rate that jumps)
are found, normal days mostly are not (false-positive rate bounded), short series say so."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from vhlake.lake.delta import Lake
from vhlake.lake.tables import ANOMALIES, GOLD
from vhlake.ml.detectors import MadDetector
from vhlake.ml.scoring import score_anomalies
from vhlake.query.duckdb_engine import DuckDBEngine

START = date(2026, 9, 1)
DAYS = 90
SPIKE_DAY, JUMP_FROM = 60, 75  # shopee's 5x day; mercado_livre's error rate from this day on


def series(seed: int = 1) -> pa.Table:
    """Three marketplaces with a weekday pattern and noise; shopee spikes, mercado_livre's errors jump."""
    rng = np.random.default_rng(seed)
    rows = []
    for m, base in (("shopee", 400), ("mercado_livre", 900), ("magalu", 150)):
        for d in range(DAYS):
            weekday = (START + timedelta(days=d)).weekday()
            volume = base * (0.6 if weekday >= 5 else 1.0) * rng.normal(1, 0.05)
            error = 0.08 * rng.normal(1, 0.08)
            if m == "shopee" and d == SPIKE_DAY:
                volume *= 5
            if m == "mercado_livre" and d >= JUMP_FROM:
                error = 0.25
            rows.append(
                {
                    "marketplace": m,
                    "date": START + timedelta(days=d),
                    "validations": round(volume),
                    "error_rate": error,
                    "p95_processing_time": 4000 * rng.normal(1, 0.05),
                }
            )
    return pa.Table.from_pylist(rows)


def flagged(scores: pa.Table) -> set[tuple[str, int, str]]:
    return {
        (r["marketplace"], (r["date"] - START).days, r["metric"])
        for r in scores.to_pylist()
        if r["state"] == "anomaly"
    }


def test_injected_anomalies_are_found_and_normal_days_mostly_are_not() -> None:
    scores = MadDetector().score(series())
    found = flagged(scores)
    assert ("shopee", SPIKE_DAY, "validations") in found
    assert ("mercado_livre", JUMP_FROM, "error_rate") in found  # the first days of the jump, at least
    injected = {("shopee", SPIKE_DAY, "validations")} | {
        ("mercado_livre", d, "error_rate") for d in range(JUMP_FROM, DAYS)
    }
    scored = [r for r in scores.to_pylist() if r["state"] != "not enough history"]
    normal = [
        r for r in scored if ((r["marketplace"], (r["date"] - START).days, r["metric"]) not in injected)
    ]
    false_positives = sum(r["state"] == "anomaly" for r in normal)
    assert false_positives / len(normal) <= 0.02, (
        f"{false_positives} of {len(normal)} normal series-days flagged"
    )


def test_a_short_history_says_so_instead_of_guessing() -> None:
    full = series()
    short = full.filter(pa.compute.less(full["date"], pa.scalar(START + timedelta(days=5))))
    scores = MadDetector().score(short)
    assert set(scores["state"].to_pylist()) == {"not enough history"}
    assert MadDetector().score(short.slice(0, 0)).num_rows == 0


def test_scoring_writes_the_anomalies_of_gold(lake: Lake) -> None:
    rows = []
    for r in series().to_pylist():
        total = int(r["validations"])
        failed = round(total * r["error_rate"])
        rows.append(
            {
                "date": r["date"],
                "marketplace": r["marketplace"],
                "category": "moda",
                "total_validations": total,
                "successful_validations": total - failed,
                "failed_validations": failed,
                "total_rows_processed": total * 10,
                "avg_processing_time_ms": 1000.0,
                "p50_processing_time": 900.0,
                "p95_processing_time": r["p95_processing_time"],
                "p99_processing_time": 6000.0,
                "unique_users": 10,
                "error_rate": failed / total,
                "year": r["date"].year,
                "month": r["date"].month,
                "updated_at": datetime.now(UTC),
            }
        )
    lake.replace_once(GOLD, pa.Table.from_pylist(rows, schema=GOLD.schema), app_id="test", version=0)
    report = score_anomalies(lake, DuckDBEngine(lake), days=DAYS, today=START + timedelta(days=DAYS))
    stored = pa.table(lake.open(ANOMALIES).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    assert report.anomalies == len(stored) > 0
    spike = [
        a for a in stored if a["marketplace"] == "shopee" and a["date"] == START + timedelta(days=SPIKE_DAY)
    ]
    assert (
        spike and spike[0]["metric"] == "validations" and spike[0]["observed"] > 2.5 * spike[0]["expected"]
    )  # a Saturday: 5 x 0.6
    assert "vs expected" in spike[0]["reason"]
    again = score_anomalies(lake, DuckDBEngine(lake), days=DAYS, today=START + timedelta(days=DAYS))
    assert again.anomalies == report.anomalies  # rescoring the same gold replaces, never adds


@pytest.mark.parametrize("threshold", [3.0, 3.5, 5.0])
def test_a_higher_threshold_never_flags_more(threshold: float) -> None:
    loose, strict = MadDetector(threshold=threshold), MadDetector(threshold=threshold + 1)
    assert flagged(strict.score(series())) <= flagged(loose.score(series()))

"""The daily-series anomaly detector: injected anomalies (a day with 5x volume, an error rate that jumps)
are found, normal days mostly are not (false-positive rate bounded), short series say so."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from deltalake import write_deltalake

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


def write_gold(lake: Lake, daily: pa.Table) -> None:
    """``daily`` (marketplace, date, validations, error_rate, p95) as gold rows, one category each."""
    rows = []
    for r in daily.to_pylist():
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


def test_scoring_writes_the_anomalies_of_gold(lake: Lake) -> None:
    write_gold(lake, series())
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
    assert (spike[0]["baseline"], spike[0]["baseline_days"]) == ("same-weekday", 8)
    again = score_anomalies(lake, DuckDBEngine(lake), days=DAYS, today=START + timedelta(days=DAYS))
    assert again.anomalies == report.anomalies  # rescoring the same gold replaces, never adds


@pytest.mark.parametrize("threshold", [3.0, 3.5, 5.0])
def test_a_higher_threshold_never_flags_more(threshold: float) -> None:
    loose, strict = MadDetector(threshold=threshold), MadDetector(threshold=threshold + 1)
    assert flagged(strict.score(series())) <= flagged(loose.score(series()))


# Normal traffic of marketplaces from 5 to 5,000 jobs a day, built job by job as gold would see it.
SIZES = (5, 20, 100, 500, 2_000, 5_000)
WEEKLY = (1.0, 1.05, 1.1, 1.0, 0.95, 0.6, 0.5)
TRAFFIC_DAYS = 60


def traffic(seed: int, *, inject: bool = False) -> tuple[pa.Table, set[tuple[str, int, str]]]:
    """Daily series of one marketplace per size: jobs Poisson around a weekly pattern with 8% day-to-day
    swings, failures binomial around the marketplace's own rate (2-12%, 20% swings), p95 of lognormal
    job times. ``inject``: per marketplace one 5-10x volume day and one day on which 80% of the jobs
    (at least 5) fail, both in the last four weeks. Returns the series and the injected (marketplace, day, metric)."""
    rng = np.random.default_rng(seed)
    rows, injected = [], set()
    for size in SIZES:
        marketplace, error = f"m{size:05d}", rng.uniform(0.02, 0.12)
        spike, jump = (
            rng.choice(np.arange(TRAFFIC_DAYS - 28, TRAFFIC_DAYS), 2, replace=False) if inject else (-1, -1)
        )
        for d in range(TRAFFIC_DAYS):
            day = START + timedelta(days=d)
            mean = size * WEEKLY[day.weekday()] * rng.lognormal(0, 0.08)
            jobs = int(rng.poisson(mean * (rng.uniform(5, 10) if d == spike else 1)))
            if d == jump:  # an outage on a day with the usual traffic, and at least 5 jobs: 2 failures
                jobs = max(jobs, round(mean), 5)  # of 3 is within chance of a 12% rate (p = 0.04)
            if jobs == 0:
                continue  # gold has no row for a day without jobs
            failed = (
                round(0.8 * jobs)
                if d == jump
                else rng.binomial(jobs, min(1.0, error * rng.lognormal(0, 0.2)))
            )
            times = rng.lognormal(np.log(1500), 0.6, jobs) * rng.lognormal(0, 0.05)
            rows.append(
                {
                    "marketplace": marketplace,
                    "date": day,
                    "validations": jobs,
                    "error_rate": failed / jobs,
                    "p95_processing_time": float(np.percentile(times, 95)),
                }
            )
        if inject:
            injected |= {(marketplace, int(spike), "validations"), (marketplace, int(jump), "error_rate")}
    return pa.Table.from_pylist(rows), injected


@pytest.mark.slow
def test_normal_traffic_of_every_size_is_rarely_flagged_and_every_injected_day_is_found() -> None:
    normal = flagged_normal = 0
    missed = []
    for seed in range(30):
        series_, injected = traffic(seed, inject=True)
        rows = MadDetector().score(series_).to_pylist()
        injected_days = {(m, d) for m, d, _ in injected}
        for r in rows:
            key = (r["marketplace"], (r["date"] - START).days)
            if key in injected_days or r["state"] == "not enough history":
                continue
            normal += 1
            flagged_normal += r["state"] == "anomaly"
        found = flagged(MadDetector().score(series_))
        missed += [(seed, *i) for i in sorted(injected - found)]
    assert not missed, f"injected days not found: {missed}"
    assert flagged_normal <= 0.01 * normal, f"{flagged_normal} of {normal} normal series-days flagged"


def test_a_new_marketplace_is_watched_from_its_second_week() -> None:
    """Two weeks of steady traffic then a 10x day: too few earlier same weekdays for the seasonal
    baseline, so the recent days are the baseline, and the row says so."""
    series_, _ = traffic(3)
    young = series_.filter(pa.compute.less(series_["date"], pa.scalar(START + timedelta(days=15))))
    rows = young.to_pylist()
    for r in rows:
        if r["date"] == START + timedelta(days=14) and r["marketplace"] == "m00500":
            r["validations"] *= 10
    scores = MadDetector().score(pa.Table.from_pylist(rows, schema=young.schema)).to_pylist()
    spike = [s for s in scores if s["marketplace"] == "m00500" and s["date"] == START + timedelta(days=14)]
    volume = next(s for s in spike if s["metric"] == "validations")
    assert volume["state"] == "anomaly"
    assert (volume["baseline"], volume["baseline_days"]) == ("recent-days", 14)
    assert "low confidence" in volume["reason"]
    weekends = [s for s in scores if s["metric"] == "validations" and s["date"].weekday() >= 5]
    assert {s["baseline"] for s in weekends} == {None, "recent-days"}
    assert all(s["state"] != "anomaly" for s in weekends)  # a quiet weekend is not a drop
    first_week = {s["state"] for s in scores if s["date"] < START + timedelta(days=7)}
    assert first_week == {"not enough history"}  # a handful of days is no baseline at all


def test_a_new_marketplace_s_spike_is_stored_with_the_baseline_that_found_it(lake: Lake) -> None:
    young = series().filter(pa.compute.less(series()["date"], pa.scalar(START + timedelta(days=15))))
    rows = young.to_pylist()
    for r in rows:
        if r["date"] == START + timedelta(days=14) and r["marketplace"] == "magalu":
            r["validations"] *= 10
    write_gold(lake, pa.Table.from_pylist(rows, schema=young.schema))
    report = score_anomalies(lake, DuckDBEngine(lake), today=START + timedelta(days=15))
    stored = pa.table(lake.open(ANOMALIES).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    days = [a for a in stored if a["job_id"] is None]
    assert report.anomalies == len(days) == 1
    assert (days[0]["marketplace"], days[0]["metric"], days[0]["baseline"]) == (
        "magalu",
        "validations",
        "recent-days",
    )
    assert days[0]["baseline_days"] == 14 and "low confidence" in days[0]["reason"]


def test_a_stale_lake_is_scored_up_to_its_newest_day(lake: Lake) -> None:
    """Gold ends weeks before today: the days before its newest day are scored, not an empty window."""
    write_gold(lake, series())
    newest = START + timedelta(days=DAYS - 1)
    report = score_anomalies(lake, DuckDBEngine(lake), days=DAYS, today=newest + timedelta(days=40))
    assert report.newest_day == newest and report.stale_days == 40
    stored = pa.table(lake.open(ANOMALIES).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    assert ("shopee", START + timedelta(days=SPIKE_DAY), "validations") in {
        (a["marketplace"], a["date"], a["metric"]) for a in stored
    }
    assert ("mercado_livre", START + timedelta(days=DAYS - 1), "error_rate") in {
        (a["marketplace"], a["date"], a["metric"]) for a in stored
    }  # the newest day itself is over (the lake has nothing after it) and is scored


def test_anomalies_stored_before_the_baseline_columns_existed_still_read_and_are_replaced(lake: Lake) -> None:
    old = pa.schema([f for f in ANOMALIES.schema if f.name not in ("baseline", "baseline_days")])
    row = {"marketplace": "m", "date": START, "metric": "validations", "detector": "mad", "reason": "old",
           "scored_at": datetime(2026, 1, 1, tzinfo=UTC)}  # fmt: skip
    write_deltalake(lake.table_uri(ANOMALIES), pa.Table.from_pylist([row], schema=old), mode="overwrite")
    read = DuckDBEngine(lake).execute("SELECT metric, baseline, baseline_days FROM anomalies", {})
    assert read.to_pylist() == [{"metric": "validations", "baseline": None, "baseline_days": None}]
    write_gold(lake, series())
    score_anomalies(lake, DuckDBEngine(lake), days=DAYS, today=START + timedelta(days=DAYS))
    stored = pa.table(lake.open(ANOMALIES).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    assert stored and all(a["baseline"] in ("same-weekday", "recent-days") for a in stored)

"""``vhlake ml score``: the daily-series detector over gold and the job detector over silver, into
``anomalies`` (replaced whole on each run), and the job model's run into ``ml_models``.

The job detector learns what normal jobs look like from the last ``train_days`` days of finished jobs and
scores those of the last ``job_days``. Training takes a repeatable sample of at most ``TRAINING_JOBS``
jobs (by md5 of job_id, in the query), and scoring reads only the recent days, so memory does not grow
with silver: measured on 5M silver jobs in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from vhlake.lake.delta import Lake
from vhlake.lake.tables import ANOMALIES, GOLD, ML_MODELS
from vhlake.ml.detectors import MadDetector
from vhlake.ml.job_clusters import DetectorUnavailable, JobClusterModel, NotEnoughJobs, fit
from vhlake.ml.newest_day import data_days
from vhlake.query.engine import QueryEngine
from vhlake.query.statements import statement

# Jobs K-Means is fitted on, at most: clusters of 8 features are as well placed from 200k as from 5M.
TRAINING_JOBS = 200_000


@dataclass(frozen=True)
class ScoreReport:
    series_days: int
    scored: int
    anomalies: int
    not_enough_history: int
    jobs_scored: int = 0
    job_anomalies: int = 0
    job_detector: str = ""  # the job model's version, or why there is none
    newest_day: date | None = None  # gold's newest day: the scored days end with it
    stale_days: int = 0  # from the newest day to today


def score_anomalies(
    lake: Lake,
    engine: QueryEngine,
    *,
    days: int = 120,
    job_days: int = 1,
    train_days: int = 28,
    detector: MadDetector | None = None,
    today: date | None = None,
) -> ScoreReport:
    """Score the ``days`` days before today (today is not over: its counts are still growing) of every
    marketplace, and the jobs created since ``job_days`` days before today; replace ``anomalies`` with
    what stands out. On a lake whose data ends before today, "today" is the day after its newest day
    (ml/newest_day.py).

    The table is rewritten whole, marked with the gold version it was computed from, so rerunning on the
    same gold changes nothing and a rerun after new data sees the full window again.
    """
    lake_days = data_days(engine, today or datetime.now(UTC).date())
    until = lake_days.until
    scored_at = datetime.now(UTC)
    series = engine.execute(
        statement("daily_series"), {"since": until - timedelta(days=days), "until": until}
    )
    scores = (detector or MadDetector()).score(series)
    found = scores.filter(pc.equal(scores["state"], "anomaly"))
    daily = _rows(found, detector="mad", scored_at=scored_at)
    jobs, job_rows, job_detector = _job_anomalies(
        lake, engine, lake_days.last_day, job_days, train_days, scored_at
    )
    gold = lake.open(GOLD)
    lake.replace_once(
        ANOMALIES,
        pa.concat_tables([daily, job_rows]),
        app_id="ml:anomalies",
        version=-1 if gold is None else gold.version(),
    )
    states = scores["state"].to_pylist()
    return ScoreReport(
        series_days=series.num_rows,
        scored=sum(s != "not enough history" for s in states),
        anomalies=found.num_rows,
        not_enough_history=states.count("not enough history"),
        jobs_scored=jobs,
        job_anomalies=job_rows.num_rows,
        job_detector=job_detector,
        newest_day=lake_days.newest_day,
        stale_days=lake_days.stale_days,
    )


def _job_anomalies(
    lake: Lake, engine: QueryEngine, until: date, job_days: int, train_days: int, scored_at: datetime
) -> tuple[int, pa.Table, str]:
    """(jobs scored, their anomaly rows, the model version or why there is none)."""
    # a finished job counts as soon as it is in silver: today's jobs are scored too
    window = {"since": until - timedelta(days=train_days), "until": until + timedelta(days=1)}
    available = int(engine.execute(statement("job_count"), window)["jobs"][0].as_py())
    try:
        model = fit(engine.execute(statement("job_features"), window | {"sample_below": _sample(available)}))
    except NotEnoughJobs as exc:
        return 0, ANOMALIES.schema.empty_table(), f"not enough history: {exc}"
    except DetectorUnavailable as exc:
        return 0, ANOMALIES.schema.empty_table(), f"job detector off: {exc}"
    scored, flagged = 0, []
    for day in range(job_days, -1, -1):  # a day at a time: memory stays at one day of jobs
        since = until - timedelta(days=day)
        jobs = engine.execute(
            statement("job_features"),
            {"since": since, "until": since + timedelta(days=1), "sample_below": "g"},
        )
        if jobs.num_rows:
            scores = model.score(jobs)
            scored += jobs.num_rows
            flagged.append(scores.filter(scores["anomalous"]))
    version = _record(lake, model, window, scored_at, scored, sum(t.num_rows for t in flagged))
    if not flagged:  # nothing scored
        return 0, ANOMALIES.schema.empty_table(), version
    return scored, _job_rows(pa.concat_tables(flagged), scored_at), version


def _sample(available: int) -> str:
    """The md5 prefix below which about ``TRAINING_JOBS`` of ``available`` jobs fall ('g': all)."""
    if available <= TRAINING_JOBS:
        return "g"
    return f"{TRAINING_JOBS * 65536 // available:04x}"


def _record(
    lake: Lake, model: JobClusterModel, window: dict[str, date], at: datetime, scored: int, flagged: int
) -> str:
    version = f"kmeans-jobs-{at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    row = {
        "model_version": version,
        "model_type": "job_anomalies",
        "trained_at": at,
        "train_start": window["since"],
        "train_end": window["until"] - timedelta(days=1),
        "parameters": json.dumps(model.params),
        "metrics": [("jobs_scored", float(scored)), ("anomalies", float(flagged))]
        + ([("anomaly_share", flagged / scored)] if scored else []),
    }
    lake.append(ML_MODELS, pa.Table.from_pylist([row], schema=ML_MODELS.schema))
    return version


def _job_rows(flagged: pa.Table, scored_at: datetime) -> pa.Table:
    reasons = [
        f"job {job}: {metric} {observed:,.4g} where its cluster expects about {expected:,.4g} "
        f"({score:.1f} of the cluster's standard deviations out)"
        for job, metric, observed, expected, score in zip(
            *(flagged[c].to_pylist() for c in ("job_id", "metric", "observed", "expected", "score")),
            strict=True,
        )
    ]
    table = flagged.rename_columns(
        ["z_score" if c == "score" else "date" if c == "created_date" else c for c in flagged.column_names]
    )
    return _rows(
        table.append_column("reason", pa.array(reasons, pa.string())), detector=None, scored_at=scored_at
    )


def _rows(found: pa.Table, *, detector: str | None, scored_at: datetime) -> pa.Table:
    """``found`` (marketplace, date, metric, observed, expected, z_score, reason[, detector, job_id,
    baseline, baseline_days]) as anomalies rows."""
    count = found.num_rows

    def given(name: str) -> pa.ChunkedArray | pa.Array:
        return (
            found[name] if name in found.column_names else pa.nulls(count, ANOMALIES.schema.field(name).type)
        )

    columns = {
        "marketplace": found["marketplace"],
        "date": found["date"],
        "metric": found["metric"],
        "observed": found["observed"],
        "expected": found["expected"],
        "z_score": found["z_score"],
        "detector": found["detector"]
        if detector is None
        else pa.repeat(pa.scalar(detector, pa.string()), count),
        "reason": found["reason"],
        "scored_at": pa.repeat(pa.scalar(scored_at, ANOMALIES.schema.field("scored_at").type), count),
        "job_id": given("job_id"),
        "baseline": given("baseline"),
        "baseline_days": given("baseline_days"),
    }
    return pa.table(columns).cast(ANOMALIES.schema)

"""``vhlake ml ...``: anomaly detection over the lake."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated

import typer

from vhlake import bootstrap
from vhlake.cli.context import reading
from vhlake.cli.output import out

if TYPE_CHECKING:
    from vhlake.ml.training import TrainReport

ml_app = typer.Typer(
    help="Anomaly detection (daily metrics and jobs) and forecasts, into the lake.", no_args_is_help=True
)


@ml_app.command("score")
def score(
    ctx: typer.Context,
    days: Annotated[
        int, typer.Option(help="How many days back to score the daily series.", min=8, max=3660)
    ] = 120,
    job_days: Annotated[
        int, typer.Option(help="Score the jobs created this many days back (and today).", min=0)
    ] = 1,
    train_days: Annotated[
        int, typer.Option(help="Learn normal jobs from this many days (a sample of at most 200k).", min=1)
    ] = 28,
) -> None:
    """Flag anomalies into the anomalies table: days whose validations, error rate or p95 time leave their
    robust range (rolling median and MAD over the same weekdays before), per marketplace; and jobs far
    from their K-Means cluster of similar jobs (hour, weekday, size, duration, error rate, load)."""
    settings = reading(ctx)
    from vhlake.ml.scoring import score_anomalies

    report = score_anomalies(
        bootstrap.build_lake(settings),
        bootstrap.build_query_engine(settings),
        days=days,
        job_days=job_days,
        train_days=train_days,
    )
    out.print(
        f"{report.anomalies:,} anomalies in {report.scored:,} scored series-days "
        f"({report.not_enough_history:,} with not enough history yet); "
        f"{report.job_anomalies:,} anomalous jobs of {report.jobs_scored:,} scored ({report.job_detector})"
        + _staleness(report.newest_day, report.stale_days, "scored the days up to it")
    )


@ml_app.command("train")
def train(
    ctx: typer.Context,
    horizon: Annotated[int, typer.Option(help="Days to forecast.", min=1, max=366)] = 30,
) -> None:
    """Forecast the next days of every (marketplace, category) into ml_predictions, as a new model
    version in ml_models with its held-out error against the naive seasonal baseline."""
    settings = reading(ctx)
    from vhlake.ml.training import train_forecasts

    report = train_forecasts(
        bootstrap.build_lake(settings), bootstrap.build_query_engine(settings), horizon=horizon
    )
    out.print(training_summary(report))


def training_summary(report: TrainReport) -> str:
    """What ``vhlake ml train`` prints: the version, the series, the held-out quality, and how stale the
    lake is when its data ends before yesterday."""
    m = report.metrics
    if "mase" in m:
        quality = f"held-out MASE {m['mase']:.2f} vs naive {m['naive_mase']:.2f} (median over series)"
    elif report.forecast_series:
        quality = "held-out MASE not measurable: the series do not change from week to week"
    else:
        quality = "a series needs 35 days of history: 21 to fit and 14 held out to check the model"
    return (
        f"model {report.model_version}: {report.forecast_series:,} series forecast, "
        f"{report.not_enough_history:,} with not enough history; {quality}"
        + _staleness(
            report.newest_day, report.stale_days, "trained on the days up to it, forecast from the next"
        )
    )


def _staleness(newest_day: date | None, stale_days: int, done: str) -> str:
    """A lake whose data ends before yesterday, said once (the ML jobs measure from its newest day)."""
    if newest_day is None or stale_days <= 1:
        return ""
    return f"; the lake's newest day {newest_day:%Y-%m-%d}, {stale_days} days before today: {done}"

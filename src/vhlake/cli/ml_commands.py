"""``vhlake ml ...``: anomaly detection over the lake."""

from __future__ import annotations

from typing import Annotated

import typer

from vhlake import bootstrap
from vhlake.cli.output import out

ml_app = typer.Typer(
    help="Anomaly detection on the daily metrics (forecasts are still to come).", no_args_is_help=True
)


@ml_app.command("score")
def score(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(help="How many days back to score.", min=8, max=3660)] = 120,
) -> None:
    """Flag days whose validations, error rate or p95 time leave their robust range (rolling median and
    MAD over the 28 days before), per marketplace, into the anomalies table."""
    settings = ctx.obj
    from vhlake.ml.scoring import score_anomalies

    report = score_anomalies(
        bootstrap.build_lake(settings), bootstrap.build_query_engine(settings), days=days
    )
    out.print(
        f"{report.anomalies:,} anomalies in {report.scored:,} scored series-days "
        f"({report.not_enough_history:,} with not enough history yet)"
    )


@ml_app.command("train")
def train(
    ctx: typer.Context,
    horizon: Annotated[int, typer.Option(help="Days to forecast.", min=1, max=366)] = 30,
) -> None:
    """Forecast the next days of every (marketplace, category) into ml_predictions, as a new model
    version in ml_models with its held-out error against the naive seasonal baseline."""
    settings = ctx.obj
    from vhlake.ml.training import train_forecasts

    report = train_forecasts(
        bootstrap.build_lake(settings), bootstrap.build_query_engine(settings), horizon=horizon
    )
    m = report.metrics
    quality = (
        f"held-out MASE {m['mase']:.2f} vs naive {m['naive_mase']:.2f} (median over series)"
        if "mase" in m
        else "a series needs 35 days of history: 21 to fit and 14 held out to check the model"
    )
    out.print(
        f"model {report.model_version}: {report.forecast_series:,} series forecast, "
        f"{report.not_enough_history:,} with not enough history; {quality}"
    )

"""``vhlake ml ...``: anomaly detection over the lake."""

from __future__ import annotations

from typing import Annotated

import typer

from vhlake import bootstrap
from vhlake.cli.output import out
from vhlake.ml.scoring import score_anomalies

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
    report = score_anomalies(
        bootstrap.build_lake(settings), bootstrap.build_query_engine(settings), days=days
    )
    out.print(
        f"{report.anomalies:,} anomalies in {report.scored:,} scored series-days "
        f"({report.not_enough_history:,} with not enough history yet)"
    )

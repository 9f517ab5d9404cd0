"""``vhlake ml score``: run the daily-series anomaly detector over gold and keep what it finds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from vhlake.lake.delta import Lake
from vhlake.lake.tables import ANOMALIES, GOLD
from vhlake.ml.detectors import MadDetector
from vhlake.query.engine import QueryEngine
from vhlake.query.statements import statement


@dataclass(frozen=True)
class ScoreReport:
    series_days: int
    scored: int
    anomalies: int
    not_enough_history: int


def score_anomalies(
    lake: Lake,
    engine: QueryEngine,
    *,
    days: int = 120,
    detector: MadDetector | None = None,
    today: date | None = None,
) -> ScoreReport:
    """Score the ``days`` days before today (today is not over: its counts are still growing) of every
    marketplace and replace ``anomalies`` with what stands out.

    The table is rewritten whole, marked with the gold version it was computed from, so rerunning on the
    same gold changes nothing and a rerun after new data sees the full window again.
    """
    until = today or datetime.now(UTC).date()
    series = engine.execute(
        statement("daily_series"), {"since": until - timedelta(days=days), "until": until}
    )
    scores = (detector or MadDetector()).score(series)
    found = scores.filter(pc.equal(scores["state"], "anomaly"))
    rows = pa.table(
        {
            "marketplace": found["marketplace"],
            "date": found["date"],
            "metric": found["metric"],
            "observed": found["observed"],
            "expected": found["expected"],
            "z_score": found["z_score"],
            "detector": pa.array(["mad"] * found.num_rows, pa.string()),
            "reason": found["reason"],
            "scored_at": pa.array(
                [datetime.now(UTC)] * found.num_rows, ANOMALIES.schema.field("scored_at").type
            ),
        }
    )
    gold = lake.open(GOLD)
    lake.replace_once(ANOMALIES, rows, app_id="ml:anomalies", version=-1 if gold is None else gold.version())
    states = scores["state"].to_pylist()
    return ScoreReport(
        series_days=series.num_rows,
        scored=sum(s != "not enough history" for s in states),
        anomalies=found.num_rows,
        not_enough_history=states.count("not enough history"),
    )

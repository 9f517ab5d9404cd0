"""Where the ML jobs' "last days" end: at gold's newest day, not at the calendar's today.

A lake whose data stopped weeks ago (an outage upstream, a copied lake, a demo made earlier) would
otherwise score an empty window and forecast from weeks of padded zeros. So the jobs score and train up
to gold's newest day, forecast from the day after it, and report how many days before today it is. On a
live lake the newest day is today, which is not over (its counts are still growing) and so not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from vhlake.query.engine import QueryEngine
from vhlake.query.statements import statement


@dataclass(frozen=True)
class DataDays:
    today: date
    newest_day: date | None  # gold's newest day on or before today; None when gold is empty

    @property
    def until(self) -> date:
        """The day after the last complete day: today on a live lake, else the day after the newest."""
        if self.newest_day is None or self.newest_day >= self.today:
            return self.today
        return self.newest_day + timedelta(days=1)

    @property
    def last_day(self) -> date:
        """The newest day with data (today on an empty lake): the jobs scored end with it."""
        return self.newest_day or self.today

    @property
    def stale_days(self) -> int:
        """Days from gold's newest day to today (0 on a live or empty lake)."""
        return 0 if self.newest_day is None else (self.today - self.newest_day).days


def data_days(engine: QueryEngine, today: date) -> DataDays:
    newest = engine.execute(statement("newest_day"), {"today": today})["newest_day"][0].as_py()
    return DataDays(today, newest)

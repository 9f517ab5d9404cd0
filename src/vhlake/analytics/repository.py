"""``AnalyticsRepository``: the analytics ValidaHub's app, API, dashboard and alerts ask for.

The same SQL (``query/sql/``) runs on any :class:`~vhlake.query.engine.QueryEngine`: DuckDB over the
embedded lake or a Databricks SQL warehouse. Methods return ``Ok(model)`` or ``Err(reason)`` and never
raise for bad input or a failing engine, as the seed's repository did. The answers are in
:mod:`vhlake.analytics.models`; what turns a panel's rows into its answer, where that is more than a
model per row, in :mod:`~vhlake.analytics.overview`, :mod:`~vhlake.analytics.summaries`,
:mod:`~vhlake.analytics.rejections` and :mod:`~vhlake.analytics.restatements`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from vhlake.analytics.answer_cache import AnswerCache, VersionedTables
from vhlake.analytics.models import (
    AlertState,
    CategoryPerformance,
    DailyMetric,
    DailyPerformance,
    DayAnomaly,
    EngagementDay,
    ErrorTypeDay,
    ErrorTypeTotal,
    ForecastDay,
    Freshness,
    MarketplaceEngagement,
    MarketplaceErrorTypes,
    MarketplaceMetrics,
    MarketplaceNow,
    MarketplacePerformance,
    MarketplacePredictions,
    MarketplaceSummary,
    MlPredictions,
    Overview,
    Prediction,
    QualityMeasure,
    QualityRejections,
    RealTimeStats,
)
from vhlake.analytics.overview import attention, marketplace_overview
from vhlake.analytics.rejections import MAX_EXAMPLE_CHARS, rejection_days, rejection_reasons
from vhlake.analytics.restatements import day_fields
from vhlake.analytics.summaries import engagement_summary, metrics_summary
from vhlake.errors import VhlakeError
from vhlake.query.engine import QueryEngine
from vhlake.query.statements import statement
from vhlake.result import Err, Ok, Result

T = TypeVar("T")

COMPLETION_LOOKBACK_DAYS = 7
"""Freshness reads the jobs created on each marketplace's newest day and this many days before it: a job
completing later than all of those, yet created earlier, is not seen (the lag shown is then too large,
never too small). Validation jobs take seconds to minutes, so a week is ample."""

NOW_WINDOW_MAX_AGE = timedelta(seconds=1)
"""How long an answer over a window ending now (the last hour's jobs, the last day's quality measures) is
shared, by the repository's clock: the window's edge moves on, and a second is the freshness cache's own
staleness. The real-time answer says as of when it is (``as_of``)."""

MAX_TOP_ERROR_TYPES = 50
"""The most error types whose daily trend one answer gives (each adds a row per day of the period)."""


MAX_FORECAST_HORIZON_DAYS = 90
"""The most days after a period a predictions answer may add (training forecasts 30 by default)."""


class AnalyticsRepository:
    """The analytics over gold, silver and ml_predictions, on whichever engine it is given."""

    def __init__(
        self,
        engine: QueryEngine,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        marketplaces: frozenset[str] | None = None,
        cache: bool = True,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._visible = marketplaces
        self._newest = _NewestEvents()
        self._cache = AnswerCache() if cache else None

    def restricted_to(self, marketplaces: frozenset[str] | None) -> AnalyticsRepository:
        """The same repository seeing only ``marketplaces`` (None: all): the row filter of an API key,
        applied here so no caller can forget it."""
        restricted = AnalyticsRepository(self._engine, clock=self._clock, marketplaces=marketplaces)
        restricted._newest = self._newest  # every view answers freshness from the same short-lived read
        restricted._cache = self._cache  # and shares the answers (the row filter is part of their key)
        return restricted

    def _hidden(self, marketplace: str) -> Err | None:
        if self._visible is not None and marketplace not in self._visible:
            return Err(f"no access to marketplace {marketplace!r}", "forbidden")
        return None

    def get_freshness(self, marketplace: str | None = None) -> Result[Freshness]:
        """The newest event visible in silver and gold (for one marketplace, or all visible ones), and its
        lag behind the clock, however old it is. Gold names each marketplace's newest day, and only silver's
        partitions of that day and the ``COMPLETION_LOOKBACK_DAYS`` before it are read (``freshness.sql``)."""
        if marketplace is not None and (problem := self._hidden(marketplace)):
            return problem

        def build() -> Freshness:
            now = self._clock()
            rows = self._newest.rows(lambda: self._rows("freshness", lookback_days=COMPLETION_LOOKBACK_DAYS))
            newest = max(
                (
                    r["newest_event_at"]
                    for r in rows
                    if (marketplace is None or r["marketplace"] == marketplace)
                    and (self._visible is None or r["marketplace"] in self._visible)
                    and r["newest_event_at"] is not None
                ),
                default=None,
            )
            lag = None if newest is None else max(0.0, (now - newest).total_seconds())
            return Freshness(newest_event_at=newest, lag_seconds=lag)

        return _attempt(build)

    def get_marketplace_metrics(
        self, marketplace: str, start_date: date, end_date: date
    ) -> Result[MarketplaceMetrics]:
        """Daily metrics per category between two dates (inclusive), and their summary."""
        if problem := _check_range(marketplace, start_date, end_date) or self._hidden(marketplace):
            return problem

        def build() -> MarketplaceMetrics:
            rows = self._rows(
                "marketplace_metrics", marketplace=marketplace, start_date=start_date, end_date=end_date
            )
            daily = [DailyMetric(**day_fields(row)) for row in rows]
            return MarketplaceMetrics(
                marketplace=marketplace,
                start_date=start_date,
                end_date=end_date,
                daily=daily,
                summary=metrics_summary(daily),
            )

        return self._answer(("metrics", marketplace, start_date, end_date), ("marketplace_metrics",), build)

    def get_real_time_stats(
        self, marketplace: str | None = None, *, window_minutes: int = 60
    ) -> Result[RealTimeStats]:
        """Jobs created in the last hour (``window_minutes``), per marketplace (or only ``marketplace``)."""
        if window_minutes <= 0:
            return Err("window_minutes must be positive", "invalid_argument")
        if marketplace is not None and not marketplace.strip():
            return Err("marketplace must not be empty", "invalid_argument")
        if marketplace is not None and (problem := self._hidden(marketplace)):
            return problem

        def build() -> RealTimeStats:
            now = self._clock()
            since = now - timedelta(minutes=window_minutes)
            rows = self._rows(
                "real_time_stats", since=since, since_date=since.date(), marketplace=marketplace
            )
            per_marketplace = [
                MarketplaceNow(**row)
                for row in rows
                if self._visible is None or row["marketplace"] in self._visible
            ]
            total = sum(m.total_jobs for m in per_marketplace)
            failed = sum(m.failed_jobs for m in per_marketplace)
            return RealTimeStats(
                as_of=now,
                window_minutes=window_minutes,
                marketplaces=per_marketplace,
                total_jobs=total,
                failed_jobs=failed,
                error_rate=failed / total if total else None,
            )

        return self._answer(
            ("realtime", marketplace, window_minutes), ("real_time_stats",), build, max_age=NOW_WINDOW_MAX_AGE
        )

    def get_marketplace_performance(
        self, marketplace: str, period_days: int = 30, *, end_date: date | None = None
    ) -> Result[MarketplacePerformance]:
        """The last ``period_days`` days (ending today, or ``end_date``): the daily series with its
        day-over-day change and 7-day moving average, and the per-category breakdown."""
        period = self._marketplace_period(marketplace, period_days, end_date)
        if isinstance(period, Err):
            return period
        start, end = period

        def build() -> MarketplacePerformance:
            window = {"marketplace": marketplace, "start_date": start, "end_date": end}
            return MarketplacePerformance(
                marketplace=marketplace,
                period_days=period_days,
                start_date=start,
                end_date=end,
                daily=[
                    DailyPerformance(**day_fields(r))
                    for r in self._rows("marketplace_daily_performance", **window)
                ],
                categories=[
                    CategoryPerformance(**r) for r in self._rows("marketplace_category_breakdown", **window)
                ],
            )

        return self._answer(
            ("performance", marketplace, period_days, start, end),
            ("marketplace_daily_performance", "marketplace_category_breakdown"),
            build,
        )

    def get_marketplace_error_types(
        self,
        marketplace: str,
        period_days: int = 30,
        *,
        end_date: date | None = None,
        category: str | None = None,
        top: int = 5,
    ) -> Result[MarketplaceErrorTypes]:
        """The last ``period_days`` days (ending today, or ``end_date``) of ``error_type_daily_gold`` for
        one marketplace (and only ``category``, if given): every error type ranked by occurrences, and
        the daily occurrences of the first ``top``."""
        if not 0 < top <= MAX_TOP_ERROR_TYPES:
            return Err(f"top must be between 1 and {MAX_TOP_ERROR_TYPES}", "invalid_argument")
        if category is not None and not category.strip():
            return Err("category must not be empty", "invalid_argument")
        period = self._marketplace_period(marketplace, period_days, end_date)
        if isinstance(period, Err):
            return period
        start, end = period

        def build() -> MarketplaceErrorTypes:
            window = {"marketplace": marketplace, "start_date": start, "end_date": end, "category": category}
            return MarketplaceErrorTypes(
                marketplace=marketplace,
                category=category,
                period_days=period_days,
                start_date=start,
                end_date=end,
                top=top,
                error_types=[ErrorTypeTotal(**r) for r in self._rows("marketplace_error_types", **window)],
                trend=[
                    ErrorTypeDay(**r) for r in self._rows("marketplace_error_type_trend", **window, top=top)
                ],
            )

        return self._answer(
            ("error_types", marketplace, period_days, start, end, category, top),
            ("marketplace_error_types", "marketplace_error_type_trend"),
            build,
        )

    def get_overview(self, period_days: int = 7, *, end_date: date | None = None) -> Result[Overview]:
        """Every visible marketplace over the last ``period_days`` days (ending today, or ``end_date``)
        against the ``period_days`` before: validations and error rate summed from gold, the exact p95
        and active sellers from silver, a daily sparkline; sorted by :func:`~vhlake.analytics.overview.attention`."""
        period = self._period(period_days, end_date)
        if isinstance(period, Err):
            return period
        start, end = period
        if (start - date.min).days < period_days:
            return Err(f"{period_days} days before {start} is before the calendar starts", "invalid_argument")
        previous_start = start - timedelta(days=period_days)

        def build() -> Overview:
            today = self._clock().date()
            partial = end if end == today else None
            daily = self._rows("overview_daily", start_date=previous_start, end_date=end)
            periods = self._rows(
                "overview_periods", previous_start=previous_start, current_start=start, end_date=end
            )
            names = sorted({r["marketplace"] for r in daily} | {r["marketplace"] for r in periods})
            visible = [m for m in names if self._visible is None or m in self._visible]
            cards = [
                marketplace_overview(
                    m,
                    [r for r in daily if r["marketplace"] == m],
                    {r["period"]: r for r in periods if r["marketplace"] == m},
                    start,
                    end,
                    partial,
                )
                for m in visible
            ]
            return Overview(
                period_days=period_days,
                start_date=start,
                end_date=end,
                previous_start_date=previous_start,
                previous_end_date=start - timedelta(days=1),
                partial_date=partial,
                marketplaces=sorted(cards, key=attention),
            )

        return self._answer(
            ("overview", period_days, start, end), ("overview_daily", "overview_periods"), build
        )

    def get_ml_predictions(self, marketplace: str, category: str) -> Result[MlPredictions]:
        """The predictions of the most recently trained model for (marketplace, category)."""
        if not marketplace.strip() or not category.strip():
            return Err("marketplace and category must not be empty", "invalid_argument")
        if problem := self._hidden(marketplace):
            return problem

        def build() -> MlPredictions:
            rows = self._rows("ml_predictions", marketplace=marketplace, category=category)
            return MlPredictions(
                marketplace=marketplace,
                category=category,
                model_version=rows[0]["model_version"] if rows else None,
                trained_at=rows[0]["trained_at"] if rows else None,
                predictions=[Prediction(**row) for row in rows],
            )

        return self._answer(("ml_predictions", marketplace, category), ("ml_predictions",), build)

    def get_marketplace_predictions(
        self,
        marketplace: str,
        period_days: int = 30,
        *,
        end_date: date | None = None,
        horizon_days: int = 0,
    ) -> Result[MarketplacePredictions]:
        """The last ``period_days`` days (ending today, or ``end_date``) of one marketplace as its charts
        show them: the forecast from ``ml_predictions`` (per day, the newest run's categories combined,
        and ``horizon_days`` more days after the period) and the flagged days from ``anomalies``."""
        if not 0 <= horizon_days <= MAX_FORECAST_HORIZON_DAYS:
            return Err(f"horizon_days must be between 0 and {MAX_FORECAST_HORIZON_DAYS}", "invalid_argument")
        period = self._marketplace_period(marketplace, period_days, end_date)
        if isinstance(period, Err):
            return period
        start, end = period
        if (date.max - end).days < horizon_days:
            return Err(f"{horizon_days} days after {end} is past the calendar's end", "invalid_argument")

        def build() -> MarketplacePredictions:
            today = self._clock().date()
            forecast_end = end + timedelta(days=horizon_days)
            forecast = self._rows(
                "marketplace_forecast", marketplace=marketplace, start_date=start, end_date=forecast_end
            )
            window = {"marketplace": marketplace, "start_date": start, "end_date": end}
            return MarketplacePredictions(
                marketplace=marketplace,
                period_days=period_days,
                start_date=start,
                end_date=end,
                forecast_end_date=forecast_end,
                partial_date=today if start <= today <= end else None,
                forecast=[ForecastDay(**r) for r in forecast],
                anomalies=[DayAnomaly(**r) for r in self._rows("marketplace_day_anomalies", **window)],
            )

        return self._answer(
            ("predictions", marketplace, period_days, start, end, horizon_days),
            ("marketplace_forecast", "marketplace_day_anomalies"),
            build,
        )

    def get_marketplace_engagement(
        self, marketplace: str, period_days: int = 30, *, end_date: date | None = None
    ) -> Result[MarketplaceEngagement]:
        """The last ``period_days`` days (ending today, or ``end_date``) of ``user_engagement_daily_gold``
        for one marketplace, and their summary (:class:`~vhlake.analytics.models.EngagementSummary`: the last day's window counts,
        never windows summed over days; the period's distinct users read from silver's partitions of the
        marketplace and the period, only when the period has rows). Empty while nothing writes the table."""
        period = self._marketplace_period(marketplace, period_days, end_date)
        if isinstance(period, Err):
            return period
        start, end = period

        def build() -> MarketplaceEngagement:
            today = self._clock().date()
            window = {"marketplace": marketplace, "start_date": start, "end_date": end}
            daily = [EngagementDay(**r) for r in self._rows("marketplace_engagement", **window)]
            users = int(self._rows("marketplace_period_users", **window)[0]["active_users"]) if daily else 0
            return MarketplaceEngagement(
                marketplace=marketplace,
                period_days=period_days,
                start_date=start,
                end_date=end,
                partial_date=today if start <= today <= end else None,
                daily=daily,
                summary=engagement_summary(daily, users),
            )

        return self._answer(
            ("engagement", marketplace, period_days, start, end),
            ("marketplace_engagement", "marketplace_period_users"),
            build,
        )

    def get_marketplaces(self) -> Result[list[MarketplaceSummary]]:
        """The marketplaces in gold the caller may see, busiest first, with their span of days."""

        def build() -> list[MarketplaceSummary]:
            rows = self._rows("marketplaces")
            return [
                MarketplaceSummary(**r)
                for r in rows
                if self._visible is None or r["marketplace"] in self._visible
            ]

        return self._answer(("marketplaces",), ("marketplaces",), build)

    def get_alerts(self, *, days: int = 7) -> Result[list[AlertState]]:
        """Each alert rule's latest state per key (triggered first). A caller restricted to marketplaces
        sees only the alerts keyed by those marketplaces."""
        if not 0 < days <= 366:
            return Err("days must be between 1 and 366", "invalid_argument")

        def build() -> list[AlertState]:
            rows = self._rows("alerts_current", since_date=(self._clock() - timedelta(days=days)).date())
            return [AlertState(**r) for r in rows if self._visible is None or r["key"] in self._visible]

        return self._answer(("alerts", days), ("alerts_current",), build)

    def get_quality(self, *, hours: int = 24) -> Result[list[QualityMeasure]]:
        """The latest value of each data-quality measurement of the last ``hours`` (lake-wide, so only
        for callers that see every marketplace)."""
        if self._visible is not None:
            return Err(
                "data-quality measures cover every marketplace: a restricted key cannot read them",
                "forbidden",
            )
        if not 0 < hours <= 24 * 366:
            return Err("hours must be between 1 and 8784", "invalid_argument")

        def build() -> list[QualityMeasure]:
            since = self._clock() - timedelta(hours=hours)
            rows = self._rows("quality_latest", since=since, since_date=since.date())
            return [QualityMeasure(**row) for row in rows]

        return self._answer(("quality", hours), ("quality_latest",), build, max_age=NOW_WINDOW_MAX_AGE)

    def get_quality_rejections(
        self, period_days: int = 30, *, end_date: date | None = None
    ) -> Result[QualityRejections]:
        """The quarantined and rejected inputs of the last ``period_days`` days of ingestion (ending today,
        or ``end_date``): counts per day and reason, and per reason its newest example. A caller restricted
        to marketplaces sees its marketplaces' quarantined events only (see :class:`QualityRejections`)."""
        period = self._period(period_days, end_date)
        if isinstance(period, Err):
            return period
        start, end = period

        def build() -> QualityRejections:
            rows = self._rows(
                "quality_rejections", start_date=start, end_date=end, example_chars=MAX_EXAMPLE_CHARS
            )
            visible = [r for r in rows if self._visible is None or r["marketplace"] in self._visible]
            return QualityRejections(
                period_days=period_days,
                start_date=start,
                end_date=end,
                daily=rejection_days(visible),
                reasons=rejection_reasons(visible),
                rejects_visible=self._visible is None,
            )

        return self._answer(("quality_rejections", period_days, start, end), ("quality_rejections",), build)

    def _marketplace_period(
        self, marketplace: str, period_days: int, end_date: date | None
    ) -> tuple[date, date] | Err:
        """:meth:`_period`, for a marketplace the key may see."""
        period = self._period(period_days, end_date)
        if isinstance(period, Err):
            return period
        return _check_range(marketplace, *period) or self._hidden(marketplace) or period

    def _period(self, period_days: int, end_date: date | None) -> tuple[date, date] | Err:
        """The first and last day of ``period_days`` days ending on ``end_date`` (default: the clock's
        today), or why there is no such period."""
        if period_days <= 0 or period_days > 3660:
            return Err("period_days must be between 1 and 3660", "invalid_argument")
        end = end_date or self._clock().date()
        if (end - date.min).days < period_days - 1:
            return Err(f"{period_days} days before {end} is before the calendar starts", "invalid_argument")
        return end - timedelta(days=period_days - 1), end

    def _answer(
        self,
        key: tuple[Hashable, ...],
        statements: tuple[str, ...],
        build: Callable[[], T],
        *,
        max_age: timedelta | None = None,
    ) -> Result[T]:
        """``build``'s answer, shared with every caller that asks the same ``key`` with the same row filter
        on the same day while the tables ``statements`` read keep their versions (:mod:`~vhlake.analytics.
        answer_cache`); built each time on an engine that cannot tell the versions (Databricks)."""
        engine, cache = self._engine, self._cache
        if cache is None or not isinstance(engine, VersionedTables):
            return _attempt(build)

        def shared() -> T:
            versions = engine.table_versions(statement(name) for name in statements)
            full_key = (*key, self._visible, self._clock().date(), versions)
            return cache.get(full_key, build, now=self._clock, max_age=max_age)

        return _attempt(shared)

    def _rows(self, name: str, **params: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._engine.execute(statement(name), params).to_pylist()
        return rows


@dataclass
class _NewestEvents:
    """The freshness rows, kept for a second: every API answer carries its freshness, and a dashboard
    load asks five at once; one read serves them all (a second of staleness in a lag measured in seconds)."""

    ttl_s: float = 1.0
    _at: float = float("-inf")
    _rows: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def rows(self, read: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._at > self.ttl_s:
                self._rows, self._at = read(), time.monotonic()
            return self._rows


def _check_range(marketplace: str, start_date: date, end_date: date) -> Err | None:
    if not marketplace.strip():
        return Err("marketplace must not be empty", "invalid_argument")
    if start_date > end_date:
        return Err(f"start_date {start_date} is after end_date {end_date}", "invalid_argument")
    return None


def _attempt(build: Callable[[], T]) -> Result[T]:
    try:
        return Ok(build())
    except VhlakeError as exc:
        return Err(str(exc), "query")

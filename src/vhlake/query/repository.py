"""``AnalyticsRepository``: the analytics ValidaHub's app, API, dashboard and alerts ask for.

The same SQL (``query/sql/``) runs on any :class:`~vhlake.query.engine.QueryEngine`: DuckDB over the
embedded lake or a Databricks SQL warehouse. Methods return ``Ok(model)`` or ``Err(reason)`` and never
raise for bad input or a failing engine, as the seed's repository did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from vhlake.errors import VhlakeError
from vhlake.query.engine import QueryEngine
from vhlake.query.statements import statement
from vhlake.result import Err, Ok, Result

T = TypeVar("T")

COMPLETION_LOOKBACK_DAYS = 7
"""Freshness reads the jobs created on each marketplace's newest day and this many days before it: a job
completing later than all of those, yet created earlier, is not seen (the lag shown is then too large,
never too small). Validation jobs take seconds to minutes, so a week is ample."""

MAX_TOP_ERROR_TYPES = 50
"""The most error types whose daily trend one answer gives (each adds a row per day of the period)."""


MAX_FORECAST_HORIZON_DAYS = 90
"""The most days after a period a predictions answer may add (training forecasts 30 by default)."""

MAX_EXAMPLE_CHARS = 200
"""The most characters of an input shown as an example of a quarantine or reject reason: enough to
recognise it, never a whole payload (the quarantine keeps the rest, for an operator to read)."""


class DailyMetric(BaseModel):
    date: date
    category: str
    total_validations: int
    successful_validations: int
    failed_validations: int
    total_rows_processed: int
    avg_processing_time_ms: float | None
    p50_processing_time: float | None
    p95_processing_time: float | None
    p99_processing_time: float | None
    unique_users: int
    error_rate: float


class MetricsSummary(BaseModel):
    """Totals over a period. The mean processing time weighs each day's mean by its finished jobs (the
    jobs that have one). Gold counts unique users per (day, category), which do not add up, so the
    largest of those counts is given. Percentiles do not add up either: ``typical_p95_processing_time`` is
    the daily per-category p95s averaged with the same weights, a summary, not the period's exact p95."""

    total_validations: int
    successful_validations: int
    failed_validations: int
    success_rate: float | None
    error_rate: float | None
    total_rows_processed: int
    avg_processing_time_ms: float | None
    typical_p95_processing_time: float | None
    peak_unique_users: int
    days_with_data: int


class MarketplaceMetrics(BaseModel):
    marketplace: str
    start_date: date
    end_date: date
    daily: list[DailyMetric]
    summary: MetricsSummary


class MarketplaceNow(BaseModel):
    marketplace: str
    total_jobs: int
    successful_jobs: int
    failed_jobs: int
    running_jobs: int
    rows_processed: int
    avg_processing_time_ms: float | None
    p95_processing_time: float | None
    last_job_at: datetime


class RealTimeStats(BaseModel):
    """Jobs created in the last ``window_minutes`` (up to ``as_of``), per marketplace and in total."""

    as_of: datetime
    window_minutes: int
    marketplaces: list[MarketplaceNow]
    total_jobs: int
    failed_jobs: int
    error_rate: float | None


class DailyPerformance(BaseModel):
    date: date
    total_validations: int
    successful_validations: int
    failed_validations: int
    total_rows_processed: int
    error_rate: float
    daily_change: int | None
    moving_avg_7d: float


class CategoryPerformance(BaseModel):
    category: str
    total_validations: int
    failed_validations: int
    error_rate: float
    total_rows_processed: int
    avg_processing_time_ms: float | None


class MarketplacePerformance(BaseModel):
    marketplace: str
    period_days: int
    start_date: date
    end_date: date
    daily: list[DailyPerformance]
    categories: list[CategoryPerformance]


class ErrorTypeTotal(BaseModel):
    """One error type over a period: the jobs reporting it, its occurrences, and the share of those jobs
    that failed (the period's failed jobs over its jobs, not a mean of daily shares)."""

    error_type: str
    jobs: int
    occurrences: int
    failed_jobs: int
    share_of_failed_jobs: float


class ErrorTypeDay(BaseModel):
    date: date
    error_type: str
    occurrences: int


class MarketplaceErrorTypes(BaseModel):
    """A marketplace's error types over a period, most occurrences first, and the daily occurrences of
    the first ``top`` of them (days without any have no entry)."""

    marketplace: str
    category: str | None
    period_days: int
    start_date: date
    end_date: date
    top: int
    error_types: list[ErrorTypeTotal]
    trend: list[ErrorTypeDay]


class PeriodChange(BaseModel):
    """One number over the period and over the previous period of the same length: ``change`` is the
    difference (None when either is None) and ``relative_change`` that over the previous (None when the
    previous is None or 0)."""

    current: float | None
    previous: float | None
    change: float | None
    relative_change: float | None


class SparkPoint(BaseModel):
    """A day of the period; ``partial`` marks today (the clock's), whose numbers are still growing."""

    date: date
    total_validations: int
    error_rate: float | None
    partial: bool


class MarketplaceOverview(BaseModel):
    marketplace: str
    validations: PeriodChange
    error_rate: PeriodChange
    p95_processing_time: PeriodChange
    active_sellers: PeriodChange
    sparkline: list[SparkPoint]


class Overview(BaseModel):
    """Every visible marketplace with data in either period, the one needing attention first (the
    largest error-rate increase; docs/semantics.md). ``partial_date`` is the period's last day when that
    is today by the clock, else None."""

    period_days: int
    start_date: date
    end_date: date
    previous_start_date: date
    previous_end_date: date
    partial_date: date | None
    marketplaces: list[MarketplaceOverview]


class Prediction(BaseModel):
    prediction_date: date
    model_type: str
    predicted_validations: float | None
    predicted_error_rate: float | None
    lower_bound: float | None
    upper_bound: float | None
    confidence_level: float | None = None  # the nominal coverage of the bounds
    actual_validations: int | None
    actual_error_rate: float | None
    is_anomaly: bool | None
    anomaly_score: float | None


class MarketplaceSummary(BaseModel):
    marketplace: str
    first_date: date
    last_date: date
    total_validations: int


class AlertState(BaseModel):
    rule: str
    key: str
    state: str
    value: float | None
    threshold: float
    severity: str
    evaluated_at: datetime
    last_notified_at: datetime | None


class QualityMeasure(BaseModel):
    metric: str
    dimension: str | None
    latest_value: float
    measured_at: datetime
    batches: int


class RejectionDay(BaseModel):
    """The inputs of one day (UTC ingestion date) kept out of silver for one reason: ``source`` is
    ``quarantine`` (an event that broke an expectation; ``reason`` names the rule) or ``rejected`` (an
    input that is not a JSON object; ``reason`` is the kind of error)."""

    date: date
    source: str
    reason: str
    events: int


class RejectionReason(BaseModel):
    """One (source, reason) over the period: its events, the newest one's ingestion time, and that
    input's text as an example, cut to ``MAX_EXAMPLE_CHARS`` (``example_truncated`` says so). The example
    is untrusted input: show it as text, never as markup."""

    source: str
    reason: str
    events: int
    last_seen: datetime
    example: str
    example_truncated: bool


class QualityRejections(BaseModel):
    """What the period's quarantine and rejects hold, per day and per reason (most events first).

    ``rejects_visible`` is False for a key restricted to marketplaces: rejected inputs did not parse,
    so they name no marketplace and only unrestricted keys see them (the quarantine is filtered by its
    ``marketplace`` column; an event without one is seen only by unrestricted keys). ``can_replay`` says
    whether the key asking may ``POST /v1/quality/replay`` (set by the API)."""

    period_days: int
    start_date: date
    end_date: date
    daily: list[RejectionDay]
    reasons: list[RejectionReason]
    rejects_visible: bool
    can_replay: bool = False


class Freshness(BaseModel):
    """How current an answer is: the newest event it includes, and how far behind now that is."""

    newest_event_at: datetime | None
    lag_seconds: float | None


class MlPredictions(BaseModel):
    """The latest model's predictions for one (marketplace, category); None model when none exist."""

    marketplace: str
    category: str
    model_version: str | None
    trained_at: datetime | None
    predictions: list[Prediction]


class ForecastDay(BaseModel):
    """A marketplace's forecast for one day: its categories' forecasts from the newest training run that
    forecast the day, combined (docs/semantics.md#marketplace-forecasts-and-anomalies). ``lower_bound``/``upper_bound``
    are the sums of the categories' bounds: exact when the categories rise and fall together, otherwise
    wider than a band computed for the total would be (for near-normal errors), so the nominal coverage
    is rather a floor. The error rate has no band: the model gives none."""

    date: date
    model_version: str
    trained_at: datetime
    categories: int  # the categories summed: those the run could forecast
    predicted_validations: float | None
    lower_bound: float | None
    upper_bound: float | None
    confidence_level: float | None  # the categories' nominal coverage
    predicted_error_rate: float | None


class DayAnomaly(BaseModel):
    """A day whose metric (``validations``, ``error_rate`` or ``p95_processing_time``) the daily detector
    flagged: what it saw, what it expected, and its robust z-score."""

    date: date
    metric: str
    observed: float | None
    expected: float | None
    z_score: float | None
    reason: str
    baseline: str | None
    baseline_days: int | None
    scored_at: datetime


class MarketplacePredictions(BaseModel):
    """What the marketplace charts draw over their daily series: the forecast of ``start_date`` to
    ``forecast_end_date`` (``end_date`` plus the horizon asked for), the anomalous days of ``start_date``
    to ``end_date``, and ``partial_date``: today (the clock's) when it is in the period, its numbers
    still growing. Both lists are empty until ``vhlake ml train`` / ``vhlake ml score`` have run."""

    marketplace: str
    period_days: int
    start_date: date
    end_date: date
    forecast_end_date: date
    partial_date: date | None
    forecast: list[ForecastDay]
    anomalies: list[DayAnomaly]


class EngagementDay(BaseModel):
    """A day of ``user_engagement_daily_gold`` (docs/semantics.md, "Gold: user engagement"): days without
    jobs have no row. ``active_users_7d``/``active_users_28d`` are distinct users over the window ending
    that day."""

    date: date
    jobs: int
    active_users: int
    active_users_7d: int
    active_users_28d: int
    new_users: int
    returning_users: int
    jobs_per_active_user: float | None


class EngagementSummary(BaseModel):
    """The period in a few numbers. Distinct counts never add up over days (a user active on two days is
    one user), so the 7- and 28-day active users are those of the period's last day with data
    (``last_date``), and ``active_users`` is counted from silver over the whole period (exact). ``jobs`` and
    ``new_users`` are summed: a user is new once per marketplace, so new users of different days are
    different users. ``jobs_per_active_user`` is the period's jobs over its active users. Without rows in
    the period: zeros, and None for what needs a day."""

    days_with_data: int
    last_date: date | None
    active_users_7d: int | None
    active_users_28d: int | None
    active_users: int
    jobs: int
    new_users: int
    jobs_per_active_user: float | None


class MarketplaceEngagement(BaseModel):
    """A marketplace's engagement over ``start_date`` to ``end_date``: the daily rows (oldest first) and
    their summary. ``partial_date`` is today (the clock's) when it is in the period, its numbers still
    growing."""

    marketplace: str
    period_days: int
    start_date: date
    end_date: date
    partial_date: date | None
    daily: list[EngagementDay]
    summary: EngagementSummary


class AnalyticsRepository:
    """The analytics over gold, silver and ml_predictions, on whichever engine it is given."""

    def __init__(
        self,
        engine: QueryEngine,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        marketplaces: frozenset[str] | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._visible = marketplaces
        self._newest = _NewestEvents()

    def restricted_to(self, marketplaces: frozenset[str] | None) -> AnalyticsRepository:
        """The same repository seeing only ``marketplaces`` (None: all): the row filter of an API key,
        applied here so no caller can forget it."""
        restricted = AnalyticsRepository(self._engine, clock=self._clock, marketplaces=marketplaces)
        restricted._newest = self._newest  # every view answers freshness from the same short-lived read
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
            daily = [DailyMetric(**row) for row in rows]
            return MarketplaceMetrics(
                marketplace=marketplace,
                start_date=start_date,
                end_date=end_date,
                daily=daily,
                summary=_calculate_summary(daily),
            )

        return _attempt(build)

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

        return _attempt(build)

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
                daily=[DailyPerformance(**r) for r in self._rows("marketplace_daily_performance", **window)],
                categories=[
                    CategoryPerformance(**r) for r in self._rows("marketplace_category_breakdown", **window)
                ],
            )

        return _attempt(build)

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

        return _attempt(build)

    def get_overview(self, period_days: int = 7, *, end_date: date | None = None) -> Result[Overview]:
        """Every visible marketplace over the last ``period_days`` days (ending today, or ``end_date``)
        against the ``period_days`` before: validations and error rate summed from gold, the exact p95
        and active sellers from silver, a daily sparkline; sorted by :func:`_attention`."""
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
                _marketplace_overview(
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
                marketplaces=sorted(cards, key=_attention),
            )

        return _attempt(build)

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

        return _attempt(build)

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

        return _attempt(build)

    def get_marketplace_engagement(
        self, marketplace: str, period_days: int = 30, *, end_date: date | None = None
    ) -> Result[MarketplaceEngagement]:
        """The last ``period_days`` days (ending today, or ``end_date``) of ``user_engagement_daily_gold``
        for one marketplace, and their summary (:class:`EngagementSummary`: the last day's window counts,
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
                summary=_engagement_summary(daily, users),
            )

        return _attempt(build)

    def get_marketplaces(self) -> Result[list[MarketplaceSummary]]:
        """The marketplaces in gold the caller may see, busiest first, with their span of days."""

        def build() -> list[MarketplaceSummary]:
            rows = self._rows("marketplaces")
            return [
                MarketplaceSummary(**r)
                for r in rows
                if self._visible is None or r["marketplace"] in self._visible
            ]

        return _attempt(build)

    def get_alerts(self, *, days: int = 7) -> Result[list[AlertState]]:
        """Each alert rule's latest state per key (triggered first). A caller restricted to marketplaces
        sees only the alerts keyed by those marketplaces."""
        if not 0 < days <= 366:
            return Err("days must be between 1 and 366", "invalid_argument")

        def build() -> list[AlertState]:
            rows = self._rows("alerts_current", since_date=(self._clock() - timedelta(days=days)).date())
            return [AlertState(**r) for r in rows if self._visible is None or r["key"] in self._visible]

        return _attempt(build)

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

        return _attempt(build)

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
                daily=_rejection_days(visible),
                reasons=_rejection_reasons(visible),
                rejects_visible=self._visible is None,
            )

        return _attempt(build)

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


def _rejection_days(rows: list[dict[str, Any]]) -> list[RejectionDay]:
    """The statement's (day, source, reason, marketplace) rows summed over the marketplaces."""
    events: dict[tuple[date, str, str], int] = {}
    for r in rows:
        key = (r["date"], r["source"], r["reason"])
        events[key] = events.get(key, 0) + int(r["events"])
    return [
        RejectionDay(date=day, source=source, reason=reason, events=count)
        for (day, source, reason), count in sorted(events.items())
    ]


def _rejection_reasons(rows: list[dict[str, Any]]) -> list[RejectionReason]:
    """Per (source, reason): the events summed, and the example of the group seen last."""
    reasons: dict[tuple[str, str], RejectionReason] = {}
    for r in sorted(rows, key=lambda r: r["last_seen"]):  # the newest group's example wins
        key = (r["source"], r["reason"])
        text = r["example"] or ""
        before = reasons.get(key)
        reasons[key] = RejectionReason(
            source=r["source"],
            reason=r["reason"],
            events=int(r["events"]) + (before.events if before else 0),
            last_seen=r["last_seen"],
            example=text[:MAX_EXAMPLE_CHARS],
            example_truncated=len(text) > MAX_EXAMPLE_CHARS,
        )
    return sorted(reasons.values(), key=lambda r: (-r.events, r.source, r.reason))


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


def _calculate_summary(daily: list[DailyMetric]) -> MetricsSummary:
    total = sum(d.total_validations for d in daily)
    successful = sum(d.successful_validations for d in daily)
    failed = sum(d.failed_validations for d in daily)
    finished = [d.successful_validations + d.failed_validations for d in daily]  # the jobs with a time
    return MetricsSummary(
        total_validations=total,
        successful_validations=successful,
        failed_validations=failed,
        success_rate=successful / total if total else None,
        error_rate=failed / total if total else None,
        total_rows_processed=sum(d.total_rows_processed for d in daily),
        avg_processing_time_ms=_weighted([d.avg_processing_time_ms for d in daily], finished),
        typical_p95_processing_time=_weighted([d.p95_processing_time for d in daily], finished),
        peak_unique_users=max((d.unique_users for d in daily), default=0),
        days_with_data=len({d.date for d in daily}),
    )


def _engagement_summary(daily: list[EngagementDay], active_users: int) -> EngagementSummary:
    """The summary of the period's rows (oldest first) and its distinct users (see the model)."""
    last = daily[-1] if daily else None
    jobs = sum(d.jobs for d in daily)
    return EngagementSummary(
        days_with_data=len(daily),
        last_date=last.date if last else None,
        active_users_7d=last.active_users_7d if last else None,
        active_users_28d=last.active_users_28d if last else None,
        active_users=active_users,
        jobs=jobs,
        new_users=sum(d.new_users for d in daily),
        jobs_per_active_user=jobs / active_users if active_users else None,
    )


def _weighted(values: list[float | None], weights: list[int]) -> float | None:
    """The weighted mean of the values that are not None (None when there are none)."""
    pairs = [(v, w) for v, w in zip(values, weights, strict=True) if v is not None]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def _marketplace_overview(
    marketplace: str,
    daily: list[dict[str, Any]],
    periods: dict[str, dict[str, Any]],
    start: date,
    end: date,
    partial: date | None,
) -> MarketplaceOverview:
    """One card of the overview from its gold days (both periods) and its two silver period rows."""
    current = [r for r in daily if r["date"] >= start]
    previous = [r for r in daily if r["date"] < start]
    by_day = {r["date"]: r for r in current}
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]

    def silver(period: str, column: str) -> float | None:
        value = periods.get(period, {}).get(column)
        return None if value is None else float(value)

    return MarketplaceOverview(
        marketplace=marketplace,
        validations=_change(_total(current), _total(previous)),
        error_rate=_change(_error_rate(current), _error_rate(previous)),
        p95_processing_time=_change(
            silver("current", "p95_processing_time"), silver("previous", "p95_processing_time")
        ),
        active_sellers=_change(
            silver("current", "active_sellers") or 0.0, silver("previous", "active_sellers") or 0.0
        ),
        sparkline=[
            SparkPoint(
                date=day,
                total_validations=_total([by_day[day]] if day in by_day else []),
                error_rate=_error_rate([by_day[day]] if day in by_day else []),
                partial=day == partial,
            )
            for day in days
        ],
    )


def _total(rows: list[dict[str, Any]]) -> int:
    return sum(int(r["total_validations"]) for r in rows)


def _error_rate(rows: list[dict[str, Any]]) -> float | None:
    """The failed validations over the validations of ``rows`` (None without validations)."""
    total = _total(rows)
    return sum(int(r["failed_validations"]) for r in rows) / total if total else None


def _change(current: float | None, previous: float | None) -> PeriodChange:
    change = None if current is None or previous is None else current - previous
    relative = None if change is None or not previous else change / previous
    return PeriodChange(current=current, previous=previous, change=change, relative_change=relative)


def _attention(card: MarketplaceOverview) -> tuple[bool, float, float, str]:
    """What needs attention first: the largest error-rate increase (in points), then the marketplaces
    without a comparable error rate, each group by its current error rate (highest first), then name."""
    change = card.error_rate.change
    return (change is None, -(change or 0.0), -(card.error_rate.current or 0.0), card.marketplace)

"""The repository's answers: pydantic models, which the API also serves as its response schemas."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel


class Restatement(BaseModel):
    """How a restated day's numbers moved at its latest restatement (docs/semantics.md, "Restated days"):
    ``new_*`` are the day's numbers now (those of the answer), ``previous_*`` what they were before that
    restatement. A day aggregated over categories counts its other categories at their values now."""

    previous_total_validations: int
    new_total_validations: int
    previous_error_rate: float | None
    new_error_rate: float | None


class DailyMetric(BaseModel):
    """A (day, category) of gold. ``restated_at``: when its latest restatement was written, None if it was
    never restated since first written; ``restatement`` says how its numbers moved then."""

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
    restated_at: datetime | None
    restatement: Restatement | None


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
    """A day of the marketplace, its categories summed. ``restated_at``: the latest restatement of any of
    its categories (None: none was ever restated); ``restatement``: the day's numbers before and after it."""

    date: date
    total_validations: int
    successful_validations: int
    failed_validations: int
    total_rows_processed: int
    error_rate: float
    daily_change: int | None
    moving_avg_7d: float
    restated_at: datetime | None
    restatement: Restatement | None


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
    """A day of the period; ``partial`` marks today (the clock's), whose numbers are still growing;
    ``restated_at``/``restatement`` as in :class:`DailyPerformance`."""

    date: date
    total_validations: int
    error_rate: float | None
    partial: bool
    restated_at: datetime | None
    restatement: Restatement | None


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

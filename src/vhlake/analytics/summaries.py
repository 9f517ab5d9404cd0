"""A period's summary from its daily rows: the marketplace metrics' and the engagement panel's. Totals are
summed; what does not add up over days (means, percentiles, distinct users) is weighted or taken from
one day, as each model's docstring says."""

from __future__ import annotations

from vhlake.analytics.models import DailyMetric, EngagementDay, EngagementSummary, MetricsSummary


def metrics_summary(daily: list[DailyMetric]) -> MetricsSummary:
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


def engagement_summary(daily: list[EngagementDay], active_users: int) -> EngagementSummary:
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

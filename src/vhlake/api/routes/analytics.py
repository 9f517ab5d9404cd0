"""The analytics a reading key sees (``GET /v1/...``): the marketplaces and each one's metrics,
performance, error types, engagement and predictions; the overview of them all, the real-time counts, the
model's predictions and the alerts. Each answer carries its freshness, and every one is read through the
key's row filter (:data:`~vhlake.api.dependencies.VisibleRepository`)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from vhlake.analytics.models import (
    AlertState,
    MarketplaceEngagement,
    MarketplaceErrorTypes,
    MarketplaceMetrics,
    MarketplacePerformance,
    MarketplacePredictions,
    MarketplaceSummary,
    MlPredictions,
    Overview,
    RealTimeStats,
)
from vhlake.analytics.repository import MAX_FORECAST_HORIZON_DAYS, MAX_TOP_ERROR_TYPES
from vhlake.api.answer import Answer, answer
from vhlake.api.dependencies import VisibleRepository
from vhlake.result import Ok

router = APIRouter()
# A period of days ending today (or ``end``): at least one, at most ten years.
Days = Annotated[int, Query(ge=1, le=3660)]


@router.get("/v1/marketplaces/{marketplace}/metrics", response_model=Answer[MarketplaceMetrics])
def marketplace_metrics(
    marketplace: str,
    repository: VisibleRepository,
    start: date,
    end: date,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 5_000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Answer[MarketplaceMetrics]:
    """Daily gold metrics per category between two dates (inclusive), with their summary.
    ``limit``/``offset`` page through the daily rows; the summary covers them all."""
    result = repository.get_marketplace_metrics(marketplace, start, end)
    if isinstance(result, Ok):  # a copy: the repository's answers are shared between requests
        result = Ok(result.value.model_copy(update={"daily": result.value.daily[offset : offset + limit]}))
    return answer(repository, result, marketplace)


@router.get("/v1/marketplaces/{marketplace}/performance", response_model=Answer[MarketplacePerformance])
def marketplace_performance(
    marketplace: str,
    repository: VisibleRepository,
    days: Days = 30,
    end: date | None = None,
) -> Answer[MarketplacePerformance]:
    """``days`` days ending today (or ``end``): the daily series with day-over-day change and 7-day
    average, and the categories."""
    result = repository.get_marketplace_performance(marketplace, days, end_date=end)
    return answer(repository, result, marketplace)


@router.get("/v1/marketplaces/{marketplace}/errors", response_model=Answer[MarketplaceErrorTypes])
def marketplace_errors(
    marketplace: str,
    repository: VisibleRepository,
    days: Days = 30,
    end: date | None = None,
    category: Annotated[str | None, Query(min_length=1)] = None,
    top: Annotated[int, Query(ge=1, le=MAX_TOP_ERROR_TYPES)] = 5,
) -> Answer[MarketplaceErrorTypes]:
    """``days`` days ending today (or ``end``), of every category or only ``category``: the error
    types ranked by occurrences, and the daily occurrences of the ``top`` first."""
    result = repository.get_marketplace_error_types(
        marketplace, days, end_date=end, category=category, top=top
    )
    return answer(repository, result, marketplace)


@router.get("/v1/marketplaces/{marketplace}/engagement", response_model=Answer[MarketplaceEngagement])
def marketplace_engagement(
    marketplace: str,
    repository: VisibleRepository,
    days: Days = 30,
    end: date | None = None,
) -> Answer[MarketplaceEngagement]:
    """``days`` days ending today (or ``end``) of the marketplace's user engagement: the daily rows
    (jobs, active users that day and over 7 and 28 days, new and returning users) and a summary. The
    summary's 7- and 28-day active users are the last day's: windows are distinct counts and are never
    summed across days; the period's active users are counted distinct over the period. Today, when in
    the period, is ``partial_date``. Empty (not an error) while the pipeline does not write the table."""
    result = repository.get_marketplace_engagement(marketplace, days, end_date=end)
    return answer(repository, result, marketplace)


@router.get("/v1/marketplaces/{marketplace}/predictions", response_model=Answer[MarketplacePredictions])
def marketplace_predictions(
    marketplace: str,
    repository: VisibleRepository,
    days: Days = 30,
    end: date | None = None,
    horizon: Annotated[int, Query(ge=0, le=MAX_FORECAST_HORIZON_DAYS)] = 0,
) -> Answer[MarketplacePredictions]:
    """``days`` days ending today (or ``end``) as the marketplace's charts draw them: the daily
    forecast of its categories combined (and ``horizon`` days more), the anomalous days, and today
    when it is in the period (partial)."""
    result = repository.get_marketplace_predictions(marketplace, days, end_date=end, horizon_days=horizon)
    return answer(repository, result, marketplace)


@router.get("/v1/stats/realtime", response_model=Answer[RealTimeStats])
def realtime(
    repository: VisibleRepository,
    marketplace: str | None = None,
    window_minutes: Annotated[int, Query(ge=1, le=24 * 60)] = 60,
) -> Answer[RealTimeStats]:
    """Jobs created in the last hour (``window_minutes``), per marketplace the key may see."""
    return answer(
        repository, repository.get_real_time_stats(marketplace, window_minutes=window_minutes), marketplace
    )


@router.get("/v1/predictions", response_model=Answer[MlPredictions])
def predictions(repository: VisibleRepository, marketplace: str, category: str) -> Answer[MlPredictions]:
    """The latest trained model's forecasts and anomaly scores for one (marketplace, category)."""
    return answer(repository, repository.get_ml_predictions(marketplace, category), marketplace)


@router.get("/v1/marketplaces", response_model=Answer[list[MarketplaceSummary]])
def marketplaces(repository: VisibleRepository) -> Answer[list[MarketplaceSummary]]:
    """The marketplaces this key may see, busiest first, with their first and last day in gold."""
    return answer(repository, repository.get_marketplaces(), None)


@router.get("/v1/overview", response_model=Answer[Overview])
def overview(
    repository: VisibleRepository,
    days: Days = 7,
    end: date | None = None,
) -> Answer[Overview]:
    """Every marketplace the key may see over ``days`` days ending today (or ``end``) against the
    ``days`` before, the one needing attention first; today, when included, is marked partial."""
    return answer(repository, repository.get_overview(days, end_date=end), None)


@router.get("/v1/alerts", response_model=Answer[list[AlertState]])
def alerts(
    repository: VisibleRepository, days: Annotated[int, Query(ge=1, le=366)] = 7
) -> Answer[list[AlertState]]:
    """Each alert rule's latest state per key (triggered first), from the last ``days`` of evaluations."""
    return answer(repository, repository.get_alerts(days=days), None)

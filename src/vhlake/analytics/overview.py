"""The overview's cards from gold's days and silver's period rows: each number over the period against
the previous one, a daily sparkline, and the order that puts the marketplace needing attention first."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from vhlake.analytics.models import MarketplaceOverview, PeriodChange, SparkPoint
from vhlake.analytics.restatements import restatement


def marketplace_overview(
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
        sparkline=[_point(day, by_day.get(day), partial) for day in days],
    )


def _point(day: date, row: dict[str, Any] | None, partial: date | None) -> SparkPoint:
    """The sparkline's ``day`` from its gold row (None: no jobs that day, so never restated either)."""
    rows = [] if row is None else [row]
    error_rate = _error_rate(rows)
    return SparkPoint(
        date=day,
        total_validations=_total(rows),
        error_rate=error_rate,
        partial=day == partial,
        restated_at=None if row is None else row["restated_at"],
        restatement=None if row is None else restatement(row, error_rate),
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


def attention(card: MarketplaceOverview) -> tuple[bool, float, float, str]:
    """What needs attention first: the largest error-rate increase (in points), then the marketplaces
    without a comparable error rate, each group by its current error rate (highest first), then name."""
    change = card.error_rate.change
    return (change is None, -(change or 0.0), -(card.error_rate.current or 0.0), card.marketplace)

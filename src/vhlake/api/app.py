"""The HTTP API: ``POST /v1/events`` in, the analytics out, every route behind an API key.

Each analytics answer carries its freshness (the newest event it includes, and the lag behind now), so
a client never mistakes stale numbers for current ones. Errors are RFC 9457 problem details. A key's
marketplace restriction is the repository's row filter (:meth:`AnalyticsRepository.restricted_to`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Generic, Protocol, TypeVar

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError

from vhlake.analytics.models import (
    AlertState,
    Freshness,
    MarketplaceEngagement,
    MarketplaceErrorTypes,
    MarketplaceMetrics,
    MarketplacePerformance,
    MarketplacePredictions,
    MarketplaceSummary,
    MlPredictions,
    Overview,
    QualityMeasure,
    QualityRejections,
    RealTimeStats,
)
from vhlake.analytics.repository import MAX_FORECAST_HORIZON_DAYS, MAX_TOP_ERROR_TYPES, AnalyticsRepository
from vhlake.api.audit import AuditLog, AuditMiddleware
from vhlake.api.body import field_limit_breach, split_events
from vhlake.api.edge import EdgeMiddleware
from vhlake.api.keys import ApiKey, KeyStore, Scope, presented_key_id
from vhlake.api.limits import ApiLimits
from vhlake.api.problems import Problem, install_problem_handlers
from vhlake.api.ratelimit import TokenBuckets
from vhlake.events.model import ValidationEvent
from vhlake.events.publisher import EventPublisher
from vhlake.lake.delta import CommitConflict
from vhlake.lake.writer_lock import DerivedTablesBusy
from vhlake.result import Err, Ok, Result

T = TypeVar("T")
DEFAULT_LIMITS = ApiLimits()
# Events validated per trip to the threadpool: between trips the event loop has the GIL to itself, so
# other requests wait for one slice (milliseconds), not for the whole batch (a second for 10,000).
_EVENTS_PER_SLICE = 250
# How long a replay waits for a pipeline run (or another replay) to finish before answering 409: runs of
# a streaming service take a second or two; a first build or a long backlog takes longer, and the client
# is better told to retry than held.
REPLAY_WAIT_S = 10.0


class Answer(BaseModel, Generic[T]):
    """An analytics answer and how current it is."""

    data: T
    freshness: Freshness


class Rejected(BaseModel):
    index: int
    error: str


class Accepted(BaseModel):
    accepted: int
    rejected: int
    outboxed: int
    errors: list[Rejected]


class ReplayRequest(BaseModel):
    """Which quarantined events to re-check: one reason (a rule's name), or every reason when absent."""

    reason: str | None = Field(default=None, min_length=1, max_length=200)


class Replayed(BaseModel):
    reason: str | None
    replayed: int


class QuarantineReplay(Protocol):
    """:meth:`vhlake.pipeline.runner.Pipeline.replay_quarantine`: the events that passed and left."""

    def __call__(self, *, reason: str | None, wait_s: float | None) -> int: ...


@dataclass(frozen=True)
class ApiDeps:
    repository: AnalyticsRepository
    publisher: EventPublisher
    keys: KeyStore
    audit: AuditLog
    replay: QuarantineReplay | None = None  # None: this API cannot replay the quarantine (503)


def _key_with(scope: Scope) -> Callable[..., ApiKey]:
    """A dependency: the request's API key, which must be live, within its rate, and allow ``scope``."""

    def check(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> ApiKey:
        deps: ApiDeps = request.app.state.vhlake_api
        presented = x_api_key or (authorization or "").removeprefix("Bearer ").strip() or None
        if presented is None:
            raise Problem(401, "API key required", "send it as 'Authorization: Bearer <key>' or 'X-API-Key'")
        request.state.key_id = presented_key_id(presented)  # audited, even when the key is refused
        key, outcome = deps.keys.examine(presented)
        if key is None:
            request.state.outcome = outcome
            raise Problem(401, "invalid or revoked API key")
        wait_s = request.app.state.vhlake_rates.take(key.key_id)
        if wait_s > 0:
            raise Problem(
                429,
                "too many requests",
                "this key's request rate is spent; retry after the time in Retry-After",
                headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
            )
        if not key.may(scope):
            raise Problem(403, "not allowed", f"this key's scope is {key.scope!r}; the route needs {scope!r}")
        return key

    return check


Reader = Annotated[ApiKey, Depends(_key_with("read"))]
Ingester = Annotated[ApiKey, Depends(_key_with("ingest"))]
Admin = Annotated[ApiKey, Depends(_key_with("admin"))]


def may_replay(key: ApiKey) -> bool:
    """A replay re-checks the whole quarantine, every marketplace's events: admin keys that see them all."""
    return key.scope == "admin" and key.marketplaces is None


def install_api(
    app: FastAPI,
    deps: ApiDeps,
    limits: ApiLimits = DEFAULT_LIMITS,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Add the ``/v1`` routes, their key checks and rates, auditing, problem details and the security
    headers to ``app`` (the headers and the body deadline cover every route of ``app``)."""
    install_problem_handlers(app)
    app.state.vhlake_api = deps
    app.state.vhlake_rates = TokenBuckets(limits.rate_per_s, limits.rate_burst, clock=clock)
    app.add_middleware(AuditMiddleware, audit=deps.audit)
    app.add_middleware(EdgeMiddleware, body_timeout_s=limits.body_timeout_s)  # added last: outermost

    def answer(key: ApiKey, result: Result[T], marketplace: str | None) -> Answer[T]:
        repository = deps.repository.restricted_to(key.marketplaces)
        data = _unwrap(result)
        return Answer[Any](data=data, freshness=_unwrap(repository.get_freshness(marketplace)))

    @app.get("/v1/marketplaces/{marketplace}/metrics", response_model=Answer[MarketplaceMetrics])
    def marketplace_metrics(
        marketplace: str,
        key: Reader,
        start: date,
        end: date,
        limit: Annotated[int, Query(ge=1, le=50_000)] = 5_000,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Answer[MarketplaceMetrics]:
        """Daily gold metrics per category between two dates (inclusive), with their summary.
        ``limit``/``offset`` page through the daily rows; the summary covers them all."""
        repository = deps.repository.restricted_to(key.marketplaces)
        result = repository.get_marketplace_metrics(marketplace, start, end)
        if isinstance(result, Ok):
            result.value.daily = result.value.daily[offset : offset + limit]
        return answer(key, result, marketplace)

    @app.get("/v1/marketplaces/{marketplace}/performance", response_model=Answer[MarketplacePerformance])
    def marketplace_performance(
        marketplace: str,
        key: Reader,
        days: Annotated[int, Query(ge=1, le=3660)] = 30,
        end: date | None = None,
    ) -> Answer[MarketplacePerformance]:
        """``days`` days ending today (or ``end``): the daily series with day-over-day change and 7-day
        average, and the categories."""
        repository = deps.repository.restricted_to(key.marketplaces)
        return answer(
            key, repository.get_marketplace_performance(marketplace, days, end_date=end), marketplace
        )

    @app.get("/v1/marketplaces/{marketplace}/errors", response_model=Answer[MarketplaceErrorTypes])
    def marketplace_errors(
        marketplace: str,
        key: Reader,
        days: Annotated[int, Query(ge=1, le=3660)] = 30,
        end: date | None = None,
        category: Annotated[str | None, Query(min_length=1)] = None,
        top: Annotated[int, Query(ge=1, le=MAX_TOP_ERROR_TYPES)] = 5,
    ) -> Answer[MarketplaceErrorTypes]:
        """``days`` days ending today (or ``end``), of every category or only ``category``: the error
        types ranked by occurrences, and the daily occurrences of the ``top`` first."""
        repository = deps.repository.restricted_to(key.marketplaces)
        result = repository.get_marketplace_error_types(
            marketplace, days, end_date=end, category=category, top=top
        )
        return answer(key, result, marketplace)

    @app.get("/v1/marketplaces/{marketplace}/engagement", response_model=Answer[MarketplaceEngagement])
    def marketplace_engagement(
        marketplace: str,
        key: Reader,
        days: Annotated[int, Query(ge=1, le=3660)] = 30,
        end: date | None = None,
    ) -> Answer[MarketplaceEngagement]:
        """``days`` days ending today (or ``end``) of the marketplace's user engagement: the daily rows
        (jobs, active users that day and over 7 and 28 days, new and returning users) and a summary. The
        summary's 7- and 28-day active users are the last day's: windows are distinct counts and are never
        summed across days; the period's active users are counted distinct over the period. Today, when in
        the period, is ``partial_date``. Empty (not an error) while the pipeline does not write the table."""
        repository = deps.repository.restricted_to(key.marketplaces)
        result = repository.get_marketplace_engagement(marketplace, days, end_date=end)
        return answer(key, result, marketplace)

    @app.get("/v1/marketplaces/{marketplace}/predictions", response_model=Answer[MarketplacePredictions])
    def marketplace_predictions(
        marketplace: str,
        key: Reader,
        days: Annotated[int, Query(ge=1, le=3660)] = 30,
        end: date | None = None,
        horizon: Annotated[int, Query(ge=0, le=MAX_FORECAST_HORIZON_DAYS)] = 0,
    ) -> Answer[MarketplacePredictions]:
        """``days`` days ending today (or ``end``) as the marketplace's charts draw them: the daily
        forecast of its categories combined (and ``horizon`` days more), the anomalous days, and today
        when it is in the period (partial)."""
        repository = deps.repository.restricted_to(key.marketplaces)
        result = repository.get_marketplace_predictions(marketplace, days, end_date=end, horizon_days=horizon)
        return answer(key, result, marketplace)

    @app.get("/v1/stats/realtime", response_model=Answer[RealTimeStats])
    def realtime(
        key: Reader,
        marketplace: str | None = None,
        window_minutes: Annotated[int, Query(ge=1, le=24 * 60)] = 60,
    ) -> Answer[RealTimeStats]:
        """Jobs created in the last hour (``window_minutes``), per marketplace the key may see."""
        repository = deps.repository.restricted_to(key.marketplaces)
        return answer(
            key, repository.get_real_time_stats(marketplace, window_minutes=window_minutes), marketplace
        )

    @app.get("/v1/predictions", response_model=Answer[MlPredictions])
    def predictions(key: Reader, marketplace: str, category: str) -> Answer[MlPredictions]:
        """The latest trained model's forecasts and anomaly scores for one (marketplace, category)."""
        repository = deps.repository.restricted_to(key.marketplaces)
        return answer(key, repository.get_ml_predictions(marketplace, category), marketplace)

    @app.get("/v1/marketplaces", response_model=Answer[list[MarketplaceSummary]])
    def marketplaces(key: Reader) -> Answer[list[MarketplaceSummary]]:
        """The marketplaces this key may see, busiest first, with their first and last day in gold."""
        return answer(key, deps.repository.restricted_to(key.marketplaces).get_marketplaces(), None)

    @app.get("/v1/overview", response_model=Answer[Overview])
    def overview(
        key: Reader,
        days: Annotated[int, Query(ge=1, le=3660)] = 7,
        end: date | None = None,
    ) -> Answer[Overview]:
        """Every marketplace the key may see over ``days`` days ending today (or ``end``) against the
        ``days`` before, the one needing attention first; today, when included, is marked partial."""
        repository = deps.repository.restricted_to(key.marketplaces)
        return answer(key, repository.get_overview(days, end_date=end), None)

    @app.get("/v1/alerts", response_model=Answer[list[AlertState]])
    def alerts(key: Reader, days: Annotated[int, Query(ge=1, le=366)] = 7) -> Answer[list[AlertState]]:
        """Each alert rule's latest state per key (triggered first), from the last ``days`` of evaluations."""
        return answer(key, deps.repository.restricted_to(key.marketplaces).get_alerts(days=days), None)

    @app.get("/v1/quality", response_model=Answer[list[QualityMeasure]])
    def quality(
        key: Reader, hours: Annotated[int, Query(ge=1, le=8784)] = 24
    ) -> Answer[list[QualityMeasure]]:
        """The latest data-quality measurements (keys restricted to marketplaces may not read them)."""
        repository = deps.repository.restricted_to(key.marketplaces)
        return answer(key, repository.get_quality(hours=hours), None)

    @app.get("/v1/quality/rejections", response_model=Answer[QualityRejections])
    def quality_rejections(
        key: Reader,
        days: Annotated[int, Query(ge=1, le=366)] = 30,
        end: date | None = None,
    ) -> Answer[QualityRejections]:
        """Events quarantined and inputs rejected over ``days`` days of ingestion ending today (or
        ``end``): per day and reason, and per reason a short example (untrusted text). A key restricted
        to marketplaces sees its marketplaces' quarantined events and no rejects (they name none)."""
        repository = deps.repository.restricted_to(key.marketplaces)
        result = repository.get_quality_rejections(days, end_date=end)
        if isinstance(result, Ok):
            result.value.can_replay = may_replay(key) and deps.replay is not None
        return answer(key, result, None)

    @app.post("/v1/quality/replay", response_model=Replayed)
    async def quality_replay(request: Request, key: Admin, body: ReplayRequest | None = None) -> Replayed:
        """Re-check the quarantined events (of one ``reason``, or all) with the pipeline's current rules;
        those that pass are folded into silver and gold and leave the quarantine. Admin keys that see
        every marketplace only. Idempotent; 409 while the pipeline (or another replay) is writing."""
        if not may_replay(key):
            raise Problem(
                403,
                "not allowed",
                "replaying the quarantine needs an admin key that sees every marketplace",
            )
        if deps.replay is None:
            raise Problem(503, "replay unavailable", "this API was started without a pipeline to replay with")
        reason = body.reason if body else None
        try:
            replayed = await run_in_threadpool(deps.replay, reason=reason, wait_s=REPLAY_WAIT_S)
        except (DerivedTablesBusy, CommitConflict) as exc:  # a replay is idempotent: retrying is safe
            raise Problem(
                409, "the lake is busy", f"{exc}: retry shortly", headers={"Retry-After": "5"}
            ) from exc
        request.state.outcome = f"replayed {replayed} ({'all reasons' if reason is None else reason})"
        return Replayed(reason=reason, replayed=replayed)

    @app.post("/v1/events", status_code=202, response_model=Accepted)
    async def events(request: Request, key: Ingester) -> Accepted:
        """One event or a JSON array of them, each judged on its own: a bad one is rejected with a
        reason and never sinks the others. 202 once the accepted ones are stored durably (in the event
        log, or the outbox while Kafka is down); 422 when none is."""
        body = await _read_limited(request, limits.max_body_bytes)
        judged = await run_in_threadpool(split_events, body, limits)
        accepted: list[tuple[int, ValidationEvent]] = []
        errors = [Rejected(index=i, error=reason) for i, reason in judged.refused]
        for start in range(0, len(judged.events), _EVENTS_PER_SLICE):
            chunk = judged.events[start : start + _EVENTS_PER_SLICE]
            await run_in_threadpool(_validate, chunk, key, limits, accepted, errors)
        deliveries = (
            await run_in_threadpool(deps.publisher.send_batch, [e for _, e in accepted]) if accepted else []
        )
        errors += [
            Rejected(index=i, error=d.error or "not published")
            for (i, _), d in zip(accepted, deliveries, strict=True)
            if d.status == "failed"
        ]
        errors.sort(key=lambda r: r.index)
        stored = sum(d.status != "failed" for d in deliveries)
        if accepted and not stored:
            raise Problem(503, "the event log refused the events", errors[0].error)
        if not stored:
            raise Problem(
                422 if judged.count else 400,
                "no event accepted",
                errors[0].error if errors else "the body holds no event",
                extensions={"errors": [e.model_dump() for e in errors[:100]]},
            )
        return Accepted(
            accepted=stored,
            rejected=judged.count - stored,
            outboxed=sum(d.status == "outboxed" for d in deliveries),
            errors=errors[:100],
        )


def _unwrap(result: Result[T]) -> T:
    if isinstance(result, Ok):
        return result.value
    assert isinstance(result, Err)
    status = {"invalid_argument": 422, "forbidden": 403, "query": 503}[result.kind]
    raise Problem(
        status,
        {422: "invalid request", 403: "not allowed", 503: "analytics unavailable"}[status],
        result.message,
    )


def _validate(
    items: list[tuple[int, Any]],
    key: ApiKey,
    limits: ApiLimits,
    accepted: list[tuple[int, ValidationEvent]],
    errors: list[Rejected],
) -> None:
    """Judge each parsed item alone: the field limits, the contract, the key's marketplaces."""
    for i, item in items:
        breach = field_limit_breach(item, limits)
        if breach is not None:
            errors.append(Rejected(index=i, error=breach))
            continue
        try:
            event = ValidationEvent.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "event"
            errors.append(Rejected(index=i, error=f"{where}: {first['msg']}"))
            continue
        if not key.sees(event.marketplace):
            errors.append(
                Rejected(index=i, error=f"this key may not publish for marketplace {event.marketplace!r}")
            )
            continue
        accepted.append((i, event))


async def _read_limited(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise Problem(413, "request body too large", f"at most {max_bytes:,} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise Problem(413, "request body too large", f"at most {max_bytes:,} bytes")
    return bytes(body)

"""What the routes depend on, as FastAPI dependencies: the API's services (:class:`ApiDeps`), its limits,
the key check (live, within its rate, allowed the route's scope) and the key's row filter.

:func:`vhlake.api.app.install_api` puts the services, limits and rate buckets on ``app.state``; the
dependencies here read them from the request's app, so the routers are plain module-level objects and
one process may serve several apps (each test builds its own)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, FastAPI, Header, Request

from vhlake.analytics.repository import AnalyticsRepository
from vhlake.api.audit import AuditLog
from vhlake.api.keys import ApiKey, KeyStore, Scope, presented_key_id
from vhlake.api.limits import ApiLimits
from vhlake.api.problems import Problem
from vhlake.api.ratelimit import TokenBuckets
from vhlake.events.publisher import EventPublisher
from vhlake.lifecycle.costs import StorageCosts


class QuarantineReplay(Protocol):
    """:meth:`vhlake.pipeline.runner.Pipeline.replay_quarantine`: the events that passed and left."""

    def __call__(self, *, reason: str | None, wait_s: float | None) -> int: ...


@dataclass(frozen=True)
class ApiDeps:
    """What the routes serve from, built once per app (:func:`vhlake.bootstrap.build_api_deps`)."""

    repository: AnalyticsRepository
    publisher: EventPublisher
    keys: KeyStore
    audit: AuditLog
    replay: QuarantineReplay | None = None  # None: this API cannot replay the quarantine (503)
    storage_costs: Callable[[], StorageCosts] | None = None  # None: no store to list (503)


def install_state(app: FastAPI, deps: ApiDeps, limits: ApiLimits, rates: TokenBuckets) -> None:
    """Put what the dependencies below read on ``app.state``."""
    app.state.vhlake_api = deps
    app.state.vhlake_limits = limits
    app.state.vhlake_rates = rates


# The accessors are ``async`` because they do not block: FastAPI runs a plain ``def`` dependency in the
# threadpool, a hop each for nothing.
async def _api_deps(request: Request) -> ApiDeps:
    deps: ApiDeps = request.app.state.vhlake_api
    return deps


async def _api_limits(request: Request) -> ApiLimits:
    limits: ApiLimits = request.app.state.vhlake_limits
    return limits


async def _rates(request: Request) -> TokenBuckets:
    rates: TokenBuckets = request.app.state.vhlake_rates
    return rates


Services = Annotated[ApiDeps, Depends(_api_deps)]
Limits = Annotated[ApiLimits, Depends(_api_limits)]


def _key_with(scope: Scope) -> Callable[..., ApiKey]:
    """A dependency: the request's API key, which must be live, within its rate, and allow ``scope``."""

    def check(
        request: Request,
        deps: Services,
        rates: Annotated[TokenBuckets, Depends(_rates)],
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> ApiKey:
        presented = x_api_key or (authorization or "").removeprefix("Bearer ").strip() or None
        if presented is None:
            raise Problem(401, "API key required", "send it as 'Authorization: Bearer <key>' or 'X-API-Key'")
        request.state.key_id = presented_key_id(presented)  # audited, even when the key is refused
        key, outcome = deps.keys.examine(presented)
        if key is None:
            request.state.outcome = outcome
            raise Problem(401, "invalid or revoked API key")
        wait_s = rates.take(key.key_id)
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


# Each is one dependency object, so FastAPI calls it once per request however many dependencies ask for it
# (the rate bucket is spent once).
Reader = Annotated[ApiKey, Depends(_key_with("read"))]
Ingester = Annotated[ApiKey, Depends(_key_with("ingest"))]
Admin = Annotated[ApiKey, Depends(_key_with("admin"))]


async def _visible_repository(key: Reader, deps: Services) -> AnalyticsRepository:
    """The analytics as the reading key may see them: its marketplace restriction is the row filter.
    (``restricted_to`` only builds a view: no need for the threadpool.)"""
    return deps.repository.restricted_to(key.marketplaces)


VisibleRepository = Annotated[AnalyticsRepository, Depends(_visible_repository)]

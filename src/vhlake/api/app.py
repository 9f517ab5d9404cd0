"""The HTTP API: ``POST /v1/events`` in, the analytics out, every route behind an API key.

Each analytics answer carries its freshness (the newest event it includes, and the lag behind now), so
a client never mistakes stale numbers for current ones. Errors are RFC 9457 problem details. A key's
marketplace restriction is the repository's row filter (:meth:`AnalyticsRepository.restricted_to`).

This module is the composition root: the routes are in :mod:`vhlake.api.routes`, what they depend on
(the services, the key check, the row filter) in :mod:`vhlake.api.dependencies`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI

from vhlake.api.audit import AuditMiddleware
from vhlake.api.dependencies import ApiDeps, QuarantineReplay, install_state
from vhlake.api.edge import EdgeMiddleware
from vhlake.api.limits import ApiLimits
from vhlake.api.problems import install_problem_handlers
from vhlake.api.ratelimit import TokenBuckets
from vhlake.api.routes import analytics, events, lifecycle, quality

__all__ = ["DEFAULT_LIMITS", "ApiDeps", "QuarantineReplay", "install_api"]

DEFAULT_LIMITS = ApiLimits()


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
    install_state(app, deps, limits, TokenBuckets(limits.rate_per_s, limits.rate_burst, clock=clock))
    app.add_middleware(AuditMiddleware, audit=deps.audit)
    app.add_middleware(EdgeMiddleware, body_timeout_s=limits.body_timeout_s)  # added last: outermost
    # In this order, the OpenAPI document lists the paths as it always has.
    for routes in (analytics, quality, events, lifecycle):
        app.include_router(routes.router)

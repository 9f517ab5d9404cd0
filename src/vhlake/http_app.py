"""``create_app(settings)``: the one HTTP app — the API, the dashboard, and the service's health and
metrics endpoints when a running service is given (``vhlake serve``, ``make demo``).

The OpenAPI document is at ``/openapi.json``; there is no ``/docs`` or ``/redoc``: FastAPI's pages load
Swagger UI, ReDoc and fonts from public CDNs, which are blank offline and would run third-party code on the
page that holds the key."""

from __future__ import annotations

from fastapi import FastAPI

from vhlake import bootstrap
from vhlake.api.app import ApiDeps, install_api
from vhlake.api.limits import ApiLimits
from vhlake.dashboard import mount_dashboard
from vhlake.service.http import Check, install_service_routes
from vhlake.service.runner import LakeService
from vhlake.settings import Settings


def create_app(
    settings: Settings, *, service: LakeService | None = None, checks: dict[str, Check] | None = None
) -> tuple[FastAPI, ApiDeps]:
    """The app and what its API holds open (close ``deps.audit`` and ``deps.publisher`` on shutdown)."""
    app = FastAPI(
        title="vhlake",
        summary="ValidaHub's telemetry lakehouse: events in, analytics out",
        docs_url=None,
        redoc_url=None,
    )
    if service is not None:
        install_service_routes(app, service, checks or {}, max_failures=settings.ready_max_failures)
    deps = bootstrap.build_api_deps(settings)
    outbox = getattr(deps.publisher, "outbox_status", None)  # only the Kafka publisher has an outbox
    if service is not None and outbox is not None:
        service.metrics.outbox_pending.set_function(lambda: float(getattr(outbox(), "pending", 0)))
    install_api(app, deps, ApiLimits.from_settings(settings))
    mount_dashboard(app)
    return app, deps

"""``create_app(settings)``: the one HTTP app — the API, the dashboard, and the service's health and
metrics endpoints when a running service is given (``vhlake serve``, ``make demo``)."""

from __future__ import annotations

from fastapi import FastAPI

from vhlake import bootstrap
from vhlake.api.app import ApiDeps, install_api
from vhlake.dashboard import mount_dashboard
from vhlake.service.http import Check, install_service_routes
from vhlake.service.runner import LakeService
from vhlake.settings import Settings


def create_app(
    settings: Settings, *, service: LakeService | None = None, checks: dict[str, Check] | None = None
) -> tuple[FastAPI, ApiDeps]:
    """The app and what its API holds open (close ``deps.audit`` and ``deps.publisher`` on shutdown)."""
    app = FastAPI(title="vhlake", summary="ValidaHub's telemetry lakehouse: events in, analytics out")
    if service is not None:
        install_service_routes(app, service, checks or {})
    deps = bootstrap.build_api_deps(settings)
    outbox = getattr(deps.publisher, "outbox_status", None)  # only the Kafka publisher has an outbox
    if service is not None and outbox is not None:
        service.metrics.outbox_pending.set_function(lambda: float(getattr(outbox(), "pending", 0)))
    install_api(app, deps)
    mount_dashboard(app)
    return app, deps

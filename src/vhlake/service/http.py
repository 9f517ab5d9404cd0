"""The service's HTTP face: ``/metrics`` (Prometheus), ``/healthz`` (alive) and ``/readyz`` (can work:
the lake is reachable, the broker when Kafka is the event log, and neither ingest nor the pipeline keeps
failing). The API of P7 mounts beside these."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vhlake.service.runner import LakeService

Check = Callable[[], str | None]
"""A readiness check: None when fine, else what is wrong."""

# The steps that move data (event log → bronze → gold): one failing this many times in a row (a run a
# second apart) means the service does not do its work, whatever the lake's reachability says.
_DATA_STEPS = ("ingest", "pipeline")
_FAILURES_NOT_READY = 3


def install_service_routes(app: FastAPI, service: LakeService, checks: dict[str, Check]) -> FastAPI:
    """Add ``/metrics``, ``/healthz`` and ``/readyz`` for ``service`` to ``app``."""

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, object]:
        return {"status": "stopping" if service.stopping else "alive"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        problems = {name: problem for name, check in checks.items() if (problem := check()) is not None}
        for name in _DATA_STEPS:
            state = service.steps[name]
            if state.consecutive_failures >= _FAILURES_NOT_READY:
                problems[name] = f"failed {state.consecutive_failures} times in a row: {state.last_error}"
        steps = {
            name: {
                "last_success": s.last_success,
                "last_error": s.last_error,
                "failures": s.consecutive_failures,
            }
            for name, s in service.steps.items()
        }
        body = {"ready": not problems and not service.stopping, "problems": problems, "steps": steps}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    return app

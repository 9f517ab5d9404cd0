"""The service's HTTP face: ``/metrics`` (Prometheus), ``/healthz`` (alive) and ``/readyz`` (can work:
the lake is reachable, the broker when Kafka is the event log, and no step has failed ``max_failures``
times in a row). The API of P7 mounts beside these."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vhlake.service.runner import LakeService, StepState

Check = Callable[[], str | None]
"""A readiness check: None when fine, else what is wrong."""


def install_service_routes(
    app: FastAPI, service: LakeService, checks: dict[str, Check], *, max_failures: int = 3
) -> FastAPI:
    """Add ``/metrics``, ``/healthz`` and ``/readyz`` for ``service`` to ``app``."""

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:  # on the event loop: alive means the loop answers
        return {"status": "stopping" if service.stopping else "alive"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        problems = {name: problem for name, check in checks.items() if (problem := check()) is not None}
        problems |= failing_steps(service.steps, max_failures)
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


def failing_steps(steps: dict[str, StepState], max_failures: int) -> dict[str, str]:
    """The steps that failed ``max_failures`` times or more in a row, with their last error."""
    return {
        name: f"failed {state.consecutive_failures} times in a row: {_clipped(state.last_error or '')}"
        for name, state in steps.items()
        if state.consecutive_failures >= max_failures
    }


def _clipped(error: str, keep: int = 160) -> str:
    """A long error's start (what failed) and end (why: often a path, then "not found"), bounded in size."""
    return error if len(error) <= 2 * keep else f"{error[:keep]}…{error[-keep:]}"

"""``vhlake serve``: the always-on service, with its HTTP endpoints."""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from vhlake import bootstrap
from vhlake.cli.context import writing
from vhlake.service.logs import configure_logging
from vhlake.settings import Settings

if TYPE_CHECKING:
    from vhlake.service.runner import ServiceOptions


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="HTTP port (/metrics, /healthz, /readyz).", min=0, max=65535)
    ] = 8000,
    trigger_interval: Annotated[
        float,
        typer.Option(
            help="Seconds the pipeline waits between micro-batches (0: as soon as bronze moves).", min=0
        ),
    ] = 0.0,
    trigger_commits: Annotated[
        int, typer.Option(help="...unless this many bronze commits are already waiting.", min=1)
    ] = 1,
    canary_every: Annotated[
        float | None,
        typer.Option(
            help="Publish a canary event every N seconds and export its lag to gold (vhlake_canary_lag_seconds).",
            min=0.1,
        ),
    ] = None,
    maintenance_every: Annotated[
        float, typer.Option(help="Seconds between compactions of recent partitions.", min=1)
    ] = 30.0,
    ml_every: Annotated[
        float,
        typer.Option(
            help="Seconds between retraining the forecasts and rescoring anomalies (first: after 60 s).",
            min=1,
        ),
    ] = 6 * 3600.0,
    lifecycle_every: Annotated[
        float,
        typer.Option(
            help="Seconds between runs of `vhlake maintain` (retention, vacuum...) in the service.", min=1
        ),
    ] = 24 * 3600.0,
    log_format: Annotated[str, typer.Option(help="text, or json (one object per line).")] = "text",
) -> None:
    """Run continuously: event log → bronze → silver → gold in micro-batches, with metrics.

    Ingests from the configured event log (VHLAKE_EVENT_LOG: the embedded log, or Kafka as a member of
    KAFKA_CONSUMER_GROUP), runs the pipeline whenever bronze moves, compacts recent partitions on a
    schedule, retrains the forecasts and rescores anomalies (--ml-every) and serves the API (/v1/..., API keys from `vhlake keys create`; OpenAPI at /openapi.json),
    /metrics (Prometheus), /healthz and /readyz. SIGTERM or Ctrl-C finishes the
    batches in hand and exits; a restart resumes exactly where the Delta log says.
    """
    configure_logging(json_lines=log_format == "json")
    from vhlake.service.runner import ServiceOptions  # the service's imports, only when serving

    settings = writing(ctx)
    options = ServiceOptions(
        trigger_interval_s=trigger_interval,
        trigger_commits=trigger_commits,
        canary_every_s=canary_every,
        maintenance_every_s=maintenance_every,
        ml_every_s=ml_every,
        lifecycle_every_s=lifecycle_every,
        engagement_every_s=settings.engagement_interval_s,
        reconcile_every_s=settings.reconcile_interval_s,
    )
    serve_forever(settings, host=host, port=port, options=options)


def serve_forever(settings: Settings, *, host: str, port: int, options: ServiceOptions) -> None:
    """The service, the API, the dashboard and the metrics on ``host:port`` until SIGINT/SIGTERM."""
    import uvicorn

    from vhlake.http_app import create_app

    service, checks = bootstrap.build_service(settings, options)
    app, api = create_app(settings, service=service, checks=checks)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False))
    # uvicorn handles SIGINT/SIGTERM, then re-raises the signal with the handlers it found installed:
    # with these no-ops in place, run() returns and the service stops cleanly (exit code 0).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    service.start()
    # Through the log, so that with --log-format json every line on stderr is a JSON object.
    logging.getLogger("vhlake.service").info(
        "vhlake serving on http://%s:%s (dashboard at /, API at /v1, metrics at /metrics); Ctrl-C stops",
        host,
        port,
    )
    try:
        server.run()  # returns on SIGINT/SIGTERM
    finally:
        service.stop()
        api.audit.close()
        api.publisher.close()

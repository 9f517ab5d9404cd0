"""Kafka from the command line: ``vhlake ingest --kafka`` and ``vhlake outbox ...``."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time

import typer
from rich.live import Live

from vhlake import bootstrap
from vhlake.cli.output import err, out, print_ingest_report
from vhlake.events.outbox import Outbox
from vhlake.ingest.kafka_source import KAFKA_CLIENT_LOG, KafkaIngestReport
from vhlake.settings import Settings

outbox_app = typer.Typer(
    help="Events waiting on local disk while Kafka is unreachable (VHLAKE_EVENT_LOG=kafka).",
    no_args_is_help=True,
)


def ingest_kafka(
    settings: Settings,
    *,
    until_idle_s: float | None,
    group: str | None,
    connect_timeout_s: float,
    verbose: bool = False,
) -> None:
    """Consume the topic into bronze until Ctrl-C (or idle): the current batch is committed first.

    librdkafka's own log (a line per failed connection attempt, every second) is shown only when
    ``verbose``; a broker that does not answer within ``connect_timeout_s`` is one error line."""
    show_client_log(verbose)
    ingest = bootstrap.build_kafka_ingest(settings, group=group)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.perf_counter()
    where = f"{settings.kafka_bootstrap_servers} topic {settings.kafka_validation_topic}"
    err.print(
        f"consuming {where} as group {group or settings.kafka_consumer_group} (Ctrl-C stops cleanly)",
        soft_wrap=True,
    )
    try:
        live = Live(console=err, transient=True)
        with live if err.is_terminal else contextlib.nullcontext():

            def show(report: KafkaIngestReport) -> None:
                rate = report.bronze_rows / max(time.perf_counter() - started, 1e-9)
                live.update(
                    f"{report.bronze_rows:,} ingested, {report.rejected_rows:,} rejected, "
                    f"{report.batches:,} commits, partitions {sorted(report.partitions)} ({rate:,.0f} events/s)"
                )

            report = ingest.run(
                until_idle_s=until_idle_s, stop=stop, on_batch=show, connect_timeout_s=connect_timeout_s
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    print_ingest_report(f"kafka {settings.kafka_validation_topic}", report, time.perf_counter() - started)


def show_client_log(verbose: bool) -> None:
    """librdkafka's log lines on stderr when ``verbose``, else nowhere (not Python's last-resort handler)."""
    client_log = logging.getLogger(KAFKA_CLIENT_LOG)
    client_log.propagate = False
    client_log.handlers.clear()
    if verbose:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        client_log.addHandler(handler)
        client_log.setLevel(logging.DEBUG)
    else:
        client_log.addHandler(logging.NullHandler())


@outbox_app.command("status")
def status(ctx: typer.Context) -> None:
    """How many events wait for Kafka, since when, and how many it refused for good."""
    outbox = Outbox(bootstrap.outbox_path(ctx.obj))
    try:
        state = outbox.status()
    finally:
        outbox.close()
    age = "" if state.oldest_age_s is None else f", oldest queued {state.oldest_age_s:,.0f} s ago"
    out.print(f"{state.path}: {state.pending:,} pending{age}; {state.dead:,} refused by the broker")
    for error, count in state.dead_errors.items():
        out.print(f"  [red]{count:,} × {error}[/red]", highlight=False)


@outbox_app.command("drain")
def drain(ctx: typer.Context) -> None:
    """Re-send the waiting events now (a running publisher also retries every few seconds)."""
    settings: Settings = ctx.obj.model_copy(update={"event_log": "kafka"})
    publisher = bootstrap.build_publisher(settings)
    try:
        sent = publisher.drain_outbox()  # type: ignore[attr-defined]
    finally:
        publisher.close()
    out.print(f"{sent:,} events re-sent to Kafka")

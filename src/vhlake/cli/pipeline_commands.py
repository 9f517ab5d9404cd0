"""``vhlake pipeline ...`` and ``vhlake quarantine ...``: run the medallion steps, inspect bad records."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.progress import TaskID

from vhlake import bootstrap
from vhlake.cli.context import querying, reading
from vhlake.cli.output import err, out, print_table, step_progress
from vhlake.pipeline.expectations import DEFAULT_EXPECTATIONS

pipeline_app = typer.Typer(help="Bronze → silver → gold.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Events that failed an expectation.", no_args_is_help=True)

_SUMMARY_SQL = """
SELECT reason,
       count(*) AS events,
       count(DISTINCT job_id) AS jobs,
       min(ingestion_time) AS first_seen,
       max(ingestion_time) AS last_seen,
       any_value(coalesce(event_id, '') || ' ' || coalesce(event_type, '') || ' ' || coalesce(job_id, '')
                 || ' ' || coalesce(CAST(`timestamp` AS STRING), '') || ' ' || coalesce(_rescued_data, ''))
           AS example
FROM validation_events_quarantine
GROUP BY reason
ORDER BY events DESC
"""


@pipeline_app.command("run")
def run(
    ctx: typer.Context,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild quarantine, silver and gold from all of bronze.")
    ] = False,
) -> None:
    """Process what bronze received since the last run (a no-op when nothing is new).

    Expectations send bad events to validation_events_quarantine; jobs are folded into
    validation_results_silver; their days are recomputed in marketplace_daily_metrics_gold and
    error_type_daily_gold.
    Every run is logged in pipeline_runs. A run killed at any point is repaired by the next one.
    """
    settings = reading(ctx)
    started = time.perf_counter()
    with step_progress() as progress:
        tasks: dict[str, TaskID] = {}

        def advance(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done, total=total)

        report = bootstrap.build_pipeline(settings).run(full_refresh=full_refresh, on_progress=advance)
    seconds = time.perf_counter() - started
    if report.was_noop:
        out.print(f"nothing new in bronze (version {report.bronze_to}); {seconds:.2f} s")
        return
    broken = ", ".join(f"{name}: {count:,}" for name, count in report.violations.items() if count)
    out.print(
        f"bronze versions {report.bronze_from + 1}..{report.bronze_to}: {report.events_in:,} events, "
        f"{report.quarantined:,} quarantined{f' ({broken})' if broken else ''}, "
        f"{report.jobs_upserted:,} jobs upserted, {report.gold_groups:,} gold groups recomputed in {seconds:.2f} s"
    )


@quarantine_app.command("summary")
def summary(ctx: typer.Context) -> None:
    """Quarantined events per reason: counts, jobs, first/last seen and an example."""
    engine = bootstrap.build_query_engine(querying(ctx, None))
    try:
        print_table(out, engine.execute(_SUMMARY_SQL), max_rows=100)
    finally:
        engine.close()


@quarantine_app.command("replay")
def replay(
    ctx: typer.Context,
    reason: Annotated[str | None, typer.Option(help="Only events quarantined for this reason.")] = None,
) -> None:
    """Re-check quarantined events with the current rules and fold the ones that pass into silver/gold."""
    known = [expectation.name for expectation in DEFAULT_EXPECTATIONS]
    if reason is not None and reason not in known:
        err.print(
            f"[red]error:[/red] no quarantine reason {reason!r}; the reasons are {', '.join(known)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    replayed = bootstrap.build_pipeline(reading(ctx)).replay_quarantine(reason=reason)
    out.print(f"{replayed:,} events replayed out of the quarantine")

"""``vhlake alerts ...``: check and run the SQL alert rules."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from vhlake import bootstrap
from vhlake.cli.context import querying, reading
from vhlake.cli.output import err, out

alerts_app = typer.Typer(
    help="SQL alerts: rules in alerts.yaml (VHLAKE_ALERTS_FILE), states, notifications.", no_args_is_help=True
)
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The rules file (default VHLAKE_ALERTS_FILE, else the seed's two rules).",
        show_default=False,
    ),
]


def _path(ctx: typer.Context, config: Path | None) -> Path | None:
    return config or (Path(ctx.obj.alerts_file).expanduser() if ctx.obj.alerts_file else None)


def _not_errors(record: logging.LogRecord) -> bool:
    """The alert log without its errors, which `alerts run` prints itself (the log channel's
    notifications are warnings: they stay)."""
    return record.levelno < logging.ERROR


@alerts_app.command("validate")
def validate_command(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Check a rules file: YAML, fields, channels, and that every query runs and has the rule's columns."""
    path = _path(ctx, config)
    from vhlake.alerts.config import load_config
    from vhlake.alerts.runner import validate

    rules = load_config(path)
    problems = validate(rules, bootstrap.build_query_engine(querying(ctx, None)))
    for problem in problems:
        err.print(f"[red]✗[/red] {path or 'seed rules'}: {problem}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    out.print(f"[green]✓[/green] {len(rules.alerts)} alert rules are valid ({path or 'seed rules'})")


@alerts_app.command("run")
def run_command(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Evaluate every rule once now, notify on state changes, and record the evaluation in alert_events."""
    logging.getLogger("vhlake.alerts").addFilter(_not_errors)  # printed below, once, with the rule
    runner = bootstrap.build_alert_runner(reading(ctx), _path(ctx, config))
    failed = False
    for outcome in runner.run_all():
        if outcome.error:
            failed = True
            err.print(
                f"[red]✗[/red] alert {outcome.rule!r}: {outcome.error}", highlight=False, soft_wrap=True
            )
            continue
        sent = ", ".join(f"{n.event} for {n.key}" for n in outcome.notifications) or "no change"
        out.print(f"{outcome.rule}: {sent}", highlight=False)
        for failure in outcome.failed_channels:
            failed = True
            err.print(f"[red]✗[/red] alert {outcome.rule!r}: {failure}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)

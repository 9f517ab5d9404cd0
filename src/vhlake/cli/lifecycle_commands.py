"""``vhlake maintain``: retention, compaction, Z-order, vacuum and checkpoints across the lake."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import pyarrow as pa
import typer

from vhlake import bootstrap
from vhlake.cli.context import reading
from vhlake.cli.output import err, out, print_table
from vhlake.lake.tables import ALL_TABLES, TableDef, table_by_name


def maintain(
    ctx: typer.Context,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Count what would be removed (rows, files, bytes); change nothing."),
    ] = False,
    vacuum_hours: Annotated[
        float | None,
        typer.Option(
            help="Keep the files of the versions of the last H hours (default VHLAKE_VACUUM_RETENTION_HOURS, "
            "168); refused below VHLAKE_VACUUM_MIN_RETENTION_HOURS.",
            min=0,
        ),
    ] = None,
) -> None:
    """Apply retention (bronze, rejects, quarantine 90 days; silver and job events 1 year; gold and
    predictions 2 years: VHLAKE_RETENTION_*_DAYS), then, on those tables, compact small files, Z-order
    gold and yesterday's silver, vacuum unreferenced files and checkpoint.

    Safe while `vhlake serve` writes: a step that conflicts with another writer is retried on the new
    version, then skipped and reported. `vhlake serve` runs it daily (--lifecycle-every).
    """
    from vhlake.lifecycle.maintain import maintain as run_maintain

    settings = reading(ctx)
    reports = run_maintain(
        bootstrap.build_lake(settings),
        bootstrap.build_retention(settings, vacuum_hours=vacuum_hours),
        today=datetime.now(UTC).date(),
        dry_run=dry_run,
        on_table=lambda name: err.print(f"[dim]{name}…[/dim]"),
    )
    rows = [asdict(r) | {"skipped": "; ".join(r.skipped)} for r in reports]
    if dry_run:  # what is counted: a column of zeros would read as "nothing to do"
        rows = [{k: v for k, v in row.items() if k in _DRY_RUN_COLUMNS} for row in rows]
    print_table(out, pa.Table.from_pylist(rows), max_rows=100, title="would remove" if dry_run else None)
    if dry_run:
        out.print("[dim]Z-order and checkpoints are not simulated by --dry-run[/dim]")


_DRY_RUN_COLUMNS = (
    "table",
    "rows_expired",
    "files_compacted",
    "files_written",
    "files_vacuumed",
    "bytes_vacuumed",
    "skipped",
)


def forget(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Option("--user-id", help="The user whose data goes.", show_default=False)],
    vacuum: Annotated[
        bool,
        typer.Option(
            "--vacuum",
            help="Also remove the old files and change data that still hold it (no time travel back).",
        ),
    ] = False,
    requested_by: Annotated[
        str, typer.Option(help="Who asked (kept in audit_log with the counts, never the user id).")
    ] = "cli",
) -> None:
    """Erase a user (LGPD/GDPR): every row of the user and of the user's jobs in bronze, rejects,
    quarantine, job events and silver, the records in the embedded event log, and the gold groups
    recomputed; the evidence (who, when, rows and versions per table, sha256 of the user id) goes to
    audit_log."""
    from vhlake.lifecycle.erasure import forget_user

    settings = ctx.obj
    log = bootstrap.existing_event_log(settings)
    try:
        report = forget_user(
            bootstrap.build_lake(settings),
            bootstrap.build_pipeline(settings),
            user_id,
            requested_by=requested_by,
            event_log=log,
            vacuum=vacuum,
        )
    finally:
        if log is not None:
            log.close()
    removed = ", ".join(f"{table}: {rows:,}" for table, rows in report.rows.items() if rows) or "nothing"
    out.print(
        f"forgot user (sha256 {report.subject_sha256[:12]}…): {removed} ({report.files_rewritten} files "
        f"rewritten); {report.gold_groups} gold groups recomputed; {report.log_records} event log records; "
        f"{report.vacuumed_files} files vacuumed"
    )


TableName = Annotated[
    str, typer.Argument(help="A table name, e.g. validation_results_silver (see vhlake tables).")
]


def lineage(ctx: typer.Context, table: TableName) -> None:
    """Where a table's data comes from, what reads it, and what last wrote it (Delta history and, for the
    pipeline's tables, the run and the bronze versions it covered)."""
    from vhlake.lifecycle.lineage import lineage as table_lineage

    out.print_json(data=table_lineage(bootstrap.build_lake(reading(ctx)), _table(table)))


def history(
    ctx: typer.Context,
    table: TableName,
    limit: Annotated[int, typer.Option(help="The newest this many commits.", min=1)] = 20,
) -> None:
    """A table's Delta history: version, when, operation, parameters and metrics."""
    from vhlake.lifecycle.lineage import history as table_history

    lake = bootstrap.build_lake(reading(ctx))
    print_table(out, table_history(lake, _table(table), limit=limit), max_rows=limit, more="use --limit")


def _table(name: str) -> TableDef:
    try:
        return table_by_name(name)
    except KeyError:
        known = ", ".join(t.name for t in ALL_TABLES)
        err.print(f"error: no table {name!r}; the lake's tables: {known}")
        raise typer.Exit(2) from None

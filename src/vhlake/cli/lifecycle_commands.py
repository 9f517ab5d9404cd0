"""``vhlake maintain``: retention, compaction, Z-order, vacuum and checkpoints across the lake."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import pyarrow as pa
import typer

from vhlake import bootstrap
from vhlake.cli.context import reading
from vhlake.cli.output import err, out, print_table
from vhlake.lake.tables import ALL_TABLES, TableDef, table_by_name

if TYPE_CHECKING:  # the lifecycle modules are imported by the commands that run them
    from vhlake.lifecycle.costs import StorageCosts
    from vhlake.lifecycle.maintain import TableReport, Tiering


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
    gold and yesterday's silver, vacuum unreferenced files and checkpoint; on an object store, move the
    files of old partitions to cheaper storage classes (VHLAKE_TIER_*: bronze warm after 30 days, silver
    warm after 90 and cold after 180), each move listed.

    Safe while `vhlake serve` writes: a step that conflicts with another writer is retried on the new
    version, then skipped and reported. `vhlake serve` runs it daily (--lifecycle-every).
    """
    from vhlake.lifecycle.maintain import maintain as run_maintain

    settings = reading(ctx)
    lake = bootstrap.build_lake(settings)
    tiering, why_not = bootstrap.available_tiering(settings, lake)
    reports = run_maintain(
        lake,
        bootstrap.build_retention(settings, vacuum_hours=vacuum_hours),
        today=datetime.now(UTC).date(),
        dry_run=dry_run,
        on_table=lambda name: err.print(f"[dim]{name}…[/dim]"),
        tiering=tiering,
    )
    rows = [_report_row(r, tiering is not None) for r in reports]
    if dry_run:  # what is counted: a column of zeros would read as "nothing to do"
        rows = [{k: v for k, v in row.items() if k in _DRY_RUN_COLUMNS} for row in rows]
    print_table(out, pa.Table.from_pylist(rows), max_rows=100, title="would remove" if dry_run else None)
    if dry_run:
        out.print("[dim]Z-order and checkpoints are not simulated by --dry-run[/dim]")
    _print_tier_moves(reports, tiering, dry_run=dry_run)
    if tiering is None:
        line = f"storage tiers: nothing moved ({why_not}); vhlake tables --costs reports them"
        out.print(line, style="dim", markup=False, highlight=False)  # "vhlake[s3]" is not markup


def _report_row(report: TableReport, tiered: bool) -> dict[str, object]:
    row = asdict(report)
    del row["tier_moves"], row["tier_held"]  # listed after the table, per partition
    if not tiered:  # no store to move on: columns of zeros would read as "nothing was due"
        del row["files_tiered"], row["bytes_tiered"]
    return row | {"skipped": "; ".join(report.skipped)}


def _print_tier_moves(reports: list[TableReport], tiering: Tiering | None, *, dry_run: bool) -> None:
    """Each partition moved to another storage tier (what the run history, ``storage_tier_moves``,
    records), and why files past their tier's age stayed where they are."""
    if tiering is None:
        return
    moves = [
        {
            "table": report.table,
            "partition": move.partition,
            "tier": move.tier,
            "storage_class": tiering.store.storage_class(move.tier),
            "files": move.files,
            "bytes": move.bytes,
        }
        for report in reports
        for move in report.tier_moves
    ]
    title = "would move to another storage tier" if dry_run else "moved to another storage tier"
    if moves:
        print_table(out, pa.Table.from_pylist(moves), max_rows=1000, title=title)
    else:
        out.print("storage tiers: every partition is in its tier, nothing to move")
    for report in reports:
        for reason, files in sorted(report.tier_held.items()):
            out.print(f"[dim]{report.table}: {files:,} files stay where they are: {reason}[/dim]")


def print_costs(costs: StorageCosts) -> None:
    """``vhlake tables --costs``: bytes per layer and tier, their monthly cost, and the total next to the
    cost of the same bytes all hot."""
    rows = [
        {
            "layer": row.layer,
            "tier": row.tier,
            "storage_class": row.storage_class,
            "objects": row.objects,
            "bytes": row.bytes,
            "usd_month": "not priced" if row.monthly_usd is None else f"{row.monthly_usd:,.4f}",
            "usd_month_all_hot": f"{row.all_hot_usd:,.4f}",
        }
        for row in costs.rows
    ]
    if rows:
        print_table(out, pa.Table.from_pylist(rows), max_rows=1000, title=f"storage ({costs.provider})")
    prices = costs.prices
    out.print(
        f"total: {costs.objects:,} objects, {costs.bytes:,} bytes ({costs.bytes / 1024**3:,.3f} GB); "
        f"${costs.monthly_usd:,.2f} a month, ${costs.all_hot_monthly_usd:,.2f} all hot "
        f"(${costs.all_hot_monthly_usd - costs.monthly_usd:,.2f} saved), at ${prices.hot:g} hot, "
        f"${prices.warm:g} warm and ${prices.cold:g} cold per GB-month",
        highlight=False,
    )
    if costs.provider == "local":
        out.print("[dim]a local disk has one tier: priced as the hot tier of an object store[/dim]")
    if costs.unpriced_bytes:
        out.print(
            f"[dim]{costs.unpriced_bytes:,} bytes are in classes vhlake does not manage: not priced[/dim]"
        )


_DRY_RUN_COLUMNS = (
    "table",
    "rows_expired",
    "files_compacted",
    "files_written",
    "files_vacuumed",
    "bytes_vacuumed",
    "files_tiered",
    "bytes_tiered",
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

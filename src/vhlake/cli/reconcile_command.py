"""``vhlake reconcile``: prove that every event is counted from its source to gold (reconciliation/)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import pyarrow as pa
import typer

from vhlake import bootstrap
from vhlake.cli.context import reading
from vhlake.cli.output import err, out, print_table

if TYPE_CHECKING:
    from vhlake.reconciliation.links import Link
    from vhlake.settings import Settings


class ReconcileFormat(StrEnum):
    table = "table"
    json = "json"


def reconcile(
    ctx: typer.Context,
    since: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="The first date covered (event dates, ingestion dates of the ledger, gold dates). Default: "
            "the oldest day bronze's retention keeps whole (VHLAKE_RETENTION_BRONZE_DAYS).",
            show_default=False,
        ),
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Cover every date the lake holds (balances only before retention).")
    ] = False,
    output: Annotated[
        ReconcileFormat, typer.Option("--format", help="table or json.")
    ] = ReconcileFormat.table,
    verify: Annotated[
        str | None,
        typer.Option(
            help="Recompute the sha256 of a recorded run's counts (its run_id) and compare it with the "
            "stored one, instead of reconciling.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Count every event from its source to gold, check that each link balances, and record the run.

    The chain: per source (a file by its content hash, the embedded log's topic, each Kafka
    topic-partition), records read = bronze rows + rejects; bronze events = quarantined + canaries +
    copies dropped as duplicates + events folded into silver jobs; per gold (date, marketplace,
    category), silver's jobs = total_validations (and successful, failed). Exits 1 naming the first
    link that does not balance. Each run is a row of the reconciliation table, with a sha256 over its
    counts: `--verify RUN_ID` recomputes it.
    """
    from vhlake.reconciliation.run import reconcile as run_reconcile
    from vhlake.reconciliation.run import record
    from vhlake.reconciliation.run import verify as run_verify

    settings = reading(ctx)
    lake = bootstrap.build_lake(settings)
    if verify is not None:
        checked = run_verify(lake, verify)
        state = "matches" if checked.matches else "DOES NOT MATCH"
        out.print(f"run {checked.run_id}: sha256 {checked.recomputed_sha256} {state} the stored one")
        if not checked.matches:
            raise typer.Exit(1)
        return
    now = datetime.now(UTC)
    first = _first_date(settings, since, everything, now.date())
    result = run_reconcile(lake, since=first, now=now, resources=bootstrap.build_pipeline_resources(settings))
    record(lake, result)
    if output is ReconcileFormat.json:
        counts = json.loads(result.counts())
        out.print_json(
            data={"run_id": result.run_id, "balanced": result.balanced, "sha256": result.sha256, **counts}
        )
    else:
        _print_links(result.links)
        out.print(f"run {result.run_id}, sha256 {result.sha256}")
    first_broken = result.first_imbalance
    if first_broken is not None:
        err.print(
            f"[red]imbalance[/red] ({len(result.imbalances)} link(s)): {first_broken.describe()}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _first_date(settings: Settings, since: datetime | None, everything: bool, today: date) -> date | None:
    if everything:
        return None
    if since is not None:
        return since.date()
    return bootstrap.reconcile_since(settings, today)


def _print_links(links: list[Link]) -> None:
    rows = [
        {
            "link": link.kind,
            "key": link.key,
            "equation": equation.text,
            "left": equation.left,
            "right": equation.right,
            "balanced": "yes" if equation.holds else "NO",
        }
        for link in links
        for equation in link.equations
    ]
    print_table(out, pa.Table.from_pylist(rows), max_rows=1000)

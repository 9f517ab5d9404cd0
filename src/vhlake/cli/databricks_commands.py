"""``vhlake databricks render``: print and check what would be deployed to Databricks."""

from __future__ import annotations

from typing import Annotated

import typer

from vhlake.cli.output import err, out

databricks_app = typer.Typer(
    help="The Databricks deployment: Unity Catalog DDL, grants, alerts, the Asset Bundle."
)


@databricks_app.command("render")
def render(
    catalog: Annotated[str, typer.Option(help="Unity Catalog catalog.")] = "validahub",
    schema: Annotated[str, typer.Option(help="Schema in the catalog.")] = "analytics",
    write_alerts: Annotated[
        bool,
        typer.Option(
            "--write-alerts",
            help="First regenerate the bundle's SQL alerts (databricks/resources/alerts.yml) from the alert rules.",
        ),
    ] = False,
) -> None:
    """Print the Unity Catalog DDL (tables from the contracts, row filters, grants) and the alert queries,
    and check them and the Asset Bundle (databricks/databricks.yml); no credentials needed. Exit 1 on a
    problem."""
    from vhlake.spark.deploy import ALERTS_FILE, alert_queries, alerts_yaml, statements
    from vhlake.spark.validate import problems

    if write_alerts:
        ALERTS_FILE.parent.mkdir(parents=True, exist_ok=True)
        ALERTS_FILE.write_text(alerts_yaml(), encoding="utf-8")
        err.print(f"wrote {ALERTS_FILE}")

    ddl = statements(catalog=catalog, schema=schema)
    alerts = alert_queries(catalog=catalog, schema=schema)
    for statement in ddl:
        out.print(statement + ";\n", markup=False, highlight=False)
    for name, query in alerts.items():
        out.print(f"-- alert {name}\n{query};\n", markup=False, highlight=False)
    found = problems(ddl, alerts)
    for problem in found:
        err.print(f"error: {problem}")
    if found:
        raise typer.Exit(1)
    err.print(f"[green]{len(ddl)} statements, {len(alerts)} alert queries and the bundle check out[/green]")

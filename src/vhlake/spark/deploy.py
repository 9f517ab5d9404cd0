"""What ``vhlake databricks render`` deploys to Databricks, generated from the table contracts.

Unity Catalog DDL (catalog ``validahub``, schema ``analytics``): every lake table as a Delta table with the
contract's columns, partitioning and properties (change data feed on bronze, log retention); grants for
the three roles (ingest, analyst, admin); a row filter per marketplace on the tables that carry one; and
the alert rules' queries qualified for the warehouse. Generated, never hand-kept, so DDL and contracts
cannot drift; tests parse every statement (sqlglot, Databricks dialect) and check it against the contract.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from vhlake.alerts.config import load_config
from vhlake.lake.tables import ALL_TABLES, TableDef
from vhlake.query.render import render_for_databricks
from vhlake.spark.jobs import spark_type

BUNDLE = Path(__file__).resolve().parents[3] / "databricks" / "databricks.yml"
ROLES = {
    "ingest": ("bronze",),  # writes raw events
    "analyst": ("silver", "gold"),  # reads the cleansed and aggregated layers
    "admin": ("bronze", "silver", "gold", "ops"),
}
# Tables with a marketplace column get the row filter: a group member sees only its marketplaces.
ROW_FILTER = "marketplace_filter"


def table_ddl(table: TableDef, *, catalog: str, schema: str) -> str:
    columns = ",\n".join(
        f"  {f.name} {spark_type(f.type)}{'' if f.nullable else ' NOT NULL'}" for f in table.schema
    )
    parts = [f"CREATE TABLE IF NOT EXISTS {catalog}.{schema}.{table.name} (\n{columns}\n) USING DELTA"]
    if table.partition_by:
        parts.append(f"PARTITIONED BY ({', '.join(table.partition_by)})")
    parts.append(f"COMMENT '{table.description.replace(chr(39), chr(39) * 2)}'")
    if table.configuration:
        properties = ", ".join(f"'{k}' = '{v}'" for k, v in sorted(table.configuration.items()))
        parts.append(f"TBLPROPERTIES ({properties})")
    return "\n".join(parts)


def statements(*, catalog: str = "validahub", schema: str = "analytics") -> list[str]:
    """Every DDL and DCL statement, in the order they run."""
    out = [f"CREATE CATALOG IF NOT EXISTS {catalog}", f"CREATE SCHEMA IF NOT EXISTS {catalog}.{schema}"]
    out += [table_ddl(t, catalog=catalog, schema=schema) for t in ALL_TABLES]
    out.append(
        f"CREATE OR REPLACE FUNCTION {catalog}.{schema}.{ROW_FILTER}(marketplace STRING) RETURNS BOOLEAN "
        "RETURN is_account_group_member('admin') OR is_account_group_member(concat('marketplace-', marketplace))"
    )
    for table in _with_marketplace(ALL_TABLES):
        out.append(
            f"ALTER TABLE {catalog}.{schema}.{table.name} SET ROW FILTER {catalog}.{schema}.{ROW_FILTER} "
            "ON (marketplace)"
        )
    out += [f"GRANT USE CATALOG ON CATALOG {catalog} TO `{role}`" for role in ROLES]
    out += [f"GRANT USE SCHEMA ON SCHEMA {catalog}.{schema} TO `{role}`" for role in ROLES]
    for role, layers in ROLES.items():
        for table in ALL_TABLES:
            if table.layer in layers:
                privileges = "SELECT" if role == "analyst" else "SELECT, MODIFY"
                out.append(f"GRANT {privileges} ON TABLE {catalog}.{schema}.{table.name} TO `{role}`")
    return out


def alert_queries(*, catalog: str = "validahub", schema: str = "analytics") -> dict[str, str]:
    """The seed's alert rules as Databricks SQL alert queries."""
    names = [t.name for t in ALL_TABLES]
    return {
        rule.name: render_for_databricks(rule.query, known_tables=names, catalog=catalog, schema=schema)
        for rule in load_config(None).alerts
    }


def bundle() -> dict[str, Any]:
    """The Asset Bundle (databricks/databricks.yml), parsed."""
    loaded: dict[str, Any] = yaml.safe_load(BUNDLE.read_text(encoding="utf-8"))
    return loaded


def _with_marketplace(tables: Iterable[TableDef]) -> list[TableDef]:
    return [t for t in tables if "marketplace" in t.schema.names and t.layer in ("silver", "gold")]

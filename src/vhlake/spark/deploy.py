"""What ``vhlake databricks render`` deploys to Databricks, generated from the table contracts.

Unity Catalog DDL (catalog ``validahub``, schema ``analytics``): every lake table as a Delta table with the
contract's columns, partitioning and properties (change data feed on bronze, log retention); grants for
the three roles (ingest, analyst, admin); a row filter per marketplace on the tables that carry one; and
the alert rules' queries qualified for the warehouse. Generated, never hand-kept, so DDL and contracts
cannot drift; tests parse every statement (sqlglot, Databricks dialect) and check it against the contract.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from vhlake.alerts.config import load_config, parse_duration
from vhlake.lake.tables import ALL_TABLES, TableDef
from vhlake.query.render import render_for_databricks
from vhlake.spark.jobs import spark_type

# The Asset Bundle ships with the repository, not in the package: found beside src/ when vhlake runs from a
# checkout, else in the current directory (an installed vhlake run from the repository's root, where
# `databricks bundle deploy` runs too).
_CHECKOUT_BUNDLE = Path(__file__).resolve().parents[3] / "databricks" / "databricks.yml"
BUNDLE = _CHECKOUT_BUNDLE if _CHECKOUT_BUNDLE.exists() else Path("databricks", "databricks.yml").resolve()
ROLES = {
    "ingest": ("bronze",),  # writes raw events
    "analyst": ("silver", "gold"),  # reads the cleansed and aggregated layers
    "admin": ("bronze", "silver", "gold", "ops"),
}
# Tables with a marketplace column get the row filter: a group member sees only its marketplaces.
ROW_FILTER = "marketplace_filter"
CHECKPOINTS_VOLUME = "checkpoints"


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
    # The streaming jobs' checkpoints (databricks/jobs: /Volumes/<catalog>/<schema>/checkpoints/...).
    out.append(f"CREATE VOLUME IF NOT EXISTS {catalog}.{schema}.{CHECKPOINTS_VOLUME}")
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
    """The Asset Bundle (databricks/databricks.yml), parsed, with the resources of the files it includes."""
    loaded: dict[str, Any] = yaml.safe_load(BUNDLE.read_text(encoding="utf-8"))
    resources = loaded.setdefault("resources", {})
    for pattern in loaded.get("include", []):
        for path in sorted(BUNDLE.parent.glob(pattern)):
            included = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for kind, named in included.get("resources", {}).items():
                resources.setdefault(kind, {}).update(named)
    return loaded


# Where the bundle's SQL alerts live: generated from the alert rules by `vhlake databricks render
# --write-alerts`, checked against them by every render.
ALERTS_FILE = BUNDLE.parent / "resources" / "alerts.yml"
_COMPARISONS = {
    ">": "GREATER_THAN",
    ">=": "GREATER_THAN_OR_EQUAL",
    "<": "LESS_THAN",
    "<=": "LESS_THAN_OR_EQUAL",
    "==": "EQUAL",
    "!=": "NOT_EQUAL",
}
# vhlake checks every row (per key); a Databricks alert checks one value, so "any row above" is "the
# largest above".
_ANY_ROW = {">": "MAX", ">=": "MAX", "<": "MIN", "<=": "MIN"}
_EMPTY_RESULT = {"ok": "OK", "alert": "TRIGGERED", "keep": "UNKNOWN"}


def alert_resources() -> dict[str, Any]:
    """The alert rules as the bundle's SQL alert (v2) resources, on the bundle's catalog and schema."""
    rules = load_config(None).alerts
    queries = alert_queries(catalog="__catalog__", schema="__schema__")
    alerts = {}
    for rule in rules:
        condition = rule.condition
        aggregation = (
            condition.aggregate.upper() if condition.aggregate != "none" else _ANY_ROW.get(condition.op)
        )
        source: dict[str, Any] = {"name": condition.column}
        if aggregation:
            source["aggregation"] = aggregation
        alerts[f"vhlake_{rule.name}"] = {
            "display_name": f"vhlake {rule.name}",
            "custom_summary": f"{rule.severity}: {rule.name}",
            "query_text": queries[rule.name]
            .replace("__catalog__", "${var.catalog}")
            .replace("__schema__", "${var.schema}"),
            "warehouse_id": "${var.warehouse_id}",
            "evaluation": {
                "source": source,
                "comparison_operator": _COMPARISONS[condition.op],
                "threshold": {"value": {"double_value": condition.threshold}},
                "empty_result_state": _EMPTY_RESULT[rule.no_data],
            },
            "schedule": {"quartz_cron_schedule": quartz_cron(rule.schedule), "timezone_id": "UTC"},
        }
    return {"resources": {"alerts": alerts}}


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the alert queries) as YAML literal blocks, readable in review."""


_BlockDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    ),
)


def alerts_yaml() -> str:
    header = "# Generated by `vhlake databricks render --write-alerts` from the alert rules; do not edit.\n"
    body = yaml.dump(alert_resources(), Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def quartz_cron(schedule: str) -> str:
    """A rule's schedule (``every 5m`` or a cron line) as Databricks' Quartz cron expression."""
    text = schedule.strip()
    if text.startswith("every "):
        seconds = int(parse_duration(text.removeprefix("every ")).total_seconds())
        for unit, field in ((3600, "0 0 0/{n} * * ?"), (60, "0 0/{n} * * * ?"), (1, "0/{n} * * * * ?")):
            if seconds % unit == 0 and seconds // unit < (24 if unit == 3600 else 60):
                return field.format(n=seconds // unit)
        raise ValueError(f"{schedule!r} has no Quartz equivalent: use a cron line")
    minute, hour, day, month, weekday = text.split()
    if weekday == "*":
        return f"0 {minute} {hour} {day} {month} ?"
    # Quartz counts weekdays from 1 (Sunday); cron from 0 (Sunday, also 7).
    quartz_days = re.sub(r"\d", lambda m: str(int(m.group()) % 7 + 1), weekday)
    return f"0 {minute} {hour} ? {month} {quartz_days}"


def _with_marketplace(tables: Iterable[TableDef]) -> list[TableDef]:
    return [t for t in tables if "marketplace" in t.schema.names and t.layer in ("silver", "gold")]

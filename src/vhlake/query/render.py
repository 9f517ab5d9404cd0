"""Databricks-dialect SQL rendered for DuckDB with sqlglot.

Queries name tables as Databricks does, optionally qualified (``validahub.analytics.<table>``); the
embedded engine registers each table under its bare name, so known qualified names are unqualified here.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from vhlake.errors import QueryError


def render_for_duckdb(sql: str, *, known_tables: Iterable[str]) -> str:
    """Translate one Databricks SQL statement into DuckDB SQL.

    Example:
        >>> render_for_duckdb(
        ...     "SELECT count(*) FROM validahub.analytics.validation_events_bronze",
        ...     known_tables=["validation_events_bronze"])
        'SELECT COUNT(*) FROM validation_events_bronze'
    """
    try:
        statements = [s for s in sqlglot.parse(sql, read="databricks") if s is not None]
    except ParseError as exc:
        raise QueryError(f"cannot parse SQL: {_first_error(exc)}") from exc
    if len(statements) != 1:
        raise QueryError(f"expected one SQL statement, got {len(statements)}")
    names = set(known_tables)
    tree = statements[0].transform(lambda node: _unqualify(node, names))
    return tree.sql(dialect="duckdb")


def _unqualify(node: exp.Expression, names: set[str]) -> exp.Expression:
    if (
        isinstance(node, exp.Table)
        and node.name in names
        and (node.args.get("db") or node.args.get("catalog"))
    ):
        node = node.copy()
        node.set("db", None)
        node.set("catalog", None)
    return node


def _first_error(exc: ParseError) -> str:
    if exc.errors:
        error = exc.errors[0]
        return f"{error.get('description')} (line {error.get('line')}, column {error.get('col')})"
    return str(exc)

"""The embedded query engine: DuckDB over the lake's Delta tables.

Each table is a view under its Databricks name over its current Parquet files (read by DuckDB itself,
which prunes partitions and row groups from the filters); a table not written yet reads as empty with
its contract's columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from vhlake.errors import QueryError
from vhlake.lake.delta import Lake
from vhlake.lake.tables import ALL_TABLES
from vhlake.query.lake_relations import table_relation
from vhlake.query.render import render_for_duckdb


class DuckDBEngine:
    """Runs Databricks-dialect SQL on the embedded lake."""

    def __init__(self, lake: Lake) -> None:
        self._lake = lake
        self._con = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'")
        self._register_tables()

    def close(self) -> None:
        self._con.close()

    def tables(self) -> list[str]:
        return [table.name for table in ALL_TABLES]

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pa.Table:
        """Run one statement; values are bound parameters (``?`` or ``:name``), never spliced into SQL."""
        rendered = render_for_duckdb(sql, known_tables=self.tables())
        try:
            relation = self._con.sql(rendered, params=params)
            return pa.table({}) if relation is None else relation.to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(_one_line(str(exc))) from exc

    def _register_tables(self) -> None:
        for table in ALL_TABLES:
            table_relation(self._con, self._lake, table).create_view(table.name)


def _one_line(message: str) -> str:
    return " ".join(message.split())

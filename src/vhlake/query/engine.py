"""The query-engine port: Databricks-dialect SQL in, an Arrow table out.

Two adapters share it: :class:`~vhlake.query.duckdb_engine.DuckDBEngine` over the embedded lake and
:class:`~vhlake.query.databricks_engine.DatabricksSQLEngine` over a Databricks SQL warehouse. Values are
always bound parameters (``:name`` with a mapping, or ``?`` with a sequence), never spliced into SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from vhlake.errors import ConfigError
from vhlake.lake.tables import ALL_TABLES, UNWRITTEN_GOLD, TableDef

if TYPE_CHECKING:
    import pandas

Params = Sequence[Any] | Mapping[str, Any] | None

QUERIED_TABLES: tuple[TableDef, ...] = ALL_TABLES + tuple(t for t in UNWRITTEN_GOLD if t not in ALL_TABLES)
"""The tables a statement may read: every table the lake writes, and the gold contracts whose writer is
still to come (``UNWRITTEN_GOLD``), so the analytics over them ship first. On the embedded lake a table not
written yet reads as empty with its columns: the API answers with no rows, never an error."""


class QueryEngine(Protocol):
    """Runs one SQL statement (Databricks dialect) over the lake's tables."""

    def execute(self, sql: str, params: Params = None) -> pa.Table: ...

    def execute_df(self, sql: str, params: Params = None) -> pandas.DataFrame: ...

    def tables(self) -> list[str]: ...

    def close(self) -> None: ...


def to_dataframe(table: pa.Table) -> pandas.DataFrame:
    """A pandas DataFrame of ``table`` (pandas is optional: ``pip install 'vhlake[pandas]'``)."""
    try:
        import pandas  # noqa: F401
    except ImportError as exc:
        raise ConfigError("DataFrames need pandas: pip install 'vhlake[pandas]'") from exc
    return table.to_pandas()

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

if TYPE_CHECKING:
    import pandas

Params = Sequence[Any] | Mapping[str, Any] | None


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

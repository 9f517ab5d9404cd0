"""Databricks SQL warehouses as a query engine, with ``databricks-sql-connector``.

The same statements as the embedded engine, with the lake's tables qualified by catalog and schema
(Unity Catalog), values sent as native parameters (never in the SQL text), results fetched as Arrow.
Transient failures (network, a warehouse starting up) are retried with a fresh connection; a refused
token fails at once with a message that says which setting to fix. The connector is imported only here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pydantic import SecretStr

from vhlake.errors import ConfigError, QueryError
from vhlake.lake.tables import ALL_TABLES
from vhlake.query.engine import Params, to_dataframe
from vhlake.query.render import render_for_databricks

if TYPE_CHECKING:
    import pandas

_LAKE_TABLES = tuple(table.name for table in ALL_TABLES)
_AUTH_CODES = {401, 403}
_AUTH_WORDS = ("401", "403", "unauthorized", "forbidden", "invalid access token", "permission_denied")


@dataclass(frozen=True)
class DatabricksConfig:
    server_hostname: str
    http_path: str
    access_token: SecretStr
    catalog: str = "validahub"
    schema: str = "analytics"
    attempts: int = 3
    retry_delay_s: float = 1.0
    socket_timeout_s: float = 60.0


Connect = Callable[..., Any]
"""``databricks.sql.connect`` or a stand-in with the same signature (tests)."""


def _connector() -> Connect:
    try:
        from databricks import sql
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("the Databricks engine needs: pip install 'vhlake[databricks]'") from exc
    return sql.connect


class DatabricksSQLEngine:
    """Runs Databricks-dialect SQL on a SQL warehouse."""

    def __init__(
        self,
        config: DatabricksConfig,
        *,
        connect: Connect | None = None,
        tables: Iterable[str] = _LAKE_TABLES,
    ) -> None:
        self._config = config
        self._connect = connect or _connector()
        self._tables = list(tables)
        self._connection: Any = None

    def tables(self) -> list[str]:
        return list(self._tables)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def execute(self, sql: str, params: Params = None) -> pa.Table:
        """Run one statement with native parameters (``:name`` with a mapping, ``?`` with a sequence)."""
        rendered = render_for_databricks(
            sql, known_tables=self._tables, catalog=self._config.catalog, schema=self._config.schema
        )
        bound = (
            dict(params) if isinstance(params, Mapping) else (list(params) if params is not None else None)
        )
        for attempt in range(1, self._config.attempts + 1):
            try:
                return self._run(rendered, bound)
            except Exception as exc:  # the connector's errors, classified below
                self.close()
                if _is_auth_failure(exc):
                    raise QueryError(
                        f"Databricks refused the credentials for {self._config.server_hostname}: check "
                        f"DATABRICKS_ACCESS_TOKEN (and that it may use the warehouse {self._config.http_path})"
                    ) from exc
                if not _is_transient(exc) or attempt == self._config.attempts:
                    where = self._config.server_hostname
                    raise QueryError(f"Databricks SQL at {where} failed: {_describe(exc)}") from exc
                time.sleep(self._config.retry_delay_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def execute_df(self, sql: str, params: Params = None) -> pandas.DataFrame:
        return to_dataframe(self.execute(sql, params))

    def _run(self, sql: str, params: dict[str, Any] | list[Any] | None) -> pa.Table:
        cursor = self._open().cursor()
        try:
            cursor.execute(sql, params)
            table: pa.Table = cursor.fetchall_arrow()
            return table
        finally:
            cursor.close()

    def _open(self) -> Any:
        if self._connection is None:
            config = self._config
            self._connection = self._connect(
                server_hostname=config.server_hostname,
                http_path=config.http_path,
                access_token=config.access_token.get_secret_value(),
                catalog=config.catalog,
                schema=config.schema,
                # The connector alone retries a refused connection for minutes; we retry ourselves.
                _retry_stop_after_attempts_count=1,
                _socket_timeout=config.socket_timeout_s,
            )
        return self._connection


def _is_auth_failure(exc: Exception) -> bool:
    context = getattr(exc, "context", None) or {}
    if isinstance(context, dict) and context.get("http-code") in _AUTH_CODES:
        return True
    return any(word in str(exc).lower() for word in _AUTH_WORDS)


def _is_transient(exc: Exception) -> bool:
    """Network trouble and warehouse start-up are worth retrying; a SQL error is not."""
    kind = type(exc).__name__
    if kind in {"ServerOperationError", "ProgrammingError", "NotSupportedError", "DataError"}:
        return False
    return kind in {
        "RequestError",
        "OperationalError",
        "MaxRetryDurationError",
        "InterfaceError",
    } or isinstance(exc, ConnectionError | TimeoutError | OSError)


def _describe(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

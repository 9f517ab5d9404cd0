"""A stand-in for ``databricks.sql.connect``, for testing the Databricks engine without a warehouse."""

from __future__ import annotations

from typing import Any

import pyarrow as pa


class FakeWarehouse:
    """Stands in for ``databricks.sql.connect``: records what is sent, raises what it is told to."""

    def __init__(self, failures: list[Exception] | None = None, answer: pa.Table | None = None) -> None:
        self.failures = list(failures or [])
        self.answer = answer if answer is not None else pa.table({"n": [1]})
        self.connects: list[dict[str, Any]] = []
        self.sent: list[tuple[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.connects.append(kwargs)
        warehouse = self

        class Cursor:
            def execute(self, sql: str, params: Any) -> None:
                if warehouse.failures:
                    raise warehouse.failures.pop(0)
                warehouse.sent.append((sql, params))

            def fetchall_arrow(self) -> pa.Table:
                return warehouse.answer

            def close(self) -> None:
                pass

        class Connection:
            def cursor(self) -> Cursor:
                return Cursor()

            def close(self) -> None:
                pass

        return Connection()

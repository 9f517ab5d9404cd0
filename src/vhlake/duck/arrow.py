"""Running SQL over in-memory Arrow tables with DuckDB, without leaking registrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, **relations: Any) -> Iterator[duckdb.DuckDBPyConnection]:
    """Register Arrow tables or datasets under the given names for the ``with`` block only."""
    for name, relation in relations.items():
        con.register(name, relation)
    try:
        yield con
    finally:
        for name in relations:
            con.unregister(name)

"""The analytics' SQL: one ``.sql`` file per statement in ``query/sql/``, Databricks dialect, values as
``:name`` parameters. Loaded by name; the names are the file names, so nothing else can be loaded."""

from __future__ import annotations

from functools import cache
from importlib import resources

from vhlake.errors import QueryError


@cache
def statement_names() -> tuple[str, ...]:
    folder = resources.files("vhlake") / "query" / "sql"
    return tuple(sorted(e.name.removesuffix(".sql") for e in folder.iterdir() if e.name.endswith(".sql")))


@cache
def statement(name: str) -> str:
    """The SQL text of statement ``name`` (its leading comment included)."""
    if name not in statement_names():
        raise QueryError(f"no SQL statement {name!r}; known: {', '.join(statement_names())}")
    return (resources.files("vhlake") / "query" / "sql" / f"{name}.sql").read_text(encoding="utf-8")

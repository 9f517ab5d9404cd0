"""The embedded query engine: DuckDB over the lake's Delta tables.

Each table is a view under its Databricks name over its Parquet files (read by DuckDB itself, which
prunes partitions and row groups from the filters); a table not written yet reads as empty with its
contract's columns. Before each statement the views of the tables it reads are brought up to date
when the Delta version moved, so a long-lived engine (the API's) sees the latest commit: on a local
lake at once, on an object store at most ``RECHECK_S`` late (a check there is a round trip to the store,
made under the engine's lock: once per table per second, not once per request).
``VERSION AS OF n`` / ``TIMESTAMP AS OF ts`` read the table as of that Delta version.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from vhlake.duck.lake_relations import table_relation
from vhlake.errors import LakeError, QueryError
from vhlake.lake.delta import Lake
from vhlake.lake.tables import ALL_TABLES, TableDef
from vhlake.query.engine import Params, to_dataframe
from vhlake.query.render import referenced_tables, render_for_duckdb

if TYPE_CHECKING:
    import pandas

_UNSET = -2  # a version no table has: forces the first registration
_PLANS = 256  # rendered statements kept (the oldest goes first)
_PUSHED_JOIN_KEYS = 1024
RECHECK_S = 1.0  # on an object store, how long a table's checked version is taken as the latest
_MISSING_TABLE = re.compile(r"Table with name (\S+) does not exist")


class DuckDBEngine:
    """Runs Databricks-dialect SQL on the embedded lake; safe to share between threads."""

    def __init__(self, lake: Lake, *, tables: tuple[TableDef, ...] = ALL_TABLES) -> None:
        self._lake = lake
        self._tables = {table.name: table for table in tables}
        self._con = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'")
        # A hash join whose build side has at most this many rows pushes its keys into the other side's
        # scan as IN filters, which prune hive partitions: freshness joins silver to a few (marketplace,
        # day) pairs, eight per marketplace, more than DuckDB's default of 50 once a lake has 7 marketplaces.
        self._con.execute(f"SET GLOBAL dynamic_or_filter_threshold = {_PUSHED_JOIN_KEYS}")
        self._versions: dict[str, int] = {}
        self._plans: dict[str, tuple[set[str], str | None]] = {}
        self._lock = threading.Lock()  # view (re)registration; queries run on their own cursors

    def close(self) -> None:
        self._con.close()

    def tables(self) -> list[str]:
        return list(self._tables)

    def execute(self, sql: str, params: Params = None) -> pa.Table:
        """Run one statement; values are bound parameters (``:name`` or ``?``), never spliced into SQL."""
        with self._lock:
            tables, rendered = self._plan(sql)
            for name in tables:
                self._refresh(self._tables[name])
            if rendered is None:  # time travel: the views to read depend on the lake, render each time
                rendered = render_for_duckdb(sql, known_tables=self._tables, time_travel=self._as_of)
        cursor = self._con.cursor()
        try:
            cursor.execute("SET TimeZone = 'UTC'")
            relation = cursor.sql(rendered, params=params)
            return pa.table({}) if relation is None else _bigint_for_hugeint(relation).to_arrow_table()
        except duckdb.ConversionException as exc:
            raise QueryError(_overflow_hint(_one_line(str(exc)))) from exc
        except duckdb.CatalogException as exc:
            raise QueryError(self._unknown_table(str(exc)) or _one_line(str(exc))) from exc
        except duckdb.Error as exc:
            raise QueryError(_one_line(str(exc))) from exc
        finally:
            cursor.close()

    def table_versions(self, sqls: Iterable[str]) -> tuple[tuple[str, int], ...]:
        """The Delta version of each lake table ``sqls`` read (-1: not written yet), as their next
        :meth:`execute` will see it or a later one: the views are brought up to date here."""
        with self._lock:
            names = sorted({name for sql in sqls for name in self._plan(sql)[0]})
            for name in names:
                self._refresh(self._tables[name])
            return tuple((name, self._versions[name]) for name in names)

    def _unknown_table(self, message: str) -> str | None:
        """For a table the lake does not have, the nearest lake table: DuckDB would suggest one of its
        own catalog's (``pragma_database_list``), as only the tables a statement reads are registered."""
        missing = _MISSING_TABLE.search(message)
        if missing is None:
            return None
        name = missing.group(1)
        near = difflib.get_close_matches(name.lower(), self._tables, n=1, cutoff=0.6)
        hint = f'did you mean "{near[0]}"?' if near else "the lake's tables are listed by `vhlake tables`"
        return f"no table {name}: {hint}"

    def execute_df(self, sql: str, params: Params = None) -> pandas.DataFrame:
        return to_dataframe(self.execute(sql, params))

    def _plan(self, sql: str) -> tuple[set[str], str | None]:
        """The lake tables ``sql`` reads and its DuckDB rendering (None when it time-travels), cached:
        parsing and rendering cost more than a small query itself."""
        plan = self._plans.get(sql)
        if plan is None:
            tables = referenced_tables(sql) & set(self._tables)
            travels = "AS OF" in sql.upper()
            plan = (tables, None if travels else render_for_duckdb(sql, known_tables=self._tables))
            if len(self._plans) >= _PLANS:
                self._plans.pop(next(iter(self._plans)))
            self._plans[sql] = plan
        return plan

    def _refresh(self, table: TableDef) -> None:
        delta = self._lake.open_recent(table, RECHECK_S)
        version = -1 if delta is None else delta.version()
        if self._versions.get(table.name, _UNSET) != version:
            table_relation(self._con, self._lake, table).create_view(table.name, replace=True)
            self._versions[table.name] = version

    def _version_at(self, table: TableDef, moment: datetime) -> int:
        """The version ``TIMESTAMP AS OF moment`` reads; before the earliest version it is an error, as on
        Databricks (delta-rs would answer with the earliest version, an empty table for most of ours)."""
        version = self._lake.version_at(table, moment)
        # Only version 0 can be the answer for a moment before it (the history is read only then).
        earliest = _first_commit_time(self._lake, table) if version == 0 else None
        if earliest is not None and moment < earliest:
            raise QueryError(
                f"the timestamp {moment.isoformat()} is before the earliest version available of "
                f"{table.name} ({earliest.isoformat(timespec='seconds')})"
            )
        return version

    def _as_of(self, name: str, kind: str, value: object) -> str:
        """Register ``name`` as of a version or a timestamp; returns the view's name."""
        table = self._tables[name]
        try:
            version = (
                int(value)  # type: ignore[call-overload]
                if kind == "VERSION"
                else self._version_at(table, _timestamp(value))
            )
            view = f"{name}__v{version}"
            table_relation(self._con, self._lake, table, version=version).create_view(view, replace=True)
        except LakeError as exc:
            raise QueryError(str(exc)) from exc
        except (duckdb.IOException, OSError) as exc:  # a file that version names is gone
            raise QueryError(
                f"{name} {kind} AS OF {value} can no longer be read: its files were removed by vacuum "
                f"(vhlake maintain, or forget --vacuum): {_one_line(str(exc))}"
            ) from exc
        return view


def _bigint_for_hugeint(relation: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """``relation`` with its HUGEINT columns (nested ones too) cast to BIGINT, the type Databricks gives.

    DuckDB sums integers (and adds, subtracts, multiplies those sums) in HUGEINT, which reaches users as
    decimal128(38, 0): a string in JSON, a Decimal in pandas. Databricks types the same expressions
    BIGINT and fails on overflow; the cast fails on overflow too. Done on the types DuckDB bound, not
    guessed from the SQL: HUGEINT is never a Databricks type, and a genuine DECIMAL(38, 0) is not HUGEINT.
    """
    types = [str(kind) for kind in relation.types]
    wanted = [_HUGEINT.sub(_bigint, kind) for kind in types]
    if wanted == types:
        return relation
    columns = [
        f"#{i} AS {_quoted(name)}" if kind == want else f"CAST(#{i} AS {want}) AS {_quoted(name)}"
        for i, (name, kind, want) in enumerate(zip(relation.columns, types, wanted, strict=True), start=1)
    ]
    return relation.project(", ".join(columns))


# The HUGEINT in a type's text, skipping quoted struct field names (which could read "HUGEINT").
_HUGEINT = re.compile(r'"(?:[^"]|"")*"|\bHUGEINT\b')


def _bigint(match: re.Match[str]) -> str:
    return "BIGINT" if match.group() == "HUGEINT" else match.group()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _overflow_hint(message: str) -> str:
    if "INT128" not in message:
        return message
    return (
        "an integer result does not fit BIGINT, the type Databricks gives sums of integers (it fails there "
        f"too); cast to DECIMAL(38, 0) before summing: {message.partition(' LINE ')[0]}"
    )


def _first_commit_time(lake: Lake, table: TableDef) -> datetime | None:
    """When version 0 of ``table`` was committed (None: not in the log any more). Read from the latest
    table's history: delta-rs numbers the history of a time-travelled table from the wrong end."""
    delta = lake.open(table)
    commits = [] if delta is None else delta.history()
    first = next((c for c in commits if c.get("version") == 0), None)
    return None if first is None else datetime.fromtimestamp(int(first["timestamp"]) / 1000, tz=UTC)


def _timestamp(value: object) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise QueryError(f"TIMESTAMP AS OF needs an ISO timestamp, not {value!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _one_line(message: str) -> str:
    return " ".join(message.split())

"""Databricks-dialect SQL rendered for DuckDB with sqlglot, plus the rewrites sqlglot gets wrong.

Queries name tables as Databricks does, optionally qualified (``validahub.analytics.<table>``); the
embedded engine registers each table under its bare name, so known qualified names are unqualified here.

sqlglot translates most of Spark SQL; the rewrites below fix what it renders with another meaning in
DuckDB (each has a test against Spark's documented result):

=============================  ==============================  ======================================
Databricks                     sqlglot alone                   rendered as
=============================  ==============================  ======================================
``dayofweek(d)``               Sunday = 0                      ``dayofweek(d) + 1`` (Sunday = 1)
``date_sub(d, n)``,            a TIMESTAMP                     the same, cast back to DATE
``date_add(d, n)``
``percentile(x, p)``           the discrete quantile           ``quantile_cont(x, p)`` (interpolated)
``from_json(s, 'a INT')``      no such DuckDB function         ``json_transform(s, '{"a": "INT"}')``
``LATERAL VIEW explode(m)      ``UNNEST(m)`` (fails on maps)   ``CROSS JOIN LATERAL`` unnesting
e AS k, v``                                                    ``map_keys(m)``, ``map_values(m)``
``t VERSION AS OF n``,         no Delta time travel            the table as of that Delta version
``t TIMESTAMP AS OF ts``                                       (registered by the engine)
``hour(t)``, ``month(d)``,     BIGINT                          cast to INT, Databricks' type
``length(s)``, ``datediff``,
``row_number()``, ``rank()``
and the other date parts
``10000000000000000000``       HUGEINT                         ``DECIMAL(20, 0)``, Databricks' type
(beyond BIGINT)
=============================  ==============================  ======================================

Sums of integers are BIGINT on Databricks and HUGEINT in DuckDB; their type depends on their argument's,
which is not known here, so the engine casts HUGEINT results to BIGINT on the types DuckDB bound
(:mod:`vhlake.query.duckdb_engine`). Still different: a SUM of DECIMAL(p, s) is DECIMAL(38, s) here
(Databricks: DECIMAL(p + 10, s), the same values) and an AVG of DECIMAL is DOUBLE here (Databricks: DECIMAL).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from vhlake.errors import QueryError

TimeTravel = Callable[[str, str, object], str]
"""``(table, "VERSION" | "TIMESTAMP", value) -> name of a relation holding that table as of then``."""

_DONE = "vhlake_rewritten"  # marks nodes a rewrite produced, so transform() does not rewrite them again
_TYPED = "vhlake_typed"  # the same, for the rewrites that give a result Databricks' type


def render_for_duckdb(sql: str, *, known_tables: Iterable[str], time_travel: TimeTravel | None = None) -> str:
    """Translate one Databricks SQL statement into DuckDB SQL.

    Example:
        >>> render_for_duckdb(
        ...     "SELECT count(*) FROM validahub.analytics.validation_events_bronze",
        ...     known_tables=["validation_events_bronze"])
        'SELECT COUNT(*) FROM validation_events_bronze'
    """
    names = set(known_tables)
    tree = parse_one(sql).transform(lambda node: _unqualify(node, names))
    if time_travel is not None:
        tree = tree.transform(lambda node: _travel(node, names, time_travel))
    for rewrite in REWRITES:
        tree = tree.transform(rewrite)
    return tree.sql(dialect="duckdb")


def parse_one(sql: str) -> exp.Expression:
    """One Databricks SQL statement, parsed; anything else is a :class:`QueryError`."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="databricks") if s is not None]
    except ParseError as exc:
        raise QueryError(f"cannot parse SQL: {_first_error(exc)}") from exc
    if len(statements) != 1:
        raise QueryError(f"expected one SQL statement, got {len(statements)}")
    statement = statements[0]
    assert isinstance(statement, exp.Expression)
    return statement


def referenced_tables(sql: str) -> set[str]:
    """The bare names of the tables a statement reads (CTE names excluded)."""
    tree = parse_one(sql)
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    return {t.name for t in tree.find_all(exp.Table) if t.name not in ctes}


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


def _travel(node: exp.Expression, names: set[str], time_travel: TimeTravel) -> exp.Expression:
    version = node.args.get("version") if isinstance(node, exp.Table) else None
    if not isinstance(node, exp.Table) or not isinstance(version, exp.Version):
        return node
    if node.name not in names:
        raise QueryError(f"time travel needs a lake table, not {node.name}")
    value = version.expression
    if not isinstance(value, exp.Literal):
        raise QueryError("time travel takes a literal: VERSION AS OF 12 or TIMESTAMP AS OF '2026-11-27'")
    kind = str(version.this).upper()
    target = time_travel(node.name, kind, int(value.this) if kind == "VERSION" else str(value.this))
    replaced = exp.to_table(target)
    replaced.set("alias", exp.TableAlias(this=exp.to_identifier(node.alias or node.name)))
    return replaced


def _mark(node: exp.Expression) -> exp.Expression:
    node.meta[_DONE] = True
    return node


def _dayofweek(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.DayOfWeek) and not node.meta.get(_DONE):
        return exp.Paren(this=exp.Add(this=_mark(node.copy()), expression=exp.Literal.number(1)))
    return node


def _date_shift(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.TsOrDsAdd | exp.DateSub | exp.DateAdd) and not node.meta.get(_DONE):
        return exp.Cast(this=_mark(node.copy()), to=exp.DataType.build("DATE"))
    return node


# Functions Databricks types INT where DuckDB gives BIGINT (date parts, lengths, positions, ranks).
_INT_FUNCTIONS: tuple[type[exp.Expression], ...] = (
    exp.Year,
    exp.Quarter,
    exp.Month,
    exp.WeekOfYear,
    exp.Day,
    exp.DayOfMonth,
    exp.DayOfYear,
    exp.DayOfWeek,
    exp.Hour,
    exp.Minute,
    exp.Second,
    exp.Length,
    exp.ArraySize,
    exp.StrPosition,
    exp.DateDiff,
)
_INT_RANKS = (exp.RowNumber, exp.Rank, exp.DenseRank, exp.Ntile)
_BIGINT_MAX = 2**63 - 1
_DECIMAL_DIGITS = 38


def _int_result(node: exp.Expression) -> exp.Expression:
    """Functions whose Databricks result is INT, cast to INT (DuckDB's are BIGINT)."""
    if node.meta.get(_TYPED):
        return node
    typed_int = isinstance(node, _INT_FUNCTIONS) or (
        isinstance(node, exp.Window) and isinstance(node.this, _INT_RANKS)
    )
    if isinstance(node, exp.Extract):  # EXTRACT(SECOND ...) is DECIMAL(8, 6) on Databricks
        typed_int = node.name.upper() not in {"SECOND", "SECONDS", "S", "SEC", "SECS"}
    if not typed_int:
        return node
    inner = node.copy()
    inner.meta[_TYPED] = True
    return exp.Cast(this=inner, to=exp.DataType.build("INT"))


def _big_integer(node: exp.Expression) -> exp.Expression:
    """An integer literal beyond BIGINT is DECIMAL(digits, 0) on Databricks (DuckDB makes it HUGEINT)."""
    if not isinstance(node, exp.Literal) or node.is_string or not node.this.isdigit():
        return node
    digits = len(node.this.lstrip("0"))
    if digits > _DECIMAL_DIGITS or node.meta.get(_TYPED) or int(node.this) <= _BIGINT_MAX:
        return node
    literal = node.copy()
    literal.meta[_TYPED] = True
    return exp.Cast(this=literal, to=exp.DataType.build(f"DECIMAL({digits}, 0)"))


def _percentile(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Quantile):
        return exp.Anonymous(this="quantile_cont", expressions=[node.this, node.args["quantile"]])
    return node


def _from_json(node: exp.Expression) -> exp.Expression:
    if not isinstance(node, exp.FromJson):
        return node
    schema = node.expression
    if not isinstance(schema, exp.Literal) or not schema.is_string:
        raise QueryError(
            "from_json needs its schema as a string literal, e.g. from_json(s, 'a INT, b STRING')"
        )
    structure = json.dumps(dict(_ddl_fields(str(schema.this))))
    return exp.Anonymous(this="json_transform", expressions=[node.this, exp.Literal.string(structure)])


def _ddl_fields(ddl: str) -> list[tuple[str, str]]:
    """``'a INT, m MAP<STRING, INT>'`` as (name, DuckDB type) pairs."""
    fields, depth, start = [], 0, 0
    for i, char in enumerate(ddl + ","):
        depth += {"<": 1, ">": -1}.get(char, 0)
        if char == "," and depth == 0:
            name, _, kind = ddl[start:i].strip().partition(" ")
            if not name or not kind.strip():
                raise QueryError(f"from_json: cannot read the schema {ddl!r} (expected 'name TYPE, ...')")
            fields.append(
                (name.strip("`"), exp.DataType.build(kind.strip(), dialect="databricks").sql("duckdb"))
            )
            start = i + 1
    return fields


def _explode_map(node: exp.Expression) -> exp.Expression:
    """``LATERAL VIEW explode(m) e AS k, v`` (two columns: only a map explodes into two) becomes a
    ``CROSS JOIN LATERAL`` unnesting the map's keys and values side by side."""
    if not isinstance(node, exp.Select) or not node.args.get("laterals"):
        return node
    laterals = node.args["laterals"]
    kept = []
    for lateral in laterals:
        alias = lateral.args.get("alias")
        columns = alias.columns if isinstance(alias, exp.TableAlias) else []
        if not isinstance(lateral.this, exp.Explode) or len(columns) != 2:
            kept.append(lateral)
            continue
        source = lateral.this.this
        keys, values = (
            exp.Anonymous(this="unnest", expressions=[exp.Anonymous(this=part, expressions=[source])])
            for part in ("map_keys", "map_values")
        )
        select = exp.select(keys.as_(columns[0].name), values.as_(columns[1].name))
        joined = exp.Lateral(this=exp.Subquery(this=select), alias=exp.TableAlias(this=alias.this))
        node = node.join(exp.Join(this=joined, kind="CROSS"), copy=False)
    node.set("laterals", kept or None)
    return node


REWRITES: tuple[Callable[[exp.Expression], exp.Expression], ...] = (
    _dayofweek,
    _date_shift,
    _percentile,
    _from_json,
    _explode_map,
    _int_result,
    _big_integer,
)


def _first_error(exc: ParseError) -> str:
    if exc.errors:
        error = exc.errors[0]
        return f"{error.get('description')} (line {error.get('line')}, column {error.get('col')})"
    return str(exc)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def render_for_databricks(sql: str, *, known_tables: Iterable[str], catalog: str, schema: str) -> str:
    """The statement with the lake's tables qualified as ``catalog.schema.table`` (Unity Catalog).

    Example:
        >>> print(render_for_databricks("SELECT count(*) FROM marketplace_daily_metrics_gold",
        ...     known_tables=["marketplace_daily_metrics_gold"], catalog="validahub", schema="analytics"))
        SELECT
          COUNT(*)
        FROM validahub.analytics.marketplace_daily_metrics_gold
    """
    for name, value in (("catalog", catalog), ("schema", schema)):
        if not _IDENTIFIER.fullmatch(value):
            raise QueryError(f"invalid Databricks {name} name {value!r}: letters, digits and _ only")
    names = set(known_tables)

    def qualify(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.name in names and not node.args.get("db"):
            node = node.copy()
            node.set("db", exp.to_identifier(schema))
            node.set("catalog", exp.to_identifier(catalog))
        return node

    return parse_one(sql).transform(qualify).sql(dialect="databricks", pretty=True)

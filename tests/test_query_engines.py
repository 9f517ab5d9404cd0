"""The two query engines: DuckDB over the lake (rewrites, time travel, fresh views) and Databricks SQL
(native parameters, retries, clear errors), the latter without a warehouse."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from pydantic import SecretStr

from conftest import ingest, make_event, write_lines
from fake_warehouse import FakeWarehouse
from vhlake.errors import QueryError
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE
from vhlake.query.databricks_engine import DatabricksConfig, DatabricksSQLEngine
from vhlake.query.duckdb_engine import DuckDBEngine
from vhlake.query.render import render_for_duckdb


def duck(sql: str) -> list[dict[str, Any]]:
    import duckdb

    relation = duckdb.sql(render_for_duckdb(sql, known_tables=[]))
    assert relation is not None, "a query gives a relation"
    rows: list[dict[str, Any]] = relation.to_arrow_table().to_pylist()
    return rows


# -- the rewrites, each against Spark's documented result -------------------------------------------------


def test_dayofweek_counts_from_sunday_as_one() -> None:
    assert duck("SELECT dayofweek(DATE '2026-11-29') AS sun, dayofweek(DATE '2026-11-28') AS sat") == [
        {"sun": 1, "sat": 7}
    ]


def test_date_sub_and_date_add_return_dates() -> None:
    assert duck(
        "SELECT date_sub(DATE '2026-03-01', 1) AS before, date_add(DATE '2026-02-28', 1) AS after"
    ) == [{"before": date(2026, 2, 28), "after": date(2026, 3, 1)}]


def test_percentile_interpolates_like_spark() -> None:
    rows = duck(
        "SELECT percentile(x, 0.5) AS p50, percentile(x, 0.9) AS p90 FROM VALUES (10), (20), (30), (40) AS t(x)"
    )
    assert rows == [{"p50": 25.0, "p90": pytest.approx(37.0)}]


def test_from_json_takes_a_ddl_schema() -> None:
    rows = duck(
        """SELECT from_json('{"a": 3, "m": {"x": 2}, "s": "ok"}', 'a INT, m MAP<STRING, INT>, s STRING') AS j"""
    )
    assert rows == [{"j": {"a": 3, "m": [("x", 2)], "s": "ok"}}]  # Arrow gives a map as (key, value) pairs


def test_lateral_view_explode_of_a_map_gives_keys_and_values() -> None:
    rows = duck(
        "SELECT e.k, e.v FROM (SELECT map('missing_sku', 3, 'bad_price', 1) AS m) t "
        "LATERAL VIEW explode(m) e AS k, v ORDER BY k"
    )
    assert rows == [{"k": "bad_price", "v": 1}, {"k": "missing_sku", "v": 3}]


# -- DuckDB over the lake ---------------------------------------------------------------------------------


def events(first: int, count: int) -> list[dict[str, Any]]:
    return [make_event(n) for n in range(first, first + count)]


def test_views_follow_new_commits_and_time_travel_reads_old_versions(lake: Lake, tmp_path: Any) -> None:
    ingest(lake, write_lines(tmp_path / "a.jsonl", events(0, 3)))
    engine = DuckDBEngine(lake)
    count = "SELECT count(*) AS n FROM validation_events_bronze"
    assert engine.execute(count).to_pylist() == [{"n": 3}]
    version_after_first = lake.open(BRONZE).version()  # type: ignore[union-attr]
    moment = datetime.now(UTC)
    time.sleep(0.05)
    ingest(lake, write_lines(tmp_path / "b.jsonl", events(3, 4)))
    assert engine.execute(count).to_pylist() == [{"n": 7}]  # the same engine sees the new commit
    assert engine.execute(f"{count} VERSION AS OF {version_after_first}").to_pylist() == [{"n": 3}]
    travelled = engine.execute(
        f"SELECT count(*) AS n FROM validation_events_bronze TIMESTAMP AS OF '{moment.isoformat()}'"
    )
    assert travelled.to_pylist() == [{"n": 3}]
    qualified = engine.execute("SELECT count(*) AS n FROM validahub.analytics.validation_events_bronze b")
    assert qualified.to_pylist() == [{"n": 7}]
    with pytest.raises(QueryError, match="has versions 0 to"):
        engine.execute(f"{count} VERSION AS OF 99")
    frame = engine.execute_df("SELECT event_id FROM validation_events_bronze ORDER BY event_id LIMIT 2")
    assert list(frame["event_id"]) == ["evt-0", "evt-1"]


def test_parameters_are_bound_never_spliced(lake: Lake, tmp_path: Any) -> None:
    ingest(lake, write_lines(tmp_path / "a.jsonl", events(0, 3)))
    engine = DuckDBEngine(lake)
    sql = "SELECT count(*) AS n FROM validation_events_bronze WHERE event_id = :id"
    assert engine.execute(sql, {"id": "evt-1"}).to_pylist() == [{"n": 1}]
    assert engine.execute(sql, {"id": "evt-1' OR '1'='1"}).to_pylist() == [{"n": 0}]
    positional = "SELECT count(*) AS n FROM validation_events_bronze WHERE event_id IN (?, ?)"
    assert engine.execute(positional, ["evt-0", "evt-2"]).to_pylist() == [{"n": 2}]


def test_a_table_not_written_yet_reads_as_empty(lake: Lake) -> None:
    result = DuckDBEngine(lake).execute("SELECT * FROM ml_predictions")
    assert result.num_rows == 0 and "model_version" in result.column_names


# -- result types as Databricks gives them ----------------------------------------------------------------

ONE_TO_THREE = "FROM VALUES (1), (2), (3) AS t(x)"  # x is INT


@pytest.mark.parametrize(
    ("select", "arrow_type", "value"),
    [
        (f"SELECT sum(x) AS v {ONE_TO_THREE}", pa.int64(), 6),  # SUM(INT) is BIGINT
        (f"SELECT sum(CAST(x AS BIGINT)) AS v {ONE_TO_THREE}", pa.int64(), 6),
        (f"SELECT sum(x) - min(x) AS v {ONE_TO_THREE}", pa.int64(), 5),
        (f"SELECT coalesce(sum(x), 0) AS v {ONE_TO_THREE}", pa.int64(), 6),
        (f"SELECT max(s) AS v FROM (SELECT sum(x) OVER (ORDER BY x) AS s {ONE_TO_THREE})", pa.int64(), 6),
        (f"SELECT count(*) AS v {ONE_TO_THREE}", pa.int64(), 3),
        (f"SELECT count_if(x > 1) AS v {ONE_TO_THREE}", pa.int64(), 2),
        (f"SELECT avg(x) AS v {ONE_TO_THREE}", pa.float64(), 2.0),
        (f"SELECT sum(x) / count(*) AS v {ONE_TO_THREE}", pa.float64(), 2.0),
        (f"SELECT sum(x * 0.5D) AS v {ONE_TO_THREE}", pa.float64(), 3.0),
        # an integer literal beyond BIGINT is a DECIMAL on Databricks
        ("SELECT 10000000000000000000 AS v", pa.decimal128(20, 0), Decimal(10**19)),
        ("SELECT hour(TIMESTAMP '2026-11-27 13:45:00') AS v", pa.int32(), 13),
        ("SELECT dayofweek(DATE '2026-11-29') AS v", pa.int32(), 1),
        ("SELECT month(DATE '2026-11-29') AS v", pa.int32(), 11),
        ("SELECT length('abc') AS v", pa.int32(), 3),
        (
            f"SELECT max(r) AS v FROM (SELECT row_number() OVER (ORDER BY x) AS r {ONE_TO_THREE})",
            pa.int32(),
            3,
        ),
    ],
)
def test_ad_hoc_aggregates_return_the_types_databricks_returns(
    lake: Lake, select: str, arrow_type: pa.DataType, value: Any
) -> None:
    result = DuckDBEngine(lake).execute(select)
    assert result.schema.field("v").type == arrow_type
    assert result.column("v").to_pylist() == [value]


@pytest.mark.parametrize(("decimal", "scale"), [("DECIMAL(10, 2)", 2), ("DECIMAL(28, 0)", 0)])
def test_a_decimal_sum_stays_decimal(lake: Lake, decimal: str, scale: int) -> None:
    # Databricks gives DECIMAL(p + 10, s), DuckDB DECIMAL(38, s): the same values, only the precision differs
    result = DuckDBEngine(lake).execute(f"SELECT sum(CAST(x AS {decimal})) AS v {ONE_TO_THREE}")
    kind = result.schema.field("v").type
    assert pa.types.is_decimal(kind) and kind.scale == scale
    assert result.column("v").to_pylist() == [Decimal(6).quantize(Decimal(10) ** -scale)]


def test_sums_of_lake_integers_are_bigint_in_every_result_form(lake: Lake, tmp_path: Any) -> None:
    ingest(lake, write_lines(tmp_path / "a.jsonl", events(0, 3)))
    engine = DuckDBEngine(lake)
    sql = "SELECT sum(source_offset) AS s, struct(sum(source_offset) AS s) AS nested FROM validation_events_bronze"
    result = engine.execute(sql)
    assert result.schema.field("s").type == pa.int64()
    assert result.schema.field("nested").type == pa.struct([("s", pa.int64())])
    assert str(engine.execute_df(sql)["s"].dtype) == "int64"


def test_a_sum_beyond_bigint_fails_as_on_databricks(lake: Lake) -> None:
    with pytest.raises(QueryError, match=r"does not fit BIGINT.*9223372036854775808"):
        DuckDBEngine(lake).execute("SELECT sum(x) AS v FROM VALUES (9223372036854775807), (1) AS t(x)")


# -- Databricks SQL, without a warehouse --------------------------------------------------------------------


def config(**overrides: Any) -> DatabricksConfig:
    values: dict[str, Any] = {
        "server_hostname": "adb-1.azuredatabricks.net",
        "http_path": "/sql/1.0/warehouses/abc",
        "access_token": SecretStr("dapi-secret"),
        "retry_delay_s": 0.01,
    }
    return DatabricksConfig(**(values | overrides))


def test_databricks_qualifies_tables_and_sends_native_parameters() -> None:
    warehouse = FakeWarehouse()
    engine = DatabricksSQLEngine(config(catalog="prod", schema="vh"), connect=warehouse)
    result = engine.execute(
        "SELECT count(*) AS n FROM validation_results_silver WHERE marketplace = :m", {"m": "shopee' --"}
    )
    assert result.to_pylist() == [{"n": 1}]
    ((sql, params),) = warehouse.sent
    assert "FROM prod.vh.validation_results_silver" in sql and "shopee" not in sql
    assert params == {"m": "shopee' --"}
    assert warehouse.connects[0]["access_token"] == "dapi-secret"
    assert warehouse.connects[0]["_retry_stop_after_attempts_count"] == 1


class RequestError(Exception):
    """Named as the connector's transient error."""

    def __init__(self, message: str, context: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.context = context or {}


class ServerOperationError(Exception):
    """Named as the connector's SQL error."""


def test_transient_failures_are_retried_on_a_new_connection() -> None:
    warehouse = FakeWarehouse([RequestError("connection reset"), RequestError("warehouse starting")])
    engine = DatabricksSQLEngine(config(attempts=3), connect=warehouse)
    assert engine.execute("SELECT 1 AS n").num_rows == 1
    assert len(warehouse.connects) == 3


def test_a_refused_token_fails_at_once_and_says_what_to_fix() -> None:
    warehouse = FakeWarehouse([RequestError("Error during request", {"http-code": 403})])
    engine = DatabricksSQLEngine(config(attempts=3), connect=warehouse)
    with pytest.raises(QueryError, match="DATABRICKS_ACCESS_TOKEN"):
        engine.execute("SELECT 1")
    assert len(warehouse.connects) == 1


def test_sql_errors_are_not_retried() -> None:
    warehouse = FakeWarehouse([ServerOperationError("[TABLE_OR_VIEW_NOT_FOUND] nope")])
    engine = DatabricksSQLEngine(config(attempts=3), connect=warehouse)
    with pytest.raises(QueryError, match="TABLE_OR_VIEW_NOT_FOUND"):
        engine.execute("SELECT * FROM nope")
    assert len(warehouse.connects) == 1


def test_invalid_catalog_names_are_refused_before_anything_is_sent() -> None:
    warehouse = FakeWarehouse()
    with pytest.raises(QueryError, match="invalid Databricks catalog"):
        DatabricksSQLEngine(config(catalog="x; DROP TABLE y"), connect=warehouse).execute("SELECT 1")
    assert warehouse.connects == []


# After a failed connect, the connector's Connection.__del__ trips over the session it never made.
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_real_connector_fails_fast_and_clearly_when_no_warehouse_answers() -> None:
    # nothing listens on port 443 of this machine (the connector always uses 443)
    engine = DatabricksSQLEngine(config(server_hostname="127.0.0.1", attempts=2, socket_timeout_s=3))
    started = time.monotonic()
    with pytest.raises(QueryError, match=r"Databricks SQL at 127\.0\.0\.1 failed: .*Connection refused"):
        engine.execute("SELECT 1")
    assert time.monotonic() - started < 60


def test_cli_engine_choice_names_the_missing_settings(run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABRICKS_SERVER_HOSTNAME", "DATABRICKS_HTTP_PATH", "DATABRICKS_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    result = run_cli("query", "SELECT 1", "--engine", "databricks")
    assert result.exit_code == 1
    assert "DATABRICKS_SERVER_HOSTNAME" in result.stderr and "DATABRICKS_ACCESS_TOKEN" in result.stderr

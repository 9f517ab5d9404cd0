"""bronze → quarantine + silver → gold in PySpark, with the embedded pipeline's semantics: the steps
(``check``, ``job_events``, ``fold``, ``silver_to_gold``) that the streaming jobs (``vhlake.spark.streams``)
run per micro-batch, and ``build``, which runs them once over the whole of bronze.

What can be shared is shared, so the two engines cannot drift: the payload schema comes from the table
contract, the expectations are the embedded pipeline's own predicates and gold is the embedded pipeline's
own SQL (``GOLD_SQL``, ``ERROR_TYPE_SQL`` and ``ENGAGEMENT_SQL``), translated from DuckDB's dialect to
Spark's by sqlglot (exact ``percentile``, never ``percentile_approx``; ``unnest`` of the error-type map
entries as ``explode``). The fold is written here in Spark SQL (DuckDB's version leans on dialect
features with no Spark equivalent); tests/test_spark_jobs.py holds it to the embedded pipeline's result,
column by column, on the same bronze.

``build`` writes tables in ``fmt`` (``delta`` on Databricks; ``parquet`` where Delta's jars are not
available, as in the tests here).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeGuard

import pyarrow as pa
import sqlglot
from sqlglot import exp

from vhlake.lake.tables import (
    ERROR_TYPE_GOLD,
    GOLD,
    PAYLOAD_FIELDS,
    QUARANTINE,
    SILVER,
    USER_ENGAGEMENT_GOLD,
)
from vhlake.pipeline.engagement import ENGAGEMENT_SQL, FIRST_SEEN_SQL
from vhlake.pipeline.error_types import ERROR_TYPE_SQL
from vhlake.pipeline.expectations import DEFAULT_EXPECTATIONS, Expectation
from vhlake.pipeline.gold import GOLD_SQL

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def spark_type(arrow: pa.DataType) -> str:
    """The Spark SQL type of an Arrow type (the table contracts' types)."""
    if pa.types.is_map(arrow):
        return f"MAP<{spark_type(arrow.key_type)}, {spark_type(arrow.item_type)}>"
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        return f"ARRAY<{spark_type(arrow.value_type)}>"
    if pa.types.is_struct(arrow):
        return f"STRUCT<{', '.join(f'{f.name}: {spark_type(f.type)}' for f in arrow)}>"
    if pa.types.is_timestamp(arrow):
        return "TIMESTAMP"
    simple = {
        pa.string(): "STRING",
        pa.large_string(): "STRING",
        pa.large_binary(): "BINARY",
        pa.binary(): "BINARY",
        pa.int64(): "BIGINT",
        pa.int32(): "INT",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
        pa.date32(): "DATE",
    }
    return simple[arrow]


def schema_ddl(schema: pa.Schema) -> str:
    """An Arrow schema as a Spark DDL schema string."""
    return ", ".join(f"`{field.name}` {spark_type(field.type)}" for field in schema)


def payload_ddl() -> str:
    """The payload's typed fields as a Spark DDL schema (for ``from_json``), from the table contract."""
    return schema_ddl(pa.schema(PAYLOAD_FIELDS))


def to_spark(duckdb_sql: str) -> str:
    """DuckDB SQL in Spark's dialect. ``quantile_cont`` becomes Spark's exact ``percentile``: one call per
    column for all its quantiles (one buffer of the column's values, not one per quantile).
    ``count(DISTINCT x)`` becomes the size of ``collect_set(x)``: the same count (NULLs left out), in
    the one aggregation, where a distinct aggregate makes Spark group by (keys, x) first and carry every
    other aggregate's buffer through it (a ``FILTER`` goes to the ``collect_set``)."""
    return _spark_sql(sqlglot.parse_one(duckdb_sql, read="duckdb"))


def _distinct_count(count: exp.Count, where: exp.Where | None = None) -> exp.Expression:
    """``count(DISTINCT x) [FILTER (WHERE ...)]`` as ``size(collect_set(x) [FILTER (WHERE ...)])``."""
    (column,) = count.this.expressions
    values: exp.Expression = exp.Anonymous(this="collect_set", expressions=[column])
    if where is not None:
        values = exp.Filter(this=values, expression=where)
    distinct = exp.Anonymous(this="size", expressions=[values])
    return exp.Cast(this=distinct, to=exp.DataType.build("BIGINT"))


def _is_distinct_count(node: exp.Expr) -> TypeGuard[exp.Count]:
    return isinstance(node, exp.Count) and isinstance(node.this, exp.Distinct)


def _spark_sql(tree: exp.Expr) -> str:
    """A parsed DuckDB statement (``to_spark``) as Spark SQL."""
    quantiles: dict[str, list[str]] = {}
    for node in tree.find_all(exp.PercentileCont):
        quantiles.setdefault(node.this.sql(), []).append(node.expression.sql())

    def spark_node(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.PercentileCont):
            wanted = quantiles[node.this.sql()]
            position = wanted.index(node.expression.sql())
            fractions = exp.Array(expressions=[sqlglot.parse_one(q) for q in wanted])
            values = exp.Anonymous(this="percentile", expressions=[node.this.copy(), fractions])
            return exp.Anonymous(this="element_at", expressions=[values, exp.Literal.number(position + 1)])
        if isinstance(node, exp.Filter) and _is_distinct_count(node.this):
            return _distinct_count(node.this, node.expression)
        if _is_distinct_count(node):
            return _distinct_count(node)
        return node

    return tree.transform(spark_node).sql(dialect="spark")


def quarantine_reason(expectations: Sequence[Expectation]) -> str:
    """A Spark expression naming the first quarantine rule an event breaks (NULL: it passes)."""
    rules = [e for e in expectations if e.action == "quarantine"]
    whens = " ".join(f"WHEN NOT coalesce(({to_spark(e.predicate)}), false) THEN '{e.name}'" for e in rules)
    return f"CASE {whens} END" if rules else "CAST(NULL AS STRING)"


def _payload_columns(prefix: str) -> str:
    return ", ".join(f"{prefix}{field.name}" for field in PAYLOAD_FIELDS)


# Passed bronze rows as the job events the fold reads (JOB_EVENTS' columns but job_date): payload typed,
# the embedded pipeline's 60-bit md5 lookup keys.
EVENTS_SQL = """
SELECT job_id, event_id, event_type, `timestamp`, user_id, marketplace, category,
    {payload_columns},
    ingestion_time, source, source_offset,
    CAST(conv(substr(md5(job_id), 1, 15), 16, 10) AS BIGINT) AS job_key,
    CAST(conv(substr(md5(event_id), 1, 15), 16, 10) AS BIGINT) AS event_key
FROM (SELECT *, from_json(payload, '{payload}') AS p FROM {source})
"""

# First received copy per event_id: bronze order, ingestion time then source position.
FIRST_COPIES_SQL = """
SELECT * FROM (
    SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY ingestion_time, source, source_offset) AS copy
    FROM {source}
) WHERE copy = 1
"""

# One silver row per job from its (deduplicated, typed) events, in one aggregation: a job's first start and
# last terminal event are filtered min_by/max_by (NULL without one, as an outer join with them would give),
# so the events are shuffled and sorted by job once, not once per part and again for two joins.
FOLD_SQL = """
WITH typed AS (
    SELECT job_id, event_id, event_type, `timestamp` AS ts, user_id, marketplace, category,
        struct({payload_columns}) AS p
    FROM {source}
), jobs AS (
    SELECT job_id,
        min_by(struct(ts, user_id, marketplace, category, p), struct(ts, event_id))
            FILTER (WHERE event_type = 'validation_started') AS s,
        max_by(struct(ts, event_type, user_id, marketplace, category, p), struct(ts, event_id))
            FILTER (WHERE event_type <> 'validation_started') AS t,
        min(ts) AS first_ts,
        min_by(marketplace, struct(ts, event_id)) AS any_marketplace
    FROM typed GROUP BY job_id
)
SELECT
    job_id,
    coalesce(s.user_id, t.user_id) AS user_id,
    coalesce(s.marketplace, t.marketplace, any_marketplace) AS marketplace,
    coalesce(s.category, t.category) AS category,
    coalesce(t.p.ruleset, s.p.ruleset) AS ruleset,
    CASE t.event_type WHEN 'validation_completed' THEN 'success' WHEN 'validation_failed' THEN 'failed'
        ELSE 'running' END AS status,
    t.p.total_rows AS total_rows,
    t.p.valid_rows AS valid_rows,
    t.p.invalid_rows AS invalid_rows,
    t.p.error_types AS error_types,
    CASE WHEN t.p.processing_time_ms >= 0 THEN t.p.processing_time_ms END AS processing_time_ms,
    coalesce(t.p.file_size_bytes, s.p.file_size_bytes) AS file_size_bytes,
    coalesce(t.p.s3_path, s.p.s3_path) AS s3_path,
    coalesce(s.ts, first_ts) AS created_at,
    t.ts AS completed_at,
    to_date(coalesce(s.ts, first_ts)) AS created_date,
    :updated_at AS updated_at
FROM jobs
"""


def check(
    bronze: DataFrame, expectations: Sequence[Expectation] = DEFAULT_EXPECTATIONS
) -> tuple[DataFrame, DataFrame]:
    """(passed, quarantine): bronze rows that meet the expectations, and the rows of the quarantine table."""
    checked = bronze.selectExpr("*", f"{quarantine_reason(expectations)} AS reason")
    quarantine = checked.where("reason IS NOT NULL").selectExpr(
        *QUARANTINE.schema.names[:-1], "to_date(ingestion_time) AS ingestion_date"
    )
    return checked.where("reason IS NULL").drop("reason"), quarantine


def job_events(passed: DataFrame, *, among: DataFrame | None = None) -> DataFrame:
    """The first received copy of each event that passed, typed as the fold reads it. ``among``: the
    rows ``passed`` was taken from (see :func:`first_copies`)."""
    spark = passed.sparkSession  # the frame's own: inside foreachBatch, the micro-batch's session
    firsts = first_copies(passed, among=among)
    return spark.sql(
        EVENTS_SQL.format(source="{frame}", payload=payload_ddl(), payload_columns=_payload_columns("p.")),
        frame=firsts,
    )


# Up to this many repeated event ids, the rows holding them are picked out with a broadcast of the ids
# (a map-side filter) and only those are ordered; past it, every row is.
BROADCAST_REPEATS = 200_000


def first_copies(events: DataFrame, *, among: DataFrame | None = None) -> DataFrame:
    """The first received copy of each ``event_id`` among ``events`` (bronze rows or job events).

    Copies are few: the ids seen more than once are found from the ``event_id`` column alone, and only
    their rows are shuffled and sorted by the window (whole rows, payloads and all, were: the most
    expensive step of a micro-batch). ``among``, rows that ``events`` is a subset of, is where the ids
    are counted when reading its ``event_id`` is cheaper (bronze's column, where ``events`` are the rows
    that passed the expectations, which read the payloads): an id repeated there and not in ``events``
    only sends its one row through the window, which keeps it."""
    from pyspark.sql.functions import broadcast

    spark = events.sparkSession
    repeated = (
        (events if among is None else among).groupBy("event_id").count().where("count > 1").select("event_id")
    )
    repeated = repeated.localCheckpoint(eager=True)
    count = repeated.count()
    if count == 0:
        return events
    if count > BROADCAST_REPEATS:
        return spark.sql(FIRST_COPIES_SQL.format(source="{frame}"), frame=events).drop("copy")
    # <=>: a NULL event_id is one id to the window too
    ids = broadcast(repeated.withColumnRenamed("event_id", "_repeated"))
    copies = events.join(ids, events["event_id"].eqNullSafe(ids["_repeated"]), "left_semi")
    once = events.join(ids, events["event_id"].eqNullSafe(ids["_repeated"]), "left_anti")
    firsts = spark.sql(FIRST_COPIES_SQL.format(source="{frame}"), frame=copies).drop("copy")
    return once.unionByName(firsts)


def fold(events: DataFrame, *, updated_at: datetime) -> DataFrame:
    """Silver rows (one per job) from the jobs' typed events."""
    text = FOLD_SQL.format(source="{frame}", payload_columns=_payload_columns(""))
    return events.sparkSession.sql(text, args={"updated_at": updated_at}, frame=events).select(
        *SILVER.schema.names
    )


def bronze_to_silver(
    bronze: DataFrame,
    *,
    updated_at: datetime,
    expectations: Sequence[Expectation] = DEFAULT_EXPECTATIONS,
) -> tuple[DataFrame, DataFrame]:
    """(silver, quarantine) from bronze rows: expectations, first received copy per event_id, fold."""
    passed, quarantine = check(bronze, expectations)
    return fold(job_events(passed), updated_at=updated_at), quarantine


def _over_frame(sql: str, table: str) -> str:
    """``sql`` reading ``{frame}`` (a DataFrame passed to ``spark.sql``) where it read ``table``."""
    return _over_frames(sql, {table: "frame"})


def _over_frames(sql: str, frames: dict[str, str]) -> str:
    """``sql`` reading ``{name}`` (DataFrames passed to ``spark.sql`` by name) where it read the table
    ``frames`` maps to that name."""
    tree = sqlglot.parse_one(sql, read="spark")
    for node in tree.find_all(exp.Table):
        if node.name in frames:
            node.set("this", exp.to_identifier(f"__{frames[node.name]}__"))
    text = tree.sql(dialect="spark")
    for name in frames.values():
        text = text.replace(f"__{name}__", f"{{{name}}}")
    return text


GOLD_SPARK_SQL = _over_frame(to_spark(GOLD_SQL), "jobs")


def silver_to_gold(silver: DataFrame, *, updated_at: datetime) -> DataFrame:
    """Gold from silver: the embedded pipeline's GOLD_SQL, in Spark's dialect."""
    rows = silver.sparkSession.sql(GOLD_SPARK_SQL, args={"updated_at": updated_at}, frame=silver)
    return rows.select(*GOLD.schema.names)


# DuckDB's unnest(map_entries(m)) becomes Spark's explode(map_entries(m)): one row per entry, none for a
# NULL or empty map, as in DuckDB; the struct's key and value fields are read alike in both.
ERROR_TYPE_SPARK_SQL = _over_frame(to_spark(ERROR_TYPE_SQL), "jobs")


def silver_to_error_types(silver: DataFrame, *, updated_at: datetime) -> DataFrame:
    """error_type_daily_gold from silver: the embedded pipeline's ERROR_TYPE_SQL, in Spark's dialect."""
    rows = silver.sparkSession.sql(ERROR_TYPE_SPARK_SQL, args={"updated_at": updated_at}, frame=silver)
    return rows.select(*ERROR_TYPE_GOLD.schema.names)


def _engagement_spark_sql() -> str:
    """ENGAGEMENT_SQL in Spark's dialect, reading the frames ``{jobs}``, ``{pairs}`` and ``{first_seen}``:
    its windows are counted with ``lag``, a running ``sum`` and equi-joins, which Spark runs as they are."""
    frames = {"jobs": "jobs", "pairs": "pairs", "first_seen": "first_seen"}
    return _over_frames(to_spark(ENGAGEMENT_SQL), frames)


ENGAGEMENT_SPARK_SQL = _engagement_spark_sql()
FIRST_SEEN_SPARK_SQL = _over_frame(to_spark(FIRST_SEEN_SQL), "jobs")
# What user_engagement_daily_gold needs of silver.
ENGAGEMENT_INPUTS = ["marketplace", "user_id", "created_date"]


def first_seen(silver: DataFrame) -> DataFrame:
    """Each (marketplace, user_id)'s first ``created_date`` among ``silver``'s rows (the embedded
    ``FIRST_SEEN_SQL``): pass all of silver's rows of the users concerned."""
    spark = silver.sparkSession
    return spark.sql(FIRST_SEEN_SPARK_SQL, frame=silver.select(*ENGAGEMENT_INPUTS))


def silver_to_engagement(
    silver: DataFrame,
    *,
    updated_at: datetime,
    first_seen_of: DataFrame | None = None,
    pairs: DataFrame | None = None,
) -> DataFrame:
    """user_engagement_daily_gold rows from silver: the embedded ``user_engagement_daily`` in Spark, with
    its contract. ``silver`` holds every silver row of each pair's marketplace created in ``[date - 27,
    date]``; ``first_seen_of`` each user's first date over all of silver (None: from ``silver`` itself);
    ``pairs`` the (marketplace, date) rows to emit (None: every one in ``silver``, right only when it is
    all of silver for its marketplaces). A pair without jobs on its date yields no row."""
    spark = silver.sparkSession
    jobs = silver.select(*ENGAGEMENT_INPUTS)
    if first_seen_of is None:
        first_seen_of = first_seen(jobs)
    if pairs is None:
        pairs = jobs.selectExpr("marketplace", "created_date AS date").distinct()
    rows = spark.sql(
        ENGAGEMENT_SPARK_SQL,
        args={"updated_at": updated_at},
        jobs=jobs,
        pairs=pairs.select("marketplace", "date"),
        first_seen=first_seen_of.select("marketplace", "user_id", "first_date"),
    )
    return rows.select(*USER_ENGAGEMENT_GOLD.schema.names)


def build(bronze: DataFrame, out: str, *, fmt: str = "parquet", as_tables: bool = False) -> dict[str, int]:
    """The whole batch chain: write quarantine, silver and the gold tables under ``out/<layer>/<table>`` (or, with
    ``as_tables``, into the tables ``out.<table>``: ``out`` is then ``catalog.schema``); row counts."""
    now = datetime.now(UTC)
    silver, quarantine = bronze_to_silver(bronze, updated_at=now)
    silver = silver.cache()
    gold = silver_to_gold(silver, updated_at=now)
    errors = silver_to_error_types(silver, updated_at=now)
    engagement = silver_to_engagement(silver, updated_at=now)
    counts = {}
    for table, rows in (
        (QUARANTINE, quarantine),
        (SILVER, silver),
        (GOLD, gold),
        (ERROR_TYPE_GOLD, errors),
        (USER_ENGAGEMENT_GOLD, engagement),
    ):
        writer = rows.write.mode("overwrite").format(fmt).partitionBy(*table.partition_by)
        if as_tables:
            writer.saveAsTable(f"{out}.{table.name}")
        else:
            writer.save(f"{out.rstrip('/')}/{table.relative_path}")
        counts[table.name] = rows.count()
    return counts

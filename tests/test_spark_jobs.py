"""The PySpark jobs compute what the embedded pipeline computes: same bronze in, same silver, gold and
quarantine out (floats to 1e-9 relative: the engines sum in different orders)."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from conftest import build_analytics_lake, make_silver_job, ordered_rows, silver_table
from test_engagement_gold import UPDATED, awkward_silver, day_of, random_silver, reference
from vhlake.lake.delta import Lake
from vhlake.lake.tables import (
    ANOMALIES,
    BRONZE,
    ERROR_TYPE_GOLD,
    GOLD,
    ML_MODELS,
    QUARANTINE,
    SILVER,
    USER_ENGAGEMENT_GOLD,
    TableDef,
)
from vhlake.pipeline.engagement import first_seen, user_engagement_daily

TODAY = date(2026, 11, 27)
pyspark = pytest.importorskip("pyspark", reason="the spark extra is installed by make and CI")


ENGAGEMENT_KEYS = ["marketplace", "date"]


def same(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    assert len(ours) == len(theirs)
    for mine, other in zip(ours, theirs, strict=True):
        assert mine.keys() == other.keys()
        for column, value in mine.items():
            if isinstance(value, float) and other[column] is not None:
                assert math.isclose(value, other[column], rel_tol=1e-9), (column, mine, other)
            elif isinstance(value, list):  # a map: entries in any order
                assert sorted(value) == sorted(other[column] or []), (column, mine)
            else:
                assert value == other[column], (column, mine, other)


def written(out: Path, table: TableDef) -> pa.Table:
    partitioning = ds.partitioning(
        pa.schema([table.schema.field(n) for n in table.partition_by]), flavor="hive"
    )
    data = ds.dataset(out / table.relative_path, format="parquet", partitioning=partitioning).to_table()
    return data.select(table.schema.names).cast(table.schema)


def test_spark_jobs_give_the_embedded_pipelines_tables(spark: Any, tmp_path: Path) -> None:
    from vhlake.spark.jobs import build

    lake: Lake = build_analytics_lake(tmp_path, jobs=1_500, seed=21)
    root = lake.table_uri(BRONZE)
    files = lake.local_files(BRONZE)
    assert files
    bronze = spark.read.option("basePath", root).parquet(*files)
    out = tmp_path / "spark"
    counts = build(bronze, str(out), fmt="parquet")

    derived = (SILVER, GOLD, ERROR_TYPE_GOLD, QUARANTINE)
    ours = {t.name: pa.table(lake.open(t).to_pyarrow_table()) for t in derived}  # type: ignore[union-attr]
    engagement = embedded_engagement(ours[SILVER.name])
    assert counts == {name: table.num_rows for name, table in ours.items()} | {
        USER_ENGAGEMENT_GOLD.name: len(engagement)
    }
    same(ordered_rows(ours[SILVER.name], ["job_id"]), ordered_rows(written(out, SILVER), ["job_id"]))
    same(
        ordered_rows(ours[GOLD.name], ["date", "marketplace", "category"]),
        ordered_rows(written(out, GOLD), ["date", "marketplace", "category"]),
    )
    # Error types exactly: counts, sums and one division each, the same in either engine.
    error_keys = ["date", "marketplace", "category", "error_type"]
    assert ordered_rows(written(out, ERROR_TYPE_GOLD), error_keys) == ordered_rows(
        ours[ERROR_TYPE_GOLD.name], error_keys
    )
    assert ours[ERROR_TYPE_GOLD.name].num_rows > 0
    # Engagement exactly, against the embedded transform over the embedded engine's silver.
    assert ordered_rows(written(out, USER_ENGAGEMENT_GOLD), ENGAGEMENT_KEYS) == engagement
    assert engagement
    quarantined = written(out, QUARANTINE).select(["source", "source_offset", "reason"])
    assert ordered_rows(quarantined, ["source", "source_offset"]) == ordered_rows(
        ours[QUARANTINE.name].select(["source", "source_offset", "reason"]), ["source", "source_offset"]
    )
    assert ours[QUARANTINE.name].num_rows > 0 and ours[SILVER.name].num_rows > 1_000
    assert min(ours[GOLD.name]["date"].to_pylist()) < date(2026, 11, 27)


def silver_jobs(days: int, per_day: int, *, anomalies: int, seed: int) -> tuple[pa.Table, dict[str, str]]:
    """Finished jobs over ``days`` days ending TODAY, and ``anomalies`` injected on the last day
    (slow 30x, erroring 90%, huge 1000x in the usual time): the table and job_id → kind."""
    rng = np.random.default_rng(seed)
    count = days * per_day
    day = np.repeat(np.arange(days), per_day)
    hour = np.clip(rng.normal(14, 3.5, count), 0, 23.99)
    created = [datetime.combine(TODAY - timedelta(days=int(days - 1 - d)), time(), UTC) + timedelta(hours=float(h))
               for d, h in zip(day, hour, strict=True)]  # fmt: skip
    rows = np.exp(rng.normal(7, 1.0, count)).astype(np.int64) + 1
    ms = (rows * np.exp(rng.normal(0.7, 0.3, count))).astype(np.int64)
    error = rng.beta(2, 30, count)
    kinds: dict[str, str] = {}
    last_day = np.flatnonzero(day == days - 1)
    for n, i in enumerate(rng.choice(last_day, anomalies, replace=False)):
        kind = ("slow", "erroring", "huge")[n % 3]
        kinds[f"j{i}"] = kind
        if kind == "slow":
            ms[i] *= 30
        elif kind == "erroring":
            error[i] = 0.9
        else:
            rows[i] *= 1000
    table = pa.table(
        {
            "job_id": [f"j{i}" for i in range(count)],
            "marketplace": rng.choice(["shopee", "magalu"], count),
            "status": ["success"] * count,
            "total_rows": rows,
            "invalid_rows": (error * rows).astype(np.int64),
            "processing_time_ms": ms,
            "created_at": pa.array(created, pa.timestamp("us", tz="UTC")),
            "created_date": pa.array([c.date() for c in created], pa.date32()),
        }
    )
    return table, kinds


def test_the_spark_ml_job_finds_the_injected_jobs(spark: Any) -> None:
    from vhlake.spark.ml import score_jobs

    silver, kinds = silver_jobs(10, 3_000, anomalies=60, seed=4)
    flagged = score_jobs(spark, spark.createDataFrame(silver), today=TODAY, job_days=0).toArrow()
    found = set(flagged["job_id"].to_pylist())
    for kind in ("slow", "erroring", "huge"):
        injected = {job for job, k in kinds.items() if k == kind}
        assert len(found & injected) >= 0.95 * len(injected), kind
    normal_flagged = len(found - set(kinds))
    assert normal_flagged <= 0.005 * 3_000  # the last day's normal jobs
    assert set(flagged["detector"].to_pylist()) <= {"kmeans-distance", "kmeans-small-cluster"}


def test_the_spark_ml_job_writes_the_tables_vhlake_ml_score_writes(spark: Any) -> None:
    from vhlake.spark.ml import anomaly_rows, model_row, score_jobs

    silver, kinds = silver_jobs(10, 600, anomalies=12, seed=8)
    at = datetime(2026, 11, 27, 4, tzinfo=UTC)
    flagged = score_jobs(spark, spark.createDataFrame(silver), today=TODAY, job_days=0)
    rows = anomaly_rows(flagged, scored_at=at).toArrow().cast(ANOMALIES.schema)
    assert rows.num_rows == flagged.count() > 0
    assert set(kinds) <= set(rows["job_id"].to_pylist())  # the injected jobs, at least
    first = rows.to_pylist()[0]
    assert first["reason"].startswith(f"job {first['job_id']}: {first['metric']}")
    assert set(rows["scored_at"].to_pylist()) == {at}
    assert set(rows["baseline"].to_pylist()) == set(rows["baseline_days"].to_pylist()) == {None}  # jobs: none
    model = model_row(
        spark, today=TODAY, train_days=28, k=8, scored=600, flagged=rows.num_rows, trained_at=at
    )
    (recorded,) = model.toArrow().cast(ML_MODELS.schema).to_pylist()
    assert dict(recorded["metrics"]) == {
        "jobs_scored": 600.0,
        "anomalies": float(rows.num_rows),
        "anomaly_share": rows.num_rows / 600,
    }
    assert recorded["train_start"] == TODAY - timedelta(days=28) and recorded["model_type"] == "job_anomalies"


def test_vhlake_spark_build_writes_the_tables(spark: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vhlake.cli.app import app

    lake = build_analytics_lake(tmp_path, jobs=300, seed=5)
    out = tmp_path / "spark-out"
    result = CliRunner().invoke(app, ["--lake", lake.uri, "spark", "build", "--out", str(out)])
    assert result.exit_code == 0, result.output
    silver = pa.table(lake.open(SILVER).to_pyarrow_table())  # type: ignore[union-attr]
    assert f"{SILVER.name}: {silver.num_rows:,} rows" in result.output
    assert written(out, SILVER).num_rows == silver.num_rows


def engagement_silver() -> pa.Table:
    """Silver with the awkward cases (NULL users, a user in two marketplaces, window edges, a day of jobs
    without users), random jobs, and a late job created 45 days before a user's first one."""
    silver = [*awkward_silver(), *random_silver(random.Random(31), 400)]
    first = min((j for j in silver if j["marketplace"] == "br" and j["user_id"] == "u3"), key=day_of)
    late = make_silver_job("late", first["created_at"] - timedelta(days=45), marketplace="br", user_id="u3")
    return silver_table([*silver, late])


def embedded_engagement(silver: pa.Table) -> list[dict[str, Any]]:
    """The embedded pure transform over all of ``silver``."""
    con = duckdb.connect()
    gold = user_engagement_daily(con, silver, first_seen=first_seen(con, silver), updated_at=UPDATED)
    return ordered_rows(gold, ENGAGEMENT_KEYS)


def test_spark_engagement_is_the_embedded_transforms_row_for_row(spark: Any) -> None:
    from vhlake.spark.jobs import silver_to_engagement

    silver = engagement_silver()
    built = silver_to_engagement(spark.createDataFrame(silver), updated_at=UPDATED).toArrow()
    ours = ordered_rows(built.cast(USER_ENGAGEMENT_GOLD.schema), ENGAGEMENT_KEYS)
    # Exactly: counts and one division per row, the same in either engine.
    assert ours == embedded_engagement(silver)
    assert set(built["updated_at"].to_pylist()) == {UPDATED}
    # The contract read literally agrees, and the data has the cases it is about.
    literal = reference(silver.to_pylist())
    assert ours == [literal[pair] for pair in sorted(literal)]
    assert any(r["active_users"] == 0 and r["jobs_per_active_user"] is None for r in ours)
    (late,) = [j for j in silver.to_pylist() if j["job_id"] == "late"]
    (late_row,) = [r for r in ours if (r["marketplace"], r["date"]) == ("br", late["created_date"])]
    assert late_row["new_users"] >= 1

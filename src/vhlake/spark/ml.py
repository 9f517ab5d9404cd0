"""The job anomaly detector as a Spark ML job (VectorAssembler, StandardScaler, K-Means), for Databricks.

The same detector as ``vhlake ml score`` (ml/job_clusters.py). The features come from the same SQL
(query/sql/job_features.sql, written in the Databricks dialect). Scoring is the same: how many of its
cluster's own standard deviations a job lies out on its most extreme feature, an anomaly at 6, and the
seed's small-cluster rule only for clusters under 0.5% of the training jobs. The clusters themselves
come from Spark's K-Means, not scikit-learn's, so the two agree on what is far out, not on every cluster
id (tests/test_spark_ml.py holds the Spark job to the same recall and false-positive bound).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow as pa

from vhlake.lake.tables import ANOMALIES, ML_MODELS, SILVER
from vhlake.query.statements import statement

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# The model's inputs, as ml/job_clusters.py computes them, in Spark SQL.
INPUTS = {
    "hour_sin": "sin(2 * pi() * hour_of_day / 24)",
    "hour_cos": "cos(2 * pi() * hour_of_day / 24)",
    "weekday_sin": "sin(2 * pi() * day_of_week / 7)",
    "weekday_cos": "cos(2 * pi() * day_of_week / 7)",
    "log_total_rows": "ln(1 + total_rows)",
    "log_processing_ms_per_row": "ln(greatest(processing_time_ms, 0.5) / total_rows)",
    "error_rate": "error_rate",
    "log_previous_hour_jobs": "ln(1 + previous_hour_jobs)",
}
THRESHOLD = 6.0
MIN_SPREAD = 0.25
MIN_CLUSTER_SHARE = 0.005


def job_features(spark: SparkSession, silver: DataFrame, *, since: date, until: date) -> DataFrame:
    """Finished jobs created in [since, until) with the detector's inputs (the embedded engine's SQL)."""
    silver.createOrReplaceTempView(SILVER.name)
    features = spark.sql(
        statement("job_features"), args={"since": since, "until": until, "sample_below": "g"}
    )
    return features.selectExpr(
        "*", *(f"CAST({sql} AS DOUBLE) AS input_{name}" for name, sql in INPUTS.items())
    )


def score_jobs(
    spark: SparkSession,
    silver: DataFrame,
    *,
    today: date,
    train_days: int = 28,
    job_days: int = 1,
    k: int = 8,
) -> DataFrame:
    """The anomalous jobs of the last ``job_days`` days (and today), learning from ``train_days``: job_id,
    marketplace, date, metric (the worst input), z_score, detector."""
    from pyspark.ml import Pipeline
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.feature import StandardScaler, VectorAssembler
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    tomorrow = today + timedelta(days=1)
    training = job_features(spark, silver, since=today - timedelta(days=train_days), until=tomorrow).cache()
    model = Pipeline(
        stages=[
            VectorAssembler(inputCols=[f"input_{name}" for name in INPUTS], outputCol="inputs"),
            StandardScaler(inputCol="inputs", outputCol="scaled", withMean=True, withStd=True),
            KMeans(featuresCol="scaled", predictionCol="cluster", k=k, seed=0),
        ]
    ).fit(training)
    centres = model.stages[-1].clusterCenters()  # type: ignore[attr-defined]
    n = len(INPUTS)

    def scaled(frame: DataFrame) -> DataFrame:
        columns = [F.col("v")[i].alias(f"s{i}") for i in range(n)]
        return model.transform(frame).withColumn("v", vector_to_array(F.col("scaled"))).select("*", *columns)

    spread = (
        scaled(training)
        .groupBy("cluster")
        .agg(F.count("*").alias("members"), *(F.stddev_pop(f"s{i}").alias(f"sd{i}") for i in range(n)))
    )
    total = training.count()
    recent = scaled(job_features(spark, silver, since=today - timedelta(days=job_days), until=tomorrow))
    pulls = [
        F.abs(
            F.col(f"s{i}")
            - F.element_at(F.array(*(F.lit(float(c[i])) for c in centres)), F.col("cluster") + 1)
        )
        / F.greatest(F.col(f"sd{i}"), F.lit(MIN_SPREAD))
        for i in range(n)
    ]
    small = F.col("members") < F.lit(max(2.0, MIN_CLUSTER_SHARE * total))
    scored = recent.join(spread, "cluster").select(
        "job_id", "marketplace", F.col("created_date").alias("date"), small.alias("small"),
        F.array(*pulls).alias("pulls"),
    )  # fmt: skip
    names = F.array(*(F.lit(name) for name in INPUTS))
    worst = F.array_position(F.col("pulls"), F.array_max("pulls"))
    return scored.select(
        "job_id",
        "marketplace",
        "date",
        F.element_at(names, worst.cast("int")).alias("metric"),
        F.when(F.col("small"), F.lit(THRESHOLD)).otherwise(F.array_max("pulls")).alias("z_score"),
        F.when(F.col("small"), F.lit("kmeans-small-cluster"))
        .otherwise(F.lit("kmeans-distance"))
        .alias("detector"),
    ).where(F.col("z_score") >= THRESHOLD)


def anomaly_rows(flagged: DataFrame, *, scored_at: datetime) -> DataFrame:
    """Jobs :func:`score_jobs` flagged, as rows of the anomalies table (what ``vhlake ml score`` writes)."""
    from pyspark.sql import functions as F

    return flagged.select(
        "marketplace",
        "date",
        "metric",
        F.lit(None).cast("double").alias("observed"),
        F.lit(None).cast("double").alias("expected"),
        "z_score",
        "detector",
        F.format_string(
            "job %s: %s %.1f of its cluster's standard deviations out", "job_id", "metric", "z_score"
        ).alias("reason"),
        F.lit(scored_at).alias("scored_at"),
        "job_id",
        F.lit(None).cast("string").alias("baseline"),  # a job has no daily baseline
        F.lit(None).cast("int").alias("baseline_days"),
    ).select(*ANOMALIES.schema.names)


def model_row(
    spark: SparkSession,
    *,
    today: date,
    train_days: int,
    k: int,
    scored: int,
    flagged: int,
    trained_at: datetime,
) -> DataFrame:
    """The training run as a row of ml_models, as ``vhlake ml score`` records its own."""
    metrics = [("jobs_scored", float(scored)), ("anomalies", float(flagged))]
    if scored:
        metrics.append(("anomaly_share", flagged / scored))
    row = {
        "model_version": f"spark-kmeans-jobs-{trained_at:%Y%m%dT%H%M%S}",
        "model_type": "job_anomalies",
        "trained_at": trained_at,
        "train_start": today - timedelta(days=train_days),
        "train_end": today,
        "parameters": json.dumps({"engine": "spark", "k": k, "inputs": list(INPUTS), "threshold": THRESHOLD}),
        "metrics": metrics,
    }
    return spark.createDataFrame(pa.Table.from_pylist([row], schema=ML_MODELS.schema))

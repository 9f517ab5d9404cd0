"""vhlake databricks render: DDL generated from the contracts, checked; drift and bad bundles are caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vhlake.cli.app import app
from vhlake.lake.tables import BRONZE, GOLD, SILVER
from vhlake.spark import deploy, validate
from vhlake.spark.deploy import alert_queries, statements


def test_the_rendered_deployment_checks_out_and_needs_no_credentials() -> None:
    assert validate.problems(statements(), alert_queries()) == []
    result = CliRunner().invoke(app, ["databricks", "render", "--catalog", "vh", "--schema", "prod"])
    assert result.exit_code == 0, result.output
    assert f"CREATE TABLE IF NOT EXISTS vh.prod.{SILVER.name}" in result.output
    assert "FROM vh.prod.marketplace_daily_metrics_gold" in result.output  # the alert queries, qualified


def test_the_ddl_carries_the_contracts_partitioning_properties_filters_and_grants() -> None:
    ddl = statements()
    bronze = next(s for s in ddl if f".{BRONZE.name} (" in s)
    assert "PARTITIONED BY (event_date)" in bronze and "'delta.enableChangeDataFeed' = 'true'" in bronze
    filtered = [s for s in ddl if "SET ROW FILTER" in s]
    assert any(SILVER.name in s for s in filtered) and any(GOLD.name in s for s in filtered)
    assert not any(BRONZE.name in s for s in filtered)
    analyst = [s for s in ddl if s.endswith("TO `analyst`") and " ON TABLE " in s]
    assert analyst and all(s.startswith("GRANT SELECT ON") for s in analyst)
    assert not any(BRONZE.name in s for s in analyst)


def test_drift_between_ddl_and_contract_is_reported() -> None:
    ddl = [
        s.replace("  status STRING NOT NULL,\n", "") if f".{SILVER.name} (" in s else s for s in statements()
    ]
    assert any(SILVER.name in p and "differ from the contract" in p for p in validate.problems(ddl, {}))
    assert any(
        "not a statement" in p for p in validate.problems([*statements(), "VACUUM everything now"], {})
    )


def test_a_bundle_job_whose_script_is_missing_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "databricks.yml"
    broken.write_text(
        "bundle: {name: vhlake}\n"
        "resources: {jobs: {j: {tasks: [{task_key: t, spark_python_task: {python_file: ./jobs/nope.py}}]}}}\n"
    )
    monkeypatch.setattr(deploy, "BUNDLE", broken)
    monkeypatch.setattr(validate, "BUNDLE", broken)
    assert validate.problems(statements(), {}) == [
        "databricks.yml: job j runs ./jobs/nope.py, which does not exist"
    ]


def test_every_bundle_job_script_compiles() -> None:
    jobs = deploy.bundle()["resources"]["jobs"]
    assert set(jobs) == {"vhlake_pipeline", "vhlake_job_anomalies"}
    for job in jobs.values():
        for task in job["tasks"]:
            script = deploy.BUNDLE.parent / task["spark_python_task"]["python_file"]
            compile(script.read_text(encoding="utf-8"), str(script), "exec")

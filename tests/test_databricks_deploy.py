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
    found = validate.problems(statements(), {})
    assert "databricks.yml: job j runs ./jobs/nope.py, which does not exist" in found
    assert any("alerts.yml differs from the alert rules" in p for p in found)  # this bundle has none


def test_every_bundle_job_script_compiles() -> None:
    jobs = deploy.bundle()["resources"]["jobs"]
    assert set(jobs) == {"vhlake_ingest", "vhlake_pipeline", "vhlake_job_anomalies"}
    for job in jobs.values():
        for task in job["tasks"]:
            script = deploy.BUNDLE.parent / task["spark_python_task"]["python_file"]
            compile(script.read_text(encoding="utf-8"), str(script), "exec")


def a_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, alerts: str, job: str) -> None:
    """The repository's bundle with its alerts file and one job replaced."""
    (tmp_path / "resources").mkdir(parents=True)
    (tmp_path / "resources" / "alerts.yml").write_text(alerts)
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "run.py").write_text("")
    (tmp_path / "databricks.yml").write_text(
        f"bundle: {{name: vhlake}}\ninclude: [resources/*.yml]\nresources: {{jobs: {{j: {job}}}}}\n"
    )
    for module in (deploy, validate):
        monkeypatch.setattr(module, "BUNDLE", tmp_path / "databricks.yml")
        monkeypatch.setattr(module, "ALERTS_FILE", tmp_path / "resources" / "alerts.yml")


def test_the_bundles_alerts_are_the_alert_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alerts = deploy.bundle()["resources"]["alerts"]
    assert set(alerts) == {"vhlake_high_error_rate", "vhlake_processing_delays"}
    high = alerts["vhlake_high_error_rate"]
    assert "FROM ${var.catalog}.${var.schema}.marketplace_daily_metrics_gold" in high["query_text"]
    assert high["evaluation"]["comparison_operator"] == "GREATER_THAN"
    assert high["evaluation"]["threshold"]["value"]["double_value"] == 0.1
    assert high["schedule"]["quartz_cron_schedule"] == "0 0/5 * * * ?"

    job = "{name: j, tasks: [{task_key: t, spark_python_task: {python_file: ./jobs/run.py}}]}"
    stale = deploy.alerts_yaml().replace("double_value: 0.1", "double_value: 0.2")
    a_bundle(tmp_path, monkeypatch, alerts=stale, job=job)
    assert [p for p in validate.problems(statements(), {}) if "differs from the alert rules" in p]
    result = CliRunner().invoke(app, ["databricks", "render", "--write-alerts"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "resources" / "alerts.yml").read_text() == deploy.alerts_yaml()
    assert validate.problems(statements(), {}) == []


def test_bundle_resources_databricks_would_refuse_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    typo = "{name: j, tasks: [{task_key: t, spark_python_taks: {python_file: ./jobs/run.py}}]}"
    a_bundle(tmp_path, monkeypatch, alerts=deploy.alerts_yaml(), job=typo)
    assert validate.problems(statements(), {}) == [
        "databricks.yml: job j: Unexpected field 'spark_python_taks' for class Task"
    ]
    bad_alert = deploy.alerts_yaml().replace("GREATER_THAN", "BIGGER", 1)
    a_bundle(tmp_path / "again", monkeypatch, alerts=bad_alert, job=typo.replace("taks", "task"))
    found = validate.problems(statements(), {})
    assert any("alert vhlake_high_error_rate: 'BIGGER' is not a valid ComparisonOperator" in p for p in found)


@pytest.mark.parametrize(
    ("schedule", "quartz"),
    [
        ("every 5m", "0 0/5 * * * ?"),
        ("every 2h", "0 0 0/2 * * ?"),
        ("every 30s", "0/30 * * * * ?"),
        ("*/10 * * * *", "0 */10 * * * ?"),
        ("0 3 * * 1-5", "0 0 3 ? * 2-6"),  # Monday to Friday: cron counts from Sunday = 0, Quartz from 1
        ("15 6 * * 0", "0 15 6 ? * 1"),
    ],
)
def test_alert_schedules_become_quartz_cron(schedule: str, quartz: str) -> None:
    assert deploy.quartz_cron(schedule) == quartz


def test_a_schedule_quartz_cannot_express_is_refused() -> None:
    with pytest.raises(ValueError, match="no Quartz equivalent"):
        deploy.quartz_cron("every 90m")

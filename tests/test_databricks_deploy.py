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


REPO = Path(__file__).resolve().parents[1]
# What a job needs to install vhlake: the wheel the bundle's artifact builds from the repository.
ARTIFACT = f"artifacts: {{vhlake: {{type: whl, build: python -m build --wheel, path: {REPO}}}}}\n"
WHEEL = f"{REPO}/dist/*.whl"


def a_job(
    task: str = "spark_python_task: {python_file: ./jobs/run.py}",
    *,
    environment_key: str = "environment_key: default,",
    dependencies: str = f"['{WHEEL}']",
    version: str = "environment_version: '4'",
) -> str:
    """A one-task job in the bundle's YAML, run in an environment that installs the built wheel."""
    environment = f"{{environment_key: default, spec: {{{version}, dependencies: {dependencies}}}}}"
    return f"{{name: j, tasks: [{{task_key: t, {environment_key} {task}}}], environments: [{environment}]}}"


def a_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, alerts: str, job: str, artifact: str = ARTIFACT
) -> None:
    """The repository's bundle with its alerts file, its artifact and one job replaced."""
    (tmp_path / "resources").mkdir(parents=True)
    (tmp_path / "resources" / "alerts.yml").write_text(alerts)
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "run.py").write_text("")
    (tmp_path / "databricks.yml").write_text(
        f"bundle: {{name: vhlake}}\ninclude: [resources/*.yml]\n{artifact}resources: {{jobs: {{j: {job}}}}}\n"
    )
    for module in (deploy, validate):
        monkeypatch.setattr(module, "BUNDLE", tmp_path / "databricks.yml")
        monkeypatch.setattr(module, "ALERTS_FILE", tmp_path / "resources" / "alerts.yml")


def test_the_bundles_alerts_are_the_alert_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alerts = deploy.bundle()["resources"]["alerts"]
    assert set(alerts) == {
        "vhlake_high_error_rate",
        "vhlake_processing_delays",
        "vhlake_reconciliation_imbalance",
    }
    high = alerts["vhlake_high_error_rate"]
    assert "FROM ${var.catalog}.${var.schema}.marketplace_daily_metrics_gold" in high["query_text"]
    assert high["evaluation"]["comparison_operator"] == "GREATER_THAN"
    assert high["evaluation"]["threshold"]["value"]["double_value"] == 0.1
    assert high["schedule"]["quartz_cron_schedule"] == "0 0/5 * * * ?"

    stale = deploy.alerts_yaml().replace("double_value: 0.1", "double_value: 0.2")
    a_bundle(tmp_path, monkeypatch, alerts=stale, job=a_job())
    assert [p for p in validate.problems(statements(), {}) if "differs from the alert rules" in p]
    result = CliRunner().invoke(app, ["databricks", "render", "--write-alerts"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "resources" / "alerts.yml").read_text() == deploy.alerts_yaml()
    assert validate.problems(statements(), {}) == []


def test_every_bundle_job_installs_the_wheel_the_bundle_builds() -> None:
    config = deploy.bundle()
    (artifact,) = config["artifacts"].values()
    assert artifact["type"] == "whl" and "build" in artifact
    assert (deploy.BUNDLE.parent / artifact["path"]).resolve() == REPO
    for job in config["resources"]["jobs"].values():
        environments = {e["environment_key"]: e["spec"] for e in job["environments"]}
        assert {task["environment_key"] for task in job["tasks"]} <= set(environments)
        for spec in environments.values():
            assert spec["dependencies"] == ["../dist/*.whl"]  # vhlake's own wheel, never the index's
            assert spec["environment_version"] != "1"  # Python 3.10 there: vhlake needs 3.11+


@pytest.mark.parametrize(
    ("artifact", "job", "reported"),
    [
        (ARTIFACT, a_job(dependencies="['vhlake[spark]']"), "job j, environment default, installs "
         "vhlake[spark] from the package index, where anyone can publish that name: install ../"),
        (ARTIFACT, a_job(dependencies="[' VHLake == 0.1']"), "installs VHLake == 0.1 from the package index"),
        (ARTIFACT, a_job(dependencies="[pyyaml]"), "job j, environment default, does not install ../"),
        (ARTIFACT, a_job(environment_key=""), "job j, task t, has no environment_key: it gets no vhlake"),
        (ARTIFACT, a_job(version="client: '1'"), "environment version 1 runs Python 3.10, vhlake needs 3.11"),
        ("", a_job(), "no wheel artifact (artifacts: {name: {type: whl, build: ..., path: ...}})"),
        (ARTIFACT.replace("build: python -m build --wheel, ", ""), a_job(), "artifact vhlake has no build"),
        (ARTIFACT.replace(str(REPO), str(REPO / "src")), a_job(dependencies=f"['{REPO}/src/dist/*.whl']"),
         f"artifact vhlake builds {REPO / 'src'}, which has no pyproject.toml of vhlake"),
    ],
)  # fmt: skip
def test_a_bundle_whose_jobs_would_not_install_the_built_wheel_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, artifact: str, job: str, reported: str
) -> None:
    a_bundle(tmp_path, monkeypatch, alerts=deploy.alerts_yaml(), job=job, artifact=artifact)
    found = validate.problems(statements(), {})
    assert len(found) == 1 and reported in found[0], found


def test_bundle_resources_databricks_would_refuse_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    typo = a_job("spark_python_taks: {python_file: ./jobs/run.py}")
    a_bundle(tmp_path, monkeypatch, alerts=deploy.alerts_yaml(), job=typo)
    assert validate.problems(statements(), {}) == [
        "databricks.yml: job j: Unexpected field 'spark_python_taks' for class Task"
    ]
    bad_alert = deploy.alerts_yaml().replace("GREATER_THAN", "BIGGER", 1)
    a_bundle(tmp_path / "again", monkeypatch, alerts=bad_alert, job=a_job())
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

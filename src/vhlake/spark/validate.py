"""Checks on what ``vhlake databricks render`` deploys: every statement parses as Databricks SQL, every
table's DDL matches its contract, and the Asset Bundle names jobs whose files exist."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from vhlake.lake.tables import ALL_TABLES
from vhlake.spark.deploy import ALERTS_FILE, BUNDLE, alert_resources, bundle
from vhlake.spark.jobs import spark_type

# Unity Catalog statements sqlglot does not model (it keeps them as opaque commands): checked by shape.
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_QUALIFIED = rf"{_NAME}\.{_NAME}\.{_NAME}"
_SHAPES = (
    re.compile(rf"CREATE CATALOG IF NOT EXISTS {_NAME}"),
    re.compile(rf"CREATE VOLUME IF NOT EXISTS {_QUALIFIED}"),
    re.compile(rf"ALTER TABLE {_QUALIFIED} SET ROW FILTER {_QUALIFIED} ON \({_NAME}\)"),
    re.compile(rf"GRANT USE CATALOG ON CATALOG {_NAME} TO `{_NAME}`"),
)


def problems(ddl: list[str], alerts: dict[str, str]) -> list[str]:
    found = []
    tables = {}
    quiet = logging.getLogger("sqlglot")
    level, quiet.level = quiet.level, logging.ERROR  # its "falling back to a command" notes
    try:
        for statement in [*ddl, *alerts.values()]:
            try:
                tree = sqlglot.parse_one(statement, read="databricks")
            except sqlglot.errors.ParseError as exc:
                found.append(f"does not parse as Databricks SQL: {statement[:60]}…: {exc}")
                continue
            if isinstance(tree, exp.Command) and not any(s.fullmatch(statement) for s in _SHAPES):
                found.append(f"not a statement this deployment knows: {statement[:80]}")
            if isinstance(tree, exp.Create) and tree.kind == "TABLE":
                tables[tree.this.this.name] = tree
    finally:
        quiet.setLevel(level)
    for table in ALL_TABLES:
        created = tables.get(table.name)
        if created is None:
            found.append(f"no CREATE TABLE for {table.name}")
            continue
        columns = {c.name: c.args["kind"].sql(dialect="databricks") for c in created.this.expressions}
        wanted = {f.name: spark_type(f.type) for f in table.schema}
        if columns != wanted:
            found.append(f"{table.name}: DDL columns {columns} differ from the contract {wanted}")
    found += _bundle_problems()
    return found


def _bundle_problems() -> list[str]:
    if not BUNDLE.exists():
        return [f"no Asset Bundle at {BUNDLE} (it ships with the repository: run from its root)"]
    found = []
    config = bundle()
    if not config.get("bundle", {}).get("name"):
        found.append("databricks.yml: bundle.name is missing")
    jobs = config.get("resources", {}).get("jobs", {})
    if not jobs:
        found.append("databricks.yml: no jobs")
    for name, job in jobs.items():
        for task in job.get("tasks", []):
            script = task.get("spark_python_task", {}).get("python_file")
            if script and not (BUNDLE.parent / script).exists():
                found.append(f"databricks.yml: job {name} runs {script}, which does not exist")
    found += _wheel_problems(config.get("artifacts") or {}, jobs)
    found += _schema_problems(config.get("resources", {}))
    if config.get("resources", {}).get("alerts") != alert_resources()["resources"]["alerts"]:
        found.append(f"{ALERTS_FILE} differs from the alert rules: vhlake databricks render --write-alerts")
    return found


# pip requirement names compare case-insensitively, runs of -_. as one (PEP 503).
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
# Serverless environment versions whose Python vhlake (3.11+) cannot install into.
_TOO_OLD_PYTHON = {"1": "3.10"}


def _wheel_problems(artifacts: dict[str, Any], jobs: dict[str, Any]) -> list[str]:
    """Every job must install vhlake from the wheel the bundle builds from this repository: no vhlake is
    published on the package index, and anyone could publish one under that name."""
    wheels = {name: a for name, a in artifacts.items() if a.get("type") == "whl"}
    if not wheels:
        return ["databricks.yml: no wheel artifact (artifacts: {name: {type: whl, build: ..., path: ...}})"]
    found = []
    for name, artifact in wheels.items():
        if not artifact.get("build"):
            found.append(f"databricks.yml: artifact {name} has no build command")
        project = BUNDLE.parent / artifact.get("path", ".")
        if _project_name(project) != "vhlake":
            found.append(
                f"databricks.yml: artifact {name} builds {project}, which has no pyproject.toml of vhlake"
            )
    # `python -m build` and `uv build` write the wheel to dist/ under the project.
    built = {_normalised(BUNDLE.parent / a.get("path", ".") / "dist" / "*.whl") for a in wheels.values()}
    for job_name, job in jobs.items():
        environments = {e.get("environment_key"): e.get("spec") or {} for e in job.get("environments", [])}
        for task in job.get("tasks", []):
            if not task.get("environment_key"):
                found.append(
                    f"databricks.yml: job {job_name}, task {task.get('task_key')}, has no "
                    "environment_key: it gets no vhlake"
                )
        for key, spec in environments.items():
            where = f"databricks.yml: job {job_name}, environment {key},"
            found += _environment_problems(where, spec, built)
    return found


def _environment_problems(where: str, spec: dict[str, Any], built: set[str]) -> list[str]:
    version = str(spec.get("environment_version") or spec.get("client") or "")
    if version in _TOO_OLD_PYTHON:
        return [
            f"{where} environment version {version} runs Python {_TOO_OLD_PYTHON[version]}, vhlake needs 3.11+"
        ]
    dependencies = [str(d) for d in spec.get("dependencies", [])]
    wheel = " or ".join(sorted(os.path.relpath(b, BUNDLE.parent) for b in built))  # as the YAML says it
    for dependency in dependencies:
        if "/" not in dependency and _requirement_name(dependency) == "vhlake":
            return [
                f"{where} installs {dependency.strip()} from the package index, where anyone can publish "
                f"that name: install {wheel}, the wheel the bundle builds"
            ]
    if not built & {_normalised(BUNDLE.parent / d) for d in dependencies if "/" in d}:
        return [f"{where} does not install {wheel}, the wheel the bundle builds"]
    return []


def _requirement_name(requirement: str) -> str:
    matched = _REQUIREMENT_NAME.match(requirement)
    return re.sub(r"[-_.]+", "-", matched.group(1)).lower() if matched else ""


def _project_name(directory: Path) -> str | None:
    try:
        project = tomllib.loads((directory / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    name = project.get("project", {}).get("name")
    return name if isinstance(name, str) else None


def _normalised(path: Path) -> str:
    """A path with its `..` resolved by text (it has a glob in it, so it may match no file yet)."""
    return os.path.normpath(path)


def _schema_problems(resources: dict[str, Any]) -> list[str]:
    """Jobs and alerts that Databricks' own bundle models (databricks-bundles) refuse: unknown or missing
    fields, wrong types, values outside an enum."""
    try:
        from databricks.bundles.alerts import Alert
        from databricks.bundles.jobs import Job
    except ImportError:
        return ["cannot check the bundle's resources: pip install 'vhlake[databricks]' (databricks-bundles)"]
    found = []
    for kind, model in (("jobs", Job), ("alerts", Alert)):
        for name, resource in resources.get(kind, {}).items():
            try:
                model.from_dict(resource)
            except (ValueError, TypeError, KeyError) as exc:
                found.append(f"databricks.yml: {kind[:-1]} {name}: {exc}")
    return found

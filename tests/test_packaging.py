"""vhlake as users get it: the sdist and wheel built from what the repository carries (no `make`, no npm),
installed into clean virtual environments, alone or with one extra, each running the command that extra
exists for; and the dashboard served from such an install draws its charts in chromium.

Slow (virtual environments installed from PyPI, pip's cache makes repeats fast): see README's Developing section.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry_server import SchemaRegistryServer
from servers import Tansu, free_port, wait_for_port
from test_dashboard import CHROMIUM, browser, wait_until  # noqa: F401 (the fixture)
from vhlake.samples import SampleSpec, generate_lines, write_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
REPO = Path(__file__).resolve().parents[1]
VENDOR = "vhlake/dashboard/static/vendor"
# What the dashboard needs at run time, and the licences that must travel with the charting library.
VENDORED = ("echarts.min.js", "echarts.LICENSE", "echarts.NOTICE", "echarts.LICENSE-d3", "zrender.LICENSE")
ECHARTS_VERSION = "6.1.0"


def checked(command: list[str], *, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """Run ``command``; its stdout, or a failure showing what it printed."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, (
        f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return done.stdout


def repository_copy(into: Path) -> Path:
    """The files a clean checkout of this commit (plus files not yet committed) has: git's tracked and
    not-ignored files. Anything `make` or a local build left behind (ignored files) is not there."""
    listed = checked(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO)
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def clean_env(venv: Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without what would leak the repository's code or settings into a
    clean install (PYTHONPATH, the active venv, VHLAKE_/KAFKA_/DATABRICKS_ settings)."""
    leaks = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in leaks and not k.startswith(("VHLAKE_", "KAFKA_", "DATABRICKS_"))
    }
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env | extra


def new_venv(path: Path) -> Path:
    """An empty venv: no pip of its own (this process's pip installs into it, skipping ensurepip)."""
    checked([sys.executable, "-m", "venv", "--without-pip", str(path)], cwd=path.parent, env=clean_env())
    return path


def pip_install(venv: Path, *requirements: str) -> None:
    """Install into ``venv`` from PyPI (pip's cache makes repeats fast); no bytecode compiled up front,
    which halves the time of these throwaway installs."""
    command = [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "--quiet"]
    checked([*command, "--no-compile", *requirements], cwd=venv.parent, env=clean_env())


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with `build` (pypa's front end): its `python -m build` is what builds vhlake's packages."""
    venv = new_venv(tmp_path_factory.mktemp("builder") / "venv")
    pip_install(venv, "build")
    return venv


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory, builder: Path) -> dict[str, Path]:
    """The sdist and the wheel `python -m build` makes from the repository's files (the wheel is built
    from the sdist, so whatever it carries came through the sdist)."""
    root = tmp_path_factory.mktemp("dist")
    source = repository_copy(root / "source")
    out = root / "out"
    checked(
        [str(builder / "bin/python"), "-m", "build", "--outdir", str(out), str(source)],
        cwd=root,
        env=clean_env(),
    )
    (sdist,) = out.glob("vhlake-*.tar.gz")
    (wheel,) = out.glob("vhlake-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def installed(dist: dict[str, Path], where: Path, extra: str | None) -> Path:
    """A fresh venv with the wheel installed, alone or with one extra (dependencies from PyPI)."""
    venv = new_venv(where / f"venv-{extra or 'base'}")
    pip_install(venv, f"{dist['wheel']}[{extra}]" if extra else str(dist["wheel"]))
    return venv


def vhlake(venv: Path, *args: str, cwd: Path, **env: str) -> str:
    return checked([str(venv / "bin/vhlake"), *args], cwd=cwd, env=clean_env(venv, **env))


def events_file(path: Path, jobs: int, seed: int = 7) -> tuple[Path, int]:
    """A small sample feed (fixed seed and end date), and how many jobs it has."""
    lines = generate_lines(SampleSpec(jobs=jobs, seed=seed))
    write_jsonl(lines, path)
    job_ids = {json.loads(line)["job_id"] for line in lines["line"].to_pylist()}
    return path, len(job_ids)


def rows_by_table(output: str) -> dict[str, int]:
    """`table: 1,234 rows` pairs from what `vhlake spark ...` prints."""
    return {t: int(n.replace(",", "")) for t, n in re.findall(r"(\w+): ([\d,]+) rows", output)}


def count(venv: Path, lake: Path, table: str, cwd: Path) -> int:
    answer = vhlake(
        venv, "--lake", str(lake), "query", f"SELECT count(*) AS n FROM {table}", "-f", "json", cwd=cwd
    )
    return int(json.loads(answer)[0]["n"])


def test_sdist_and_wheel_carry_the_pinned_charting_library_and_its_licences(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        in_wheel = {Path(n).name: n for n in wheel.namelist() if n.startswith(VENDOR + "/")}
        assert set(VENDORED) <= set(in_wheel), sorted(in_wheel)
        library = wheel.read(in_wheel["echarts.min.js"])
    with tarfile.open(dist["sdist"]) as sdist:
        in_sdist = {Path(n).name for n in sdist.getnames() if f"/src/{VENDOR}/" in n}
    assert set(VENDORED) <= in_sdist, sorted(in_sdist)
    assert (
        f'version = "{ECHARTS_VERSION}"'.encode() in library[:200_000] or ECHARTS_VERSION.encode() in library
    )
    assert len(library) > 500_000  # the full minified build, not a placeholder


def test_installed_wheel_serves_a_dashboard_whose_charts_render(
    dist: dict[str, Path],
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    venv = installed(dist, tmp_path, None)
    for optional in ("pandas", "pyspark", "sklearn", "confluent_kafka"):  # the base install is really bare
        probe = [str(venv / "bin/python"), "-c", f"import {optional}"]
        assert subprocess.run(probe, capture_output=True, check=False).returncode, optional
    lake = tmp_path / "lake"
    vhlake(venv, "--lake", str(lake), "demo", "--events", "600", cwd=tmp_path)
    key = vhlake(venv, "--lake", str(lake), "keys", "create", "--scope", "read", cwd=tmp_path).split()[-1]
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [str(venv / "bin/vhlake"), "--lake", str(lake), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=clean_env(venv),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, server, timeout_s=60)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        for view, ready in (("overview", "overview"), ("marketplace", "shown")):  # the landing view first
            page.goto(f"http://127.0.0.1:{port}/?view={view}#key={key}")
            wait_until(  # polled from outside: the page's policy forbids what wait_for_function evaluates
                page,
                f"(window.vhlake && window.vhlake.{ready}) || !document.getElementById('error').hidden",
                timeout_s=60,
            )
            assert page.text_content("#error") == "", (view, page.text_content("#error"))
        for chart in ("chart-volume", "chart-errors", "chart-times"):
            drawn = page.evaluate(
                f"""() => {{
                    const canvas = document.querySelector('#{chart} canvas');
                    if (!canvas || canvas.width === 0) return 0;
                    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                    let painted = 0;
                    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
                    return painted;
                }}"""
            )
            assert drawn > 1000, f"{chart} has {drawn} painted pixels"
        volume = page.evaluate("window.vhlake.charts['chart-volume'].getOption().series[0].data")
        # today's bar, when the demo reaches today, is drawn partial: an object with its value
        assert sum(v["value"] if isinstance(v, dict) else v for v in volume) > 0
        assert errors == []
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/vendor/echarts.min.js", timeout=10) as got:
            assert got.status == 200
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_spark_extra_alone_runs_the_streaming_jobs(dist: dict[str, Path], tmp_path: Path) -> None:
    venv = installed(dist, tmp_path, "spark")
    events, jobs = events_file(tmp_path / "events.jsonl", jobs=40)
    out = vhlake(
        venv, "spark", "run-all", "--events", str(events), "--out", str(tmp_path / "out"), cwd=tmp_path
    )
    landed = rows_by_table(out)
    assert landed["validation_results_silver"] == jobs, out
    assert landed["marketplace_daily_metrics_gold"] > 0, out


def test_kafka_extra_alone_publishes_and_ingests_through_a_broker(
    dist: dict[str, Path], tmp_path: Path
) -> None:
    """Plain and Confluent-framed (the extra brings confluent-kafka's registry client and serializer)."""
    venv = installed(dist, tmp_path, "kafka")
    events, _ = events_file(tmp_path / "events.jsonl", jobs=30)
    others, _ = events_file(tmp_path / "others.jsonl", jobs=30, seed=8)  # other ids: not taken for re-sends
    sent = len(events.read_bytes().splitlines())
    framed_sent = len(others.read_bytes().splitlines())
    broker = Tansu(tmp_path / "tansu.log").start()
    try:
        topic = broker.create_topic("validation-events", partitions=2)
        kafka = {
            "VHLAKE_EVENT_LOG": "kafka",
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "KAFKA_VALIDATION_TOPIC": topic,
        }
        lake = tmp_path / "lake"
        vhlake(venv, "--lake", str(lake), "publish", str(events), cwd=tmp_path, **kafka)
        with SchemaRegistryServer() as registry:
            framed = {
                **kafka,
                "KAFKA_SCHEMA_REGISTRY_URL": registry.url,
                "VHLAKE_KAFKA_PUBLISH_FRAMED": "true",
            }
            vhlake(venv, "--lake", str(lake), "publish", str(others), cwd=tmp_path, **framed)
            vhlake(
                venv, "--lake", str(lake), "ingest", "--kafka", "--until-idle", "3", cwd=tmp_path, **framed
            )
            assert "no difference" in vhlake(venv, "schema", "diff", cwd=tmp_path, **framed)
    finally:
        broker.stop()
    assert count(venv, lake, "validation_events_bronze", tmp_path) == sent + framed_sent
    assert count(venv, lake, "validation_events_bronze WHERE schema_id IS NOT NULL", tmp_path) == framed_sent


def test_ml_extra_alone_scores_jobs_with_kmeans(dist: dict[str, Path], tmp_path: Path) -> None:
    venv = installed(dist, tmp_path, "ml")
    lake = tmp_path / "lake"
    vhlake(venv, "--lake", str(lake), "demo", "--events", "3000", cwd=tmp_path)
    out = vhlake(venv, "--lake", str(lake), "ml", "score", cwd=tmp_path)
    assert "(kmeans-jobs-" in out, out  # the job detector was fitted (scikit-learn), not skipped


def test_pandas_extra_alone_returns_dataframes(dist: dict[str, Path], tmp_path: Path) -> None:
    venv = installed(dist, tmp_path, "pandas")
    events, _ = events_file(tmp_path / "events.jsonl", jobs=20)
    lake = tmp_path / "lake"
    vhlake(venv, "--lake", str(lake), "ingest", str(events), cwd=tmp_path)
    script = (
        "from vhlake import bootstrap; from vhlake.settings import Settings\n"
        "df = bootstrap.build_query_engine(Settings()).execute_df("
        "'SELECT count(*) AS n FROM validation_events_bronze')\n"
        "import pandas; print(isinstance(df, pandas.DataFrame), int(df['n'][0]))"
    )
    out = checked(
        [str(venv / "bin/python"), "-c", script], cwd=tmp_path, env=clean_env(venv, VHLAKE_LAKE_URI=str(lake))
    )
    is_dataframe, rows = out.split()
    assert is_dataframe == "True"
    assert int(rows) == count(venv, lake, "validation_events_bronze", tmp_path) > 0


def test_databricks_extra_alone_checks_the_bundle(dist: dict[str, Path], tmp_path: Path) -> None:
    venv = installed(dist, tmp_path, "databricks")
    # From the repository's root, where the bundle is; exit 0 means no problem was found, including the
    # check of the bundle's jobs and alerts against databricks-bundles' models (without it: exit 1).
    out = vhlake(venv, "databricks", "render", cwd=REPO)
    assert "CREATE TABLE" in out
    checked([str(venv / "bin/python"), "-c", "import databricks.sql"], cwd=tmp_path, env=clean_env(venv))


def vhlake_modules(script: Path) -> set[str]:
    """The vhlake modules a bundle job's script imports, as paths inside a wheel."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return {name.replace(".", "/") + ".py" for name in names if name.split(".")[0] == "vhlake"}


def test_the_databricks_bundles_artifact_builds_the_wheel_its_jobs_install(
    builder: Path, tmp_path: Path
) -> None:
    """What `databricks bundle deploy` does before it uploads: the artifact's build command, run where
    the artifact's path points (from the bundle's directory), in a copy of the repository; every job's
    environment then finds one wheel, pure Python, with every vhlake module the jobs' scripts import."""
    bundle = repository_copy(tmp_path / "source") / "databricks"
    config = yaml.safe_load((bundle / "databricks.yml").read_text(encoding="utf-8"))
    for artifact in config["artifacts"].values():
        # The Databricks CLI runs the build in bash; `python` is the first on PATH, here the builder's.
        checked(["bash", "-ec", artifact["build"]], cwd=bundle / artifact["path"], env=clean_env(builder))
    imported = set().union(*(vhlake_modules(script) for script in (bundle / "jobs").glob("*.py")))
    assert {"vhlake/spark/streams.py", "vhlake/spark/tables.py"} <= imported
    for job in config["resources"]["jobs"].values():
        for environment in job["environments"]:
            wheels = [w for d in environment["spec"]["dependencies"] for w in bundle.glob(d)]
            assert len(wheels) == 1, (environment, wheels)
            # Any Python (3.11+), any platform: the serverless environment's, not the deploying machine's.
            assert wheels[0].name.endswith("-py3-none-any.whl"), wheels[0].name
            with zipfile.ZipFile(wheels[0]) as wheel:
                inside = set(wheel.namelist())
                metadata = wheel.read(next(n for n in inside if n.endswith(".dist-info/METADATA"))).decode()
            assert imported <= inside, sorted(imported - inside)
            assert not [n for n in inside if n.endswith(".so")]
            assert "Requires-Python: >=3.11" in metadata
            required = [
                r for r in metadata.splitlines() if r.startswith("Requires-Dist:") and "extra ==" not in r
            ]
            assert required and not [r for r in required if "pyspark" in r]  # the runtime's Spark is used

"""`vhlake spark run-all --master spark://...` on a Spark standalone cluster (a master and two workers, each
its own process): the executors on the workers run the jobs, and the tables are those local mode lands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import SparkStandalone
from test_spark_jobs import same, written
from test_spark_streaming import comparable
from vhlake.lake.tables import BRONZE, GOLD, JOB_EVENTS, QUARANTINE, REJECTED, SILVER
from vhlake.samples import SampleSpec, generate_lines, write_jsonl

pyspark = pytest.importorskip("pyspark", reason="the spark extra is installed by make and CI")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SparkStandalone]:
    (tmp_path / "cluster").mkdir()
    cluster = SparkStandalone(tmp_path / "cluster", workers=2)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def run_all(events: Path, out: Path, master: str, **env: str) -> str:
    """`vhlake spark run-all` in its own process (its own driver); what it printed."""
    command = [sys.executable, "-m", "vhlake", "spark", "run-all", "--events", str(events), "--out", str(out)]
    done = subprocess.run(
        [*command, "--master", master],
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **env},
        capture_output=True,
        text=True,
        timeout=900,  # a bound on a hang, not a measure of speed
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    return done.stdout


def rows_by_table(output: str) -> dict[str, int]:
    """`table: 1,234 rows` pairs from what `vhlake spark run-all` prints."""
    return {t: int(n.replace(",", "")) for t, n in re.findall(r"(\w+): ([\d,]+) rows", output)}


def tasks_run(work_dir: Path) -> int:
    """Tasks the executors a worker launched ran (their logs are in the worker's work dir)."""
    return sum(log.read_text().count("Running task") for log in work_dir.glob("app-*/*/stderr"))


def test_run_all_on_a_standalone_cluster_lands_what_local_mode_lands(
    cluster: SparkStandalone, tmp_path: Path
) -> None:
    (tmp_path / "events").mkdir()
    events = tmp_path / "events" / "events.jsonl"  # alone in its directory, which the file source lists
    write_jsonl(generate_lines(SampleSpec(jobs=60, seed=5, bad_event_rate=0.05, garbage_rate=0.02)), events)

    # The driver waits for both workers' executors before it schedules anything, so both get tasks.
    wait_for_both = "--conf spark.scheduler.minRegisteredResourcesRatio=1.0 pyspark-shell"
    on_cluster = run_all(events, tmp_path / "cluster-out", cluster.url, PYSPARK_SUBMIT_ARGS=wait_for_both)
    local = run_all(events, tmp_path / "local-out", "local[2]")

    assert [tasks_run(work_dir) > 0 for work_dir in cluster.work_dirs] == [True, True]
    assert rows_by_table(on_cluster) == rows_by_table(local)
    counts = rows_by_table(local)
    assert counts[SILVER.name] == 60 and counts[REJECTED.name] > 0 and counts[QUARANTINE.name] > 0
    for table in (BRONZE, REJECTED, QUARANTINE, SILVER, GOLD):
        theirs = comparable(written(tmp_path / "local-out", table), table)
        same(comparable(written(tmp_path / "cluster-out", table), table), theirs)
    stored = [
        sorted(written(tmp_path / out, JOB_EVENTS)["event_id"].to_pylist())
        for out in ("local-out", "cluster-out")
    ]
    assert stored[0] == stored[1] and stored[0]

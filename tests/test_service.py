"""``vhlake serve`` as a real subprocess: events published to the embedded log or a real Kafka broker
reach gold; SIGTERM and SIGKILL mid-stream then restart leave exact counts; /metrics says what was sent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import rows
from servers import Tansu, free_port
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.events.kafka_publisher import KafkaEventPublisher
from vhlake.events.model import EventType, ValidationEvent, ValidationPayload
from vhlake.events.publisher import EmbeddedLogPublisher
from vhlake.lake.delta import Lake
from vhlake.lake.tables import (
    ALERT_EVENTS,
    BRONZE,
    DATA_QUALITY_METRICS,
    GOLD,
    ML_MODELS,
    RECONCILIATION,
    SILVER,
    USER_ENGAGEMENT_GOLD,
)
from vhlake.service.runner import maintenance_gap

pytestmark = pytest.mark.slow


class Served:
    """One ``vhlake serve`` process on a free port."""

    def __init__(self, lake_dir: Path, log: Path, env: dict[str, str] | None = None, *args: str) -> None:
        self.port = free_port()
        self._command = [
            sys.executable,
            "-m",
            "vhlake",
            "--lake",
            str(lake_dir),
            "serve",
            "--port",
            str(self.port),
            *args,
        ]
        self._env = {**os.environ, **(env or {})}
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Served:
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                self._command, stdout=log, stderr=subprocess.STDOUT, env=self._env
            )
        wait_for(lambda: self._get("/healthz") is not None, "the service to answer /healthz", timeout_s=60)
        return self

    def _get(self, path: str) -> str | None:
        assert self.process is not None
        assert self.process.poll() is None, self._log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return None

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = self._get("/metrics") or ""
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def ready(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """/readyz's status and body, 503 included."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def signal(self, sig: int) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=90)


def wait_for(condition: Callable[[], bool], what: str, *, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def live_jobs(first: int, count: int) -> list[ValidationEvent]:
    """Jobs happening now: started and completed, timestamps a moment ago."""
    now = datetime.now(UTC)
    events = []
    steps: tuple[tuple[EventType, float], ...] = (("validation_started", 2.0), ("validation_completed", 1.0))
    for n in range(first, first + count):
        for kind, offset in steps:
            events.append(
                ValidationEvent(
                    event_id=f"e-{n}-{kind}",
                    event_type=kind,
                    timestamp=now - timedelta(seconds=offset),
                    job_id=f"job-{n}",
                    user_id="u-1",
                    marketplace="shopee",
                    category="moda",
                    payload=ValidationPayload(total_rows=10, processing_time_ms=100 + n % 50),
                )
            )
    return events


def in_gold(lake: Lake, jobs: int) -> bool:
    """Silver has the jobs and gold counts them (gold commits after silver in each batch)."""
    if rows(lake, SILVER).num_rows != jobs:
        return False
    counted: int = sum(rows(lake, GOLD)["total_validations"].to_pylist())
    return counted == jobs


def assert_exact(lake: Lake, jobs: int) -> None:
    bronze = rows(lake, BRONZE)
    real = bronze.filter(pa.compute.not_equal(bronze["source_system"], "vhlake-canary"))
    assert real.num_rows == 2 * jobs
    assert (
        len(set(zip(bronze["source"].to_pylist(), bronze["source_offset"].to_pylist(), strict=True)))
        == bronze.num_rows
    )
    silver = rows(lake, SILVER)
    assert silver.num_rows == jobs and set(silver["status"].to_pylist()) == {"success"}
    assert sum(rows(lake, GOLD)["total_validations"].to_pylist()) == jobs


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def embedded_log(lake_dir: Path) -> Iterator[EmbeddedLogPublisher]:
    publisher = EmbeddedLogPublisher(
        EmbeddedEventLog(lake_dir / "_eventlog" / "validation-events.db", topic="validation-events")
    )
    yield publisher
    publisher.close()


def test_published_events_reach_gold_and_metrics_say_so(
    lake_dir: Path, tmp_path: Path, embedded_log: EmbeddedLogPublisher
) -> None:
    service = Served(
        lake_dir,
        tmp_path / "serve.log",
        {"VHLAKE_RECONCILE_INTERVAL_S": "2"},
        "--canary-every",
        "0.5",
        "--ml-every",
        "2",
        "--lifecycle-every",
        "2",
    ).start()
    try:
        embedded_log.send_batch(live_jobs(0, 300))
        lake = Lake(str(lake_dir))
        wait_for(lambda: in_gold(lake, 300), "300 jobs in gold")
        wait_for(
            lambda: service.metrics().get(("vhlake_canary_lag_seconds", ())) not in (None, 0.0), "a canary"
        )
        metrics = service.metrics()
        assert metrics[("vhlake_events_ingested_total", (("source", "log:validation-events"),))] >= 600
        assert metrics[("vhlake_jobs_upserted_total", ())] >= 300
        assert 0 < metrics[("vhlake_freshness_seconds", (("quantile", "0.95"),))] < 60
        assert 0 < metrics[("vhlake_canary_lag_seconds", ())] < 60
        assert metrics[("vhlake_consumer_lag_messages", (("partition", "0"),))] >= 0
        assert metrics[("vhlake_pipeline_backlog_commits", ())] >= 0
        assert service.ready()["ready"] is True
        # the seed alert rules are evaluated on their schedule inside the service
        wait_for(
            lambda: ("vhlake_last_success_timestamp_seconds", (("step", "alerts"),)) in service.metrics(),
            "the alert rules to be evaluated",
        )
        assert rows(lake, ALERT_EVENTS).num_rows > 0
        # and the models are retrained on theirs: a forecast run and a job detector run (too few jobs)
        wait_for(
            lambda: ("vhlake_last_success_timestamp_seconds", (("step", "ml"),)) in service.metrics(),
            "the models to be retrained",
        )
        assert "forecast" in rows(lake, ML_MODELS)["model_type"].to_pylist()
        # and vhlake maintain's work, between two pipeline runs
        wait_for(
            lambda: ("vhlake_last_success_timestamp_seconds", (("step", "lifecycle"),)) in service.metrics(),
            "retention, vacuum and checkpoints to run",
        )
        # and every event reconciled from the log to gold, canaries included (they stop at bronze)
        wait_for(
            lambda: ("vhlake_reconciliation_last_success_timestamp_seconds", ()) in service.metrics(),
            "a balanced reconciliation",
        )
        assert service.metrics()[("vhlake_reconciliation_imbalance", ())] == 0
        assert rows(lake, RECONCILIATION)["balanced"].to_pylist()[-1] is True
        assert_exact(lake, 300)  # canaries stop at bronze: no canary job in silver or gold
        quality = rows(lake, DATA_QUALITY_METRICS)
        assert {"freshness_p95_s", "reconciliation_imbalances"} <= set(quality["metric"].to_pylist())
        assert service.signal(signal.SIGTERM) == 0
    finally:
        if service.process and service.process.poll() is None:
            service.process.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stopped_mid_stream_then_restarted_counts_are_exact(
    lake_dir: Path, tmp_path: Path, embedded_log: EmbeddedLogPublisher, sig: int
) -> None:
    total_jobs, per_batch = 4_000, 100
    published = threading.Event()

    def publish() -> None:
        for first in range(0, total_jobs, per_batch):
            embedded_log.send_batch(live_jobs(first, per_batch))
            time.sleep(0.1)
        published.set()

    service = Served(lake_dir, tmp_path / "serve.log").start()
    lake = Lake(str(lake_dir))
    writer = threading.Thread(target=publish)
    writer.start()
    wait_for(lambda: rows(lake, SILVER).num_rows > 0, "the first jobs in silver")
    assert not published.is_set(), "the stop must come while events are still being published"
    code = service.signal(sig)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    writer.join()
    restarted = Served(lake_dir, tmp_path / "serve.log").start()
    try:
        wait_for(lambda: in_gold(lake, total_jobs), f"{total_jobs} jobs in gold", timeout_s=120)
        time.sleep(1.5)  # anything extra (a duplicate) would land by now
        assert_exact(lake, total_jobs)
    finally:
        restarted.signal(signal.SIGTERM)


def test_the_service_consumes_kafka(broker: Tansu, topic: str, lake_dir: Path, tmp_path: Path) -> None:
    env = {
        "VHLAKE_EVENT_LOG": "kafka",
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAFKA_VALIDATION_TOPIC": topic,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "VHLAKE_KAFKA_MAX_WAIT_S": "0.3",
    }
    service = Served(lake_dir, tmp_path / "serve.log", env).start()
    try:
        wait_for(lambda: service.ready()["ready"], "readiness (lake and broker)")
        sender = KafkaEventPublisher({"bootstrap.servers": broker.bootstrap}, topic=topic, outbox=None)
        assert {d.status for d in sender.send_batch(live_jobs(0, 500))} == {"delivered"}
        sender.close()
        lake = Lake(str(lake_dir))
        wait_for(lambda: in_gold(lake, 500), "500 jobs in gold")
        assert_exact(lake, 500)
        metrics = service.metrics()
        assert metrics[("vhlake_events_ingested_total", (("source", f"kafka:{topic}"),))] == 1000
        assert metrics[("vhlake_outbox_pending", ())] == 0  # the API's Kafka publisher has nothing waiting
        lags = {labels: v for (name, labels), v in metrics.items() if name == "vhlake_consumer_lag_messages"}
        assert lags and all(v >= 0 for v in lags.values())
    finally:
        assert service.signal(signal.SIGTERM) == 0


def test_serve_works_on_a_lake_erased_with_vacuum(
    lake_dir: Path, tmp_path: Path, embedded_log: EmbeddedLogPublisher, run_cli: Callable[..., Any]
) -> None:
    """The README's flow: ingest a file, run the pipeline, forget a user with --vacuum, then serve."""
    from vhlake.samples import SampleSpec, generate_lines, write_jsonl

    feed = tmp_path / "feed.jsonl"
    write_jsonl(generate_lines(SampleSpec(jobs=200, seed=7)), feed)
    for args in (("ingest", str(feed)), ("pipeline", "run"), ("forget", "--user-id", "user-1", "--vacuum")):
        result = run_cli("--lake", str(lake_dir), *args)
        assert result.exit_code == 0, result.stdout + result.stderr
    lake = Lake(str(lake_dir))
    kept = rows(lake, SILVER).num_rows
    service = Served(lake_dir, tmp_path / "serve.log").start()
    try:
        embedded_log.send_batch(live_jobs(0, 50))
        wait_for(lambda: in_gold(lake, kept + 50), "the new jobs in gold")
        assert "user-1" not in set(rows(lake, SILVER)["user_id"].to_pylist())
        assert service.ready()["ready"] is True
    finally:
        assert service.signal(signal.SIGTERM) == 0


def test_not_ready_while_the_pipeline_keeps_failing(lake_dir: Path, tmp_path: Path) -> None:
    """A bronze commit whose file is gone: every pipeline run fails, and /readyz must say so."""
    from vhlake.ingest.bronze import BronzeIngestor
    from vhlake.samples import SampleSpec, generate_lines, write_jsonl

    feed = tmp_path / "feed.jsonl"
    write_jsonl(generate_lines(SampleSpec(jobs=50, seed=8)), feed)
    lake = Lake(str(lake_dir))
    BronzeIngestor(lake, source_system="test", batch_bytes=1 << 20).ingest_file(feed)
    next(Path(lake.table_uri(BRONZE)).rglob("*.parquet")).unlink()
    service = Served(lake_dir, tmp_path / "serve.log").start()
    try:
        wait_for(lambda: service.readiness()[0] == 503, "/readyz to answer 503")
        status, body = service.readiness()
        assert status == 503 and "pipeline" in body["problems"], body
        assert (
            "FileNotFoundError" in body["problems"]["pipeline"] or "not found" in body["problems"]["pipeline"]
        )
    finally:
        assert service.signal(signal.SIGTERM) == 0


def engagement_follows_silver(lake: Lake) -> bool:
    """user_engagement_daily_gold holds what the plain-Python reference gives over silver as it is."""
    from test_engagement_gold import reference

    stored = {}
    for row in rows(lake, USER_ENGAGEMENT_GOLD).to_pylist():
        row.pop("updated_at")
        stored[(row["marketplace"], row["date"])] = row
    return bool(stored) and stored == reference(rows(lake, SILVER).to_pylist())


def test_the_service_brings_engagement_to_silver_on_its_interval(
    lake_dir: Path, tmp_path: Path, embedded_log: EmbeddedLogPublisher
) -> None:
    service = Served(lake_dir, tmp_path / "serve.log", {"VHLAKE_ENGAGEMENT_INTERVAL_S": "1"}).start()
    try:
        lake = Lake(str(lake_dir))
        embedded_log.send_batch(live_jobs(0, 40))
        wait_for(lambda: in_gold(lake, 40) and engagement_follows_silver(lake), "engagement of 40 jobs")
        embedded_log.send_batch(live_jobs(40, 30))
        wait_for(lambda: in_gold(lake, 70) and engagement_follows_silver(lake), "engagement of 70 jobs")
        steps = service.metrics()
        assert ("vhlake_last_success_timestamp_seconds", (("step", "engagement"),)) in steps
    finally:
        assert service.signal(signal.SIGTERM) == 0


def test_compaction_rounds_are_spaced_to_take_at_most_their_share_of_the_pipeline() -> None:
    assert maintenance_gap(30.0, 0.4, 0.2) == 30.0  # a fast round (local disk): the schedule holds
    assert maintenance_gap(30.0, 15.0, 0.2) == 75.0  # 15 s a round on a slow store: one every 75 s
    for last in (0.0, 1.0, 6.0, 15.0, 60.0):
        gap = maintenance_gap(30.0, last, 0.2)
        assert gap >= 30.0 and last / (gap + last) <= 0.2
    assert maintenance_gap(30.0, 15.0, 0.0) == 30.0  # no share given: the schedule alone

"""The service brings user engagement to silver on its own schedule (``engagement_every_s``), never in
the micro-batches: a stub pipeline records what the service asks of it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from vhlake.lake.delta import Lake
from vhlake.pipeline.runner import RunReport
from vhlake.service.metrics import ServiceMetrics
from vhlake.service.runner import LakeService, ServiceOptions
from vhlake.settings import Settings


class IdleSource:
    name = "idle"

    def run(self, stop: threading.Event, on_batch: Any) -> None:
        stop.wait()


class RecordingPipeline:
    def __init__(self) -> None:
        self.runs: list[bool] = []  # the engagement flag of each run
        self.steps: list[float] = []  # when each engagement step ran

    def run(self, *, stop: threading.Event, engagement: bool = True) -> RunReport:
        self.runs.append(engagement)
        return RunReport(run_id="r", bronze_from=1, bronze_to=1)  # nothing new

    def backlog(self) -> int:
        return 0

    def update_engagement(self) -> bool:
        self.steps.append(time.monotonic())
        return True


def test_engagement_runs_on_its_interval_not_per_micro_batch(tmp_path: Path) -> None:
    pipeline = RecordingPipeline()
    options = ServiceOptions(idle_check_s=0.01, engagement_every_s=0.5, maintenance_every_s=3600)
    service = LakeService(
        Lake(str(tmp_path / "lake")), IdleSource(), pipeline,  # type: ignore[arg-type]
        metrics=ServiceMetrics(), options=options,
    )  # fmt: skip
    started = time.monotonic()
    service.start()
    time.sleep(1.6)
    service.stop()
    assert pipeline.runs and not any(pipeline.runs)  # the micro-batches never compute engagement
    assert pipeline.steps[0] - started < 0.5  # the first step follows the first run
    gaps = [b - a for a, b in zip(pipeline.steps, pipeline.steps[1:], strict=False)]
    assert 2 <= len(pipeline.steps) <= 4 and all(gap >= 0.5 for gap in gaps)
    assert len(pipeline.runs) > 2 * len(pipeline.steps)
    assert service.steps["engagement"].last_success is not None


def test_the_interval_is_a_setting() -> None:
    assert Settings(_env_file=None).engagement_interval_s == 300.0  # type: ignore[call-arg]
    given = Settings(_env_file=None, VHLAKE_ENGAGEMENT_INTERVAL_S=5)  # type: ignore[call-arg]
    assert given.engagement_interval_s == 5.0


class FailingPipeline(RecordingPipeline):
    """Fails every run while ``failing`` is set (the store refuses)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = threading.Event()

    def run(self, *, stop: threading.Event, engagement: bool = True) -> RunReport:
        if self.failing.is_set():
            raise OSError("connection refused")
        return super().run(stop=stop, engagement=engagement)


def test_compaction_waits_until_the_pipeline_succeeds_again(tmp_path: Path) -> None:
    pipeline = FailingPipeline()
    pipeline.failing.set()
    options = ServiceOptions(idle_check_s=0.01, engagement_every_s=3600, maintenance_every_s=0.05)
    service = LakeService(
        Lake(str(tmp_path / "lake")), IdleSource(), pipeline,  # type: ignore[arg-type]
        metrics=ServiceMetrics(), options=options,
    )  # fmt: skip
    service.start()
    try:
        time.sleep(0.5)
        assert service.steps["pipeline"].consecutive_failures > 3
        assert service.steps["maintenance"].last_success is None  # behind failing runs: no compaction
        pipeline.failing.clear()
        deadline = time.monotonic() + 5
        while service.steps["maintenance"].last_success is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        service.stop()
    assert pipeline.runs and service.steps["maintenance"].last_success is not None

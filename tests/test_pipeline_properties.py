"""Any order and any split of the events into batches gives the same silver and gold."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import kill_after_commits, make_event, ordered_rows, rows
from test_pipeline import Lakehouse, end, start
from vhlake.lake.delta import Lake
from vhlake.lake.tables import ERROR_TYPE_GOLD, GOLD, SILVER, USER_ENGAGEMENT_GOLD, USER_FIRST_SEEN
from vhlake.samples import SampleSpec, generate_lines, write_jsonl

TIMES = [f"2026-11-{d}T{h:02d}:00:00-03:00" for d in (26, 27) for h in (1, 22)]


@st.composite
def job_events(draw: st.DrawFn) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for job in range(draw(st.integers(1, 4))):
        name = f"j{job}"
        market = draw(st.sampled_from(["shopee", "magalu"]))
        category = draw(st.sampled_from(["moda", None]))
        if draw(st.booleans()):
            events.append(
                start(
                    name,
                    draw(st.sampled_from(TIMES)),
                    marketplace=market,
                    category=category,
                    user_id=f"u{job % 2}",
                )
            )
        for _ in range(draw(st.integers(0, 2))):
            kind = draw(st.sampled_from(["completed", "failed"]))
            payload = {
                "total_rows": draw(st.integers(0, 50)),
                "processing_time_ms": draw(st.integers(-5, 900)),
            }
            events.append(
                end(name, draw(st.sampled_from(TIMES)), kind=kind, marketplace=market, payload=payload)
            )
    if len(events) > 0 and draw(st.booleans()):
        events.append(dict(draw(st.sampled_from(events))))  # a duplicate delivery
    events.append(make_event(99, job_id=""))  # always something to quarantine
    return events


Rows = list[dict[str, Any]]


def final_tables(
    events: list[dict[str, Any]], cuts: list[int]
) -> tuple[dict[str, dict[str, Any]], Rows, Rows, Rows]:
    """Silver by job, gold, engagement and first dates after ingesting ``events`` in the batches ``cuts``
    makes, each followed by a pipeline run."""
    with tempfile.TemporaryDirectory() as tmp:
        house = Lakehouse(Path(tmp))
        bounds = [0, *sorted(set(cuts)), len(events)]
        for low, high in itertools.pairwise(bounds):
            if high > low:
                house.run(*events[low:high])
        engagement = house.table(USER_ENGAGEMENT_GOLD, ["date", "marketplace"])
        return (
            house.silver(),
            house.gold(),
            engagement,
            house.table(USER_FIRST_SEEN, ["marketplace", "user_id"]),
        )


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=job_events(), data=st.data())
def test_permutations_and_batch_splits_do_not_change_the_result(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    expected = final_tables(events, [])
    shuffled = data.draw(st.permutations(events))
    cuts = data.draw(st.lists(st.integers(0, len(events)), max_size=3))
    # a duplicate's first copy must stay first: re-order only distinct events
    if len({e["event_id"] for e in events}) == len(events):
        assert final_tables(list(shuffled), cuts) == expected
    assert final_tables(events, cuts) == expected


def comparable(lake: Lake) -> tuple[list[dict[str, Any]], ...]:
    return tuple(
        ordered_rows(rows(lake, table), keys)
        for table, keys in (
            (SILVER, ["job_id"]),
            (GOLD, ["date", "marketplace", "category"]),
            (ERROR_TYPE_GOLD, ["date", "marketplace", "category", "error_type"]),
            (USER_ENGAGEMENT_GOLD, ["date", "marketplace"]),
            (USER_FIRST_SEEN, ["marketplace", "user_id"]),
        )
    )


@pytest.mark.slow
def test_kill_9_mid_pipeline_then_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_jsonl(generate_lines(SampleSpec(jobs=600, bad_event_rate=0.01, duplicate_rate=0.02)), path)
    env = {
        **os.environ,
        "VHLAKE_INGEST_BATCH_BYTES": str(16 * 1024),
        "VHLAKE_PIPELINE_VERSIONS_PER_BATCH": "1",
    }
    lakes = [tmp_path / "killed", tmp_path / "reference"]
    for lake in lakes:
        subprocess.run(
            [sys.executable, "-m", "vhlake", "--lake", str(lake), "ingest", str(path)],
            env=env,
            check=True,
            capture_output=True,
        )
    run = [sys.executable, "-m", "vhlake", "--lake", str(lakes[0]), "pipeline", "run"]
    process = subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_after_commits(process, lakes[0] / "gold" / "marketplace_daily_metrics_gold" / "_delta_log", 8)
    rerun = subprocess.run(run, env=env, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    reference = subprocess.run(
        [sys.executable, "-m", "vhlake", "--lake", str(lakes[1]), "pipeline", "run"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert reference.returncode == 0, reference.stderr
    assert comparable(Lake(str(lakes[0]))) == comparable(Lake(str(lakes[1])))

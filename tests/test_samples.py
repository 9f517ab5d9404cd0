"""The sample generator used by the demo and the benchmark."""

from __future__ import annotations

import json
from pathlib import Path

from vhlake.samples import MARKETPLACES, SampleSpec, generate_lines, write_jsonl


def test_generated_feed_has_the_requested_shape(tmp_path: Path) -> None:
    spec = SampleSpec(
        jobs=2_000, running_rate=0.1, duplicate_rate=0.01, bad_event_rate=0.01, garbage_rate=0.005
    )
    path = tmp_path / "feed.jsonl"
    write_jsonl(generate_lines(spec), path)
    lines = path.read_text(encoding="utf-8").splitlines()
    parsed, garbage = [], 0
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            garbage += 1
    clean = 2_000 * 2 - 200  # a start per job, a terminal for ~90% of them
    assert abs(len(lines) - clean * 1.025) < clean * 0.03
    assert garbage > 0
    assert {e["marketplace"] for e in parsed} <= set(MARKETPLACES)
    assert len({e["event_id"] for e in parsed}) < len(parsed)  # duplicate deliveries are there
    assert any(e["event_type"] == "validation_paused" for e in parsed)  # and events that break a rule
    assert all(e["timestamp"].endswith("-03:00") for e in parsed if not e["event_id"].startswith("bad-"))


def test_generation_is_seeded(tmp_path: Path) -> None:
    spec = SampleSpec(jobs=300, bad_event_rate=0.02)
    assert generate_lines(spec) == generate_lines(spec)

"""What one micro-batch costs against the volume of the day it lands in: the service's freshness budget.

    python bench/batch_cost.py --day-events 100000,300000,1000000

A service runs the pipeline on small batches. A batch that completes jobs started earlier the same day (live
traffic: a job's start and its completion arrive seconds to minutes apart) refolds those jobs from their
history, so it reads the day's job events, rewrites the day's silver files holding the jobs and recomputes
the day's gold groups. For each size D, a lake holding one day of D events is built (generated, ingested,
first build) without the completions of ``--batch`` of its jobs; those completions are then ingested and
``vhlake pipeline run`` timed. For contrast, a batch of the same size made of new jobs only (start and
completion together, nothing to refold). Reported per batch: the range's own duration from
``pipeline_runs`` (what freshness waits for), and the CPU seconds of the whole ``vhlake`` process (less
sensitive to a shared machine than wall time; the process's start-up included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from run import BENCH, OUT, machine, measure, vhlake
from vhlake.lake.delta import Lake
from vhlake.lake.tables import PIPELINE_RUNS
from vhlake.samples import SampleSpec, generate_lines, write_jsonl

_DAY_END = datetime(2026, 11, 27, tzinfo=UTC)


def day_of_events(events: int, *, seed: int) -> pa.Table:
    return generate_lines(SampleSpec(jobs=events // 2, seed=seed, end=_DAY_END, days=1))


def held_completions(lines: pa.Table, count: int) -> tuple[pa.Table, pa.Table]:
    """``lines`` without the last ``count`` completions to arrive, and those completions."""
    completed = pc.match_substring(lines["line"], '"event_type":"validation_completed"')
    positions = pc.indices_nonzero(completed)
    held = positions.slice(max(0, len(positions) - count))
    keep = pc.invert(pc.is_in(pa.array(range(lines.num_rows)), value_set=held))
    return lines.filter(keep), lines.take(held)


def timed_run(lake: Path) -> dict[str, float]:
    """``vhlake pipeline run``: the range's duration, the process's CPU seconds and wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    measured = measure(vhlake(lake, "pipeline", "run"), label="pipeline run")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    runs = Lake(str(lake)).dataset(PIPELINE_RUNS).to_table(columns=["started_at", "duration_s"])
    newest = runs.sort_by([("started_at", "descending")])
    return {
        "range_s": round(float(newest["duration_s"][0].as_py()), 3),
        "process_cpu_s": round(cpu, 2),
        "process_wall_s": round(measured.wall_s, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def measure_day(events: int, batch: int) -> dict[str, Any]:
    work = OUT / f"batch-cost-{events}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    lake = work / "lake"
    day, completions = held_completions(day_of_events(events, seed=11), batch)
    write_jsonl(day, work / "day.jsonl")
    write_jsonl(completions, work / "completions.jsonl")
    write_jsonl(day_of_events(batch, seed=12), work / "new-jobs.jsonl")
    measure(vhlake(lake, "ingest", str(work / "day.jsonl")), label="ingest the day")
    measure(vhlake(lake, "pipeline", "run"), label="first build")
    result: dict[str, Any] = {"day_events": events, "batch_events": batch}
    for name in ("new-jobs", "completions"):
        measure(vhlake(lake, "ingest", str(work / f"{name}.jsonl")), label=f"ingest {name}")
        result[name] = timed_run(lake)
        print(f"  {events:,} events that day, a batch of {name}: {result[name]}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return result


def append_results(results: list[dict[str, Any]], path: Path) -> None:
    lines = [
        f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · one micro-batch against its day's volume "
        "(bench/batch_cost.py)",
        f"- machine: {machine()}",
        "",
        "| events that day | batch | new jobs: range s / process CPU s | completions of the day's jobs: "
        "range s / process CPU s | load average |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        new, late = r["new-jobs"], r["completions"]
        lines.append(
            f"| {r['day_events']:,} | {r['batch_events']:,} | {new['range_s']} / {new['process_cpu_s']} "
            f"| {late['range_s']} / {late['process_cpu_s']} | {new['load_avg_1m']} / {late['load_avg_1m']} |"
        )
    with path.open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--day-events", default="100000,300000,1000000", help="events in the day, per lake")
    parser.add_argument("--batch", type=int, default=1_000, help="events in the timed batch")
    parser.add_argument("--json", type=Path, default=OUT / "batch_cost.json")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()
    results = [measure_day(int(n), args.batch) for n in args.day_events.split(",")]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    append_results(results, args.results)


if __name__ == "__main__":
    main()

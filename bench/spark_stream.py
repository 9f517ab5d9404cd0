"""The streaming Spark jobs end to end on local Spark: ``vhlake spark run-all`` over N generated events cut
into files, then again after one more file (the incremental case), each timed with the peak RSS of its
process tree (Spark's JVM included).

    python bench/spark_stream.py --events 1000000 --files 8

No target in the issue: this measures what a user trying the jobs locally gets, and compares with
``vhlake ingest`` + ``vhlake pipeline run`` on the same files.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from run import OUT, machine, measure, report, vhlake
from vhlake.samples import SampleSpec, generate_lines, write_jsonl


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--files", type=int, default=8, help="files the events are cut into (Spark reads one per task)"
    )
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "RESULTS.md")
    args = parser.parse_args()

    work = OUT / f"spark-stream-{args.events}"
    shutil.rmtree(work, ignore_errors=True)
    events, later = work / "events", work / "later"
    events.mkdir(parents=True)
    later.mkdir()
    lines = generate_lines(
        SampleSpec(jobs=args.events // 2, seed=7, bad_event_rate=0.001, garbage_rate=0.001)
    )
    size = -(-lines.num_rows // (args.files + 1))
    for i in range(args.files + 1):
        write_jsonl(
            lines.slice(i * size, size), (events if i < args.files else later) / f"events-{i:03d}.jsonl"
        )

    spark_out = work / "spark"
    run_all = vhlake(work / "unused", "spark", "run-all", "--events", str(events), "--out", str(spark_out))
    first = measure(run_all, label="spark run-all")
    (later / f"events-{args.files:03d}.jsonl").rename(events / f"events-{args.files:03d}.jsonl")
    second = measure(run_all, label="spark run-all, one more file")

    lake = work / "lake"
    ingest = measure(vhlake(lake, "ingest", *map(str, sorted(events.glob("*.jsonl")))), label="vhlake ingest")
    build = measure(vhlake(lake, "pipeline", "run"), label="vhlake pipeline run")
    received = lines.num_rows
    report(
        [
            f"## Streaming Spark jobs, {received:,} events in {args.files + 1} files",
            f"- machine: {machine()}",
            f"- vhlake spark run-all (local[2], Parquet), first {args.files} files: {first.wall_s:.1f} s, "
            f"peak {first.peak_rss_mb:.0f} MB ({received * args.files / (args.files + 1) / first.wall_s:,.0f} events/s)",
            f"- again with one more file ({size:,} events): {second.wall_s:.1f} s, peak {second.peak_rss_mb:.0f} MB",
            f"- embedded, same files: vhlake ingest {ingest.wall_s:.1f} s + pipeline run {build.wall_s:.1f} s, "
            f"peak {max(ingest.peak_rss_mb, build.peak_rss_mb):.0f} MB",
        ],
        args.results,
    )


if __name__ == "__main__":
    main()

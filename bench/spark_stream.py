"""The streaming Spark jobs end to end on local Spark (``vhlake spark run-all``, local[2], Delta through
delta-rs), each run timed with the peak RSS of its process tree (Spark's JVM included) and the machine's
load average, against the targets of issue P14:

    python bench/spark_stream.py throughput --events 1000000   # run-all over N events in 8 files: events/s
    python bench/spark_stream.py incremental                    # one more 100k-event file on a 0.5M and a 4M history
    python bench/spark_stream.py big --gb 1                     # one JSON-lines file of about 1 GB, default driver memory

``incremental`` builds each history with the embedded engine (``vhlake ingest`` + ``vhlake pipeline run``
on the same lake: the engines take turns), then times ``vhlake spark run-all`` over the one new file; the
target is a ratio of at most 1.3 between the two.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from run import OUT, machine, measure, report, vhlake
from vhlake.samples import SampleSpec, generate_lines, write_jsonl


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min)"


def events_files(directory: Path, *, events: int, files: int, seed: int = 7) -> int:
    """``events`` generated events (duplicates, failing events, garbage) cut into ``files`` files."""
    directory.mkdir(parents=True)
    lines = generate_lines(SampleSpec(jobs=events // 2, seed=seed, bad_event_rate=0.001, garbage_rate=0.001))
    size = -(-lines.num_rows // files)
    for i in range(files):
        write_jsonl(lines.slice(i * size, size), directory / f"events-{i:03d}.jsonl")
    return int(lines.num_rows)


def run_all(events: Path, lake: Path) -> list[str]:
    return vhlake(OUT / "unused", "spark", "run-all", "--events", str(events), "--out", str(lake))


def throughput(args: argparse.Namespace) -> list[str]:
    work = OUT / f"spark-throughput-{args.events}"
    shutil.rmtree(work, ignore_errors=True)
    received = events_files(work / "events", events=args.events, files=8)
    before = load()
    first = measure(run_all(work / "events", work / "lake"), label="spark run-all")
    return [
        f"- run-all from scratch, {received:,} events in 8 files: {first.wall_s:.1f} s, "
        f"{received / first.wall_s:,.0f} events/s, peak {first.peak_rss_mb:.0f} MB ({before})"
    ]


# Events a day: the histories differ in how long they are, not in how dense (0.5M events is 30 days).
EVENTS_PER_DAY = 500_000 // 30


def incremental(args: argparse.Namespace) -> list[str]:
    """For each history size: one generated stream at EVENTS_PER_DAY, its first ``history`` events (by
    arrival) built by the embedded engine, the next ``increment`` events as the one more file."""
    lines, walls = [], {}
    for history in args.histories:
        work = OUT / f"spark-incremental-{history}"
        shutil.rmtree(work, ignore_errors=True)
        (work / "history").mkdir(parents=True)
        (work / "new").mkdir()
        total = history + args.increment
        stream = generate_lines(
            SampleSpec(jobs=total // 2, seed=7, days=-(-total // EVENTS_PER_DAY), bad_event_rate=0.001)
        )
        cut = stream.num_rows - args.increment
        files = max(1, history // 500_000)
        size = -(-cut // files)
        for i in range(files):
            write_jsonl(
                stream.slice(i * size, min(size, cut - i * size)), work / "history" / f"h-{i:03d}.jsonl"
            )
        write_jsonl(stream.slice(cut), work / "new" / "new.jsonl")
        lake = work / "lake"
        files_in = sorted((work / "history").glob("*.jsonl"))
        measure(vhlake(lake, "ingest", *map(str, files_in)), label="history: vhlake ingest")
        measure(vhlake(lake, "pipeline", "run"), label="history: vhlake pipeline run")
        before = load()
        more = measure(run_all(work / "new", lake), label="spark run-all, one more file")
        walls[history] = more.wall_s
        lines.append(
            f"- one more file of {args.increment:,} events on a {history:,}-event history "
            f"({-(-total // EVENTS_PER_DAY)} days): {more.wall_s:.1f} s, peak {more.peak_rss_mb:.0f} MB ({before})"
        )
    low, high = min(walls), max(walls)
    lines.append(f"- ratio {high:,} / {low:,} history: {walls[high] / walls[low]:.2f} (target ≤ 1.3)")
    return lines


def big(args: argparse.Namespace) -> list[str]:
    work = OUT / "spark-big"
    shutil.rmtree(work, ignore_errors=True)
    (work / "events").mkdir(parents=True)
    target = int(args.gb * (1 << 30))
    file = work / "events" / "big.jsonl"
    seed = 0
    with file.open("ab") as out:
        while out.tell() < target:  # 500k-event parts appended until the file is large enough
            part = work / f"part-{seed}.jsonl"
            write_jsonl(generate_lines(SampleSpec(jobs=250_000, seed=100 + seed)), part)
            with part.open("rb") as chunk:
                shutil.copyfileobj(chunk, out)
            part.unlink()
            seed += 1
    size = file.stat().st_size
    before = load()
    ingested = measure(run_all(work / "events", work / "lake"), label="spark run-all, one big file")
    return [
        f"- one file of {size / (1 << 30):.2f} GiB ({seed * 500_000:,} events, default driver memory): "
        f"{ingested.wall_s:.1f} s, peak {ingested.peak_rss_mb:.0f} MB ({before}); output: "
        + ingested.output.strip().splitlines()[-1][:300]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("part", choices=["throughput", "incremental", "big"])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--histories", type=int, nargs="+", default=[500_000, 4_000_000])
    parser.add_argument("--increment", type=int, default=100_000)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "RESULTS.md")
    args = parser.parse_args()
    lines = {"throughput": throughput, "incremental": incremental, "big": big}[args.part](args)
    report(
        [f"## Streaming Spark jobs ({args.part}), local[2], Delta", f"- machine: {machine()}", *lines],
        args.results,
    )


if __name__ == "__main__":
    main()

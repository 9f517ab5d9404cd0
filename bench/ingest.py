"""Ingest throughput: ``vhlake ingest`` of a generated N-event file, timed as a user runs it.

    python bench/ingest.py --events 1000000

Runs the real command in a child process and reports events/s and the child's peak RSS. The file is
generated once per (N, seed) under bench/out/ and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from vhlake.samples import SampleSpec, generate_lines, write_jsonl

OUT = Path(__file__).parent / "out"


def sample_file(events: int, seed: int) -> Path:
    """The N-event sample, generated once, in a child process.

    Generating in this process would make it large, and a forked child's peak RSS counts the pages it
    inherits, so the measurement of ``vhlake ingest`` would include the generator's memory.
    """
    path = OUT / f"events-{events}-{seed}.jsonl"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, __file__, "--generate", str(path), "--events", str(events), "--seed", str(seed)],
            check=True,
        )
    return path


def generate(path: Path, events: int, seed: int) -> None:
    spec = SampleSpec(jobs=events // 2, seed=seed, bad_event_rate=0.002, garbage_rate=0.001)
    partial = path.with_suffix(".partial")  # a failed run must not leave a file that looks complete
    write_jsonl(generate_lines(spec), partial)
    partial.rename(path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate, args.events, args.seed)
        return
    path = sample_file(args.events, args.seed)
    lake = OUT / "ingest-lake"
    shutil.rmtree(lake, ignore_errors=True)
    started = time.perf_counter()
    output = OUT / "ingest-output.txt"
    with output.open("w") as sink:
        child = subprocess.Popen(
            [sys.executable, "-m", "vhlake", "--lake", str(lake), "ingest", str(path)], stdout=sink
        )
        # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would also count the generator's).
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"vhlake ingest failed with status {status}")
    lines = sum(1 for line in path.open("rb") if line.strip())
    result = {
        "events": lines,
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "wall_s": round(wall, 2),
        "ingest_events_per_s": round(lines / wall),
        "ingest_peak_rss_mb": round(usage.ru_maxrss / 1024),
        "output": output.read_text().strip(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()

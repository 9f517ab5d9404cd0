"""Ingest throughput: ``vhlake ingest`` of a generated N-event file, timed as a user runs it.

    python bench/ingest.py --events 1000000

Runs the real command in a child process and reports events/s and the child's peak RSS. The file is
generated once per (N, seed) under bench/out/ and reused.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from vhlake.samples import SampleSpec, generate_lines, write_jsonl

OUT = Path(__file__).parent / "out"


def sample_file(events: int, seed: int) -> Path:
    path = OUT / f"events-{events}-{seed}.jsonl"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        spec = SampleSpec(jobs=events // 2, seed=seed, bad_event_rate=0.002, garbage_rate=0.001)
        partial = path.with_suffix(".partial")  # a failed run must not leave a file that looks complete
        write_jsonl(generate_lines(spec), partial)
        partial.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    path = sample_file(args.events, args.seed)
    lake = OUT / "ingest-lake"
    shutil.rmtree(lake, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "vhlake", "--lake", str(lake), "ingest", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    lines = sum(1 for line in path.open("rb") if line.strip())
    result = {
        "events": lines,
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "wall_s": round(wall, 2),
        "ingest_events_per_s": round(lines / wall),
        "ingest_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "output": done.stdout.strip(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()

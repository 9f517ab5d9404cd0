"""A first build, phase by phase: when each phase starts, and the process's memory along the way.

    python bench/build_phases.py LAKE [--bucket-rows N]

LAKE must hold bronze only (a copy of the ``bronze/`` folder of a lake ``bench/scale.py --keep`` grew will
do), so that the pipeline takes the first-build path. Every ~5 s and at each phase change it prints the
seconds since the start and the process's CPU seconds (comparable across machine loads, which the wall
time is not), the phase and its progress, the process's RSS and peak RSS so far (sampled by a
thread every 0.2 s, so short peaks between progress reports count), and what the Arrow memory pool holds:
RSS well above the Arrow pool is memory held outside Arrow (DuckDB, Parquet writers, the allocator).
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import pyarrow as pa

from vhlake.lake.delta import Lake
from vhlake.pipeline.runner import Pipeline


def rss_mb() -> int:
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


class Watch:
    """RSS sampled in the background; progress printed at each phase change and every few seconds."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.started, self.peak, self._every = time.perf_counter(), 0, every_s
        self._phase, self._printed = "", 0.0
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.2)

    def progress(self, phase: str, done: int, total: int) -> None:
        now = time.perf_counter() - self.started
        if phase != self._phase or now - self._printed >= self._every:
            arrow = pa.total_allocated_bytes() >> 20
            print(
                f"{now:7.1f} s {time.process_time():7.1f} CPU s  {phase:24s} {done:>11,}/{total:<11,} "
                f"RSS {rss_mb():5} MB  peak {self.peak:5} MB  Arrow pool {arrow:5} MB",
                flush=True,
            )
            self._phase, self._printed = phase, now


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("lake", type=Path)
    parser.add_argument("--bucket-rows", type=int, default=500_000, help="events per job bucket")
    parser.add_argument(
        "--rows-per-batch",
        type=int,
        default=1_000_000,
        help="a bronze of more rows takes the first-build path",
    )
    args = parser.parse_args()
    watch = Watch()
    pipeline = Pipeline(
        Lake(str(args.lake)), build_bucket_rows=args.bucket_rows, rows_per_batch=args.rows_per_batch
    )
    report = pipeline.run(on_progress=watch.progress)
    seconds = time.perf_counter() - watch.started
    print(f"done in {seconds:.1f} s ({time.process_time():.1f} CPU s), peak RSS {watch.peak} MB: {report.events_in:,} events, "
          f"{report.jobs_upserted:,} jobs, {report.gold_groups:,} gold groups")  # fmt: skip


if __name__ == "__main__":
    main()

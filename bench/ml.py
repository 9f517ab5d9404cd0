"""The ML jobs on a large lake: ``vhlake ml score`` over every job of the last N days, and ``vhlake ml
train``, each timed with the peak RSS of its process tree (the issue's bound: 2 GB on 5M silver jobs).

    python bench/ml.py bench/out/run-10000000-7/lake --job-days 30

The lake is one that ``python bench/run.py --events 10000000`` left (about 5M silver jobs over 30 days).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from run import machine, measure, report, vhlake
from vhlake.lake.delta import Lake
from vhlake.lake.tables import SILVER


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("lake", type=Path, help="a lake with silver built")
    parser.add_argument("--job-days", type=int, default=30, help="score the jobs of this many days back")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "RESULTS.md")
    args = parser.parse_args()
    silver = Lake(str(args.lake)).open(SILVER)
    if silver is None:
        raise SystemExit(f"{args.lake} has no silver table: build it with vhlake pipeline run")
    jobs = silver.count()
    score = measure(vhlake(args.lake, "ml", "score", "--job-days", str(args.job_days)), label="ml score")
    train = measure(vhlake(args.lake, "ml", "train"), label="ml train")
    report(
        [
            f"## ML on {jobs:,} silver jobs",
            f"- machine: {machine()}",
            f"- vhlake ml score --job-days {args.job_days}: {score.wall_s:.1f} s, peak {score.peak_rss_mb:.0f} MB"
            f" ({' '.join(score.output.split())})",
            f"- vhlake ml train: {train.wall_s:.1f} s, peak {train.peak_rss_mb:.0f} MB ({' '.join(train.output.split())})",
        ],
        args.results,
    )


if __name__ == "__main__":
    main()

"""A day of micro-batches in one table's Delta log: does reading stay fast?

    python bench/log_growth.py                    # 86,400 commits: one a second for a day
    python bench/log_growth.py --commits 5000 --every 1000

Appends one small batch per commit to a bronze-shaped table (as ``vhlake serve`` does every second),
compacts the recent partition every ``--compact-every`` commits (the service's schedule: every 30 s) and
cleans up expired log files, and every ``--every`` commits measures, cold (a new process state: fresh
table handle and engine), how long opening the table and counting its rows take. Delta checkpoints come
every 100 commits (deltalake's default), so opening reads a checkpoint plus at most 99 commit files.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from run import BENCH, machine
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE
from vhlake.query.duckdb_engine import DuckDBEngine


def batch(n: int, rows: int, today: date) -> pa.Table:
    """``rows`` bronze-shaped rows: the required columns filled, the rest NULL."""
    required = {
        "ingestion_time": [datetime.now(UTC)] * rows,
        "event_date": [today] * rows,
        "source": ["bench"] * rows,
        "source_offset": range(n * rows, (n + 1) * rows),
    }
    return pa.table(
        {
            f.name: pa.array(required[f.name], f.type) if f.name in required else pa.nulls(rows, f.type)
            for f in BRONZE.schema
        }
    )


def cold_read(root: Path, uri: str) -> tuple[float, float]:
    started = time.perf_counter()
    DeltaTable(uri)
    opened = time.perf_counter() - started
    engine = DuckDBEngine(Lake(str(root)), tables=(BRONZE,))
    started = time.perf_counter()
    engine.execute("SELECT count(*) FROM validation_events_bronze")
    counted = time.perf_counter() - started
    engine.close()
    return opened * 1000, counted * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commits", type=int, default=86_400)
    parser.add_argument("--rows", type=int, default=1_000, help="rows per commit")
    parser.add_argument("--every", type=int, default=7_200, help="measure every N commits")
    parser.add_argument("--compact-every", type=int, default=30)
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="vhlake-log-growth-"))
    lake = Lake(str(root))
    table = lake.ensure(BRONZE)
    uri = lake.table_uri(BRONZE)
    today = datetime.now(UTC).date()
    points, commit_ms = [], []
    started = time.perf_counter()
    for n in range(1, args.commits + 1):
        clock = time.perf_counter()
        write_deltalake(table, batch(n, args.rows, today), mode="append")
        commit_ms.append((time.perf_counter() - clock) * 1000)
        if n % args.compact_every == 0:
            table.optimize.compact(
                partition_filters=[("event_date", "=", today.isoformat())], target_size=32 << 20
            )
            table.cleanup_metadata()
        if n % args.every == 0 or n == args.commits:
            opened, counted = cold_read(root, uri)
            files = len(table.file_uris())
            points.append((n, opened, counted, files))
            print(
                f"{n:>6} commits: open {opened:6.1f} ms, count {counted:6.1f} ms, {files} files", flush=True
            )
    wall = time.perf_counter() - started
    logs = len(list((Path(uri) / "_delta_log").glob("*.json")))
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · Delta log growth, {args.commits:,} commits",
        f"- machine: {machine()}; {args.rows:,} rows a commit, compaction every {args.compact_every} commits",
        f"- commit: median {statistics.median(commit_ms):.0f} ms; whole run {wall / 60:.0f} min; "
        f"{logs:,} commit files left in _delta_log (log retention: the table's default, 30 days)",
        "- cold open / count(*) by commits so far: "
        + "; ".join(f"{n:,}: {o:.0f} / {c:.0f} ms ({f} files)" for n, o, c, f in points),
    ]
    print("\n".join(lines))
    with args.results.open("a", encoding="utf-8") as out:
        out.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""A day of one-second commits in a table's Delta log, simulated, and what it costs to read and write then.

    python bench/log_day.py                    # 86,400 commits, measured every 21,600

Making a day of real commits takes hours here (each append gets slower as the log grows: that is the
finding). What a day leaves behind that matters for speed is the log itself: the number of
commit files a reader must list, and the checkpoint it starts from (the service's compaction keeps the
data files few). So this writes the day's commit files directly, as commits that change nothing (as a
transaction-only commit does), checkpoints at each step as deltalake does every 100 commits, and
measures, with that log in place: opening the table cold, a real append, refreshing a handle after it,
and a cold ``count(*)`` through the query engine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from run import BENCH, machine, report
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
    columns = {
        f.name: pa.array(required[f.name], f.type) if f.name in required else pa.nulls(rows, f.type)
        for f in BRONZE.schema
    }
    return pa.table(columns)


def empty_commits(log: Path, first: int, last: int, start_ms: int) -> None:
    """Commit files ``first..last`` that change nothing, one second apart."""
    for version in range(first, last + 1):
        info = {
            "commitInfo": {
                "timestamp": start_ms + version * 1000,
                "operation": "WRITE",
                "operationParameters": {},
            }
        }
        (log / f"{version:020d}.json").write_text(json.dumps(info) + "\n")


def timed(work: object, repeats: int = 5) -> float:
    """Median milliseconds of ``work()`` over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(root: Path, uri: str, today: date, *, first_offset: int) -> tuple[float, float, float, float]:
    """Cold open; five real appends; refreshing a handle opened before them; a cold count(*)."""
    opened = timed(lambda: DeltaTable(uri))
    before, writer = DeltaTable(uri), DeltaTable(uri)
    offsets = iter(range(first_offset, first_offset + 5))
    commit = timed(lambda: write_deltalake(writer, batch(next(offsets), 1_000, today), mode="append"))
    refresh = timed(before.update_incremental, repeats=1)
    engine = DuckDBEngine(Lake(str(root)), tables=(BRONZE,))
    count = timed(lambda: engine.execute("SELECT count(*) FROM validation_events_bronze"), repeats=1)
    engine.close()
    return opened, commit, refresh, count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commits", type=int, default=86_400)
    parser.add_argument("--every", type=int, default=21_600)
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="vhlake-log-day-"))
    lake = Lake(str(root))
    today = datetime.now(UTC).date()
    write_deltalake(lake.ensure(BRONZE), batch(0, 1_000, today), mode="append")
    uri = lake.table_uri(BRONZE)
    log = Path(uri) / "_delta_log"
    start_ms = int(time.time() * 1000) - args.commits * 1000
    points = []
    written = 1
    while written < args.commits:
        target = min(args.commits, written + args.every)
        empty_commits(log, written + 1, target, start_ms)
        DeltaTable(uri).create_checkpoint()
        written = target
        opened, commit, refresh, count = measure(root, uri, today, first_offset=written)
        written += 5  # the real appends measure() made
        files = len(list(log.iterdir()))
        points.append((written, files, opened, commit, refresh, count))
        print(
            f"{written:>6} commits ({files:,} log files): open {opened:.0f} ms, append {commit:.0f} ms, "
            f"refresh {refresh:.0f} ms, cold count {count:.0f} ms",
            flush=True,
        )
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · a simulated day of Delta log, {args.commits:,} commits",
        f"- machine: {machine()}; local disk; the day's commits written as no-op commit files, checkpointed",
        "- by commits in the log: open cold / real append / refresh after it / cold count(*), medians: "
        + "; ".join(f"{n:,}: {o:.0f} / {c:.0f} / {r:.0f} / {q:.0f} ms" for n, _, o, c, r, q in points),
    ]
    report(lines, args.results)


if __name__ == "__main__":
    main()

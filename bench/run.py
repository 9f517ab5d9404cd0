"""vhlake's benchmark, side by side with PySpark on the same machine and the same data.

    python bench/run.py                      # 1M events
    python bench/run.py --events 10000000 --json bench/out/10m.json
    python bench/run.py --events 20000 --check   # what CI runs: Spark and vhlake gold must agree

One run measures, each step in its own child process (peak RSS summed over the child's whole process
tree, the JVM included):
  1. ``vhlake ingest`` of N generated events (events/s, peak RSS);
  2. ``vhlake pipeline run``: bronze → silver → gold from scratch (wall s, peak RSS);
  3. the same work in PySpark local[2] over a Parquet export of bronze (bench/spark_build.py);
  4. an incremental ``vhlake pipeline run`` after ingesting the next 1% of the stream;
  5. query latency (p50/p95 over repeated runs) of the dashboard's queries.
The sample is generated once per (N, seed) under bench/out/ and reused. A summary goes to
bench/RESULTS.md. Needs the ``spark`` extra (``pip install -e '.[spark]'``, as ``make bench`` does) and
a Java 17+ runtime, unless ``--no-spark``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.dataset as ds

from vhlake.analytics.repository import AnalyticsRepository
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, GOLD
from vhlake.query.duckdb_engine import DuckDBEngine
from vhlake.result import Ok
from vhlake.samples import SampleSpec, generate_lines, write_jsonl

BENCH = Path(__file__).parent
OUT = BENCH / "out"
INCREMENT = 0.01  # the incremental run appends this share of N new events

# The AnalyticsRepository calls behind the dashboard, as a running service makes them (warm engine).
QUERIES = ("gold_marketplace_30d", "marketplace_performance_30d", "silver_last_hour")


@dataclass
class Measured:
    """One child process: wall time, peak RSS of its process tree, what it printed."""

    wall_s: float
    peak_rss_mb: float
    output: str


def measure(command: list[str], *, label: str, timeout_s: float | None = None) -> Measured:
    """Run ``command``, sampling the RSS of its whole process tree every 20 ms; past ``timeout_s`` the
    tree is killed and ``subprocess.TimeoutExpired`` raised."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(child.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(_rss(p) for p in tree))
            except psutil.NoSuchProcess:
                pass
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        output, _ = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        for process in [*psutil.Process(child.pid).children(recursive=True), child]:
            process.kill()
        child.communicate()
        done.set()
        raise
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"{label} failed (exit {child.returncode}):\n{output}")
    return Measured(wall, peak / 2**20, output.strip())


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.NoSuchProcess:
        return 0


def vhlake(lake: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "vhlake", "--lake", str(lake), *args]


# -- the sample ---------------------------------------------------------------------------------------


def sample_files(events: int, seed: int) -> tuple[Path, Path]:
    """The first N events of a generated stream, and the next 1% (both in arrival order)."""
    base = OUT / f"events-{events}-{seed}.base.jsonl"
    increment = OUT / f"events-{events}-{seed}.increment.jsonl"
    if not (base.exists() and increment.exists()):
        OUT.mkdir(parents=True, exist_ok=True)
        # In a child: the generator's memory must not linger in this process (it forks the measured ones).
        generator = [sys.executable, __file__, "--generate", str(base), "--events", str(events)]
        subprocess.run([*generator, "--seed", str(seed)], check=True)
    return base, increment


def generate(base: Path, events: int, seed: int) -> None:
    # A job makes ~1.98 events (a few never finish): ask for enough to cut exactly N + 1% lines.
    jobs = math.ceil(events * (1 + 2 * INCREMENT) / 1.9)
    lines = generate_lines(SampleSpec(jobs=jobs, seed=seed, bad_event_rate=0.002, garbage_rate=0.001))
    increment = base.with_name(base.name.replace(".base.", ".increment."))
    parts = (lines.slice(0, events), lines.slice(events, math.ceil(events * INCREMENT)))
    for path, part in zip((base, increment), parts, strict=True):
        partial = path.with_suffix(".partial")  # a failed run must not leave a file that looks complete
        write_jsonl(part, partial)
        partial.rename(path)


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))


# -- the steps ---------------------------------------------------------------------------------------


def spark_build(lake: Path, work: Path) -> tuple[Measured, pa.Table]:
    """Export bronze to plain Parquet (untimed), then time the PySpark reference build over it."""
    export, gold = work / "bronze-parquet", work / "spark-gold"
    shutil.rmtree(export, ignore_errors=True)
    ds.write_dataset(Lake(str(lake)).dataset(BRONZE), export, format="parquet", max_rows_per_file=2_000_000)
    measured = measure(
        [sys.executable, str(BENCH / "spark_build.py"), str(export), str(gold)], label="spark build"
    )
    return measured, ds.dataset(gold, format="parquet").to_table()


def compare_gold(ours: pa.Table, spark: pa.Table) -> list[str]:
    """Differences between two gold tables: missing groups, or a metric off (floats: 1e-9 relative)."""
    keys = ["date", "marketplace", "category"]

    def by_key(table: pa.Table) -> dict[tuple[Any, ...], dict[str, Any]]:
        return {tuple(row[k] for k in keys): row for row in table.to_pylist()}

    left, right = by_key(ours), by_key(spark)
    problems = [f"group {k} only in vhlake" for k in left.keys() - right.keys()]
    problems += [f"group {k} only in spark" for k in right.keys() - left.keys()]
    for key in left.keys() & right.keys():
        for column, theirs in right[key].items():
            mine = left[key][column]
            same = (
                mine == theirs
                if not isinstance(theirs, float) or mine is None
                else math.isclose(mine, theirs, rel_tol=1e-9)
            )
            if not same:
                problems.append(f"group {key}: {column} vhlake={mine!r} spark={theirs!r}")
    return sorted(problems)


def query_latency(lake: Path, repeats: int, names: tuple[str, ...] = QUERIES) -> dict[str, dict[str, float]]:
    engine = DuckDBEngine(Lake(str(lake)))
    gold = engine.execute("SELECT max(date) AS last FROM marketplace_daily_metrics_gold")
    last = gold["last"][0].as_py() or datetime.now(UTC).date()
    silver = engine.execute("SELECT max(created_at) AS last FROM validation_results_silver")
    newest = silver["last"][0].as_py() or datetime.now(UTC)
    repository = AnalyticsRepository(engine, clock=lambda: newest)
    calls: dict[str, Callable[[], object]] = {
        "gold_marketplace_30d": lambda: repository.get_marketplace_metrics(
            "mercado_livre", last - timedelta(days=29), last
        ),
        "marketplace_performance_30d": lambda: repository.get_marketplace_performance(
            "mercado_livre", 30, end_date=last
        ),
        "silver_last_hour": lambda: repository.get_real_time_stats(),
        # a repository of its own each time: one repository answers freshness from a read cached for 1 s
        "freshness": lambda: AnalyticsRepository(engine, clock=lambda: newest).get_freshness(),
    }
    latency = {}
    for name in names:
        assert isinstance(calls[name](), Ok)  # warm: file metadata cached as a running service has it
        times = []
        for _ in range(repeats):
            clock = time.perf_counter()
            calls[name]()
            times.append((time.perf_counter() - clock) * 1000)
        latency[name] = {
            "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(statistics.quantiles(times, n=20)[18], 1),
        }
    engine.close()
    return latency


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB RAM, {platform.system()} {platform.release()}"


# -- the run -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    base, increment = sample_files(args.events, args.seed)
    work = OUT / f"run-{args.events}-{args.seed}"
    shutil.rmtree(work, ignore_errors=True)
    lake = work / "lake"
    events = count_lines(base)
    ingest = measure(vhlake(lake, "ingest", str(base)), label="vhlake ingest")
    print(f"ingest: {ingest.output}", file=sys.stderr)
    build = measure(vhlake(lake, "pipeline", "run"), label="vhlake pipeline run")
    print(f"build: {build.wall_s:.2f} s, {build.peak_rss_mb:.0f} MB", file=sys.stderr)
    ours = Lake(str(lake)).dataset(GOLD).to_table(columns=[*GOLD.schema.names[:13]])
    result: dict[str, Any] = {
        "events": events,
        "machine": machine(),
        "ingest_events_per_s": round(events / ingest.wall_s),
        "ingest_peak_rss_mb": round(ingest.peak_rss_mb),
        "build_wall_s": round(build.wall_s, 2),
        "build_peak_rss_mb": round(build.peak_rss_mb),
        "gold_rows": ours.num_rows,
    }
    if not args.no_spark:
        spark, theirs = spark_build(lake, work)
        problems = compare_gold(ours, theirs.cast(ours.schema))
        print(f"spark: {spark.wall_s:.2f} s, {spark.peak_rss_mb:.0f} MB", file=sys.stderr)
        result |= {
            "spark_build_wall_s": round(spark.wall_s, 2),
            "spark_peak_rss_mb": round(spark.peak_rss_mb),
            "build_speedup_vs_spark": round(spark.wall_s / build.wall_s, 1),
            "gold_agrees_with_spark": not problems,
            "gold_differences": problems[:20],
        }
    measure(vhlake(lake, "ingest", str(increment)), label="vhlake ingest (increment)")
    incremental = measure(vhlake(lake, "pipeline", "run"), label="vhlake pipeline run (increment)")
    result |= {
        "incremental_events": count_lines(increment),
        "incremental_wall_s": round(incremental.wall_s, 2),
        "incremental_peak_rss_mb": round(incremental.peak_rss_mb),
        "query_p95_ms": query_latency(lake, args.repeats),
    }
    return result


def report(lines: list[str], path: Path) -> None:
    """Print a summary and append it to the results file (bench/RESULTS.md)."""
    print("\n".join(lines))
    with path.open("a", encoding="utf-8") as out:
        out.write("\n" + "\n".join(lines) + "\n")


def append_results(result: dict[str, Any], path: Path) -> None:
    if not path.exists():
        path.write_text("# Benchmark results\n\nAppended by `python bench/run.py`; newest last.\n")
    spark = (
        f"{result['spark_build_wall_s']} s / {result['spark_peak_rss_mb']} MB "
        f"(vhlake {result['build_speedup_vs_spark']}x faster; gold agrees: {result['gold_agrees_with_spark']})"
        if "spark_build_wall_s" in result
        else "not run"
    )
    queries = ", ".join(f"{name} p95 {q['p95_ms']} ms" for name, q in result["query_p95_ms"].items())
    with path.open("a") as out:
        out.write(
            f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {result['events']:,} events\n"
            f"- machine: {result['machine']}\n"
            f"- ingest: {result['ingest_events_per_s']:,} events/s, peak {result['ingest_peak_rss_mb']} MB\n"
            f"- build (bronze → gold): {result['build_wall_s']} s, peak {result['build_peak_rss_mb']} MB\n"
            f"- PySpark local[2], same build: {spark}\n"
            f"- incremental ({result['incremental_events']:,} new events): {result['incremental_wall_s']} s\n"
            f"- queries: {queries}\n"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the lake (default 1M)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the result as one JSON object here")
    parser.add_argument("--no-spark", action="store_true", help="skip the PySpark reference build")
    parser.add_argument("--repeats", type=int, default=50, help="runs per query for the latency")
    parser.add_argument(
        "--results", type=Path, default=BENCH / "RESULTS.md", help="where the summary is appended"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when the Spark and vhlake gold tables differ"
    )
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate, args.events, args.seed)
        return
    if not args.no_spark:
        _require_spark()
    result = run(args)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result))
    append_results(result, args.results)
    if args.check and not result.get("gold_agrees_with_spark", True):
        raise SystemExit("vhlake and Spark gold differ:\n" + "\n".join(result["gold_differences"]))


def _require_spark() -> None:
    if importlib.util.find_spec("pyspark") is None:
        raise SystemExit(
            "pyspark is not installed: pip install -e '.[spark]' (make bench does), or --no-spark"
        )
    if shutil.which("java") is None:
        raise SystemExit(
            "Spark needs a Java 17+ runtime (apt-get install openjdk-17-jre-headless), or --no-spark"
        )


if __name__ == "__main__":
    main()

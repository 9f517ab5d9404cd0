"""vhlake's benchmark, side by side with PySpark, DuckDB and chDB on the same machine and the same data.

    python bench/run.py                      # 1M events
    python bench/run.py --events 10000000 --json bench/out/10m.json
    python bench/run.py --events 20000 --check   # what CI runs: every peer's gold must equal vhlake's

One run measures, each step in its own child process (peak RSS summed over the child's whole process
tree, the JVM included):
  1. ``vhlake ingest`` of N generated events (events/s, peak RSS);
  2. ``vhlake pipeline run``: bronze → silver → gold from scratch (wall s, peak RSS);
  3. the same work in each peer, over one Parquet export of bronze (written once, untimed): PySpark
     local[2] (bench/spark_build.py), plain DuckDB (bench/duckdb_build.py) and chDB, embedded ClickHouse
     (bench/chdb_build.py); each peer's gold is compared with vhlake's;
  4. an incremental ``vhlake pipeline run`` after ingesting the next 1% of the stream;
  5. query latency (p50/p95 over repeated runs) of the dashboard's queries.
The sample is generated once per (N, seed) under bench/out/ and reused. A summary goes to
bench/RESULTS.md. PySpark needs the ``spark`` extra (``pip install -e '.[spark]'``) and a Java 17+
runtime, unless ``--no-spark``; chDB the ``bench`` extra (``pip install -e '.[bench]'``), and is skipped
with a message when it is not installed, unless ``--require-chdb`` (``make bench`` installs both and
requires both). DuckDB is one of vhlake's own dependencies.
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


@dataclass(frozen=True)
class Peer:
    """Another engine doing vhlake's first build over the same Parquet export of bronze, run as
    ``python bench/SCRIPT BRONZE_DIR GOLD_DIR [--silver DIR]``; its results are keyed by ``name``."""

    name: str
    title: str  # as RESULTS.md names it
    script: str
    module: str  # what it imports: without it, the peer cannot run
    install: str  # how to get ``module``
    optional: bool = False  # not installed: skipped with a message (an error with --require-NAME)
    writes_silver: bool = True  # takes --silver (Spark's reference goes bronze → gold in one plan)
    runtime: tuple[str, str] | None = None  # an executable it needs on PATH, and how to get it


PEERS = (
    Peer(
        "spark",
        "PySpark local[2]",
        "spark_build.py",
        "pyspark",
        "pip install -e '.[spark]' (make bench does)",
        writes_silver=False,
        runtime=("java", "a Java 17+ runtime: apt-get install openjdk-17-jre-headless"),
    ),
    Peer("duckdb", "DuckDB (in-memory, default settings)", "duckdb_build.py", "duckdb", "pip install duckdb"),
    Peer(
        "chdb",
        "chDB (embedded ClickHouse, default settings)",
        "chdb_build.py",
        "chdb",
        "pip install -e '.[bench]' (make bench does)",
        optional=True,
    ),
)


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


def export_bronze(lake: Path, work: Path) -> Path:
    """Bronze as plain Parquet files (untimed): the one input every peer reads."""
    export = work / "bronze-parquet"
    shutil.rmtree(export, ignore_errors=True)
    ds.write_dataset(Lake(str(lake)).dataset(BRONZE), export, format="parquet", max_rows_per_file=2_000_000)
    return export


def peer_build(peer: Peer, export: Path, work: Path) -> tuple[Measured, pa.Table]:
    """Time ``peer``'s build over the bronze export; the gold it wrote."""
    gold = work / f"{peer.name}-gold"
    command = [sys.executable, str(BENCH / peer.script), str(export), str(gold)]
    if peer.writes_silver:
        command += ["--silver", str(work / f"{peer.name}-silver")]
    measured = measure(command, label=f"{peer.name} build")
    return measured, ds.dataset(gold, format="parquet").to_table()


def peer_result(peer: Peer, export: Path, work: Path, ours: pa.Table, build: Measured) -> dict[str, Any]:
    """``peer``'s build beside vhlake's: its wall time and peak RSS, vhlake's wall time over its
    (``build_ratio_vs_NAME``: below 1.0 vhlake is faster), and whether its gold equals vhlake's."""
    measured, theirs = peer_build(peer, export, work)
    problems = gold_differences(peer, ours, theirs)
    print(f"{peer.name}: {measured.wall_s:.2f} s, {measured.peak_rss_mb:.0f} MB", file=sys.stderr)
    result = {
        f"{peer.name}_build_wall_s": round(measured.wall_s, 2),
        f"{peer.name}_peak_rss_mb": round(measured.peak_rss_mb),
        f"build_ratio_vs_{peer.name}": round(build.wall_s / measured.wall_s, 2),
        f"gold_agrees_with_{peer.name}": not problems,
        f"{peer.name}_gold_differences": problems[:20],
    }
    if peer.name == "spark":  # the older figure, kept so results stay comparable with earlier runs
        result["build_speedup_vs_spark"] = round(measured.wall_s / build.wall_s, 1)
    return result


def gold_differences(peer: Peer, ours: pa.Table, theirs: pa.Table) -> list[str]:
    """``compare_gold`` on the compared columns of ``peer``'s gold, in vhlake's types (a peer may also
    write year, month and updated_at, or count in unsigned or floating-point columns)."""
    return compare_gold(ours, theirs.select(ours.schema.names).cast(ours.schema), peer=peer.name)


def compare_gold(ours: pa.Table, theirs: pa.Table, *, peer: str) -> list[str]:
    """Differences between vhlake's gold and ``peer``'s: missing groups, or a metric off (floats: 1e-9
    relative)."""
    keys = ["date", "marketplace", "category"]

    def by_key(table: pa.Table) -> dict[tuple[Any, ...], dict[str, Any]]:
        return {tuple(row[k] for k in keys): row for row in table.to_pylist()}

    left, right = by_key(ours), by_key(theirs)
    problems = [f"group {k} only in vhlake" for k in left.keys() - right.keys()]
    problems += [f"group {k} only in {peer}" for k in right.keys() - left.keys()]
    for key in left.keys() & right.keys():
        for column, value in right[key].items():
            mine = left[key][column]
            same = (
                mine == value
                if not isinstance(value, float) or mine is None
                else math.isclose(mine, value, rel_tol=1e-9)
            )
            if not same:
                problems.append(f"group {key}: {column} vhlake={mine!r} {peer}={value!r}")
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


def run(args: argparse.Namespace, peers: list[Peer]) -> dict[str, Any]:
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
    if peers:
        export = export_bronze(lake, work)
        for peer in peers:
            result |= peer_result(peer, export, work, ours, build)
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
    peers = "".join(f"- {peer.title}, same build: {peer_summary(result, peer.name)}\n" for peer in PEERS)
    queries = ", ".join(f"{name} p95 {q['p95_ms']} ms" for name, q in result["query_p95_ms"].items())
    with path.open("a") as out:
        out.write(
            f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {result['events']:,} events\n"
            f"- machine: {result['machine']}\n"
            f"- ingest: {result['ingest_events_per_s']:,} events/s, peak {result['ingest_peak_rss_mb']} MB\n"
            f"- build (bronze → gold): {result['build_wall_s']} s, peak {result['build_peak_rss_mb']} MB\n"
            f"{peers}"
            f"- incremental ({result['incremental_events']:,} new events): {result['incremental_wall_s']} s\n"
            f"- queries: {queries}\n"
        )


def peer_summary(result: dict[str, Any], name: str) -> str:
    """One peer's figures as a RESULTS.md line ends: time, memory, vhlake/peer wall ratio, agreement."""
    if f"{name}_build_wall_s" not in result:
        return "not run"
    ratio, ours, theirs = (
        result[f"build_ratio_vs_{name}"],
        result["build_wall_s"],
        result[f"{name}_build_wall_s"],
    )
    # the ratio itself when vhlake is slower; when faster its inverse, from the walls (a ratio rounded to 0.1 is
    # too coarse to invert)
    verdict = f"vhlake {theirs / ours:.1f}x faster" if ratio < 1 else f"vhlake {ratio:.1f}x slower"
    return (
        f"{result[f'{name}_build_wall_s']} s / {result[f'{name}_peak_rss_mb']} MB "
        f"(wall ratio vhlake/{name} {ratio}: {verdict}; gold agrees: {result[f'gold_agrees_with_{name}']})"
    )


def runnable_peers(args: argparse.Namespace) -> list[Peer]:
    """The peers this run measures: each unless --no-NAME. One that is not installed stops the run with
    how to install it, unless it is optional (chDB, a large wheel outside the test install): that one is
    skipped with a message, unless --require-NAME."""
    peers = []
    for peer in PEERS:
        if getattr(args, f"no_{peer.name}"):
            continue
        problem = missing(peer)
        if problem is None:
            peers.append(peer)
        elif peer.optional and not getattr(args, f"require_{peer.name}"):
            print(
                f"{problem}: the {peer.name} peer is skipped (--require-{peer.name} to fail)", file=sys.stderr
            )
        else:
            raise SystemExit(f"{problem}, or --no-{peer.name}")
    return peers


def missing(peer: Peer) -> str | None:
    """Why ``peer`` cannot run here (its module or runtime is not installed), or None."""
    if importlib.util.find_spec(peer.module) is None:
        return f"{peer.module} is not installed: {peer.install}"
    if peer.runtime is not None and shutil.which(peer.runtime[0]) is None:
        return f"{peer.name} needs {peer.runtime[1]}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the lake (default 1M)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the result as one JSON object here")
    for peer in PEERS:
        parser.add_argument(f"--no-{peer.name}", action="store_true", help=f"skip the {peer.title} build")
        if peer.optional:
            parser.add_argument(
                f"--require-{peer.name}",
                action="store_true",
                help=f"fail when {peer.module} is not installed (default: skip its build)",
            )
    parser.add_argument("--repeats", type=int, default=50, help="runs per query for the latency")
    parser.add_argument(
        "--results", type=Path, default=BENCH / "RESULTS.md", help="where the summary is appended"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a peer's gold differs from vhlake's"
    )
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate, args.events, args.seed)
        return
    peers = runnable_peers(args)
    result = run(args, peers)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result))
    append_results(result, args.results)
    disagree = [peer.name for peer in peers if not result[f"gold_agrees_with_{peer.name}"]]
    if args.check and disagree:
        differences = [line for name in disagree for line in result[f"{name}_gold_differences"]]
        raise SystemExit(f"gold differs from vhlake's in {', '.join(disagree)}:\n" + "\n".join(differences))


if __name__ == "__main__":
    main()

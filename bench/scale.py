"""How each recurring cost of vhlake grows with the lake, on one machine, to 100M events.

    python bench/scale.py --sizes 10000000,30000000,100000000 --json bench/out/scale.json
    python bench/scale.py --sizes 1000000,3000000        # a quick check of the script itself

A ValidaHub lake grows a day at a time, so each lake here holds ``--per-day`` events a day (1M by default:
a 100M lake is 100 days, not a denser month). For each size, each step in its own child process
(bench/run.py's ``measure``: wall time, peak RSS of the process tree):

1. the lake is generated in chunks of ``--chunk`` events (a few days each), each ingested through
   ``vhlake ingest`` and deleted, so the disk holds one chunk of JSON at a time;
2. the first ``vhlake pipeline run`` (``build_*``);
3. 100k new events, ingested, then ``vhlake pipeline run`` (``incremental_*``): half of them late events
   of jobs already in the lake (held back from the last two chunks, so of jobs up to four days old),
   1% copies of events already ingested, the rest new jobs of the newest day;
4. the repository calls behind the dashboard and the API, warm, as a running service makes them
   (``query_p95_ms``: metrics of 30 days, performance, realtime, freshness);
5. ``vhlake serve`` on the lake with 1,000 events/s published for 60 s (bench/freshness.py): the p95 over
   its pipeline batches of each batch's p95 of event timestamp → visible in gold
   (``serve_freshness_p95_s``), the stream started once the service's first model training is done;
6. ``vhlake maintain`` twice: the first compacts every small file bulk ingestion left
   (``maintain_first_wall_s``), the second is a recurring run (``maintain_wall_s``); then ``vhlake forget``
   of one user (``forget_wall_s``);
7. per table: bytes, data files, Delta log bytes and files; the pipeline's key index.

The machine is shared, so the 1-minute load average is recorded before each timed step. The JSON is
rewritten after every step (a long run that is stopped keeps what it measured). At the end a table is
appended to bench/RESULTS.md and bench/scale.png is drawn (each cost against lake size, log-log).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshness import publish_steadily, quantile, serve
from run import BENCH, OUT, count_lines, machine, measure, query_latency, vhlake
from vhlake.lake.delta import Lake
from vhlake.lake.tables import ALL_TABLES, BRONZE, DATA_QUALITY_METRICS, GOLD
from vhlake.pipeline.runner import PIPELINE_APP
from vhlake.samples import SampleSpec, generate_lines, write_jsonl

LATE_SHARE, COPY_SHARE = 0.5, 0.01
EVENTS_PER_JOB = 1.9  # a little under the generator's ~1.98, so a chunk can be cut at exactly N lines
SCALE_QUERIES = ("gold_marketplace_30d", "marketplace_performance_30d", "silver_last_hour", "freshness")
FORGOTTEN_USER = "user-123"  # in every chunk: the generator's users are user-0 .. user-(jobs/8)


# -- the lake, day by day --------------------------------------------------------------------------


def grow(lake: Path, size: int, args: argparse.Namespace, increment: Path) -> dict[str, Any]:
    """Ingest ``size`` events, chunk by chunk, holding back the late events into ``increment``."""
    chunks = max(1, math.ceil(size / args.chunk))
    per_chunk = math.ceil(size / chunks)
    days = max(1, round(per_chunk / args.per_day))
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    first = end - timedelta(days=days * chunks)
    late = round(args.increment_events * LATE_SHARE)
    held = {c: late // min(2, chunks) for c in range(max(0, chunks - 2), chunks)}
    increment.unlink(missing_ok=True)

    def generator(c: int) -> subprocess.Popen[bytes]:
        chunk_end = first + timedelta(days=days)  # the template's; chunk c is moved days * c later
        command = [sys.executable, __file__, "--generate", str(lake.parent / f"chunk-{c}.jsonl")]
        command += ["--increment", str(increment), "--events", str(per_chunk + held.get(c, 0))]
        command += ["--end", chunk_end.isoformat(), "--days", str(days), "--seed", str(args.seed * 1000 + c)]
        command += ["--hold", str(held.get(c, 0)), "--shift-days", str(days * c), "--tag", f"c{c}"]
        if c == chunks - 1:
            command += ["--copies", str(round(args.increment_events * COPY_SHARE))]
        return subprocess.Popen(command, stderr=subprocess.DEVNULL)

    # the next chunk is generated while this one is ingested (two chunks on disk at most)
    ingest_s, clock, pending = 0.0, time.perf_counter(), generator(0)
    for c in range(chunks):
        if pending.wait() != 0:
            raise SystemExit(f"generating chunk {c} failed")
        pending = generator(c + 1) if c + 1 < chunks else pending
        chunk = lake.parent / f"chunk-{c}.jsonl"
        ingest_s += measure(vhlake(lake, "ingest", str(chunk)), label=f"ingest chunk {c}").wall_s
        chunk.unlink()
        print(f"  chunk {c + 1}/{chunks} ingested", file=sys.stderr)
    pending.wait()
    new_jobs = args.increment_events - count_lines(increment)
    newest = [sys.executable, __file__, "--generate", str(increment), "--append", "--events", str(new_jobs)]
    newest += [
        "--end",
        (end + timedelta(days=1)).isoformat(),
        "--days",
        "1",
        "--seed",
        str(args.seed * 1000 - 1),
    ]
    subprocess.run(newest, check=True)
    return {
        "days": days * chunks,
        "chunks": chunks,
        "grow_wall_s": round(time.perf_counter() - clock, 1),
        "ingest_wall_s": round(ingest_s, 1),
        "ingest_events_per_s": round(size / ingest_s),
    }


def generate_chunk(args: argparse.Namespace) -> None:
    """A chunk of the stream, in arrival order; with ``--hold``, that many of its events are not in it
    but appended to the increment (they arrive late), and ``--copies`` copies of events it holds too."""
    spec = SampleSpec(
        jobs=math.ceil(args.events / EVENTS_PER_JOB),
        seed=args.seed,
        end=datetime.fromisoformat(args.end),
        days=args.days,
        bad_event_rate=0.002,
        garbage_rate=0.001,
    )
    lines = template_lines(spec, args).slice(0, args.events)
    rng = np.random.default_rng(args.seed)
    late = np.zeros(lines.num_rows, bool)
    late[rng.choice(lines.num_rows, args.hold, replace=False)] = True
    kept = lines.filter(pa.array(~late))
    if args.append:
        append_lines(kept, args.generate)
        return
    write_jsonl(kept, args.generate)
    copies = kept.take(pa.array(rng.choice(kept.num_rows, args.copies, replace=False)))
    append_lines(pa.concat_tables([lines.filter(pa.array(late)), copies]), args.increment)


# A chunk's stream: the event, up to its timestamp, then the timestamp (local time, -03:00), then the rest.
_TIMESTAMPED = r'^(?P<head>.*?"timestamp":")(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)(?P<tail>-03:00".*)$'


def template_lines(spec: SampleSpec, args: argparse.Namespace) -> pa.Table:
    """The chunk's lines: the first chunk of a lake generated (and kept as a template), each later one the
    template moved ``--shift-days`` later with job and event ids of its own (``--tag``). Generating each
    chunk anew costs ~5x the CPU; a lake grown day by day of the same shape is what is measured here."""
    template = args.generate.parent / f"template-{args.events}-{args.days}.arrow"
    if not template.exists():
        lines = generate_lines(spec)
        with (
            pa.OSFile(str(template.with_suffix(".partial")), "wb") as out,
            pa.ipc.new_file(out, lines.schema) as writer,
        ):
            writer.write_table(lines)
        template.with_suffix(".partial").rename(template)
    with pa.memory_map(str(template)) as source:
        lines = pa.ipc.open_file(source).read_all()
    return lines if args.shift_days == 0 else shifted(lines, args.shift_days, args.tag)


def shifted(lines: pa.Table, days: int, tag: str) -> pa.Table:
    """``lines`` with every well-formed timestamp ``days`` later and the job and event ids tagged."""
    text = pc.cast(lines["line"], pa.large_string())
    parts = pc.extract_regex(text, _TIMESTAMPED)
    matched = pc.is_valid(parts)
    moment = pc.cast(
        pc.fill_null(pc.struct_field(parts, "ts"), "2000-01-01T00:00:00.000"), pa.timestamp("us")
    )
    moved = pc.strftime(pc.add(moment, pa.scalar(timedelta(days=days))), format="%Y-%m-%dT%H:%M:%S")
    rebuilt = pc.binary_join_element_wise(
        pc.struct_field(parts, "head"),
        pc.cast(moved, pa.large_string()),
        pc.struct_field(parts, "tail"),
        pa.scalar("", pa.large_string()),
    )
    text = pc.if_else(matched, rebuilt, text)
    text = pc.replace_substring(text, '"job_id":"job-', f'"job_id":"job-{tag}-')
    text = pc.replace_substring(text, '"event_id":"', f'"event_id":"{tag}-')
    return pa.table({"line": text})


def append_lines(lines: pa.Table, path: Path) -> None:
    if lines.num_rows:
        partial = path.with_suffix(".part")
        write_jsonl(lines, partial)
        with path.open("ab") as out:
            out.write(partial.read_bytes())
        partial.unlink()


# -- the measured steps ----------------------------------------------------------------------------


def timed(
    result: dict[str, Any], name: str, command: list[str], *, label: str, timeout_s: float | None = None
) -> None:
    """Run ``command`` measured; record ``<name>_wall_s``, ``<name>_peak_rss_mb`` and the load before
    (past ``timeout_s``: ``<name>_timed_out_after_s`` instead)."""
    result.setdefault("load_avg_1m", {})[name] = round(os.getloadavg()[0], 2)
    try:
        measured = measure(command, label=label, timeout_s=timeout_s)
    except subprocess.TimeoutExpired:
        result[f"{name}_timed_out_after_s"] = timeout_s
        print(f"  {label}: stopped after {timeout_s} s", file=sys.stderr)
        return
    result[f"{name}_wall_s"] = round(measured.wall_s, 2)
    result[f"{name}_peak_rss_mb"] = round(measured.peak_rss_mb)
    print(f"  {label}: {measured.wall_s:.2f} s, {measured.peak_rss_mb:.0f} MB", file=sys.stderr)


def serve_freshness(lake_dir: Path, work: Path, rate: int, seconds: float) -> dict[str, Any]:
    """``vhlake serve`` on the lake, ``rate`` events/s for ``seconds``: its per-batch freshness."""
    log = work / "serve.log"
    process, _ = serve(lake_dir, log)
    try:
        # The service trains and scores its models a minute after it starts (then every 6 h): on a large
        # lake that is tens of seconds of both cores, so the stream starts once it is done.
        deadline = time.monotonic() + 600
        while "vhlake.service: ml" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(1)
        since = datetime.now(UTC)
        published = publish_steadily(lake_dir, rate, seconds)
        lake = Lake(str(lake_dir))
        target, deadline = lake.open(BRONZE).version(), time.monotonic() + 300  # type: ignore[union-attr]
        while time.monotonic() < deadline and (lake.txn_version(GOLD, PIPELINE_APP) or -1) < target:
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    quality = Lake(str(lake_dir)).dataset(DATA_QUALITY_METRICS).to_table()
    recent = quality.filter(pc.greater_equal(quality["measured_at"], pa.scalar(since)))
    batch_p95 = pc.filter(recent["value"], pc.equal(recent["metric"], "freshness_p95_s")).to_pylist()
    canary = pc.filter(recent["value"], pc.equal(recent["metric"], "canary_lag_s")).to_pylist()
    return {
        "serve_published": published,
        "serve_batches": len(batch_p95),
        "serve_freshness_median_s": round(statistics.median(batch_p95), 2) if batch_p95 else None,
        "serve_freshness_p95_s": round(quantile(batch_p95, 0.95), 2) if batch_p95 else None,
        "serve_canary_p95_s": round(quantile(canary, 0.95), 2) if canary else None,
    }


def table_sizes(lake_dir: Path) -> dict[str, dict[str, int]]:
    """Per table: bytes and data files of its current version, and its Delta log (bytes, files)."""
    lake, sizes = Lake(str(lake_dir)), {}
    for table in ALL_TABLES:
        delta = lake.open(table)
        if delta is None:
            continue
        actions = pa.table(delta.get_add_actions(flatten=True))
        log = [p for p in (Path(lake.table_uri(table)) / "_delta_log").iterdir() if p.is_file()]
        sizes[table.name] = {
            "layer": table.layer,
            "bytes": int(pc.sum(actions["size_bytes"]).as_py() or 0),
            "files": actions.num_rows,
            "log_bytes": sum(p.stat().st_size for p in log),
            "log_files": len(log),
            "checkpoint_bytes": sum(p.stat().st_size for p in log if ".checkpoint." in p.name),
        }
    index = lake_dir / "_index"
    index_bytes = sum(p.stat().st_size for p in index.rglob("*") if p.is_file()) if index.exists() else 0
    sizes["_index"] = {"layer": "silver", "bytes": index_bytes, "files": 0, "log_bytes": 0, "log_files": 0}
    return sizes


def per_layer_mb_per_million(sizes: dict[str, dict[str, Any]], events: int) -> dict[str, float]:
    layers: dict[str, int] = {}
    for size in sizes.values():
        layers[size["layer"]] = layers.get(size["layer"], 0) + size["bytes"] + size["log_bytes"]
    return {layer: round(total / 2**20 / (events / 1e6), 1) for layer, total in sorted(layers.items())}


def measure_size(size: int, args: argparse.Namespace, save: Any) -> dict[str, Any]:
    work = OUT / f"scale-{size}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    lake, increment = work / "lake", work / "increment.jsonl"
    result: dict[str, Any] = {"size": size, "started": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"}
    save(result)
    print(f"{size:,} events: generating and ingesting", file=sys.stderr)
    result |= grow(lake, size, args, increment)
    result["events"] = Lake(str(lake)).dataset(ALL_TABLES[0]).count_rows()
    save(result)
    timed(result, "build", vhlake(lake, "pipeline", "run"), label="first build")
    save(result)
    result["incremental_events"] = count_lines(increment)
    measure(vhlake(lake, "ingest", str(increment)), label="ingest the increment")
    timed(result, "incremental", vhlake(lake, "pipeline", "run"), label="incremental run")
    save(result)
    queries = query_latency(lake, args.repeats, SCALE_QUERIES)
    result["query_p95_ms"] = {name: q["p95_ms"] for name, q in queries.items()}
    print(f"  queries p95 (ms): {result['query_p95_ms']}", file=sys.stderr)
    result["sizes_after_build"] = table_sizes(lake)
    save(result)
    if not args.no_serve:
        result["load_avg_1m"]["serve"] = round(os.getloadavg()[0], 2)
        result |= serve_freshness(lake, work, args.rate, args.seconds)
        print(f"  serve freshness p95 {result['serve_freshness_p95_s']} s", file=sys.stderr)
        save(result)
    result["mb_per_million_events"] = per_layer_mb_per_million(result["sizes_after_build"], result["events"])
    # The first maintain compacts every small file bulk ingestion left (all of bronze); the one after it,
    # as a daily run would, finds only what changed since.
    timed(result, "maintain_first", vhlake(lake, "maintain"), label="first maintain")
    timed(result, "maintain", vhlake(lake, "maintain"), label="maintain again")
    result["tables"] = table_sizes(lake)
    save(result)
    # last: an erasure rewrites every file holding the user's rows (copy-on-write), the slowest step
    if not args.no_forget:
        measure_forget(result, lake, args)
        save(result)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def measure_forget(result: dict[str, Any], lake: Path, args: argparse.Namespace) -> None:
    forget = vhlake(lake, "forget", "--user-id", FORGOTTEN_USER)
    timed(result, "forget", forget, label="forget one user", timeout_s=args.forget_timeout)


_AGAIN = ("serve", "forget")


def measure_again(result: dict[str, Any], steps: list[str], args: argparse.Namespace, save: Any) -> None:
    """Measure ``steps`` again on the lake a ``--keep`` run left (a quieter machine, newer code), keeping
    the earlier values under ``first_run``."""
    work = OUT / f"scale-{result['size']}"
    lake = work / "lake"
    if not lake.is_dir():
        raise SystemExit(f"{lake} is gone: measure the size again with --keep first")
    earlier = {k: result.get(k) for k in ("serve_freshness_p95_s", "forget_wall_s", "forget_peak_rss_mb")}
    result.setdefault("first_run", earlier)
    result["again"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC: " + ",".join(steps)
    if "serve" in steps:
        result["load_avg_1m"]["serve"] = round(os.getloadavg()[0], 2)
        result |= serve_freshness(lake, work, args.rate, args.seconds)
        print(f"  serve freshness p95 {result['serve_freshness_p95_s']} s", file=sys.stderr)
        save(result)
    if "forget" in steps:
        result.pop("forget_timed_out_after_s", None)
        measure_forget(result, lake, args)
        save(result)


# -- the report ------------------------------------------------------------------------------------

_ROWS: list[tuple[str, Any]] = [
    ("events", lambda r: f"{r['events']:,}"),
    ("days in the lake", lambda r: r.get("days")),
    ("ingest (events/s)", lambda r: f"{r.get('ingest_events_per_s', 0):,}"),
    ("first build (s)", lambda r: r.get("build_wall_s")),
    ("first build peak RSS (MB)", lambda r: r.get("build_peak_rss_mb")),
    ("incremental run (s)", lambda r: r.get("incremental_wall_s")),
    ("incremental run peak RSS (MB)", lambda r: r.get("incremental_peak_rss_mb")),
    *[
        (f"{name} p95 (ms)", lambda r, name=name: r.get("query_p95_ms", {}).get(name))
        for name in SCALE_QUERIES
    ],
    ("serve freshness p95 at 1,000/s (s)", lambda r: r.get("serve_freshness_p95_s")),
    ("forget one user (s)", lambda r: _forget(r)),
    ("forget peak RSS (MB)", lambda r: r.get("forget_peak_rss_mb", "")),
    ("first maintain (s)", lambda r: r.get("maintain_first_wall_s", "")),
    ("maintain again (s)", lambda r: r.get("maintain_wall_s")),
    (
        "job events: files / Delta log KB (after maintain)",
        lambda r: _files_and_log(r, "validation_job_events"),
    ),
    (
        "bronze: files / Delta log KB (after maintain)",
        lambda r: _files_and_log(r, "validation_events_bronze"),
    ),
    ("key index (MB)", lambda r: round(r["sizes_after_build"]["_index"]["bytes"] / 2**20)),
    ("disk per 1M events, MB (bronze/silver/gold)", lambda r: _per_layer(r)),
    ("load average before build / incremental", lambda r: _loads(r)),
    ("measured again (bench/scale.py --again)", lambda r: r.get("again", "")),
]


def _forget(result: dict[str, Any]) -> str:
    if "forget_wall_s" in result:
        return str(result["forget_wall_s"])
    if "forget_timed_out_after_s" in result:
        return f"> {result['forget_timed_out_after_s']}"
    return "not run"


def _files_and_log(result: dict[str, Any], table: str) -> str:
    size = result.get("tables", {}).get(table)
    return "" if size is None else f"{size['files']} / {size['log_bytes'] // 1024}"


def _per_layer(result: dict[str, Any]) -> str:
    layers = result.get("mb_per_million_events", {})
    return " / ".join(str(layers.get(layer, "")) for layer in ("bronze", "silver", "gold"))


def _loads(result: dict[str, Any]) -> str:
    loads = result.get("load_avg_1m", {})
    return f"{loads.get('build', '')} / {loads.get('incremental', '')}"


def append_results(results: dict[str, Any], path: Path) -> None:
    sizes = results["sizes"]
    lines = [
        f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · scale, {len(sizes)} lake sizes (bench/scale.py)",
        f"- machine: {results['machine']}; {results['per_day']:,} events a day, increment of "
        f"{results.get('increment_events', 100_000):,} (half late events of jobs up to 4 days old, 1% copies)",
        "",
        "| | " + " | ".join(f"{r['size']:,} ({r.get('started', '')})" for r in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for label, value in _ROWS:
        cells = []
        for r in sizes:
            try:
                cells.append(str(value(r)))
            except (KeyError, TypeError):
                cells.append("")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    with path.open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def draw(results: dict[str, Any], path: Path) -> None:
    """Each cost against lake size, log-log, with a dotted line of linear growth for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r for r in results["sizes"] if "events" in r]
    events = [r["events"] for r in sizes]
    figure, (seconds, millis) = plt.subplots(1, 2, figsize=(12, 4.8))
    for key, label in (
        ("build_wall_s", "first build"),
        ("incremental_wall_s", "incremental run"),
        ("serve_freshness_p95_s", "serve freshness p95"),
        ("forget_wall_s", "forget one user"),
        ("maintain_first_wall_s", "first maintain (compacts all bronze)"),
        ("maintain_wall_s", "maintain again"),
    ):
        _line(seconds, events, [r.get(key) for r in sizes], label)
    for name in SCALE_QUERIES:
        _line(millis, events, [r.get("query_p95_ms", {}).get(name) for r in sizes], name)
    for axis, unit in ((seconds, "seconds"), (millis, "ms (p95)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("events in the lake")
        axis.set_ylabel(unit)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    build = [r.get("build_wall_s") for r in sizes]
    if build and build[0]:
        seconds.plot(events, [build[0] * e / events[0] for e in events], ":", color="grey", label="linear")
    seconds.set_title("pipeline and upkeep")
    millis.set_title("repository calls")
    figure.suptitle(f"vhlake cost against lake size ({results['machine'].split(' (')[0]})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _line(axis: Any, events: list[int], values: list[float | None], label: str) -> None:
    points = [(e, v) for e, v in zip(events, values, strict=True) if v]
    if points:
        axis.plot(*zip(*points, strict=True), marker="o", label=label)


def _size(result: dict[str, Any]) -> int:
    return int(result["size"])


def again(args: argparse.Namespace) -> None:
    steps = args.again.split(",")
    if unknown := set(steps) - set(_AGAIN):
        raise SystemExit(f"--again takes {', '.join(_AGAIN)}, not {', '.join(sorted(unknown))}")
    results = json.loads(args.json.read_text())
    wanted = {int(s) for s in args.sizes.split(",")}
    for result in results["sizes"]:
        if result.get("size") in wanted:
            print(f"{result['size']:,} events: measuring {args.again} again", file=sys.stderr)
            measure_again(
                result,
                steps,
                args,
                lambda _: args.json.write_text(json.dumps(results, indent=1, default=str)),
            )
    append_results(results, args.results)
    draw(results, args.plot)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000000,30000000,100000000", help="lake sizes (events)")
    parser.add_argument("--per-day", type=int, default=1_000_000, help="events a day")
    parser.add_argument("--chunk", type=int, default=2_000_000, help="events generated and ingested at once")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--increment-events", type=int, default=100_000, help="events of the incremental run")
    parser.add_argument("--json", type=Path, default=OUT / "scale.json")
    parser.add_argument("--repeats", type=int, default=50, help="runs per query for the latency")
    parser.add_argument("--rate", type=int, default=1_000, help="events/s published to `vhlake serve`")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to publish")
    parser.add_argument(
        "--forget-timeout", type=float, default=900.0, help="seconds before forget is stopped"
    )
    parser.add_argument(
        "--no-forget", action="store_true", help="skip forget (its memory grows with the lake)"
    )
    parser.add_argument("--no-serve", action="store_true", help="skip the service's freshness")
    parser.add_argument("--keep", action="store_true", help="keep each lake under bench/out/")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--plot", type=Path, default=BENCH / "scale.png")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--increment", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--end", help=argparse.SUPPRESS)
    parser.add_argument("--days", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hold", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--copies", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--append", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shift-days", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, nargs="+", help="only report and draw these JSON results")
    parser.add_argument(
        "--again",
        help=f"re-measure these steps ({','.join(_AGAIN)}) of --sizes on the lakes a --keep run left, "
        "updating --json",
    )
    args = parser.parse_args()
    if args.generate:
        generate_chunk(args)
        return
    if args.report:
        merged = [json.loads(path.read_text()) for path in args.report]
        results = {**merged[0], "sizes": sorted((r for m in merged for r in m["sizes"] if r), key=_size)}
        append_results(results, args.results)
        draw(results, args.plot)
        return
    if args.again:
        again(args)
        return
    results = {
        "machine": machine(),
        "per_day": args.per_day,
        "increment_events": args.increment_events,
        "sizes": [],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    for size in (int(s) for s in args.sizes.split(",")):
        results["sizes"].append({})

        def save(result: dict[str, Any]) -> None:
            results["sizes"][-1] = result
            args.json.write_text(json.dumps(results, indent=1, default=str))

        measure_size(size, args, save)
    append_results(results, args.results)
    draw(results, args.plot)


if __name__ == "__main__":
    main()

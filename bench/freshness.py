"""Freshness of the always-on service: a steady stream in, how long until each batch is visible in gold.

    python bench/freshness.py                      # 1,000 events/s for 60 s on the embedded log
    python bench/freshness.py --rate 2000 --seconds 120

Starts ``vhlake serve`` (a child process, with a canary every second) on an empty lake, publishes live
jobs (started + completed, timestamped now) to the embedded log at a steady rate from this process,
then reads what the service recorded per pipeline batch in ``data_quality_metrics``: the p95 of event
timestamp → visible in gold within each batch, and each canary's lag. Reports the distribution of
those per-batch p95s (the target is p95 ≤ 2 s at 1,000 events/s), the canary lags and the rate the
service kept up with; appends a summary to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from run import BENCH, machine, report
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.events.model import ValidationEvent, ValidationPayload
from vhlake.events.publisher import EmbeddedLogPublisher
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, DATA_QUALITY_METRICS, SILVER

_TICK_S = 0.1


def live_jobs(first: int, count: int) -> list[ValidationEvent]:
    now = datetime.now(UTC)
    events = []
    for n in range(first, first + count):
        for kind in ("validation_started", "validation_completed"):
            events.append(
                ValidationEvent(
                    event_type=kind,
                    timestamp=now,
                    job_id=f"job-{n}",
                    user_id=f"user-{n % 97}",
                    marketplace=("mercado_livre", "shopee", "amazon_br")[n % 3],
                    category=f"categoria_{n % 50:02d}",
                    payload=ValidationPayload(total_rows=100 + n % 900, processing_time_ms=200 + n % 5000),
                )
            )
    return events


def serve(lake: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "vhlake",
        "--lake",
        str(lake),
        "serve",
        "--port",
        str(port),
        "--canary-every",
        "1",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the service did not start (see {log})")


def publish_steadily(lake: Path, rate: int, seconds: float) -> int:
    """Publish ``rate`` events/s (jobs of two events) for ``seconds``; returns how many were published."""
    publisher = EmbeddedLogPublisher(
        EmbeddedEventLog(lake / "_eventlog" / "validation-events.db", topic="validation-events")
    )
    jobs_per_tick = max(1, int(rate * _TICK_S / 2))
    published, job, started = 0, 0, time.monotonic()
    while time.monotonic() - started < seconds:
        publisher.send_batch(live_jobs(job, jobs_per_tick))
        job += jobs_per_tick
        published += 2 * jobs_per_tick
        time.sleep(max(0.0, (published / rate) - (time.monotonic() - started)))
    publisher.close()
    return published


def quantile(values: list[float], q: float) -> float:
    return float(pc.quantile(pa.array(values, pa.float64()), q=q)[0].as_py()) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=1_000, help="events per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vhlake-freshness-"))
    lake_dir = work / "lake"
    process, _ = serve(lake_dir, work / "serve.log")
    try:
        started = time.monotonic()
        published = publish_steadily(lake_dir, args.rate, args.seconds)
        publish_s = time.monotonic() - started
        lake = Lake(str(lake_dir))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # let the service finish what was published
            silver = lake.open(SILVER)
            if (
                silver is not None
                and pa.table(silver.to_pyarrow_table(columns=["job_id"])).num_rows >= published // 2
            ):
                break
            time.sleep(0.5)
        drained_s = time.monotonic() - started
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()

    quality = pa.table(lake.open(DATA_QUALITY_METRICS).to_pyarrow_table())  # type: ignore[union-attr]
    batch_p95 = pc.filter(quality["value"], pc.equal(quality["metric"], "freshness_p95_s")).to_pylist()
    canary = pc.filter(quality["value"], pc.equal(quality["metric"], "canary_lag_s")).to_pylist()
    bronze_rows = pa.table(lake.open(BRONZE).to_pyarrow_table(columns=["event_id"])).num_rows  # type: ignore[union-attr]
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · freshness, {args.rate:,} events/s for {args.seconds:.0f} s",
        f"- machine: {machine()}; `vhlake serve` on the embedded log, publisher in another process",
        f"- published {published:,} events in {publish_s:.1f} s ({published / publish_s:,.0f}/s); all in silver "
        f"{drained_s - publish_s:.1f} s after the last one; bronze rows {bronze_rows:,} (canaries included)",
        f"- per pipeline batch ({len(batch_p95)} batches), p95 of event timestamp → visible in gold: "
        f"median {statistics.median(batch_p95):.2f} s, p95 {quantile(batch_p95, 0.95):.2f} s, "
        f"max {max(batch_p95):.2f} s",
        f"- canary lag (publish → processed past gold, {len(canary)} canaries): median "
        f"{statistics.median(canary):.2f} s, p95 {quantile(canary, 0.95):.2f} s",
    ]
    report(lines, args.results)


if __name__ == "__main__":
    main()

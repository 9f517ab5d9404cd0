"""The Confluent wire format on Kafka values: frames found, stripped and screened in bulk."""

from __future__ import annotations

import copy
import json
import struct
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from vhlake.events.model import event_json_schema
from vhlake.events.registry_client import RegistrySchema
from vhlake.ingest.parse import ParsedBatch, new_parser_connection
from vhlake.ingest.wire_format import MAX_IDS_PER_BATCH, parse_framed, schema_verdicts, unframe

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def framed(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">i", schema_id) + payload


def event(number: int) -> bytes:
    return json.dumps(
        {
            "event_id": f"e{number}",
            "event_type": "validation_started",
            "timestamp": "2026-03-01T10:00:00Z",
            "job_id": f"j{number}",
            "user_id": "u1",
            "marketplace": "shopee",
            "category": "books",
            "payload": {},
        }
    ).encode()


def records(values: list[bytes]) -> pa.Table:
    return pa.table(
        {
            "source_offset": pa.array(range(10, 10 + len(values)), pa.int64()),
            "raw": pa.array(values, pa.large_binary()),
        }
    )


class FakeRegistry:
    """An in-memory :class:`SchemaLookup` that counts its lookups."""

    def __init__(self, schemas: dict[int, RegistrySchema]) -> None:
        self.schemas = schemas
        self.asked: list[int] = []

    def schema(self, schema_id: int) -> RegistrySchema | None:
        self.asked.append(schema_id)
        return self.schemas.get(schema_id)


def json_schema(schema: dict[str, Any]) -> RegistrySchema:
    return RegistrySchema("JSON", json.dumps(schema))


def parse(values: list[bytes], registry: FakeRegistry | None) -> ParsedBatch:
    """Kafka values of one partition through :func:`parse_framed`, checked by ``registry`` if any."""
    return parse_framed(
        new_parser_connection(),
        records(values),
        source="kafka:t:0",
        ingestion_time=NOW,
        default_source_system="test",
        lookup=registry,
        ours=event_json_schema(),
    )


def test_unframe_strips_frames_keeps_ids_and_leaves_plain_records_alone() -> None:
    values = [framed(7, b'{"a":1}'), b'{"b":2}', framed(2**31 - 1, b"{}"), b"\x00\x00", b"", framed(-1, b"")]
    unframed = unframe(records(values))
    assert unframed.records["raw"].to_pylist() == [b'{"a":1}', b'{"b":2}', b"{}", b"\x00\x00", b"", b""]
    assert unframed.schema_ids.to_pylist() == [7, None, 2**31 - 1, None, None, -1]
    assert unframed.records["source_offset"].to_pylist() == list(range(10, 16))


def test_unframe_of_a_sliced_chunked_column_reads_the_right_bytes() -> None:
    values = [b'{"x":0}', framed(3, b'{"x":1}'), framed(4, b'{"x":2}')]
    table = pa.concat_tables([records(values[:1]), records(values[1:])]).slice(1)
    unframed = unframe(table)
    assert unframed.records["raw"].to_pylist() == [b'{"x":1}', b'{"x":2}']
    assert unframed.schema_ids.to_pylist() == [3, 4]


def test_an_unframed_batch_is_returned_as_it_came() -> None:
    batch = records([b"{}", b"[]"])
    unframed = unframe(batch)
    assert unframed.records is batch
    assert unframed.schema_ids.null_count == 2


def test_verdicts_accept_our_schema_and_refuse_unknown_foreign_and_incompatible_ids() -> None:
    ours = event_json_schema()
    narrower = copy.deepcopy(ours)
    narrower["properties"]["event_type"]["enum"].append("validation_cancelled")  # ours refuses it
    registry = FakeRegistry(
        {
            1: json_schema(ours),
            2: json_schema(narrower),
            3: RegistrySchema("AVRO", '{"type": "record"}'),
            4: RegistrySchema("JSON", "not json"),
        }
    )
    verdicts = schema_verdicts([1, 2, 3, 4, 5, 1, 1], registry, ours)
    assert verdicts[1] is None
    assert "incompatible" in str(verdicts[2]) and "validation_cancelled" in str(verdicts[2])
    assert verdicts[3] == "schema id 3 is a AVRO schema; vhlake reads JSON events"
    assert verdicts[4] == "schema id 4 is not valid JSON"
    assert verdicts[5] == "schema id 5 is not in the schema registry"
    assert sorted(registry.asked) == [1, 2, 3, 4, 5]  # once per distinct id


@pytest.mark.parametrize("with_registry", [False, True])
def test_parse_framed_files_every_record_once_with_ids_and_exact_reject_bytes(with_registry: bool) -> None:
    registry = FakeRegistry({1: json_schema(event_json_schema())}) if with_registry else None
    values = [
        framed(1, event(0)),
        event(1),
        framed(99, event(2)),
        framed(1, b"{not json"),
        framed(1, event(3)),
    ]
    parsed = parse(values, registry)
    bronze = parsed.bronze.sort_by("source_offset")
    rejected = parsed.rejected
    accepted = [0, 1, 4] if with_registry else [0, 1, 2, 4]
    assert bronze["source_offset"].to_pylist() == [10 + i for i in accepted]
    numbers = {0: 0, 1: 1, 2: 2, 4: 3}
    assert bronze["event_id"].to_pylist() == [f"e{numbers[i]}" for i in accepted]
    ids = {0: 1, 1: None, 2: 99, 4: 1}
    assert bronze["schema_id"].to_pylist() == [ids[i] for i in accepted]
    refused = [2, 3] if with_registry else [3]
    assert rejected["source_offset"].to_pylist() == [10 + i for i in refused]
    assert rejected["raw_bytes"].to_pylist() == [values[i] for i in refused]  # the frame kept
    errors = dict(zip(rejected["source_offset"].to_pylist(), rejected["error"].to_pylist(), strict=True))
    assert errors[13].startswith("invalid JSON")
    if with_registry:
        assert errors[12] == "schema id 99 is not in the schema registry"
        assert rejected["raw"].to_pylist()[0] == event(2).decode()


def test_a_batch_of_made_up_schema_ids_costs_a_bounded_number_of_lookups() -> None:
    """Hostile frames: thousands of distinct ids. The registry is asked about the most frequent few; the
    rest go to the rejects unasked, and every record still ends in exactly one table."""
    registry = FakeRegistry({1: json_schema(event_json_schema())})
    values = [framed(1, event(i)) for i in range(200)] + [framed(10_000 + i, event(i)) for i in range(5_000)]
    parsed = parse(values, registry)
    assert len(registry.asked) == MAX_IDS_PER_BATCH and 1 in registry.asked
    assert parsed.bronze.num_rows == 200 and set(parsed.bronze["schema_id"].to_pylist()) == {1}
    assert parsed.rejected.num_rows == 5_000
    assert parsed.rejected["raw_bytes"].to_pylist() == values[200:]
    reasons = parsed.rejected["error"].to_pylist()
    assert sum(r.endswith("is not in the schema registry") for r in reasons) == MAX_IDS_PER_BATCH - 1
    assert sum(
        r.startswith("schema id not checked: the batch had 5001 distinct") for r in reasons
    ) == 5_000 - (MAX_IDS_PER_BATCH - 1)

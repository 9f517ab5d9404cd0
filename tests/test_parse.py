"""The bulk parser on the awkward cases a real feed has: every line lands in exactly one table."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pyarrow as pa
import pytest

from conftest import make_event
from vhlake.ingest.parse import ParsedBatch, new_parser_connection, parse_records
from vhlake.lake.tables import BRONZE, REJECTED

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def parse(*lines: str | bytes | dict[str, object]) -> ParsedBatch:
    raws = [
        (json.dumps(line, ensure_ascii=False).encode() if isinstance(line, dict) else line) for line in lines
    ]
    raws = [raw.encode() if isinstance(raw, str) else raw for raw in raws]
    records = pa.table(
        {
            "source_offset": pa.array(range(1, len(raws) + 1), pa.int64()),
            "raw": pa.array(raws, pa.large_binary()),
        }
    )
    return parse_records(
        new_parser_connection(), records, source="test", ingestion_time=NOW, default_source_system="vh"
    )


def only_row(batch: ParsedBatch) -> dict[str, object]:
    assert batch.rejected.num_rows == 0, batch.rejected.to_pylist()
    assert batch.bronze.num_rows == 1
    row: dict[str, object] = batch.bronze.to_pylist()[0]
    return row


def test_clean_event_keeps_every_field_and_normalises_time_to_utc() -> None:
    row = only_row(parse(make_event(timestamp="2026-11-27T22:30:00-03:00")))
    assert row["event_id"] == "evt-1"
    assert row["timestamp"] == datetime(2026, 11, 28, 1, 30, tzinfo=UTC)
    assert row["event_date"] == date(2026, 11, 28)  # the UTC date, not the local one
    assert row["category"] == "eletrônicos"
    assert json.loads(str(row["payload"])) == {"ruleset": "ml_v3", "file_size_bytes": 1024}
    assert row["source_system"] == "vh"
    assert row["source"] == "test"
    assert row["source_offset"] == 1
    assert row["ingestion_time"] == NOW
    assert row["_rescued_data"] is None


def test_output_matches_the_bronze_and_rejected_contracts() -> None:
    batch = parse(make_event(), "garbage")
    assert batch.bronze.schema == BRONZE.schema
    assert batch.rejected.schema == REJECTED.schema


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-11-27T10:00:00Z", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T10:00:00+00:00", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T10:00:00.123456-03:00", datetime(2026, 11, 27, 13, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-27T10:00:00+05:30", datetime(2026, 11, 27, 4, 30, tzinfo=UTC)),
        ("2026-11-27 10:00:00", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),  # no offset: UTC
    ],
)
def test_timestamp_formats(timestamp: str, expected: datetime) -> None:
    row = only_row(parse(make_event(timestamp=timestamp)))
    assert row["timestamp"] == expected
    assert row["event_date"] == expected.date()


@pytest.mark.parametrize("timestamp", ["garbage", "20/11/2026 10h", "2026-13-45T99:00:00Z", 1732700000])
def test_unparseable_timestamp_is_rescued_and_filed_under_ingestion_date(timestamp: object) -> None:
    row = only_row(parse(make_event(timestamp=timestamp)))
    assert row["timestamp"] is None
    assert json.loads(str(row["_rescued_data"])) == {"timestamp": timestamp}
    assert row["event_date"] == NOW.date()


def test_mistyped_known_fields_are_rescued_with_the_column_null() -> None:
    row = only_row(parse(make_event(event_id=12, marketplace=["shopee"], payload=[1, 2])))
    assert row["event_id"] is None
    assert row["marketplace"] is None
    assert row["payload"] is None
    rescued = json.loads(str(row["_rescued_data"]))
    assert rescued == {"event_id": 12, "marketplace": ["shopee"], "payload": [1, 2]}


def test_unknown_top_level_fields_are_rescued_and_known_ones_kept() -> None:
    row = only_row(parse(make_event(region="sul", retries=2, source_offset=99)))
    assert row["job_id"] == "job-1"
    assert row["source_offset"] == 1  # ours, not the producer's
    assert json.loads(str(row["_rescued_data"])) == {"region": "sul", "retries": 2, "source_offset": 99}


def test_json_null_and_missing_fields_are_null_not_rescued() -> None:
    event = make_event(category=None)
    del event["user_id"]
    row = only_row(parse(event))
    assert row["category"] is None
    assert row["user_id"] is None
    assert row["_rescued_data"] is None


def test_escaped_strings_are_decoded() -> None:
    line = r'{"event_id":"a\"b","job_id":"caf\u00e9","marketplace":"x\\y","event_type":"validation_started"}'
    row = only_row(parse(line))
    assert row["event_id"] == 'a"b'
    assert row["job_id"] == "café"
    assert row["marketplace"] == "x\\y"


def test_payload_given_as_a_json_string_keeps_its_text() -> None:
    batch = parse(make_event(payload='{"total_rows": "12"}'), make_event(2, payload="not json"))
    assert batch.bronze["payload"].to_pylist() == ['{"total_rows": "12"}', "not json"]
    assert batch.bronze["_rescued_data"].null_count == 2


def test_producer_source_system_wins_over_the_default() -> None:
    assert only_row(parse(make_event(source_system="worker-7")))["source_system"] == "worker-7"


def test_duplicates_are_kept_in_bronze() -> None:
    batch = parse(make_event(), make_event())
    assert batch.bronze.num_rows == 2


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("not json", "invalid JSON"),
        ('{"event_id": "truncated', "invalid JSON"),
        ("[1, 2]", "JSON array is not an object"),
        ('"a string"', "JSON string is not an object"),
        ("42", "JSON number is not an object"),
        ("null", "JSON null is not an object"),
        ('{"a": NaN}', "invalid JSON"),
        ('{"a": Infinity}', "invalid JSON"),
        ('{"x":nan}', "invalid JSON"),
        ('{"payload":{"a":inf}}', "invalid JSON"),
        ('{"a":[1, -infinity]}', "invalid JSON"),
        ('{"a": 1,}', "invalid JSON"),
        ('{"a": [1, ] }', "invalid JSON"),
        ('{"a": 1} {"b": 2}', "invalid JSON"),
        ("{'a': 1}", "invalid JSON"),
        (b'{"event_id": "\xff\xfe"}', "invalid UTF-8"),
    ],
)
def test_lines_that_are_not_json_objects_are_rejected_with_the_reason(line: str | bytes, error: str) -> None:
    batch = parse(make_event(), line)
    assert batch.bronze.num_rows == 1
    (reject,) = batch.rejected.to_pylist()
    assert str(reject["error"]).startswith(error), reject["error"]
    assert reject["source_offset"] == 2
    assert reject["ingestion_date"] == NOW.date()
    raw = line if isinstance(line, bytes) else line.encode()
    if reject["raw_bytes"] is not None:
        assert reject["raw_bytes"] == raw
    else:
        assert reject["raw"] == line


def test_lenient_words_inside_strings_are_fine() -> None:
    row = only_row(parse(make_event(category="informática: NaN, Infinity, ,]")))
    assert row["category"] == "informática: NaN, Infinity, ,]"


def test_line_breaks_are_not_part_of_the_rejected_text() -> None:
    batch = parse(b"broken\r\n")
    assert batch.rejected["raw"].to_pylist() == ["broken"]


def test_a_ten_megabyte_line_is_ingested() -> None:
    big = make_event(payload={"s3_path": "x" * 10_000_000})
    row = only_row(parse(big))
    assert len(str(row["payload"])) > 10_000_000


def test_a_ten_megabyte_garbage_line_is_rejected_whole() -> None:
    batch = parse("{" + "x" * 10_000_000)
    assert batch.bronze.num_rows == 0
    assert len(batch.rejected["raw"][0].as_py()) == 10_000_001

"""The C fast path must give exactly what the DuckDB path gives, on awkward lines and on random ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vhlake.ingest import fast_parse
from vhlake.ingest.parse import KNOWN_FIELDS, new_parser_connection, parse_records
from vhlake.samples import SampleSpec, generate_lines

BATCH = {
    "source": "file:test",
    "ingestion_time": datetime(2026, 11, 27, 12, tzinfo=UTC),
    "default_source_system": "t",
}

OK = (
    '{"event_id":"e1","event_type":"validation_started","timestamp":"2026-10-27T21:00:07.623-03:00","job_id":"j",'
    '"user_id":"u","marketplace":"m","category":"c","payload":{"a":1,"b":[true,false,null],"c":"x y"}}'
)
AWKWARD = [
    OK,
    OK.replace('"e1"', '"e\\"1"'),
    OK.replace('"e1"', '"\\u00e9"'),
    OK.replace('"e1"', '"é€😀"'),
    '{"event_id":1}',
    '{"event_id":1.5,"job_id":true}',
    '{"event_id":"x","extra":1}',
    '{"zzz":[1,2],"event_id":"a"}',
    '{"event_id":NaN}',
    '{"payload":{"a":NaN}}',
    '{"payload":{"a":-Infinity}}',
    '{"x":nan}',
    '{"event_id":"a",}',
    '{"payload":[1,]}',
    '{"payload":{"a":1 ,}}',
    "[1]",
    "null",
    '"str"',
    "123",
    "{}",
    "  {}  ",
    '{ "event_id" : "sp" }',
    '{"event_id":"a","event_id":"b"}',
    '{"event_id":1,"event_id":"a"}',
    '{"payload":{"k":1,"k":2}}',
    '{"timestamp":"2026-10-27T21:00:07Z"}',
    '{"timestamp":"2026-10-27T21:00:07"}',
    '{"timestamp":"garbage"}',
    '{"timestamp":"2026-10-27 21:00:07.123456+05:30"}',
    '{"timestamp":12345}',
    '{"timestamp":null}',
    '{"timestamp":"2026-02-30T00:00:00Z"}',
    '{"timestamp":"2026-10-27"}',
    '{"timestamp":"infinity"}',
    '{"payload":"a string"}',
    '{"payload":"esc\\"aped\\u00e9"}',
    '{"payload":[1,2]}',
    '{"payload":null}',
    '{"payload":5}',
    '{"payload":{"f":1.50,"g":1e2,"h":-0,"i":12345678901234567890123,"j":0.1}}',
    '{"payload":{ "a" : 1 }}',
    '{"payload":{"del":"\x7f","ls":"\u2028"}}',
    '{"payload":{}}',
    '{"payload":{"deep":' + "[" * 80 + "]" * 80 + "}}",
    '{"category":null,"job_id":""}',
    '{"source_system":"mine"}',
    '{"event_id":"\\ud800"}',
    '{"event_id":"tab\there"}',
    '{"event_id": "truncated-1", "event_type": "valid',
    '{"a":1}}',
    '{"a":1} {"b":2}',
    "\ufeff{}",
    '{"event\\u005fid":"escaped key"}',
    '{"payload":{"k":"v"},"payload":"dup"}',
    '{"timestamp":"x\x7fy"}',
    '{"timestamp":"a\u2028b"}',
    '{"timestamp":"esc\\"aped"}',
    '{"timestamp":" 2026-10-27T21:00:07Z"}',
]
AWKWARD_BYTES = [line.encode() for line in AWKWARD] + [
    b'{"event_id":"\xff"}',
    b'{"payload":{"a":"\xc3"}}',
    b"\xff\xfe",
    b'{"event_id":"\xed\xa0\x80"}',
    b'{"event_id":"\xc0\xaf"}',
    b'{"payload":"' + b"y" * 3_000_000 + b'"}',
]


def test_the_scanner_was_built() -> None:
    # setup.py builds it optionally (an install without a compiler still works); here it must exist, or
    # the tests below would only compare the exact path with itself.
    assert fast_parse.scanner_available()


def records(lines: list[bytes]) -> pa.Table:
    return pa.table(
        {"source_offset": pa.array(range(1, len(lines) + 1), pa.int64()), "raw": pa.array(lines, pa.binary())}
    )


def assert_same(lines: list[bytes]) -> None:
    con = new_parser_connection()
    exact = parse_records(con, records(lines), **BATCH)  # type: ignore[arg-type]
    fast = fast_parse.parse_records(con, records(lines), **BATCH)  # type: ignore[arg-type]
    assert fast.bronze.equals(exact.bronze)
    assert fast.rejected.equals(exact.rejected)


@pytest.mark.slow
def test_awkward_lines_give_the_exact_paths_rows_together_and_one_by_one() -> None:
    assert_same(AWKWARD_BYTES)
    for line in AWKWARD_BYTES:
        assert_same([line])


# Bytes that end a plain run inside a string (the scanner skips plain runs 8 bytes at a time), raw as they
# would sit in a line: an escaped quote or backslash, a raw control byte, DEL, UTF-8 (U+2028 included).
RUN_ENDERS = [b'\\"', b"\\\\", b"\x01", b"\x7f", "é".encode(), "\u2028".encode(), b"\xff"]


def test_a_special_byte_anywhere_in_an_8_byte_window_gives_the_exact_paths_rows() -> None:
    lines = [
        OK.encode()
        .replace(b'"e1"', b'"' + b"a" * at + special + b"b" * (19 - at) + b'"', 1)
        .replace(b'"x y"', b'"' + b"c" * at + special + b'"', 1)
        for at in range(17)
        for special in RUN_ENDERS
    ]
    assert_same(lines)


def test_a_realistic_feed_gives_the_exact_paths_rows_and_mostly_takes_the_fast_path() -> None:
    lines = [
        line.encode()
        for line in generate_lines(SampleSpec(jobs=3000, bad_event_rate=0.02, garbage_rate=0.01))[
            "line"
        ].to_pylist()
    ]
    assert_same(lines)
    accepted, _ = fast_parse._scan(fast_parse._SCANNER, records(lines))  # type: ignore[arg-type]
    assert len(accepted) > 0.95 * len(lines)


_text = st.text(alphabet=st.sampled_from(list('ab"\\é/\x7f\u2028 {}[]:,-09.eEtrufalsn')), max_size=12)
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=True), _text
)
_json = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=8,
)
_keys = st.sampled_from([*KNOWN_FIELDS, "other"])


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    fields = draw(st.lists(st.tuples(_keys, st.one_of(_text, st.none(), _json)), max_size=6))
    body = (
        "{"
        + ",".join(f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=draw(st.booleans()))}" for k, v in fields)
        + "}"
    )
    cut = draw(st.integers(0, len(body)))
    return (body if draw(st.booleans()) else body[:cut] + draw(_text)).encode()


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(batch=st.lists(lines(), min_size=1, max_size=8))
def test_random_lines_give_the_exact_paths_rows(batch: list[bytes]) -> None:
    assert_same(batch)

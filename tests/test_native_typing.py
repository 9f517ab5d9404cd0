"""The native payload typer and lookup keys must give exactly what silver's TYPE_SQL gives."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vhlake import native
from vhlake.lake.tables import BRONZE, PAYLOAD_FIELDS
from vhlake.pipeline import silver
from vhlake.pipeline.native_typing import lookup_keys, type_payloads

GOOD = (
    '{"ruleset":"ml-v3","total_rows":1200,"valid_rows":1100,"invalid_rows":100,'
    '"error_types":{"missing_gtin":60,"bad_price":40},"processing_time_ms":5321,'
    '"file_size_bytes":456789,"s3_path":"s3://validahub/u1/f.csv"}'
)
AWKWARD = [
    None,
    "",
    "{}",
    GOOD,
    GOOD.replace('"ml-v3"', '"esc\\"aped"'),
    GOOD.replace('"ml-v3"', '"é€😀"'),
    GOOD.replace("1200", '"1200"'),
    GOOD.replace("1200", "1200.0"),
    GOOD.replace("1200", "1e3"),
    GOOD.replace("1200", "-0"),
    GOOD.replace("1200", "-12"),
    GOOD.replace("1200", "123456789012345678"),
    GOOD.replace("1200", "9223372036854775807"),
    GOOD.replace("1200", "9223372036854775808"),
    GOOD.replace("1200", "123456789012345678901234567890"),
    GOOD.replace("1200", "true"),
    GOOD.replace("1200", "null"),
    GOOD.replace("1200", "[1]"),
    GOOD.replace("1200", '{"a":1}'),
    GOOD.replace("1200", "012"),
    GOOD.replace('"ml-v3"', "7"),
    GOOD.replace('"ml-v3"', "null"),
    GOOD.replace('"ml-v3"', '{"a":"b"}'),
    GOOD.replace('{"missing_gtin":60,"bad_price":40}', "{}"),
    GOOD.replace('{"missing_gtin":60,"bad_price":40}', "null"),
    GOOD.replace('{"missing_gtin":60,"bad_price":40}', '"x"'),
    GOOD.replace('{"missing_gtin":60,"bad_price":40}', "[1,2]"),
    GOOD.replace('{"missing_gtin":60,"bad_price":40}', '{"a":"1"}'),
    GOOD.replace('{"missing_gtin":60,"bad_price":40}', '{"a":1.5}'),
    GOOD.replace('{"missing_gtin":60,"bad_price":40}', '{"a":2147483647,"b":-2147483648}'),
    GOOD.replace('{"missing_gtin":60,"bad_price":40}', '{"a":2147483648}'),
    GOOD.replace('{"missing_gtin":60,"bad_price":40}', '{"a":1,"a":2}'),
    GOOD.replace('{"missing_gtin":60,"bad_price":40}', '{"a\\"b":1}'),
    GOOD.replace('{"missing_gtin":60,"bad_price":40}', '{"a":{"b":1}}'),
    GOOD.replace('{"missing_gtin":60,"bad_price":40}', '{"é":1}'),
    GOOD.replace('{"missing_gtin":60,"bad_price":40}', '{ "a" : 1 }'),
    GOOD.replace("{", "{ ", 1),
    " " + GOOD,
    GOOD + " ",
    GOOD + "}",
    GOOD[:-1],
    '{"ruleset":"a","ruleset":"b"}',
    '{"total_rows":1,"total_rows":"2"}',
    '{"Ruleset":"case"}',
    '{"TOTAL_ROWS":5}',
    '{"rule\\u0073et":"escaped key"}',
    '{"other":{"deep":[1,{"x":null}]},"total_rows":3}',
    '{"other":' + "[" * 80 + "]" * 80 + ',"total_rows":3}',
    '{"other":1.5e3,"total_rows":3}',
    '{"other":"\\n","total_rows":3}',
    '{"s3_path":"tab\there"}',
    '{"s3_path":"del\x7f and \u2028"}',
    "[1,2]",
    '"a string"',
    "5",
    "null",
    "{,}",
    '{"a":1,}',
    '{"a":NaN}',
    '{"total_rows":-Infinity}',
    "\ufeff{}",
]


def bronze(payloads: list[str | None]) -> pa.Table:
    count = len(payloads)
    at = datetime(2026, 11, 27, 12, tzinfo=UTC)
    return pa.table(
        {
            "event_id": [f"e{i}" for i in range(count)],
            "event_type": ["validation_completed"] * count,
            "timestamp": [at] * count,
            "job_id": [f"job-{i % 7}" for i in range(count)],
            "user_id": ["u"] * count,
            "marketplace": ["shopee"] * count,
            "category": [None] * count,
            "payload": payloads,
            "ingestion_time": [at] * count,
            "source_system": ["t"] * count,
            "event_date": [at.date()] * count,
            "source": ["file:t"] * count,
            "source_offset": list(range(count)),
            "_rescued_data": [None] * count,
            "schema_id": [None] * count,
        },
        schema=BRONZE.schema,
    )


def by_sql_and_natively(
    payloads: list[str | None],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    con = duckdb.connect()
    events = bronze(payloads)
    exact = silver._typed_by_sql(con, events).sort_by("source_offset").to_pylist()
    fast = silver.type_events(con, events).sort_by("source_offset").to_pylist()
    return exact, fast


def test_the_native_library_was_built() -> None:
    # `make` installs with a C compiler; without one everything takes the SQL path (tested by the others).
    library = native.library()
    assert library is not None
    names = [library.payload_field_name(i).decode() for i in range(len(PAYLOAD_FIELDS))]
    assert names == [f.name for f in PAYLOAD_FIELDS]


def test_awkward_payloads_type_exactly_as_the_sql() -> None:
    exact, fast = by_sql_and_natively(AWKWARD)
    for want, got, payload in zip(exact, fast, AWKWARD, strict=True):
        assert got == want, payload


def test_the_typer_decides_the_payloads_producers_send() -> None:
    library = native.library()
    assert library is not None
    plain = [GOOD, "{}", None, GOOD.replace('"ml-v3"', '"é€😀"'), '{"total_rows":0}']
    columns, decided = type_payloads(library, pa.array(plain * 100))
    assert decided.all()
    assert columns["error_types"][0].as_py() == [("missing_gtin", 60), ("bad_price", 40)]
    assert columns["total_rows"].to_pylist()[:5] == [1200, None, None, 1200, 0]


def test_a_payload_with_many_error_types_grows_the_entry_buffers() -> None:
    wide = json.dumps({"error_types": {f"rule_{i}": i for i in range(3000)}}, separators=(",", ":"))
    exact, fast = by_sql_and_natively([wide, GOOD, wide])
    assert fast == exact
    assert len(fast[2]["error_types"]) == 3000


_SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(2**31) - 2, max_value=2**31 + 2),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_KEYS = st.sampled_from([f.name for f in PAYLOAD_FIELDS] + ["other", "Ruleset", "x"])


@st.composite
def payloads(draw: st.DrawFn) -> str | None:
    if draw(st.integers(0, 20)) == 0:
        return None
    fields = draw(st.lists(st.tuples(_KEYS, _VALUES), max_size=6))
    if draw(st.booleans()):
        errors = draw(st.dictionaries(st.text(max_size=4), st.integers(-(2**32), 2**32), max_size=4))
        fields.append(("error_types", errors))
    text = "{" + ",".join(json.dumps(k) + ":" + json.dumps(v, separators=(",", ":")) for k, v in fields) + "}"
    if draw(st.integers(0, 5)) == 0:
        text = text.replace(",", ", ").replace(":", ": ")
    return text


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(st.lists(payloads(), min_size=1, max_size=30))
def test_random_payloads_type_exactly_as_the_sql(batch: list[str | None]) -> None:
    exact, fast = by_sql_and_natively(batch)
    assert fast == exact


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=150), min_size=1, max_size=40))
def test_lookup_keys_are_the_sqls_md5_keys(ids: list[str]) -> None:
    library = native.library()
    assert library is not None
    ids = [*ids, "", "a" * 55, "b" * 56, "c" * 64, "d" * 119, "é" * 40]
    want = [int(hashlib.md5(i.encode()).hexdigest()[:15], 16) for i in ids]
    assert lookup_keys(library, pa.array(ids)).to_pylist() == want
    con = duckdb.connect()
    sql = "SELECT CAST(('0x' || left(md5(i), 15)) AS BIGINT) AS k FROM (SELECT unnest($ids) AS i)"
    assert con.sql(sql, params={"ids": ids}).to_arrow_table()["k"].to_pylist() == want

"""Hostile inputs to the native paths: huge maps, deep nesting, 10 MB strings, colliding ids, invalid UTF-8.

Each must give the exact path's result, never crash, and cost about what an ordinary input of the same
byte size costs. Time bounds are ratios (hostile over ordinary, best of a few runs), never wall-clock
limits: the quadratic versions these guard against were 50x to 1000x over (native/payload.c compared
each error_types key with every earlier one; native/fold.c placed rows by unkeyed low bits of their keys).
"""

from __future__ import annotations

import ctypes
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from test_fast_parse import BATCH, records
from test_native_fold import typed
from test_native_typing import bronze, by_sql_and_natively
from vhlake import native
from vhlake.ingest import fast_parse
from vhlake.ingest.parse import new_parser_connection, parse_records
from vhlake.pipeline import silver
from vhlake.pipeline.native_typing import type_payloads

# Hostile over ordinary, same bytes: linear code stays near 1 (noise on a shared machine included).
MAX_RATIO = 5.0


def best_time(work: Callable[[], object], repeats: int = 3) -> float:
    """The least CPU time of a few runs: the machine's other load changes wall time, not this."""
    times = []
    for _ in range(repeats):
        began = time.process_time()
        work()
        times.append(time.process_time() - began)
    return min(times)


def ratio(hostile: Callable[[], object], ordinary: Callable[[], object]) -> float:
    ordinary()  # warm both (first-call allocations, page faults) before timing
    hostile()
    return best_time(hostile) / best_time(ordinary)


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def error_map(keys: list[str]) -> str:
    return compact({"error_types": dict.fromkeys(keys, 12345)})


def library() -> ctypes.CDLL:
    found = native.library()
    assert found is not None
    return found


def type_natively(payloads: list[str]) -> Callable[[], object]:
    array = pa.array(payloads)
    return lambda: type_payloads(library(), array)


def test_one_map_with_many_keys_costs_what_many_small_maps_of_the_same_size_cost() -> None:
    keys = [f"rule_{i:06d}" for i in range(40_000)]
    wide = error_map(keys)
    small = [error_map(keys[at : at + 100]) for at in range(0, len(keys), 100)]
    assert abs(len(wide) - sum(map(len, small))) < len(wide) // 50
    _, decided = type_payloads(library(), pa.array([wide]))
    assert decided.all()  # typed natively, not passed on to SQL
    assert ratio(type_natively([wide]), type_natively(small)) <= MAX_RATIO


def test_keys_sharing_a_long_prefix_cost_what_short_keys_of_the_same_size_cost() -> None:
    # Keys equal but for their last bytes: every comparison of two keys reads them whole.
    similar = error_map([f"{'p' * 400}{i:05d}" for i in range(2_000)])
    plain = [error_map([f"{i:05d}{'p' * 400}" for i in range(at, at + 40)]) for at in range(0, 2_000, 40)]
    assert ratio(type_natively([similar]), type_natively(plain)) <= MAX_RATIO


def test_huge_and_hostile_maps_type_exactly_as_the_sql() -> None:
    keys = [f"rule_{i}" for i in range(20_000)]
    duplicated = error_map(keys)[:-2] + ',"rule_7":1}}'
    payloads = [error_map(keys), duplicated, error_map(["a" * 100_000, "b"]), error_map([]), None]
    exact, fast = by_sql_and_natively(payloads)
    assert fast == exact
    assert fast[1]["error_types"] is None  # DuckDB refuses the duplicate key: the SQL decided that row


def test_deep_nesting_takes_the_exact_path_in_linear_time() -> None:
    depth = 500_000
    deep = '{"other":' + "[" * depth + "]" * depth + ',"total_rows":3}'
    exact, fast = by_sql_and_natively([deep])
    assert fast == exact and fast[0]["total_rows"] == 3
    _, decided = type_payloads(library(), pa.array([deep]))
    assert not decided.any()  # beyond the scanner's depth bound: left to the exact path
    # The ordinary input of the same size takes the exact path too (its spaces), so the ratio is the
    # exact path's cost of depth.
    flat = '{"other": [' + ",".join(["1"] * (depth - 1)) + '],"total_rows":3}'
    assert not type_payloads(library(), pa.array([flat]))[1].any()
    con = duckdb.connect()

    def type_by_sql(payloads: list[str | None]) -> Callable[[], object]:
        events = bronze(payloads)
        return lambda: silver.type_events(con, events)

    assert ratio(type_by_sql([deep] * 4), type_by_sql([flat] * 4)) <= MAX_RATIO
    line = ('{"event_id":"e","payload":{"deep":' + "[" * depth + "]" * depth + "}}").encode()
    parser = new_parser_connection()
    exact_rows = parse_records(parser, records([line]), **BATCH)  # type: ignore[arg-type]
    fast_rows = fast_parse.parse_records(parser, records([line]), **BATCH)  # type: ignore[arg-type]
    assert fast_rows.bronze.equals(exact_rows.bronze) and fast_rows.rejected.equals(exact_rows.rejected)


def test_ten_megabyte_strings_are_typed_and_parsed_like_short_ones() -> None:
    size = 10 << 20
    long = compact({"ruleset": "r" * size, "total_rows": 1})
    short = [compact({"ruleset": "r" * 1000, "total_rows": 1})] * (size // 1000)
    exact, fast = by_sql_and_natively([long])
    assert fast == exact and len(fast[0]["ruleset"]) == size
    assert ratio(type_natively([long]), type_natively(short)) <= MAX_RATIO

    line = compact({"event_id": "e" * size, "event_type": "validation_started", "job_id": "j"}).encode()
    con = new_parser_connection()
    exact_rows = parse_records(con, records([line]), **BATCH)  # type: ignore[arg-type]
    fast_rows = fast_parse.parse_records(con, records([line]), **BATCH)  # type: ignore[arg-type]
    assert fast_rows.bronze.equals(exact_rows.bronze)
    assert fast_rows.bronze["event_id"][0].as_py() == "e" * size


def test_invalid_utf8_in_keys_is_left_to_the_exact_path() -> None:
    lines = [
        b'{"event_id":"e","payload":{"error_types":{"\xff":1}}}',
        b'{"event_id":"e","payload":{"error_types":{"a\xc3":1,"b":2}}}',
        b'{"event_id":"e","payload":{"\xed\xa0\x80":1}}',
        b'{"event_id":"e","\xc0\xaf":1}',
    ]
    con = new_parser_connection()
    for line in lines:
        exact = parse_records(con, records([line]), **BATCH)  # type: ignore[arg-type]
        fast = fast_parse.parse_records(con, records([line]), **BATCH)  # type: ignore[arg-type]
        assert fast.bronze.equals(exact.bronze) and fast.rejected.equals(exact.rejected)
    # Straight to the typer (an unvalidated string array): undecided, not misread.
    raw = pa.array([b'{"error_types":{"\xff":1}}', b'{"\xc3":1}'], pa.binary())
    _, decided = type_payloads(library(), raw.cast(pa.string(), safe=False))
    assert not decided.any()


BASE = datetime(2026, 11, 20, tzinfo=UTC)


def events(count: int, *, key: Callable[[int], int] | None = None) -> pa.Table:
    """Typed events of ``count`` jobs (two each); ``key`` overrides the lookup keys: job n's and event n's
    key is ``key(n)``."""
    rows = [
        {
            "job_id": f"job-{i // 2}",
            "event_id": f"ev-{i}",
            "event_type": "validation_started" if i % 2 == 0 else "validation_completed",
            "timestamp": BASE + timedelta(seconds=i),
            "marketplace": "shopee",
            "ingestion_time": BASE,
            "source": "file:a",
            "source_offset": i,
        }
        for i in range(2 * count)
    ]
    table = typed(rows)
    if key is None:
        return table
    job_keys = pa.array([key(i // 2) for i in range(table.num_rows)], pa.int64())
    event_keys = pa.array([key(i) for i in range(table.num_rows)], pa.int64())
    return table.set_column(table.schema.get_field_index("job_key"), "job_key", job_keys).set_column(
        table.schema.get_field_index("event_key"), "event_key", event_keys
    )


@pytest.mark.parametrize("shift", [20, 40])
def test_keys_colliding_in_their_low_bits_fold_in_linear_time(shift: int) -> None:
    # Distinct 60-bit keys whose low bits agree: with the table indexed by those bits, every row probed
    # past every earlier one. An id grinder finds such md5 prefixes cheaply; the keys here are set directly.
    count = 10_000
    hostile = events(count, key=lambda i: (i + 1) << shift)
    ordinary = events(count)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    fast = silver.fold_jobs(con, hostile, updated_at=BASE).sort_by("job_id").to_pylist()
    exact = silver._folded_by_sql(con, hostile, updated_at=BASE).sort_by("job_id").to_pylist()
    assert fast == exact and len(fast) == count

    def fold(events: pa.Table) -> Callable[[], object]:
        return lambda: silver.fold_jobs(con, events, updated_at=BASE)

    assert ratio(fold(hostile), fold(ordinary)) <= MAX_RATIO


def test_keys_colliding_in_their_low_bits_are_grouped_in_linear_time() -> None:
    count = 200_000
    groups = np.arange(count, dtype=np.int32) % 3
    hostile = (np.arange(count, dtype=np.int64) + 1) << 24
    ordinary = np.random.default_rng(5).integers(0, 2**60, count, dtype=np.int64)

    def group(keys: np.ndarray) -> Callable[[], object]:
        return lambda: native.keys_in_several_groups(library(), keys, groups)

    assert not native.keys_in_several_groups(library(), hostile, groups).any()
    assert ratio(group(hostile), group(ordinary)) <= MAX_RATIO

"""The default expectations' screens (pipeline/expectation_screens.py) against their SQL predicates.

A screen may only clear rows its predicate holds for; and checking with the screens must give exactly
what the predicates alone give (the same verdicts, counts, reasons and rows), whatever the values."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vhlake.lake.tables import BRONZE
from vhlake.pipeline.expectations import DEFAULT_EXPECTATIONS, MAX_PAYLOAD_BYTES, check_expectations

# Values at the edges of trim and of the rules: DuckDB's trim removes the space and Unicode spaces, not
# tabs or newlines; NULL and empty break a rule; a non-ASCII first byte is left to SQL.
HOSTILE = [
    None, "", " ", "   ", "x", " x", "x ", "\t", "\n", "\r\n", "\x00", "\u00a0", "\u3000", "\u2003", "\u3000x",
    "é", "\u00a0a", "\ufeff", "validation_started", " validation_started", "validation_started ",
    "VALIDATION_STARTED", "validation_completed", "validation_failed",
]  # fmt: skip
NO_SCREENS = tuple(dataclasses.replace(rule, screen=None) for rule in DEFAULT_EXPECTATIONS)
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def bronze(values: list[str | None], payloads: list[str | None], *, chunks: int = 1) -> pa.Table:
    """Bronze rows whose id, marketplace and type columns all take ``values``; in ``chunks`` chunks (a
    sliced second chunk, so offsets do not start at zero)."""
    rows = len(values)
    columns = {field.name: pa.nulls(rows, field.type) for field in BRONZE.schema}
    for name in ("event_id", "job_id", "marketplace", "event_type"):
        columns[name] = pa.array(values, pa.string())
    columns["payload"] = pa.array(payloads, pa.string())
    stamp = BRONZE.schema.field("timestamp").type
    columns["timestamp"] = pa.array([None if v is None else WHEN for v in values], stamp)
    columns["ingestion_time"] = pa.array([WHEN] * rows, stamp)
    columns["event_date"] = pa.array([WHEN.date()] * rows, pa.date32())
    columns["source"] = pa.array(["test"] * rows, pa.string())
    columns["source_offset"] = pa.array(range(rows), pa.int64())
    table = pa.table(columns).cast(BRONZE.schema)
    if chunks == 1 or rows < 2:
        return table
    cut = rows // 2
    padded = pa.concat_tables([table.slice(0, 1), table.slice(cut)]).combine_chunks().slice(1)
    return pa.concat_tables([table.slice(0, cut), padded])


def verdicts_agree(events: pa.Table) -> None:
    con = duckdb.connect()
    fast = check_expectations(con, events, DEFAULT_EXPECTATIONS)
    reference = check_expectations(con, events, NO_SCREENS)
    assert fast.violations == reference.violations
    assert fast.quarantined.to_pylist() == reference.quarantined.to_pylist()
    assert fast.passed.to_pylist() == reference.passed.to_pylist()


def test_each_screen_clears_only_rows_its_predicate_holds_for() -> None:
    events = bronze(HOSTILE, HOSTILE)
    con = duckdb.connect()
    con.register("bronze_batch", events)
    for rule in DEFAULT_EXPECTATIONS:
        assert rule.screen is not None
        holds = con.sql(
            f"SELECT coalesce(({rule.predicate}), false) AS ok FROM bronze_batch"
        ).to_arrow_table()
        cleared = rule.screen(events)
        wrongly = np.flatnonzero(cleared & ~holds["ok"].to_numpy(zero_copy_only=False))
        assert wrongly.tolist() == [], (rule.name, [HOSTILE[i] for i in wrongly])
    # and the screens do clear the ordinary rows (else they would save nothing)
    assert DEFAULT_EXPECTATIONS[0].screen is not None
    assert DEFAULT_EXPECTATIONS[0].screen(events).tolist()[HOSTILE.index("x")]


@pytest.mark.parametrize("chunks", [1, 2])
def test_checking_with_screens_equals_the_predicates_alone(chunks: int) -> None:
    verdicts_agree(bronze(HOSTILE, HOSTILE, chunks=chunks))


def test_the_payload_limit_is_counted_in_bytes_at_its_edge() -> None:
    at_limit, over = "a" * MAX_PAYLOAD_BYTES, "é" * (MAX_PAYLOAD_BYTES // 2) + "a"  # 2 bytes per é
    events = bronze(["validation_started"] * 3, [at_limit, over, None])
    con = duckdb.connect()
    checked = check_expectations(con, events, DEFAULT_EXPECTATIONS)
    assert checked.quarantined["reason"].to_pylist() == ["payload_too_large"]
    assert checked.passed["payload"].to_pylist() == [at_limit, None]
    verdicts_agree(events)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(HOSTILE), st.text(max_size=6)), min_size=1, max_size=40))
def test_any_values_give_the_same_verdicts(values: list[str | None]) -> None:
    verdicts_agree(bronze(values, values, chunks=2))


def test_duckdb_trim_empties_no_ascii_character_but_the_space() -> None:
    # what the not-blank screen relies on: a value led by any other ASCII character is not blank
    con = duckdb.connect()
    emptied = [
        code
        for code in range(1, 128)
        if con.execute("SELECT trim(?) = ''", [chr(code)]).fetchone() == (True,)
    ]
    assert emptied == [0x20]

"""The native fold must give exactly what silver's FOLD_SQL gives: dedupe, winners, ties, collisions."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vhlake.pipeline import silver
from vhlake.pipeline.native_fold import can_fold

UPDATED = datetime(2026, 11, 27, 12, tzinfo=UTC)
BASE = datetime(2026, 11, 20, 23, 59, tzinfo=UTC)
TYPES = ["validation_started", "validation_completed", "validation_failed", "other_type"]


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, object]]:
    """Typed events of a few jobs, with copies (same event_id, maybe other content) and ties."""
    rows: list[dict[str, object]] = []
    for n in range(draw(st.integers(1, 25))):
        copy_of = draw(st.one_of(st.none(), st.integers(0, max(0, len(rows) - 1)))) if rows else None
        row: dict[str, object] = {
            "job_id": f"job-{draw(st.integers(0, 5))}",
            "event_id": f"ev-{draw(st.integers(0, 30))}",
            "event_type": draw(st.sampled_from(TYPES)),
            "timestamp": BASE + timedelta(seconds=draw(st.integers(0, 4))),
            "user_id": draw(st.sampled_from([None, "u1", "u2"])),
            "marketplace": draw(st.sampled_from(["shopee", "magalu"])),
            "category": draw(st.sampled_from([None, "books", "toys"])),
            "ruleset": draw(st.sampled_from([None, "r1"])),
            "total_rows": draw(st.one_of(st.none(), st.integers(0, 100))),
            "valid_rows": draw(st.one_of(st.none(), st.integers(0, 100))),
            "invalid_rows": draw(st.one_of(st.none(), st.integers(0, 100))),
            "error_types": draw(st.one_of(st.none(), st.just([("a", 1)]), st.just([]))),
            "processing_time_ms": draw(st.one_of(st.none(), st.integers(-5, 100))),
            "file_size_bytes": draw(st.one_of(st.none(), st.integers(0, 9))),
            "s3_path": draw(st.sampled_from([None, "s3://a", "s3://b"])),
            "ingestion_time": BASE + timedelta(seconds=draw(st.integers(0, 2))),
            "source": draw(st.sampled_from(["file:b", "file:a", "kafka:t:0"])),
            "source_offset": n,
        }
        if copy_of is not None and draw(st.booleans()):
            row["event_id"] = rows[copy_of]["event_id"]  # a copy, maybe for another job or with other values
        rows.append(row)
    return rows


def key(text: str) -> int:
    return int(hashlib.md5(text.encode()).hexdigest()[:15], 16)


def typed(rows: Sequence[Mapping[str, object]], *, collide: bool = False) -> pa.Table:
    """Typed events with their lookup keys; with ``collide``, every id on the same key, so only the id
    bytes tell them apart."""
    return pa.Table.from_pylist(
        [
            {
                **r,
                "job_key": 7 if collide else key(str(r["job_id"])),
                "event_key": 7 if collide else key(str(r["event_id"])),
            }
            for r in rows
        ],
        schema=silver.TYPED_SCHEMA,
    )


def both(events: pa.Table) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    exact = silver._folded_by_sql(con, events, updated_at=UPDATED).sort_by("job_id").to_pylist()
    fast = silver.fold_jobs(con, events, updated_at=UPDATED).sort_by("job_id").to_pylist()
    return exact, fast


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(histories(), st.booleans())
def test_the_native_fold_equals_the_sql_fold(rows: list[dict[str, object]], collide: bool) -> None:
    events = typed(rows, collide=collide)
    assert can_fold(events)
    exact, fast = both(events)
    assert fast == exact


def test_a_job_created_just_before_midnight_utc_is_filed_under_that_date() -> None:
    rows = [
        {"job_id": "j", "event_id": "s", "event_type": "validation_started", "timestamp": BASE,
         "marketplace": "shopee", "ingestion_time": BASE, "source": "f", "source_offset": 0},
        {"job_id": "j", "event_id": "t", "event_type": "validation_completed",
         "timestamp": BASE + timedelta(minutes=5), "marketplace": "shopee", "ingestion_time": BASE,
         "source": "f", "source_offset": 1, "processing_time_ms": 9},
    ]  # fmt: skip
    exact, fast = both(typed(rows))
    assert fast == exact
    assert fast[0]["created_date"] == BASE.date()
    assert fast[0]["status"] == "success"
    assert fast[0]["completed_at"] == BASE + timedelta(minutes=5)


def test_events_with_null_ordering_columns_take_the_sql_fold() -> None:
    rows = [{"job_id": "j", "event_id": "e", "event_type": None, "timestamp": BASE, "marketplace": "m",
             "ingestion_time": BASE, "source": "f", "source_offset": 0}]  # fmt: skip
    events = typed(rows)
    assert not can_fold(events)
    exact, fast = both(events)
    assert fast == exact

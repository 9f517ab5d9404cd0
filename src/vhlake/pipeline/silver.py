"""Bronze events → typed job events → one silver row per job (docs/semantics.md).

Pure: Arrow in, Arrow out. ``type_events`` parses each payload once, when the event first passes the
expectations; ``fold_jobs`` takes the whole (typed) history of some jobs and folds it, so the result never
depends on how the events were split into batches or ordered.
"""

from __future__ import annotations

import ctypes
from datetime import datetime

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.duck.arrow import registered
from vhlake.lake.tables import JOB_EVENTS, PAYLOAD_FIELDS, SILVER
from vhlake.native import library
from vhlake.pipeline.native_fold import Winners, can_fold, find_winners
from vhlake.pipeline.native_typing import lookup_keys, type_payloads


def _kind(field: pa.Field) -> str:
    if pa.types.is_map(field.type):
        return "map"
    return "int" if pa.types.is_integer(field.type) else "string"


_FIELDS = {field.name: _kind(field) for field in PAYLOAD_FIELDS}
# Each payload is parsed once, into its fields' JSON texts; the types are then decided on those small texts.
_SPLIT = "{" + ",".join(f'"{name}":"JSON"' for name in _FIELDS) + "}"
# A map of integers only: a value of another type ("3", 1.5) makes the whole map NULL, as Spark's from_json.
_INT_MAP = r'\{("([^"\\]|\\.)*":-?[0-9]+(,"([^"\\]|\\.)*":-?[0-9]+)*)?\}'
_TYPED_FIELD = {
    # integers only: "12", 1.5 and 1e3 are not; out of range becomes NULL
    "int": "CASE WHEN regexp_full_match(f.{f}::VARCHAR, '-?[0-9]+') THEN TRY_CAST(f.{f}::VARCHAR AS BIGINT) END",
    "string": "CASE WHEN starts_with(f.{f}::VARCHAR, '\"') THEN f.{f} ->> '$' END",
    # a value beyond 32 bits: TRY_CAST nulls only that value, and the whole map must go
    "map": (
        f"CASE WHEN regexp_full_match(f.{{f}}::VARCHAR, '{_INT_MAP}') "
        "AND list_count(map_values(TRY_CAST(f.{f} AS MAP(VARCHAR, INTEGER)))) "
        "= cardinality(TRY_CAST(f.{f} AS MAP(VARCHAR, INTEGER))) "
        "THEN TRY_CAST(f.{f} AS MAP(VARCHAR, INTEGER)) END"
    ),
}
_COLUMNS = ",\n    ".join(
    f"{_TYPED_FIELD[kind].replace('{f}', name)} AS {name}" for name, kind in _FIELDS.items()
)

# A stored lookup key: 60 bits of the md5 (stable across versions, unlike DuckDB's ``hash``; the hex
# prefix costs a third of ``md5_number_lower``), a signed BIGINT because Delta has no unsigned integers.
_LOOKUP_KEY = "CAST(('0x' || left(md5({column}), 15)) AS BIGINT)"

# Payload fields are strictly typed: "12", 1.5, [] and out-of-range numbers become NULL.
TYPE_SQL = f"""
WITH split AS (
    SELECT *, CASE WHEN json_valid(payload) AND starts_with(ltrim(payload), '{{')
        THEN json_transform(payload, '{_SPLIT}') END AS f
    FROM events
)
SELECT job_id, event_id, event_type, "timestamp", user_id, marketplace, category,
    {_COLUMNS},
    ingestion_time, source, source_offset,
    {_LOOKUP_KEY.format(column="job_id")} AS job_key,
    {_LOOKUP_KEY.format(column="event_id")} AS event_key
FROM split
"""  # noqa: S608

FOLD_SQL = """
WITH firsts AS (
    -- the first received copy of an event wins (bronze order: ingestion time, then source position);
    -- duplicates are rare, so only their ids are grouped, not every event
    SELECT event_id, min((ingestion_time, source, source_offset)) AS first_copy
    FROM events GROUP BY event_id HAVING count(*) > 1
), deduped AS (
    SELECT e.* RENAME ("timestamp" AS ts) FROM events e
    ANTI JOIN firsts f ON e.event_id = f.event_id AND (e.ingestion_time, e.source, e.source_offset) <> f.first_copy
), folded AS (
    -- one pass per job: its earliest start and latest terminal (ties broken by event_id, so the
    -- result never depends on arrival order), its first event
    SELECT job_id,
        arg_min({'ts': ts, 'user_id': user_id, 'marketplace': marketplace, 'category': category, 'ruleset': ruleset,
                 'file_size_bytes': file_size_bytes, 's3_path': s3_path}, (ts, event_id))
            FILTER (WHERE event_type = 'validation_started') AS s,
        arg_max({'ts': ts, 'event_type': event_type, 'user_id': user_id, 'marketplace': marketplace, 'category': category,
                 'ruleset': ruleset, 'total_rows': total_rows, 'valid_rows': valid_rows, 'invalid_rows': invalid_rows,
                 'error_types': error_types, 'processing_time_ms': processing_time_ms,
                 'file_size_bytes': file_size_bytes, 's3_path': s3_path}, (ts, event_id))
            FILTER (WHERE event_type <> 'validation_started') AS t,
        min(ts) AS first_ts,
        arg_min(marketplace, (ts, event_id)) AS any_marketplace
    FROM deduped GROUP BY job_id
)
SELECT
    job_id,
    coalesce(s.user_id, t.user_id) AS user_id,
    coalesce(s.marketplace, t.marketplace, any_marketplace) AS marketplace,
    coalesce(s.category, t.category) AS category,
    coalesce(t.ruleset, s.ruleset) AS ruleset,
    CASE t.event_type WHEN 'validation_completed' THEN 'success' WHEN 'validation_failed' THEN 'failed'
        ELSE 'running' END AS status,
    t.total_rows, t.valid_rows, t.invalid_rows, t.error_types,
    CASE WHEN t.processing_time_ms >= 0 THEN t.processing_time_ms END AS processing_time_ms,
    coalesce(t.file_size_bytes, s.file_size_bytes) AS file_size_bytes,
    coalesce(t.s3_path, s.s3_path) AS s3_path,
    coalesce(s.ts, first_ts) AS created_at,
    t.ts AS completed_at,
    CAST(coalesce(s.ts, first_ts) AS DATE) AS created_date,
    $updated_at AS updated_at
FROM folded
"""

# Typed events carry their lookup keys; the fold reads only the event columns.
TYPED_SCHEMA = pa.schema([f for f in JOB_EVENTS.schema if f.name != "job_date"])
_FOLDED = pa.schema([f for f in TYPED_SCHEMA if f.name not in ("job_key", "event_key")])


def type_events(con: duckdb.DuckDBPyConnection, events: pa.Table) -> pa.Table:
    """Bronze events (already past the expectations) with their payload parsed into typed columns.

    The native typer decides nearly every row; the rows it leaves (odd JSON, missing ids) and every row
    when it is not built are typed by ``TYPE_SQL``. Row order is not kept: the fold does not depend on it.
    """
    native = library()
    if native is None or events.num_rows == 0:
        return _typed_by_sql(con, events)
    columns, decided = type_payloads(native, events["payload"])
    decided &= _valid(events["job_id"]) & _valid(events["event_id"])
    if decided.all():
        return _with_payload_fields(native, events, columns)
    keep = pa.array(decided)
    fast = {name: column.filter(keep) for name, column in columns.items()}
    return pa.concat_tables(
        [
            _with_payload_fields(native, events.filter(keep), fast),
            _typed_by_sql(con, events.filter(pc.invert(keep))),
        ]
    )


def _typed_by_sql(con: duckdb.DuckDBPyConnection, events: pa.Table) -> pa.Table:
    with registered(con, events=events):
        rows = con.sql(TYPE_SQL).to_arrow_table()
    return rows.cast(TYPED_SCHEMA)


def _with_payload_fields(native: ctypes.CDLL, events: pa.Table, payload: dict[str, pa.Array]) -> pa.Table:
    columns = {
        **{name: events[name] for name in TYPED_SCHEMA.names[:7]},
        **{field.name: payload[field.name] for field in PAYLOAD_FIELDS},
        **{name: events[name] for name in ("ingestion_time", "source", "source_offset")},
        "job_key": lookup_keys(native, events["job_id"]),
        "event_key": lookup_keys(native, events["event_id"]),
    }
    return pa.table(columns).cast(TYPED_SCHEMA)


def _valid(column: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    return np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=bool)


def fold_jobs(con: duckdb.DuckDBPyConnection, events: pa.Table, *, updated_at: datetime) -> pa.Table:
    """Dedupe typed events by ``event_id`` and fold them into one silver row per ``job_id``.

    Natively when the library is built and the ordering columns have no nulls (the expectations see to
    that by default); otherwise, and as the reference, with ``FOLD_SQL``. Row order is not significant.
    """
    native = library()
    if native is None or not can_fold(events):
        return _folded_by_sql(con, events, updated_at=updated_at)
    return _silver_rows(events, find_winners(native, events), updated_at)


def fold_and_file(
    con: duckdb.DuckDBPyConnection,
    events: pa.Table,
    *,
    updated_at: datetime,
    superseded: npt.NDArray[np.int64] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """The silver rows of jobs whose whole history is ``events``, and those events filed under their job's
    created date (job events rows; a dropped copy of an event in a job with no other event is not filed).

    ``superseded``: rows that are later copies of an event first received in another job, outside
    ``events`` (the first build finds them across its buckets).
    """
    native = library()
    if native is None or not can_fold(events):
        if superseded is not None and len(superseded):
            raise ValueError("superseded copies need the native fold")
        folded = _folded_by_sql(con, events, updated_at=updated_at)
        places = folded.select(["job_id", "created_date"]).rename_columns(["job_id", "job_date"])
        return folded, file_events(con, events, places)
    winners = find_winners(native, events, superseded=superseded)
    folded = _silver_rows(events, winners, updated_at)
    filed = winners.job_of >= 0
    rows = events if filed.all() else events.filter(pa.array(filed))
    job_date = folded["created_date"].take(pa.array(winners.job_of[filed]))
    rows = rows.select(TYPED_SCHEMA.names).append_column("job_date", job_date)
    return folded, rows.cast(JOB_EVENTS.schema)


def _silver_rows(events: pa.Table, winners: Winners, updated_at: datetime) -> pa.Table:
    """FOLD_SQL's output columns, each gathered in one take from the winning rows: a coalesce over
    winners is a choice of row per job (the first winner whose value is not null)."""
    s, t, first = winners.started, winners.terminal, winners.earliest

    def gather(column: str, *candidates: npt.NDArray[np.int64]) -> pa.ChunkedArray:
        return events[column].take(_first_valid(events[column], candidates))

    created_at = gather("timestamp", s, first)
    event_type = gather("event_type", t)
    time_ms = gather("processing_time_ms", t)
    columns = {
        "job_id": gather("job_id", winners.first_row),
        "user_id": gather("user_id", s, t),
        "marketplace": gather("marketplace", s, t, first),
        "category": gather("category", s, t),
        "ruleset": gather("ruleset", t, s),
        "status": pc.if_else(
            _is(event_type, "validation_completed"),
            "success",
            pc.if_else(_is(event_type, "validation_failed"), "failed", "running"),
        ),
        **{name: gather(name, t) for name in ("total_rows", "valid_rows", "invalid_rows", "error_types")},
        "processing_time_ms": pc.if_else(_is_true(pc.greater_equal(time_ms, 0)), time_ms, None),
        "file_size_bytes": gather("file_size_bytes", t, s),
        "s3_path": gather("s3_path", t, s),
        "created_at": created_at,
        "completed_at": gather("timestamp", t),
        "created_date": pc.cast(created_at, pa.date32()),
        "updated_at": pa.repeat(
            pa.scalar(updated_at, SILVER.schema.field("updated_at").type), len(created_at)
        ),
    }
    return pa.table(columns).cast(SILVER.schema)


def _first_valid(column: pa.ChunkedArray, candidates: tuple[npt.NDArray[np.int64], ...]) -> pa.Array:
    """Per job, the first of its candidate rows (-1: none) whose value in ``column`` is not null."""
    valid = _valid(column)
    chosen = np.full(len(candidates[0]), -1, np.int64)
    for rows in candidates:
        usable = (chosen < 0) & (rows >= 0)
        usable[usable] = valid[rows[usable]]
        chosen[usable] = rows[usable]
    return pa.array(chosen, mask=chosen < 0)


def _is(column: pa.ChunkedArray, value: str) -> pa.ChunkedArray:
    return _is_true(pc.equal(column, value))


def _is_true(flags: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.fill_null(flags, False)


def _folded_by_sql(con: duckdb.DuckDBPyConnection, events: pa.Table, *, updated_at: datetime) -> pa.Table:
    with registered(con, events=events.select(_FOLDED.names)):
        rows = con.sql(FOLD_SQL, params={"updated_at": updated_at}).to_arrow_table()
    return rows.select(SILVER.schema.names).cast(SILVER.schema)


def file_events(con: duckdb.DuckDBPyConnection, events: pa.Table, places: pa.Table) -> pa.Table:
    """Typed events with the ``job_date`` their job is filed under (``places``: job_id, job_date).

    A copy of an event first received for another job is not filed: the fold dropped it, and a later
    re-fold of its job alone (without the other job's history) would count it.
    """
    query = """
    WITH firsts AS (
        SELECT event_id, arg_min(job_id, (ingestion_time, source, source_offset)) AS first_job
        FROM events GROUP BY event_id HAVING count(*) > 1
    )
    SELECT e.*, p.job_date FROM events e JOIN places p USING (job_id)
    ANTI JOIN firsts f ON e.event_id = f.event_id AND e.job_id <> f.first_job
    """
    with registered(con, events=events.select(TYPED_SCHEMA.names), places=places):
        rows = con.sql(query).to_arrow_table()
    return rows.select(JOB_EVENTS.schema.names).cast(JOB_EVENTS.schema)

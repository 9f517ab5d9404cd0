"""The fast path of bronze parsing: a small C scanner (``native/scan.c``) in front of the exact DuckDB path.

Most lines a producer writes are in one simple form: a JSON object of known keys whose values are plain
strings (no escapes), null, or a payload object already in minified form. For those, every bronze column
is a byte slice of the line, so the scanner records the slices and the columns are gathered straight into
Arrow buffers: no JSON re-parse, no Python object per value. Every other line, and every line the scanner
is unsure about, goes through :func:`vhlake.ingest.parse.parse_records`, so the output is the exact path's,
bit for bit (tests/test_fast_parse.py checks it). Without the compiled scanner everything takes the exact
path.
"""

from __future__ import annotations

import ctypes
import threading
from datetime import datetime

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.duck.arrow import registered
from vhlake.ingest.parse import KNOWN_FIELDS, ParsedBatch, add_batch_columns, rejected_rows
from vhlake.ingest.parse import parse_records as exact_parse_records
from vhlake.lake.tables import BRONZE
from vhlake.native import address, gather_strings, library, string_buffers

_FIELDS = len(KNOWN_FIELDS)
# The exact path's first filter: a line failing it is a reject whatever else holds.
_FILTER_SQL = (
    "SELECT coalesce(json_valid(txt) AND starts_with(ltrim(txt, ' \t\r\n'), '{'), false) AS passes "
    "FROM (SELECT try(decode(raw)) AS txt FROM rest)"
)
# The exact path's timestamp cast, on the accepted lines' timestamp texts.
# The timestamp is parsed once and its date cast from it (a second try_cast doubled the statement's cost).
_TIMESTAMP_SQL = (
    'SELECT ts AS "timestamp", CAST(ts AS DATE) AS event_date '
    "FROM (SELECT try_cast(t AS TIMESTAMPTZ) AS ts FROM ts_text)"
)


_SCANNER = library()
_SCRATCH = threading.local()


def scanner_available() -> bool:
    return _SCANNER is not None


def parse_records(
    con: duckdb.DuckDBPyConnection,
    records: pa.Table,
    *,
    source: str,
    ingestion_time: datetime,
    default_source_system: str,
) -> ParsedBatch:
    """Same contract and output as :func:`vhlake.ingest.parse.parse_records`, faster on simple lines."""

    def exact(rows: pa.Table) -> ParsedBatch:
        return exact_parse_records(
            con,
            rows,
            source=source,
            ingestion_time=ingestion_time,
            default_source_system=default_source_system,
        )

    if _SCANNER is None or records.num_rows == 0:
        return exact(records)
    accepted, columns = _scan(_SCANNER, records)
    fast, taken = _fast_rows(con, records, accepted, columns)
    fast = add_batch_columns(
        fast, source=source, ingestion_time=ingestion_time, default_source_system=default_source_system
    )
    fast = fast.select(BRONZE.schema.names).cast(BRONZE.schema)
    others = np.flatnonzero(~taken)
    if len(others) == 0:
        return ParsedBatch(
            bronze=fast,
            rejected=rejected_rows(records.slice(0, 0), source=source, ingestion_time=ingestion_time),
        )
    rest = records.take(pa.array(others))
    with registered(con, rest=rest):
        passes = con.sql(_FILTER_SQL).to_arrow_table()["passes"].to_numpy(zero_copy_only=False)
    direct = rejected_rows(rest.filter(pa.array(~passes)), source=source, ingestion_time=ingestion_time)
    if not passes.any():
        return ParsedBatch(bronze=fast, rejected=direct)
    slow = exact(rest.filter(pa.array(passes)))
    rejected = pa.concat_tables([direct, slow.rejected])
    if slow.rejected.num_rows and direct.num_rows:
        rejected = rejected.take(pc.sort_indices(rejected["source_offset"]))
    return ParsedBatch(bronze=_merge_by_offset(fast, slow.bronze), rejected=rejected)


def _scan(scanner: ctypes.CDLL, records: pa.Table) -> tuple[npt.NDArray[np.int64], dict[str, pa.Array]]:
    """Which lines the scanner accepted, and their known fields as string columns (NULL when absent)."""
    count = records.num_rows
    raw = records["raw"].combine_chunks()
    lines = string_buffers(raw)  # raw stays referenced: lines.data points into its buffer
    starts, lens, rows = _scratch(count)
    slots = _FIELDS * count
    accepted_count = scanner.scan_lines(
        lines.data, address(lines.offsets, np.int64, count + 1), count, address(starts, np.int64, slots),
        address(lens, np.int32, slots), address(rows, np.int64, count),
    )  # fmt: skip
    columns = {
        name: gather_strings(
            scanner,
            lines,
            starts[f * count : f * count + accepted_count],
            lens[f * count : f * count + accepted_count],
        )
        for f, name in enumerate(KNOWN_FIELDS)
    }
    return rows[:accepted_count].copy(), columns


def _fast_rows(
    con: duckdb.DuckDBPyConnection,
    records: pa.Table,
    accepted: npt.NDArray[np.int64],
    columns: dict[str, pa.Array],
) -> tuple[pa.Table, npt.NDArray[np.bool_]]:
    """Bronze rows (without the batch columns) of the accepted lines, and which input rows they cover.

    A timestamp that does not parse is rescued as its raw text; the few texts a JSON writer might have
    escaped differently (DEL, U+2028, U+2029) are left to the exact path.
    """
    with registered(con, ts_text=pa.table({"t": columns["timestamp"]})):
        cast = con.sql(_TIMESTAMP_SQL).to_arrow_table()
    timestamps = cast["timestamp"].combine_chunks()
    keep, rescued = _rescued_timestamps(timestamps, columns["timestamp"])
    fast = pa.table(
        {
            **{name: columns[name] for name in ("event_id", "event_type")},
            "timestamp": timestamps,
            **{name: columns[name] for name in ("job_id", "user_id", "marketplace", "category", "payload")},
            "source_system": columns["source_system"],
            "event_date": cast["event_date"],
            "source_offset": records["source_offset"].take(pa.array(accepted)),
            "_rescued_data": rescued,
        }
    )
    taken = np.zeros(records.num_rows, dtype=bool)
    taken[accepted[keep]] = True
    return (fast if keep.all() else fast.filter(pa.array(keep))), taken


def _rescued_timestamps(timestamps: pa.Array, texts: pa.Array) -> tuple[npt.NDArray[np.bool_], pa.Array]:
    """Which rows the fast path keeps, and each row's ``_rescued_data``: the raw text of a timestamp that
    did not parse (NULL otherwise). Both are worked out on those few rows only."""
    unparsed = np.flatnonzero(
        np.asarray(pc.and_(timestamps.is_null(), texts.is_valid()).to_numpy(zero_copy_only=False), dtype=bool)
    )
    keep = np.ones(len(texts), dtype=bool)
    if len(unparsed) == 0:
        return keep, pa.nulls(len(texts), pa.string())
    raw = texts.take(pa.array(unparsed))
    odd = pc.fill_null(pc.match_substring_regex(raw, "[\\x7f\\x{2028}\\x{2029}]"), False)
    keep[unparsed] = ~np.asarray(odd.to_numpy(zero_copy_only=False), dtype=bool)
    where = np.full(len(texts), -1, np.int64)
    where[unparsed] = np.arange(len(unparsed))
    wrapped = pc.binary_join_element_wise('{"timestamp":"', raw, '"}', "")
    return keep, wrapped.take(pa.array(where, mask=where < 0))


def _scratch(count: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Per-thread scan buffers, reused across batches (no page faults on every batch)."""
    held = getattr(_SCRATCH, "buffers", None)
    if held is None or len(held[2]) < count:
        size = max(count, 1 << 17)
        held = (
            np.empty(_FIELDS * size, np.int64),
            np.empty(_FIELDS * size, np.int32),
            np.empty(size, np.int64),
        )
        _SCRATCH.buffers = held
    starts, lens, rows = held
    return starts[: _FIELDS * count], lens[: _FIELDS * count], rows[:count]


def _merge_by_offset(fast: pa.Table, few: pa.Table) -> pa.Table:
    """Both sorted by source_offset, ``few`` small: interleave slices, then one contiguous copy."""
    if few.num_rows == 0:
        return fast
    at = np.searchsorted(fast["source_offset"].to_numpy(), few["source_offset"].to_numpy())
    parts, previous = [], 0
    for k, position in enumerate(at.tolist()):
        if position > previous:
            parts.append(fast.slice(previous, position - previous))
        parts.append(few.slice(k, 1))
        previous = position
    if previous < fast.num_rows:
        parts.append(fast.slice(previous))
    return pa.concat_tables(parts).combine_chunks()

"""Delta file statistics (``numRecords``, ``nullCount``, ``minValues``, ``maxValues``) read from a Parquet
footer, as delta-rs writes them for the files it writes: the files our own writer adds to a table
(lake/direct_write.py) must be skipped by the same predicates as delta-rs's.

delta-rs's rules, which these follow (tests/test_encoding.py compares the two on the same data):

- flat columns only (nothing for maps, lists or structs), partition columns left out;
- ``nullCount`` wherever the footer has it, i.e. every column with statistics;
- min/max for numbers, booleans, dates, strings and UTC timestamps; strings cut to
  :data:`~vhlake.lake.encoding.STATISTICS_TRUNCATE_BYTES` bytes at a character boundary, the max's last
  character then incremented so it still bounds every value from above; timestamps truncated to
  milliseconds (Delta's precision: readers allow for the truncated max).

Where a row group holding values has no min/max in its footer (pyarrow drops those of a string longer than
4096 bytes) the file gets none for that column: a bound computed from the other row groups could exclude
rows the file holds and make a reader skip it wrongly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from vhlake.lake.encoding import STATISTICS_TRUNCATE_BYTES

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PER_MILLISECOND = {"s": None, "ms": 1, "us": 1_000, "ns": 1_000_000}


def delta_statistics(metadata: pq.FileMetaData, schema: pa.Schema) -> dict[str, object]:
    """The Delta statistics of a Parquet file whose footer is ``metadata`` and columns ``schema``."""
    nulls: dict[str, int] = {}
    low: dict[str, object] = {}
    high: dict[str, object] = {}
    for position in range(metadata.num_columns):
        name = metadata.schema.column(position).path
        if "." in name or name not in schema.names:
            continue
        field = schema.field(name)
        chunks = [metadata.row_group(g).column(position).statistics for g in range(metadata.num_row_groups)]
        if all(s is not None and s.has_null_count for s in chunks):
            nulls[name] = sum(s.null_count for s in chunks if s is not None)
        bounds = _bounds(field.type, chunks)
        if bounds is not None:
            low[name], high[name] = bounds
    return {"numRecords": metadata.num_rows, "minValues": low, "maxValues": high, "nullCount": nulls}


def _bounds(kind: pa.DataType, chunks: list[pq.Statistics | None]) -> tuple[object, object] | None:
    """The file's min and max of a column of type ``kind`` as Delta JSON values, from its row groups'
    statistics; None when the type has none in Delta or a row group with values lacks them."""
    if not _ranged(kind):
        return None
    lows, highs = [], []
    for stats in chunks:
        if stats is None:
            return None
        if stats.has_min_max:
            lows.append(stats.min_raw if pa.types.is_timestamp(kind) else stats.min)
            highs.append(stats.max_raw if pa.types.is_timestamp(kind) else stats.max)
        elif not stats.has_null_count or stats.num_values > 0:
            return None  # values without bounds (all-NULL row groups have none and need none)
    if not lows:
        return None
    return _json(kind, min(lows), upper=False), _json(kind, max(highs), upper=True)


def _ranged(kind: pa.DataType) -> bool:
    """Whether delta-rs writes min/max for a column of type ``kind``."""
    if pa.types.is_timestamp(kind):
        return bool(kind.tz is not None and _PER_MILLISECOND[kind.unit] is not None)
    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_date32(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


def _json(kind: pa.DataType, value: object, *, upper: bool) -> object:
    """A footer min/max as delta-rs writes it in the Delta log."""
    if isinstance(value, str):
        return string_upper_bound(value) if upper else string_lower_bound(value)
    if pa.types.is_timestamp(kind):
        assert isinstance(value, int)
        return timestamp_text(value, kind.unit)
    if isinstance(value, date):
        return value.isoformat()
    return value


def timestamp_text(value: int, unit: str) -> str:
    """A UTC timestamp stored as ``value`` ``unit`` since the epoch, truncated to milliseconds (towards
    the past) as delta-rs writes it: ``2024-05-01T01:02:03.120Z``, without a fraction when it is zero."""
    per = _PER_MILLISECOND[unit]
    assert per is not None
    moment = _EPOCH + timedelta(milliseconds=value // per)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = moment.microsecond // 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def string_lower_bound(value: str) -> str:
    """``value`` cut to at most :data:`STATISTICS_TRUNCATE_BYTES` UTF-8 bytes at a character boundary
    (a prefix sorts before the value); the value itself when no non-empty prefix fits."""
    cut = _prefix(value)
    return cut if cut else value


def string_upper_bound(value: str) -> str:
    """A string of at most :data:`STATISTICS_TRUNCATE_BYTES` UTF-8 bytes sorting after every string that
    starts like ``value`` (its prefix with the last character that can be incremented in the same number
    of bytes incremented, what follows dropped); ``value`` itself when short enough or when none can."""
    if len(value.encode()) <= STATISTICS_TRUNCATE_BYTES:
        return value
    cut = _prefix(value)
    for index in range(len(cut) - 1, -1, -1):
        successor = _successor(cut[index])
        if successor is not None:
            return cut[:index] + successor
    return value


def _prefix(value: str) -> str:
    """The longest prefix of ``value`` within :data:`STATISTICS_TRUNCATE_BYTES` UTF-8 bytes."""
    if len(value.encode()) <= STATISTICS_TRUNCATE_BYTES:
        return value
    return value.encode()[:STATISTICS_TRUNCATE_BYTES].decode(errors="ignore")


def _successor(char: str) -> str | None:
    """The next code point after ``char`` when it is a character of the same UTF-8 length."""
    code = ord(char) + 1
    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return None
    successor = chr(code)
    return successor if len(successor.encode()) == len(char.encode()) else None

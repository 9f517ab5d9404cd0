"""Vectorised screens for the default expectations: the rows a rule certainly lets pass, without SQL.

Evaluating the default rules in DuckDB on every bronze row cost ~0.7 µs an event (a first build of 10M
events: 7 CPU seconds), mostly ``trim`` copying three string columns. A screen looks at each row's bytes
in numpy and clears the rows that the rule's predicate certainly holds for; the rows it does not clear
(NULLs, empty or space-led strings, anything starting with a non-ASCII byte: a handful per batch) are then
evaluated by the predicate itself in DuckDB. The SQL stays the reference for every row a screen leaves,
and a screen only ever clears rows: a rule without one (a user's own) is evaluated in SQL on every row.

``tests/test_expectation_screens.py`` holds each screen to its predicate on hostile values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.native import string_buffers

Screen = Callable[[pa.Table], npt.NDArray[np.bool_]]

_SPACE = 0x20
_ASCII_END = 0x80


def _led_by_plain_ascii(column: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    """Rows whose value is non-NULL and starts with an ASCII byte other than a space: DuckDB's ``trim``
    removes only the space and Unicode spaces (every one of them non-ASCII), never such a first character,
    so ``trim(value) <> ''`` holds."""
    parts = [_chunk_led_by_plain_ascii(chunk) for chunk in column.chunks]
    return np.concatenate(parts) if parts else np.zeros(0, np.bool_)


def _chunk_led_by_plain_ascii(chunk: pa.Array) -> npt.NDArray[np.bool_]:
    buffers = string_buffers(chunk)
    starts, lengths = buffers.offsets[:-1], np.diff(buffers.offsets)
    if buffers.size == 0:
        return np.zeros(len(chunk), np.bool_)
    data = np.frombuffer(chunk.buffers()[2], np.uint8, buffers.size)
    first = data[np.minimum(starts, buffers.size - 1)]  # an empty value's read is masked out below
    cleared: npt.NDArray[np.bool_] = (lengths > 0) & (first != _SPACE) & (first < _ASCII_END)
    return cleared & _valid(chunk)


def _valid(values: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    return np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False), dtype=np.bool_)


def not_blank(column: str) -> Screen:
    """For ``coalesce(trim(column), '') <> ''``."""
    return lambda events: _led_by_plain_ascii(events[column])


def one_of(column: str, values: tuple[str, ...]) -> Screen:
    """For ``coalesce(column IN (values), false)``."""
    allowed = pa.array(values, pa.string())
    return lambda events: np.asarray(
        pc.fill_null(pc.is_in(events[column], value_set=allowed), False).to_numpy(zero_copy_only=False),
        dtype=np.bool_,
    )


def present(column: str) -> Screen:
    """For ``column IS NOT NULL``."""
    return lambda events: _valid(events[column])


def at_most_bytes(column: str, limit: int) -> Screen:
    """For ``coalesce(octet_length(encode(column)), 0) <= limit``: a NULL passes (its length is 0)."""

    def screen(events: pa.Table) -> npt.NDArray[np.bool_]:
        parts = [
            (np.diff(string_buffers(chunk).offsets) <= limit) | ~_valid(chunk)
            for chunk in events[column].chunks
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.bool_)

    return screen

"""The native fast path of :func:`vhlake.pipeline.silver.type_events` (``native/payload.c``, ``native/keys.c``).

Almost every payload a producer sends is a minified JSON object of plain values. For those, the C typer
decides each payload field straight from the bytes (strings are byte slices, integers parsed, error_types
an object of integers) and the lookup keys are md5'd in C: no JSON re-parse in SQL, no Python per row.
Every row the typer is unsure about is typed by the exact SQL, so the result equals
``silver.TYPE_SQL``'s on every input (tests/test_native_typing.py checks it on awkward and random ones).
"""

from __future__ import annotations

import ctypes

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.native import StringBuffers, address, gather_strings, string_buffers

# The C typer's output slots (native/payload.c SLOT), in PAYLOAD_FIELDS order.
_STRINGS = ("ruleset", "s3_path")
_INTEGERS = ("total_rows", "valid_rows", "invalid_rows", "processing_time_ms", "file_size_bytes")
_ERRORS_TYPE = pa.map_(pa.string(), pa.int32())


def lookup_keys(native: ctypes.CDLL, ids: pa.ChunkedArray | pa.Array) -> pa.Array:
    """60 bits of md5 of each (non-null) id, as silver's ``CAST(('0x' || left(md5(id), 15)) AS BIGINT)``."""
    array = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    ids_buffers = string_buffers(array)
    count = ids_buffers.count
    out = np.empty(count, dtype=np.int64)
    native.md5_keys(
        ids_buffers.data,
        address(ids_buffers.offsets, np.int64, count + 1),
        count,
        address(out, np.int64, count),
    )
    return pa.array(out)


def type_payloads(
    native: ctypes.CDLL, payloads: pa.ChunkedArray | pa.Array
) -> tuple[dict[str, pa.Array], npt.NDArray[np.bool_]]:
    """The typed payload fields of every row, and which rows the C typer decided (the others' values
    mean nothing, and those rows must be typed by the exact SQL)."""
    array = payloads.combine_chunks() if isinstance(payloads, pa.ChunkedArray) else payloads
    count = len(array)
    source = string_buffers(array)
    valid = np.ascontiguousarray(pc.is_valid(array).to_numpy(zero_copy_only=False), dtype=np.uint8)
    decided = np.empty(count, np.uint8)
    strings, integers = len(_STRINGS) * count, len(_INTEGERS) * count
    starts, lens = np.empty(strings, np.int64), np.empty(strings, np.int32)
    ints, int_valid = np.empty(integers, np.int64), np.empty(integers, np.uint8)
    map_count = np.empty(count, np.int32)
    entries = _Entries(max(1024, 4 * count))
    row = 0
    while True:
        row = native.type_payloads(
            source.data, address(source.offsets, np.int64, count + 1), address(valid, np.uint8, count), row,
            count, address(decided, np.uint8, count), address(starts, np.int64, strings),
            address(lens, np.int32, strings), address(ints, np.int64, integers),
            address(int_valid, np.uint8, integers), address(map_count, np.int32, count), *entries.addresses(),
        )  # fmt: skip
        if row == count:
            break
        # An entry takes at least 5 bytes ('"":0,'): room for every entry the stalled row may hold, so
        # one huge map is parsed at most twice, not once per doubling.
        entries.grow(int(entries.used[0]) + int(source.offsets[row + 1] - source.offsets[row]) // 4 + 1)
    columns: dict[str, pa.Array] = {}
    for slot, name in enumerate(_STRINGS):
        part = slice(slot * count, (slot + 1) * count)
        columns[name] = gather_strings(native, source, starts[part], lens[part])
    for slot, name in enumerate(_INTEGERS):
        part = slice(slot * count, (slot + 1) * count)
        columns[name] = pa.array(ints[part], mask=int_valid[part] == 0)
    columns["error_types"] = entries.maps(native, source, map_count)
    return columns, decided.view(bool)


class _Entries:
    """The error_types entries the C typer appends to (key slices and values), grown when full."""

    def __init__(self, capacity: int) -> None:
        self.key_start = np.empty(capacity, np.int64)
        self.key_len = np.empty(capacity, np.int32)
        self.values = np.empty(capacity, np.int32)
        self.used = np.zeros(1, np.int64)

    def addresses(self) -> tuple[int, int, int, int, int]:
        capacity = len(self.values)
        return (
            address(self.key_start, np.int64, capacity),
            address(self.key_len, np.int32, capacity),
            address(self.values, np.int32, capacity),
            capacity,
            address(self.used, np.int64, 1),
        )

    def grow(self, needed: int) -> None:
        capacity = max(2 * len(self.values), needed)
        self.key_start = np.resize(self.key_start, capacity)
        self.key_len = np.resize(self.key_len, capacity)
        self.values = np.resize(self.values, capacity)

    def maps(self, native: ctypes.CDLL, source: StringBuffers, counts: npt.NDArray[np.int32]) -> pa.Array:
        used = int(self.used[0])
        if used > np.iinfo(np.int32).max:  # a map array's offsets are 32-bit
            raise ValueError(f"{used} error_types entries in one batch: more than a map array holds")
        offsets = np.zeros(len(counts) + 1, np.int32)
        np.cumsum(np.maximum(counts, 0), out=offsets[1:])
        keys = gather_strings(native, source, self.key_start[:used], self.key_len[:used])
        return pa.MapArray.from_arrays(
            pa.array(offsets),
            keys,
            pa.array(self.values[:used]),
            type=_ERRORS_TYPE,
            mask=pa.array(counts < 0),
        )

"""The compiled fast paths (``*.c`` beside this file), loaded with ctypes.

Each C function takes Arrow or NumPy buffers and fills caller-sized NumPy buffers, so Python never loops
over rows and ctypes releases the GIL for the call. Every fast path is optional: :func:`library` is None
when the extension was not built (no C compiler at install), and the callers then take their exact
DuckDB paths, which the fast paths are tested against.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
# name: (argument types, result type)
_SIGNATURES: dict[str, tuple[list[type], type | None]] = {
    "scan_lines": ([_P, _P, _I64, _P, _P, _P], _I64),
    "gather": ([_P, _P, _P, _I64, _I64, _P, _P], None),
    "type_payloads": ([_P, _P, _P, _I64, _I64, *[_P] * 9, _I64, _P], _I64),
    "payload_field_name": ([ctypes.c_int], ctypes.c_char_p),
    "md5_keys": ([_P, _P, _I64, _P], None),
    "dedupe_events": ([*[_P] * 9, _I64, _P, _P], ctypes.c_int),
    "fold_jobs": ([*[_P] * 8, _I64, *[_P] * 5], _I64),
    "keys_in_several_groups": ([_P, _P, _I64, _P], ctypes.c_int),
    "set_hash_seed": ([ctypes.c_uint64, ctypes.c_uint64], None),
}


def _load() -> ctypes.CDLL | None:
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_native{suffix}"
        if path.exists():
            native = ctypes.CDLL(str(path))
            for name, (arguments, result) in _SIGNATURES.items():
                function = getattr(native, name)
                function.argtypes = arguments
                function.restype = result
            # The hash tables' secret seed (native/hash.h): crafted keys cannot aim at their slots.
            native.set_hash_seed(secrets.randbits(64), secrets.randbits(64))
            return native
    return None


_LIBRARY = _load()


def library() -> ctypes.CDLL | None:
    """The compiled library, or None when it was not built."""
    return _LIBRARY


def address(array: npt.NDArray[np.generic], dtype: type[np.generic], count: int) -> int:
    """The address of ``array``'s data for a C function that reads or writes ``count`` items of ``dtype``
    there; raises ValueError rather than let the C run past the buffer or misread it."""
    if array.dtype != np.dtype(dtype) or not array.flags.c_contiguous or array.ndim != 1:
        raise ValueError(
            f"a native buffer must be a contiguous 1-d {np.dtype(dtype)} array, not {array.dtype}"
        )
    if len(array) < count:
        raise ValueError(f"a native buffer of {len(array)} items where {count} are needed")
    return int(array.ctypes.data)


@dataclass(frozen=True)
class StringBuffers:
    """A string array's values as the C reads them: ``data`` (an address, 0 when empty) of ``size`` bytes,
    and ``offsets`` (count + 1, int64, relative to ``data``)."""

    data: int
    size: int
    offsets: npt.NDArray[np.int64]

    @property
    def count(self) -> int:
        return len(self.offsets) - 1


def string_buffers(array: pa.Array) -> StringBuffers:
    """The buffers of a string array's values (the caller keeps ``array`` referenced until the C call
    returns: the address is into its buffer).

    Offsets of a (non-large) string array are widened, and a sliced array's offsets are used as they are,
    so the data address is the buffer's start either way. Offsets that leave the data buffer or go back
    (an array built from raw buffers and never validated) raise ValueError: the C trusts them.
    """
    width: type[np.signedinteger[Any]]
    if pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type):
        width = np.int64
    elif pa.types.is_string(array.type) or pa.types.is_binary(array.type):
        width = np.int32
    else:
        raise TypeError(f"not a string array: {array.type}")
    _, offsets_buffer, data_buffer = array.buffers()[:3]
    count = len(array)
    if offsets_buffer is None:  # an empty array may have none
        return StringBuffers(0, 0, np.zeros(count + 1, np.int64))
    offsets = np.frombuffer(offsets_buffer, width, count + 1, array.offset * np.dtype(width).itemsize).astype(
        np.int64, copy=False
    )
    size = data_buffer.size if data_buffer is not None else 0
    if offsets[0] < 0 or offsets[-1] > size or bool((offsets[1:] < offsets[:-1]).any()):
        raise ValueError("string offsets outside their data buffer")
    data = data_buffer.address if data_buffer is not None and size else 0
    return StringBuffers(data, size, offsets)


def keys_in_several_groups(
    native: ctypes.CDLL, keys: npt.NDArray[np.int64], groups: npt.NDArray[np.int32]
) -> npt.NDArray[np.bool_]:
    """Which keys also occur with another group (by key only: a collision only makes the caller look
    closer)."""
    count = len(keys)
    if len(groups) != count:
        raise ValueError(f"{count} keys but {len(groups)} groups")
    flags = np.empty(count, np.uint8)
    keys, groups = np.ascontiguousarray(keys, np.int64), np.ascontiguousarray(groups, np.int32)
    if native.keys_in_several_groups(
        address(keys, np.int64, count),
        address(groups, np.int32, count),
        count,
        address(flags, np.uint8, count),
    ):
        raise MemoryError("no memory to compare the keys")
    return flags.view(bool)


def gather_strings(
    native: ctypes.CDLL, source: StringBuffers, starts: npt.NDArray[np.int64], lens: npt.NDArray[np.int32]
) -> pa.Array:
    """One string column from byte slices of ``source``'s data (length -1: NULL), copied in C into one
    buffer."""
    count = len(lens)
    if len(starts) != count:
        raise ValueError(f"{len(starts)} string starts but {count} lengths")
    valid = lens >= 0
    if valid.any() and (starts[valid].min() < 0 or (starts[valid] + lens[valid]).max() > source.size):
        raise ValueError("string slices outside their data buffer")
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.where(valid, lens, 0), out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    starts, lens = np.ascontiguousarray(starts), np.ascontiguousarray(lens)
    native.gather(
        source.data, address(starts, np.int64, count), address(lens, np.int32, count), 1, count,
        address(offsets, np.int64, count + 1), address(out, np.uint8, int(offsets[-1])),
    )  # fmt: skip
    nulls = int(count - valid.sum())
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    if offsets[-1] < 2**31:
        buffers = [validity, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(out)]
        return pa.Array.from_buffers(pa.string(), count, buffers, nulls)
    return pa.Array.from_buffers(
        pa.large_string(), count, [validity, pa.py_buffer(offsets), pa.py_buffer(out)], nulls
    )

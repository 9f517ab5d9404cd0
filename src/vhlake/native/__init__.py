"""The compiled fast paths (``*.c`` beside this file), loaded with ctypes.

Each C function takes Arrow or NumPy buffers and fills caller-sized NumPy buffers, so Python never loops
over rows and ctypes releases the GIL for the call. Every fast path is optional: :func:`library` is None
when the extension was not built (no C compiler at install), and the callers then take their exact
DuckDB paths, which the fast paths are tested against.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
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
            return native
    return None


_LIBRARY = _load()


def library() -> ctypes.CDLL | None:
    """The compiled library, or None when it was not built."""
    return _LIBRARY


def address(array: npt.NDArray[np.generic]) -> int:
    return int(array.ctypes.data)


def string_buffers(array: pa.Array) -> tuple[int, npt.NDArray[np.int64]]:
    """The data address and the int64 offsets (relative to it) of a string array's values (the caller
    keeps ``array`` referenced until the C call returns: the address is into its buffer).

    Offsets of a (non-large) string array are widened, and a sliced array's offsets are used as they are,
    so the data address is the buffer's start either way.
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
    offsets = np.frombuffer(offsets_buffer, width, count + 1, array.offset * np.dtype(width).itemsize)
    data = data_buffer.address if data_buffer is not None and data_buffer.size else 0
    return data, offsets.astype(np.int64, copy=False)


def gather_strings(
    native: ctypes.CDLL, data: int, starts: npt.NDArray[np.int64], lens: npt.NDArray[np.int32]
) -> pa.Array:
    """One string column from byte slices of ``data`` (length -1: NULL), copied in C into one buffer."""
    count = len(lens)
    valid = lens >= 0
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.where(valid, lens, 0), out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    starts, lens = np.ascontiguousarray(starts), np.ascontiguousarray(lens)
    native.gather(data, address(starts), address(lens), 1, count, address(offsets), address(out))
    nulls = int(count - valid.sum())
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    if offsets[-1] < 2**31:
        buffers = [validity, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(out)]
        return pa.Array.from_buffers(pa.string(), count, buffers, nulls)
    return pa.Array.from_buffers(
        pa.large_string(), count, [validity, pa.py_buffer(offsets), pa.py_buffer(out)], nulls
    )

"""Newline-delimited JSON files as a source of raw records, read in bounded batches.

A batch always ends on a line boundary, so its end byte is a safe place to resume from. Records are numbered
by line (1-based, as editors show them); blank lines are skipped but still counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

_BOM = b"\xef\xbb\xbf"
_HASH_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class LineBatch:
    """Lines ``[start_byte, end_byte)`` of a file as records (``source_offset`` = line number, ``raw``)."""

    start_byte: int
    end_byte: int
    records: pa.Table
    lines_seen: int


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of the file's content: its identity for exactly-once ingestion."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def count_lines_before(path: Path, end_byte: int) -> int:
    """How many line breaks the first ``end_byte`` bytes hold (to number lines after a resume)."""
    count = 0
    with path.open("rb") as handle:
        remaining = end_byte
        while remaining > 0 and (chunk := handle.read(min(_HASH_CHUNK, remaining))):
            count += chunk.count(b"\n")
            remaining -= len(chunk)
    return count


def read_line_batches(
    path: Path, *, start_byte: int, end_byte: int, batch_bytes: int, stops: Iterable[int] = ()
) -> Iterator[LineBatch]:
    """Batches of about ``batch_bytes`` covering ``[start_byte, end_byte)``; lines are never split.

    No batch crosses one of ``stops`` (positions where an earlier run ended a batch), so a resumed ingest
    lines its batches up with what each table already committed. A line longer than ``batch_bytes`` makes
    its batch larger rather than being cut.
    """
    boundaries = sorted({p for p in stops if start_byte < p < end_byte} | {end_byte})
    next_line = count_lines_before(path, start_byte) + 1
    with path.open("rb") as handle:
        handle.seek(start_byte)
        position = start_byte
        carry = b""
        for boundary in boundaries:
            while position < boundary or carry:
                chunk = handle.read(min(batch_bytes, boundary - position)) if position < boundary else b""
                if not chunk and position < boundary:
                    boundary = end_byte = position  # the file shrank while we read it: stop at what exists
                position += len(chunk)
                data = carry + chunk if carry else chunk
                cut = len(data) if position >= boundary else data.rfind(b"\n") + 1
                if cut == 0:  # no complete line yet (a line longer than a batch): keep reading
                    carry = data
                    continue
                # The partial last line is read again with the next batch rather than copied along, and
                # the batch is a view of what was read: no copy of the 32 MiB body.
                position -= len(data) - cut
                handle.seek(position)
                carry = b""
                body = memoryview(data)[:cut]
                batch_start = position - cut
                records, seen = split_lines(body, first_line=next_line, at_file_start=batch_start == 0)
                next_line += seen
                yield LineBatch(batch_start, position, records, seen)
            if position >= end_byte:
                return


_WHITESPACE_BYTES = np.frombuffer(b" \t\r\n", dtype=np.uint8)


def split_lines(body: bytes | memoryview, *, first_line: int, at_file_start: bool) -> tuple[pa.Table, int]:
    """The non-blank lines of ``body`` as records, and how many lines ``body`` holds.

    The lines are zero-copy slices of ``body`` (Arrow offsets over one buffer), each keeping its line break:
    JSON allows trailing whitespace and the rejects path strips it.
    """
    if at_file_start and body[: len(_BOM)] == _BOM:
        body = b" " * len(_BOM) + bytes(
            body[len(_BOM) :]
        )  # keeps byte positions, and blanks are JSON whitespace
    ends = _line_ends(body)
    offsets = np.empty(len(ends) + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = ends
    lines = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(body)]
    )
    numbers = pa.array(np.arange(first_line, first_line + len(ends), dtype=np.int64))
    records = pa.table({"source_offset": numbers, "raw": lines})
    # Only a line that starts with whitespace can be blank: the regex runs on those few alone.
    starts = np.frombuffer(body, dtype=np.uint8)[offsets[:-1]] if len(ends) else np.empty(0, np.uint8)
    maybe_blank = np.flatnonzero(np.isin(starts, _WHITESPACE_BYTES))
    if len(maybe_blank) == 0:
        return records, len(ends)
    blank = pc.match_substring_regex(lines.take(pa.array(maybe_blank)), r"^[ \t\r\n]*$")
    drop = np.zeros(len(ends), dtype=bool)
    drop[maybe_blank[np.asarray(blank.to_numpy(zero_copy_only=False), dtype=bool)]] = True
    return records.filter(pa.array(~drop)), len(ends)


def _line_ends(body: bytes | memoryview) -> npt.NDArray[np.int64]:
    """Offsets just past each line (a final line without a break ends at ``len(body)``)."""
    ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == ord("\n")).astype(np.int64) + 1
    if len(body) and body[-1:] != b"\n":
        ends = np.append(ends, len(body))
    return ends
